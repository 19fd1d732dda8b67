"""Log lines go to stderr so that records printed by ``stdout_sink`` stay alone on stdout.

Each line names where it comes from. The runtime logs to ``flowpipe.<flow>`` and each stage to
``flowpipe.<flow>.<stage>``; :class:`FlowFields` turns that into ``flow`` and ``stage`` fields:

- ``console``: ``[2026-01-02 03:04:05.678] [INFO] [<flow>.<stage>] message``
- ``json``: one object per line with ``time``, ``level``, ``flow``, ``stage`` (null for the
  runtime itself), ``logger``, ``message`` and, on errors, ``exception``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

__all__ = ["FlowFields", "configure_logging"]

LogFormat = Literal["console", "json"]

_CONSOLE = "[%(asctime)s.%(msecs)03d] [%(levelname)s] [%(origin)s] %(message)s"


class FlowFields(logging.Filter):
    """Adds ``flow``, ``stage`` and ``origin`` to each record, from its logger's name."""

    def __init__(self, flow: str = "") -> None:
        super().__init__()
        self.flow = flow

    def filter(self, record: logging.LogRecord) -> bool:
        origin = record.name.removeprefix("flowpipe.")
        flow = self.flow
        stage = origin[len(flow) + 1 :] if flow and origin.startswith(flow + ".") else None
        record.origin, record.flow, record.stage = origin, flow or None, stage
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "flow": getattr(record, "flow", None),
            "stage": getattr(record, "stage", None),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(
    level: int | str = logging.INFO, fmt: LogFormat = "console", flow: str = ""
) -> logging.Handler:
    """Send flowpipe's logs (runtime and stages) to stderr at ``level``, in ``fmt``; ``flow``
    names the flow running, once known. Returns the stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(FlowFields(flow))
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_CONSOLE, datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger("flowpipe")
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    root.propagate = False
    # OTLP exporters report failures here: in the same format, so JSON output stays JSON.
    otel = logging.getLogger("opentelemetry")
    otel.handlers[:] = [handler]
    otel.setLevel(logging.WARNING)
    otel.propagate = False
    return handler
