"""Log lines go to stderr so that records printed by ``stdout_sink`` stay alone on stdout.

Each line names where it comes from: ``flowpipe.<flow>`` for the runtime,
``flowpipe.<flow>.<stage>`` for a stage, shown without the ``flowpipe.`` prefix.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]

_FORMAT = "[%(asctime)s.%(msecs)03d] [%(levelname)s] [%(origin)s] %(message)s"


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.origin = record.name.removeprefix("flowpipe.")
        return super().format(record)


def configure_logging(level: int | str = logging.INFO) -> None:
    """Send flowpipe's logs (runtime and stages) to stderr at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger("flowpipe")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
