"""The ``flowpipe`` command.

Exit codes: 0 success; 1 a stage failed at run time (or the drain deadline passed);
2 invalid input (flow file, stage config, plugin, command line); 130 forced by a second signal.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

import click

from ..sdk import FlowpipeError, FlowSpecError, Source

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..registry import StageRegistry
    from ..runtime import FlowPlan

__all__ = ["EXIT_INVALID", "cli"]

EXIT_INVALID = 2
F = TypeVar("F", bound=Callable[..., Any])


def _reports_errors(command: F) -> F:
    """Bad input becomes one line per problem on stderr and exit 2, never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FlowSpecError as error:
            for problem in error.problems:
                click.echo(str(problem), err=True)
            errors = sum(not p.warning for p in error.problems)
            click.echo(f"flowpipe: {errors} error(s); nothing was started", err=True)
        except FlowpipeError as error:
            click.echo(f"flowpipe: error: {error}", err=True)
        sys.exit(EXIT_INVALID)

    return wrapper  # type: ignore[return-value]


plugin_path_option = click.option(
    "--plugin-path",
    "plugin_path",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of stage plugins, searched before FLOW_PIPE_PLUGIN_PATH (repeatable).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flow-pipe", prog_name="flowpipe")
def cli() -> None:
    """Run and inspect flowpipe flows."""


@cli.command()
@click.argument("flow", type=click.Path(path_type=Path))
@plugin_path_option
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    envvar="FLOWPIPE_DRAIN_TIMEOUT",
    help="Seconds allowed, after SIGINT/SIGTERM, to drain queued records to the sinks.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    envvar="FLOWPIPE_BATCH_SIZE",
    help="Most records moved between two stages at once.",
)
@click.option(
    "--queue-max-bytes",
    type=click.IntRange(min=1),
    default=64 * 1024 * 1024,
    show_default=True,
    envvar="FLOWPIPE_QUEUE_MAX_BYTES",
    help="Most bytes a queue holds, counting batches of known size (Arrow); a larger batch passes alone.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default=None,
    envvar="FLOWPIPE_LOG_LEVEL",
    help="Log level (default info; debug when the flow sets observability.debug).",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default="console",
    show_default=True,
    envvar="FLOWPIPE_LOG_FORMAT",
    help="Log lines as text or as one JSON object per line; each names the flow and the stage.",
)
@click.option(
    "--metrics-addr",
    metavar="HOST:PORT",
    envvar="FLOWPIPE_METRICS_ADDR",
    help="Serve Prometheus /metrics, /healthz and /readyz there (port 0: any free port, logged).",
)
@click.option(
    "--progress",
    is_flag=True,
    help="Show a live view of stages and queues, and a summary at exit (only on a terminal).",
)
@click.option(
    "--no-fuse",
    is_flag=True,
    envvar="FLOWPIPE_NO_FUSE",
    help="Run every source, even one whose files the stage it feeds would read itself.",
)
@_reports_errors
def run(
    flow: Path,
    plugin_path: tuple[Path, ...],
    drain_timeout: float,
    batch_size: int,
    queue_max_bytes: int,
    log_level: str | None,
    log_format: Literal["console", "json"],
    metrics_addr: str | None,
    progress: bool,
    no_fuse: bool,
) -> None:
    """Run FLOW (a .yaml, .yml or .json flow file) until it ends or is stopped."""
    from ..observability import configure_logging, instruments_for
    from ..runtime import FlowRun

    configure_logging(logging.INFO, log_format)
    plan = _plan(flow, plugin_path, preflight=True, fuse=not no_fuse)
    level = log_level or ("debug" if plan.debug else "info")
    configure_logging(level, log_format, flow=plan.name)
    log = logging.getLogger(f"flowpipe.{plan.name}")
    for warning in plan.warnings:
        log.warning("%s", warning)
    log.info(
        "starting flow '%s' (%s mode, %d stages)",
        plan.name,
        "job" if plan.job else "streaming",
        len(plan.stages),
    )
    instruments = instruments_for(plan, metrics_addr=metrics_addr, progress=progress)
    run = FlowRun(
        plan,
        batch_size=batch_size,
        drain_timeout=drain_timeout,
        queue_max_bytes=queue_max_bytes,
        instruments=instruments,
    )
    sys.exit(run.run())


@cli.command()
@click.argument("flows", nargs=-1, required=True, type=click.Path(path_type=Path))
@plugin_path_option
def validate(flows: tuple[Path, ...], plugin_path: tuple[Path, ...]) -> None:
    """Check FLOWS without running them: exit 0 when all are valid, 2 otherwise."""
    failed = False
    for flow in flows:
        try:
            plan = _plan(flow, plugin_path)
        except FlowSpecError as error:
            failed = True
            for problem in error.problems:
                click.echo(str(problem), err=True)
            continue
        except FlowpipeError as error:
            failed = True
            click.echo(f"{flow}: error: {error}", err=True)
            continue
        for warning in plan.warnings:
            click.echo(str(warning), err=True)
        click.echo(f"{flow}: ok ({len(plan.stages)} stages, {len(plan.queue_capacities)} queues)")
    sys.exit(EXIT_INVALID if failed else 0)


