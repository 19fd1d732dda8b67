"""Command line: ``flowpipe`` and flow-pipe's ``flow_runtime``."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Callable

from ._main import cli, flow_runtime

__all__ = ["cli", "flow_runtime", "flow_runtime_main", "main"]


def main() -> None:
    """Entry point of the ``flowpipe`` script."""
    _exit_without_teardown(lambda: cli.main(prog_name="flowpipe"))


def flow_runtime_main() -> None:
    """Entry point of the ``flow_runtime`` script."""
    _exit_without_teardown(flow_runtime)


def _exit_without_teardown(command: Callable[[], object]) -> None:
    """Run ``command``, then end the process without the interpreter's final teardown.

    Freeing every module of pyarrow, DuckDB and pydantic at exit takes ~0.1 s, a fifth of a
    short job. What matters still happens: the interpreter joins non-daemon threads and runs
    the exit handlers registered after this one (telemetry flushes) before this one, which
    then flushes the log handlers and stdio and exits with the command's status.
    """
    status = 1  # an uncaught exception: its traceback is printed before exit handlers run

    def leave() -> None:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed pipe has nothing left to flush
                stream.flush()
        os._exit(status)

    atexit.register(leave)
    try:
        command()
        status = 0
    except SystemExit as exit:
        code = exit.code
        status = code if isinstance(code, int) else 0 if code is None else 1
        raise
