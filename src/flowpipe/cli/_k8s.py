"""``flowpipe k8s``: Kubernetes manifests for a flow."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import click

from ..sdk import FlowSpecError, Problem
from ._main import _reports_errors

__all__ = ["k8s"]


# The spec reader checks cpu_pinning ids against this machine's CPUs; the pod runs elsewhere.
@click.group()
def k8s() -> None:
    """Run flows on Kubernetes."""


@k8s.command()
@click.argument("flow", type=click.Path(path_type=Path))
@click.option("--image", metavar="IMAGE", help="Runtime image; overrides the flow's kubernetes.image.")
@click.option("-n", "--namespace", metavar="NS", help="Namespace of every object (default: none set).")
@click.option("--name", metavar="NAME", help="Flow name, and base of the object names (default: the flow's).")
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="SIGTERM drain deadline given to the runtime; the pod's grace period is longer "
    "[default: the flow's env FLOWPIPE_DRAIN_TIMEOUT, else 30].",
)
@click.option(
    "-o",
    "--output",
    type=click.File("w", lazy=True),
    default="-",
    help="Write the manifests to this file (default: stdout).",
)
@_reports_errors
def render(
    flow: Path,
    image: str | None,
    namespace: str | None,
    name: str | None,
    drain_timeout: float | None,
    output: TextIO,
) -> None:
    """Print the Kubernetes manifests that run FLOW.

    A ConfigMap holding the flow, and a Deployment, DaemonSet, Job or CronJob chosen by the
    flow's execution mode and kubernetes_options; warnings go to stderr.

    \b
    flowpipe k8s render flows/hello.yaml --image flowpipe-runtime:latest | kubectl apply -f -
    """
    from ..deploy import RenderOptions
    from ..deploy import render as render_flow
    from ..spec import parse_flow

    parsed = parse_flow(flow)
    problems = parsed.problems
    if parsed.spec is None or not all(p.warning for p in problems):
        raise FlowSpecError(problems)
    _warn(problems)
    rendered = render_flow(
        parsed.spec, RenderOptions(image=image, namespace=namespace, name=name, drain_timeout=drain_timeout)
    )
    for warning in rendered.warnings:
        click.echo(f"flowpipe: warning: {warning}", err=True)
    output.write(rendered.to_yaml())


def _warn(problems: list[Problem]) -> None:
    for problem in problems:
        click.echo(str(problem), err=True)
