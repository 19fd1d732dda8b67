"""``flowpipe top`` and ``flowpipe graph``: look at a flow running elsewhere, or draw one."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from ._main import _reports_errors

__all__ = ["graph", "top"]


@click.command()
@click.argument("url")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between two readings.",
)
@click.option("--once", is_flag=True, help="Print one reading and exit.")
@_reports_errors
def top(url: str, interval: float, once: bool) -> None:
    """Watch a running flow: per stage records/s and errors, per queue depth and capacity.

    URL is the flow's metrics address (HOST:PORT, as given to run --metrics-addr) or URL.
    Stops with Ctrl-C, or when the flow no longer answers.
    """
    from ..observability._top import top as watch

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how one leaves top
        watch(url, interval, once, sys.stdout)


@click.command()
@click.argument("flow", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot", "svg", "png"]),
    default="mermaid",
    show_default=True,
    help="Mermaid or Graphviz DOT text, or a picture drawn by Graphviz.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
@_reports_errors
def graph(flow: Path, fmt: str, output: Path | None) -> None:
    """Draw FLOW: stages as nodes, queues as edges labelled with their capacity."""
    from ..observability._graph import render_graph
    from ..spec import parse_flow

    picture = render_graph(parse_flow(flow).raise_for_problems(), fmt)
    if output is not None:
        output.write_bytes(picture)
    elif fmt == "png" and sys.stdout.isatty():
        raise click.UsageError("a PNG is not for a terminal: use -o FILE or redirect stdout")
    else:
        sys.stdout.buffer.write(picture)