@cli.group(invoke_without_command=True)
@plugin_path_option
@click.pass_context
def stages(ctx: click.Context, plugin_path: tuple[Path, ...]) -> None:
    """List the stage types that flows can use, with their kind and origin."""
    from ..registry import build_registry

    registry = build_registry(plugin_path)
    ctx.obj = registry
    if ctx.invoked_subcommand is not None:
        return
    infos, errors = registry.load_all()
    rows = [(i.type_name, i.kind.value, i.origin) for i in infos]
    width = [max((len(r[c]) for r in rows), default=0) for c in range(2)]
    click.echo(f"{'TYPE':<{width[0]}}  {'KIND':<{width[1]}}  ORIGIN")
    for type_name, kind, origin in rows:
        click.echo(f"{type_name:<{width[0]}}  {kind:<{width[1]}}  {origin}")
    for error in errors:
        click.echo(f"flowpipe: warning: {error}", err=True)


@stages.command("show")
@click.argument("type_name", metavar="TYPE")
@click.pass_obj
@_reports_errors
def stages_show(registry: StageRegistry, type_name: str) -> None:
    """Describe stage TYPE: kind, origin and config fields."""
    info = registry.get(type_name)
    click.echo(f"{info.type_name} ({info.kind.value})")
    if info.description:
        click.echo(f"  {info.description}")
    click.echo(f"  origin: {info.origin}")
    if issubclass(info.stage_class, Source):
        click.echo(f"  acknowledges: {'yes' if info.stage_class.can_acknowledge() else 'no'}")
    for origin in info.shadowed:
        click.echo(f"  shadows: {origin}")
    model = info.config_model
    if model.model_config.get("extra") == "allow":  # its docstring says what becomes of them
        click.echo(f"  config: {inspect.cleandoc(model.__doc__ or 'any keys').splitlines()[0]}")
    else:
        click.echo("  config:" + ("" if model.model_fields else " none"))
    for line in _config_lines(info.config_model):
        click.echo(f"    {line}")


def _config_lines(model: type[BaseModel]) -> list[str]:
    """A config model's fields, one line each: type, default as a flow file would write it,
    constraints, description; a nested block's fields indented under it."""
    from pydantic import BaseModel, TypeAdapter

    lines = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nested = next(
            (
                t
                for t in (annotation, *get_args(annotation))
                if isinstance(t, type) and issubclass(t, BaseModel)
            ),
            None,
        )
        type_name = (
            str(annotation) if get_args(annotation) else getattr(annotation, "__name__", str(annotation))
        )
        text = f"{name}: " + re.sub(r"[\w.]+\.(\w+)", r"\1", type_name)  # no module paths (typing.Any: Any)
        if field.is_required():
            text += " (required)"
        elif nested is None:
            value = TypeAdapter(annotation or Any).dump_python(
                field.get_default(call_default_factory=True), mode="json"
            )
            text += f" (default {value!r})" if isinstance(value, str) else f" (default {json.dumps(value)})"
        text += "".join(
            f" {symbol} {getattr(m, key)}"
            for m in field.metadata
            for key, symbol in _BOUNDS
            if hasattr(m, key)
        )
        if field.description:
            text += f" — {field.description}"
        lines.append(text)
        if nested is not None:
            lines += [f"  {line}" for line in _config_lines(nested)]
    return lines


_BOUNDS = (
    ("gt", ">"),
    ("ge", "≥"),
    ("lt", "<"),
    ("le", "≤"),
    ("min_length", "length ≥"),
    ("max_length", "length ≤"),
)


def _plan(flow: Path, plugin_path: Sequence[Path], *, preflight: bool = False, fuse: bool = True) -> FlowPlan:
    from ..registry import build_registry
    from ..runtime import plan_flow
    from ..spec import parse_flow

    parsed = parse_flow(flow)
    if parsed.spec is None:
        raise FlowSpecError(parsed.problems)
    return plan_flow(parsed, build_registry(plugin_path), preflight=preflight, fuse=fuse)


def flow_runtime(argv: Sequence[str] | None = None) -> None:
    """``flow_runtime FLOW``: flow-pipe's runtime binary, the same as ``flowpipe run FLOW``."""
    args = list(sys.argv[1:] if argv is None else argv)
    cli.main(
        args if args in (["--version"], ["--help"], ["-h"]) else ["run", *args], prog_name="flow_runtime"
    )


# Subcommands that live in their own modules (each keeps its heavy imports inside the command).
def _add_subcommands() -> None:
    from ._observe import graph, top

    cli.add_command(graph)
    cli.add_command(top)

    from ._k8s import k8s

    cli.add_command(k8s)

    from ._sdk import sdk

    cli.add_command(sdk)


_add_subcommands()
