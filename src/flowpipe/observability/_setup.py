"""The instruments a ``flowpipe run`` needs, each module imported only when its signal is on,
so that a run without metrics or tracing starts as fast as before."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runtime import FlowPlan, Instrument

__all__ = ["instruments_for"]


def instruments_for(
    plan: FlowPlan,
    *,
    metrics_addr: str | None = None,
    progress: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> list[Instrument]:
    """Metrics endpoint, OTLP exporters, tracing and progress view, as asked and allowed.

    Raises FlowpipeError when the metrics address cannot be served.
    """
    if plan.observability is None and not metrics_addr and not progress:
        return []  # nothing asked: skip even the policy module, a few milliseconds of start-up
    from ._policy import resolve

    log = logging.getLogger(f"flowpipe.{plan.name}")
    settings = resolve(plan.observability, environ)
    instruments: list[Instrument] = []
    if progress and sys.stderr.isatty():
        from ._progress import ProgressView

        instruments.append(ProgressView(sys.stderr))
    if metrics_addr:
        from ._server import MetricsEndpoint

        instruments.append(MetricsEndpoint(metrics_addr, plan.name, settings.groups))
    target = settings.otlp
    if target is not None:
        try:
            from ._otlp import OtlpLogs, OtlpMetrics, make_resource, tracer_provider
        except ImportError as error:
            log.warning(
                "OTLP export is on but OpenTelemetry is not installed (%s): pip install 'flow-pipe[otel]'",
                error,
            )
        else:
            signals = [
                name
                for name, on in (
                    ("metrics", settings.metrics_export),
                    ("traces", settings.stage_spans),
                    ("logs", settings.logs_export),
                )
                if on
            ]
            log.info(
                "OTLP export of %s over %s to %s",
                ", ".join(signals),
                "HTTP" if target.http else "gRPC",
                target.endpoint,
            )
            resource = make_resource(plan.name, environ)
            if settings.metrics_export:
                instruments.append(OtlpMetrics(settings, resource))
            if settings.stage_spans:
                from ._tracing import TracingInstrument

                instruments.append(TracingInstrument(tracer_provider(settings, resource)))
            if settings.logs_export:
                instruments.append(OtlpLogs(settings, resource, plan.name))  # last: logs the others' ends
    return instruments
