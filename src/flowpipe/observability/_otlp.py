"""OTLP export (gRPC or HTTP) of metrics, spans and logs, as :mod:`._policy` decided.

Metrics are pushed from the same neutral families the Prometheus endpoint serves (read every
interval and once more at the end), so the runtime's per-batch counters feed both without an
OpenTelemetry instrument call on the data path. Names and meter are flow-pipe's
(``flowpipe.runtime``, ``flowpipe.queue.enqueue.count``, ...).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ..runtime import Instrument
from ._collect import Buckets, Family, collect
from ._logging import FlowFields
from ._policy import BatchSettings, OtlpTarget, Settings

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.trace import TracerProvider

    from ..runtime import FlowRun

__all__ = ["OtlpLogs", "OtlpMetrics", "make_resource", "tracer_provider"]

log = logging.getLogger("flowpipe.observability")

_SCOPE = InstrumentationScope("flowpipe.runtime", "1.0.0")
_METRIC_EXPORT_TIMEOUT_MS = 500  # fixed, as in the original

# (signal, over HTTP) -> the exporter class, imported only when used (gRPC pulls in grpcio).
_EXPORTERS = {
    ("traces", False): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    ("traces", True): ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
    ("metrics", False): ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "OTLPMetricExporter"),
    ("metrics", True): ("opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
    ("logs", False): ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "OTLPLogExporter"),
    ("logs", True): ("opentelemetry.exporter.otlp.proto.http._log_exporter", "OTLPLogExporter"),
}


def exporter(target: OtlpTarget, signal: str, timeout_s: float | None = None) -> Any:
    """An OTLP exporter of ``signal`` (traces, metrics or logs) to ``target``."""
    module, name = _EXPORTERS[signal, target.http]
    cls = getattr(importlib.import_module(module), name)
    if target.http:
        return cls(endpoint=target.url(signal), timeout=timeout_s)
    return cls(endpoint=target.endpoint, insecure=target.insecure, timeout=timeout_s)


def make_resource(flow: str, environ: Mapping[str, str] = os.environ) -> Resource:
    """``service.name`` is ``OTEL_SERVICE_NAME`` or ``flowpipe``; ``flowpipe.flow`` names the flow."""
    attributes: dict[str, str] = {"flowpipe.flow": flow}
    if not environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "flowpipe"
    return Resource.create(attributes)


class _BatchOptions(TypedDict):
    max_queue_size: int | None
    max_export_batch_size: int | None
    schedule_delay_millis: float | None
    export_timeout_millis: float | None


def _batch_options(batch: BatchSettings) -> _BatchOptions:
    """The keyword arguments of the SDK's batch processors; None leaves the SDK's default."""
    return _BatchOptions(
        max_queue_size=batch.max_queue_size or None,
        max_export_batch_size=batch.max_export_batch_size or None,
        schedule_delay_millis=batch.schedule_delay_ms or None,
        export_timeout_millis=batch.export_timeout_ms or None,
    )


def _timeout_s(batch: BatchSettings | None) -> float | None:
    """The flow's ``export_timeout_ms`` bounds each export, and so the wait at exit for an
    unreachable collector; unset, the SDK's (``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s)."""
    return batch.export_timeout_ms / 1000 if batch is not None and batch.export_timeout_ms else None


def tracer_provider(settings: Settings, resource: Resource) -> TracerProvider:
    """A tracer provider exporting spans to ``settings.otlp``."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    assert settings.otlp is not None
    # No sampler given: the SDK's, from OTEL_TRACES_SAMPLER (parent-based, always on, by default).
    sampler = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF}.get(settings.sampler or "")
    provider = TracerProvider(sampler=sampler, resource=resource)
    batch = settings.span_batch
    spans = exporter(settings.otlp, "traces", _timeout_s(batch))
    provider.add_span_processor(
        SimpleSpanProcessor(spans) if batch is None else BatchSpanProcessor(spans, **_batch_options(batch))
    )
    return provider


class OtlpMetrics(Instrument):
    """Pushes the flow's metric families every ``interval_s``, and once more when it ends."""

    def __init__(self, settings: Settings, resource: Resource) -> None:
        assert settings.otlp is not None
        self.exporter = exporter(settings.otlp, "metrics", _METRIC_EXPORT_TIMEOUT_MS / 1000)
        self.groups = settings.groups
        self.interval_s = settings.metric_interval_s
        self.resource = resource
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_ns = time.time_ns()

    def flow_started(self, run: FlowRun) -> None:
        self._started_ns = time.time_ns()
        self._thread = threading.Thread(target=self._loop, args=(run,), name="otlp-metrics", daemon=True)
        self._thread.start()

    def flow_ended(self, run: FlowRun, exit_code: int) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.export(run)
        self.exporter.shutdown()

    def _loop(self, run: FlowRun) -> None:
        while not self._stop.wait(self.interval_s):
            self.export(run)

    def export(self, run: FlowRun) -> None:
        data = self.metrics_data(collect(run, self.groups))
        try:
            self.exporter.export(data, timeout_millis=_METRIC_EXPORT_TIMEOUT_MS)
        except Exception as error:  # an unreachable collector must not stop the flow
            log.warning("OTLP metric export failed: %s", error)

    def metrics_data(self, families: list[Family]) -> MetricsData:
        now = time.time_ns()
        metrics = [_metric(family, self._started_ns, now) for family in families]
        scope = ScopeMetrics(scope=_SCOPE, metrics=metrics, schema_url="")
        return MetricsData(resource_metrics=[ResourceMetrics(self.resource, [scope], schema_url="")])


