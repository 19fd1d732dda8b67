"""Command line: ``flowpipe`` and flow-pipe's ``flow_runtime``."""

from ._main import cli, flow_runtime

__all__ = ["cli", "flow_runtime", "flow_runtime_main", "main"]


def main() -> None:
    """Entry point of the ``flowpipe`` script."""
    cli.main(prog_name="flowpipe")


def flow_runtime_main() -> None:
    """Entry point of the ``flow_runtime`` script."""
    flow_runtime()
