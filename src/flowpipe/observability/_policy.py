"""Which signals a run produces: the flow's ``observability`` block narrowed by the environment.

As in flow-pipe, the environment is the process policy and a flow can only narrow it:

- an OTLP signal (metrics, traces, logs) starts only when the flow has an ``observability``
  block, ``FLOWPIPE_OBSERVABILITY_ENABLED`` is true, the signal's own variable allows it
  (``FLOWPIPE_METRICS_ENABLED`` defaults to true, ``FLOWPIPE_TRACING_ENABLED`` and
  ``FLOWPIPE_LOGS_ENABLED`` to false) and the flow's ``*_enabled`` field is true;
- the Prometheus endpoint is not an OTLP signal: it is on exactly when an address is given
  (``--metrics-addr`` / ``FLOWPIPE_METRICS_ADDR``), whatever this policy says, and only the
  flow's ``metrics`` switches choose which groups it serves.

Everything here is pure: ``resolve`` reads a config and a mapping of environment variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..spec import (
    BatchConfig,
    LogProcessor,
    MetricsConfig,
    ObservabilityConfig,
    OtlpTransport,
    TraceHint,
    TraceProcessor,
)

__all__ = ["BatchSettings", "MetricGroups", "OtlpTarget", "Settings", "env_flag", "resolve"]

_GRPC_DEFAULT = "localhost:4317"
_HTTP_DEFAULT = "http://localhost:4318"
_DEFAULT_METRIC_INTERVAL_MS = 60_000  # the OpenTelemetry SDK's default
_DEBUG_METRIC_INTERVAL_MS = 500
_DEBUG_BATCH = (200, 64)  # schedule delay (ms) and batch size that `debug` forces on spans and logs


def env_flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    """flow-pipe reads ``1``/``true``/``TRUE`` as true; ``yes`` and ``on`` (any case) are accepted too."""
    value = environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class MetricGroups:
    """Which metric families are served (Prometheus) and exported (OTLP)."""

    stage: bool = True
    queue: bool = True
    flow: bool = True
    histograms: bool = True
    gauges: bool = True
    process: bool = True  # process memory/CPU/GC: what the original's jemalloc gauges were

    @classmethod
    def from_config(cls, config: MetricsConfig | None) -> MetricGroups:
        if config is None:
            return cls()
        return cls(
            stage=not config.stage_metrics_disabled,
            queue=not config.queue_metrics_disabled,
            flow=not config.flow_metrics_disabled,
            histograms=not (config.latency_histograms_disabled or config.counters_only),
            gauges=not config.counters_only,
            process=not (config.jemalloc_metrics_disabled or config.counters_only),
        )

    @property
    def any_flow_group(self) -> bool:
        return self.stage or self.queue or self.flow


@dataclass(frozen=True)
class BatchSettings:
    """A batch processor's settings; 0 leaves the OpenTelemetry SDK's default."""

    max_queue_size: int = 0
    max_export_batch_size: int = 0
    schedule_delay_ms: int = 0
    export_timeout_ms: int = 0

    @classmethod
    def from_config(cls, config: BatchConfig | None, debug: bool) -> BatchSettings:
        batch = config or BatchConfig()
        delay, size = _DEBUG_BATCH if debug else (batch.schedule_delay_ms, batch.max_export_batch_size)
        if batch.max_queue_size and size:
            size = min(size, batch.max_queue_size)  # the SDK rejects a batch larger than its queue
        return cls(batch.max_queue_size, size, delay, batch.export_timeout_ms)


@dataclass(frozen=True)
class OtlpTarget:
    """Where OTLP goes: a gRPC ``host:port`` (or URL), or an OTLP/HTTP base URL."""

    endpoint: str
    http: bool
    insecure: bool

    def url(self, signal: str) -> str:
        """The OTLP/HTTP URL of ``signal`` (traces, metrics, logs): the base URL plus
        ``/v1/<signal>``, unless the endpoint already names a path."""
        endpoint = self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}"
        if urlsplit(endpoint).path.strip("/"):
            return endpoint
        return f"{endpoint.rstrip('/')}/v1/{signal}"


@dataclass(frozen=True)
class Settings:
    """What a run turns on. ``otlp`` is None when no OTLP signal is on."""

    groups: MetricGroups = MetricGroups()
    otlp: OtlpTarget | None = None
    metrics_export: bool = False
    stage_spans: bool = False
    logs_export: bool = False
    metric_interval_s: float = _DEFAULT_METRIC_INTERVAL_MS / 1000
    span_batch: BatchSettings | None = None  # None: export each span as it ends (SIMPLE)
    log_batch: BatchSettings | None = None
    sampler: str | None = None  # an OTEL_TRACES_SAMPLER name; None: the SDK's (env) default
    debug: bool = False


def resolve(config: ObservabilityConfig | None, environ: Mapping[str, str]) -> Settings:
    """The settings of a run of a flow with ``config`` (its ``observability`` block) under ``environ``."""
    groups = MetricGroups.from_config(config.metrics if config else None)
    if config is None:
        return Settings(groups=groups)
    master = env_flag(environ, "FLOWPIPE_OBSERVABILITY_ENABLED", False)
    metrics = (
        master
        and env_flag(environ, "FLOWPIPE_METRICS_ENABLED", True)
        and config.metrics_enabled
        and groups.any_flow_group
    )
    tracing = master and env_flag(environ, "FLOWPIPE_TRACING_ENABLED", False) and config.tracing_enabled
    # As in the original, spans exist only for stages: queue and record spans are not made.
    stage_spans = tracing and config.tracing is not None and config.tracing.stage_spans_enabled
    logs = master and env_flag(environ, "FLOWPIPE_LOGS_ENABLED", False) and config.logs_enabled
    tracing_config, logging_config = config.tracing, config.logging
    return Settings(
        groups=groups,
        otlp=_target(config, environ) if metrics or stage_spans or logs else None,
        metrics_export=metrics,
        stage_spans=stage_spans,
        logs_export=logs,
        metric_interval_s=_metric_interval_ms(config.metrics, environ, config.debug) / 1000,
        span_batch=None
        if tracing_config and tracing_config.processor is TraceProcessor.TRACE_PROCESSOR_SIMPLE
        else BatchSettings.from_config(tracing_config.batch if tracing_config else None, config.debug),
        log_batch=None
        if logging_config and logging_config.processor is LogProcessor.LOG_PROCESSOR_SIMPLE
        else BatchSettings.from_config(logging_config.batch if logging_config else None, config.debug),
        sampler=_sampler(tracing_config.trace_hint if tracing_config else TraceHint.TRACE_HINT_UNSPECIFIED),
        debug=config.debug,
    )


def _target(config: ObservabilityConfig, environ: Mapping[str, str]) -> OtlpTarget:
    if config.transport is OtlpTransport.OTLP_TRANSPORT_UNSPECIFIED:
        # The standard variable picks the protocol when the flow does not.
        http = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").startswith("http")
    else:
        http = config.transport is OtlpTransport.OTLP_TRANSPORT_HTTP
    if config.otlp_endpoint and env_flag(environ, "FLOWPIPE_ALLOW_FLOW_ENDPOINT_OVERRIDES", False):
        endpoint = config.otlp_endpoint
    else:
        names = ["FLOWPIPE_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        if not http:
            names = ["FLOWPIPE_OTEL_GRPC_ENDPOINT", names[0], "OTEL_EXPORTER_OTLP_GRPC_ENDPOINT", names[1]]
        found = (environ[name] for name in names if environ.get(name))
        endpoint = next(found, _HTTP_DEFAULT if http else _GRPC_DEFAULT)
    # Plain text unless asked otherwise, as in the original; an https:// endpoint means TLS.
    insecure = not endpoint.startswith("https://")
    if environ.get("OTEL_EXPORTER_OTLP_INSECURE", "").strip().lower() == "false":
        insecure = False
    if environ.get("FLOWPIPE_OTEL_USE_SSL_CREDENTIALS", "").strip():
        insecure = not env_flag(environ, "FLOWPIPE_OTEL_USE_SSL_CREDENTIALS", False)
    return OtlpTarget(endpoint=endpoint, http=http, insecure=insecure)


def _metric_interval_ms(config: MetricsConfig | None, environ: Mapping[str, str], debug: bool) -> int:
    if debug:
        return _DEBUG_METRIC_INTERVAL_MS
    interval = config.collection_interval_ms if config else 0
    if not interval:
        try:
            interval = int(environ.get("OTEL_METRIC_EXPORT_INTERVAL", _DEFAULT_METRIC_INTERVAL_MS))
        except ValueError:
            interval = _DEFAULT_METRIC_INTERVAL_MS
    return max(interval, config.min_collection_interval_ms if config else 0, 1)


def _sampler(hint: TraceHint) -> str | None:
    # The original stores trace_hint unused; here ALWAYS and NEVER override the sampler, and
    # DEFAULT leaves it to OTEL_TRACES_SAMPLER (parent-based, always on, unless set).
    return {TraceHint.TRACE_HINT_ALWAYS: "always_on", TraceHint.TRACE_HINT_NEVER: "always_off"}.get(hint)
