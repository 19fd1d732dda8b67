"""Logs (and, later, metrics and traces) of a running flow."""

from ._logging import configure_logging

__all__ = ["configure_logging"]