def _metric(family: Family, start_ns: int, now_ns: int) -> Metric:
    cumulative = AggregationTemporality.CUMULATIVE
    data: Sum | Gauge | Histogram
    if family.kind == "histogram":
        points = []
        for values, buckets in family.samples:
            assert isinstance(buckets, Buckets)
            points.append(
                HistogramDataPoint(
                    attributes=dict(zip(family.label_names, values, strict=True)),
                    start_time_unix_nano=start_ns,
                    time_unix_nano=now_ns,
                    count=buckets.count,
                    sum=buckets.total,
                    bucket_counts=buckets.counts,
                    explicit_bounds=[float(bound) for bound in buckets.bounds],
                    # Not tracked: OTLP leaves them unset when None.
                    min=None,  # type: ignore[arg-type]
                    max=None,  # type: ignore[arg-type]
                )
            )
        data = Histogram(data_points=points, aggregation_temporality=cumulative)
    else:
        numbers = [
            NumberDataPoint(
                attributes=dict(zip(family.label_names, values, strict=True)),
                start_time_unix_nano=start_ns,
                time_unix_nano=now_ns,
                value=value,
            )
            for values, value in family.samples
            if not isinstance(value, Buckets)
        ]
        if family.kind == "counter":
            data = Sum(data_points=numbers, aggregation_temporality=cumulative, is_monotonic=True)
        else:
            data = Gauge(data_points=numbers)
    return Metric(name=family.name, description=family.help, unit="", data=data)


_SEVERITY = {logging.DEBUG: 5, logging.INFO: 9, logging.WARNING: 13, logging.ERROR: 17, logging.CRITICAL: 21}


class _OtlpHandler(logging.Handler):
    """Emits flowpipe's log records to an OpenTelemetry logger, with flow and stage attributes."""

    def __init__(self, provider: LoggerProvider, flow: str) -> None:
        super().__init__()
        self.logger = provider.get_logger("flowpipe.runtime", "1.0.0")
        self.addFilter(FlowFields(flow))

    def emit(self, record: logging.LogRecord) -> None:
        attributes = {
            "flowpipe.flow": getattr(record, "flow", None) or "",
            "flowpipe.stage": getattr(record, "stage", None) or "",
            "code.file.path": record.pathname,
            "code.line.number": record.lineno,
        }
        self.logger.emit(
            timestamp=int(record.created * 1e9),
            severity_number=SeverityNumber(_SEVERITY.get(record.levelno, 9)),
            severity_text=record.levelname,
            body=record.getMessage(),
            attributes={key: value for key, value in attributes.items() if value != ""},
            exception=record.exc_info[1] if record.exc_info else None,
        )


class OtlpLogs(Instrument):
    """Sends flowpipe's logs over OTLP from construction until the run ends."""

    def __init__(self, settings: Settings, resource: Resource, flow: str) -> None:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor

        assert settings.otlp is not None
        self.provider = LoggerProvider(resource=resource)
        batch = settings.log_batch
        logs = exporter(settings.otlp, "logs", _timeout_s(batch))
        self.provider.add_log_record_processor(
            SimpleLogRecordProcessor(logs)
            if batch is None
            else BatchLogRecordProcessor(logs, **_batch_options(batch))
        )
        self.handler = _OtlpHandler(self.provider, flow)
        logging.getLogger("flowpipe").addHandler(self.handler)

    def flow_ended(self, run: FlowRun, exit_code: int) -> None:
        logging.getLogger("flowpipe").removeHandler(self.handler)
        self.provider.shutdown()
