"""Logs, metrics, health, traces and live views of a running flow, from outside its stages.

Only :mod:`._logging` loads with this package; the rest, prometheus_client and OpenTelemetry
load when a run turns their signal on (see :func:`instruments_for`).
"""

from ._logging import configure_logging
from ._setup import instruments_for

__all__ = ["configure_logging", "instruments_for"]
