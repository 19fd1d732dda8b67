"""The FLOWPIPE_* environment policy and the flow's metric switches."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from flowpipe.observability._collect import collect
from flowpipe.observability._policy import MetricGroups, OtlpTarget, resolve
from flowpipe.observability._prometheus import FlowCollector, make_registry
from flowpipe.registry import build_registry
from flowpipe.runtime import FlowRun, plan_flow
from flowpipe.spec import ObservabilityConfig, parse_flow_text

ALL_ON = {
    "FLOWPIPE_OBSERVABILITY_ENABLED": "true",
    "FLOWPIPE_TRACING_ENABLED": "1",
    "FLOWPIPE_LOGS_ENABLED": "TRUE",
}
SIGNALS = {"metrics_enabled": True, "tracing_enabled": True, "logs_enabled": True}


def config(**fields: Any) -> ObservabilityConfig:
    return ObservabilityConfig.model_validate(fields)


def test_no_observability_block_means_no_otlp_signal_whatever_the_environment() -> None:
    settings = resolve(None, ALL_ON)
    assert settings.otlp is None and not settings.metrics_export and not settings.logs_export


def test_every_signal_needs_the_master_switch_its_own_switch_and_the_flow() -> None:
    flow = config(**SIGNALS, tracing={"stage_spans_enabled": True})
    on = resolve(flow, ALL_ON)
    assert on.metrics_export and on.stage_spans and on.logs_export
    assert resolve(flow, {**ALL_ON, "FLOWPIPE_OBSERVABILITY_ENABLED": "false"}).otlp is None
    # Metrics are allowed by default; tracing and logs are not.
    only_master = resolve(flow, {"FLOWPIPE_OBSERVABILITY_ENABLED": "1"})
    assert only_master.metrics_export and not only_master.stage_spans and not only_master.logs_export
    narrowed = resolve(config(metrics_enabled=True), ALL_ON)
    assert narrowed.metrics_export and not narrowed.stage_spans and not narrowed.logs_export
    # Tracing on, but no stage spans asked: no spans (the only kind the runtime makes).
    assert not resolve(config(tracing_enabled=True), ALL_ON).stage_spans


def test_metrics_export_stops_when_every_group_is_disabled() -> None:
    groups = {"stage_metrics_disabled": True, "queue_metrics_disabled": True, "flow_metrics_disabled": True}
    assert not resolve(config(metrics_enabled=True, metrics=groups), ALL_ON).metrics_export


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, OtlpTarget("localhost:4317", http=False, insecure=True)),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "otel:4317"}, OtlpTarget("otel:4317", False, True)),
        (
            {"FLOWPIPE_OTEL_ENDPOINT": "b:1", "OTEL_EXPORTER_OTLP_GRPC_ENDPOINT": "c:1"},
            OtlpTarget("b:1", False, True),
        ),
        (
            {"FLOWPIPE_OTEL_GRPC_ENDPOINT": "a:1", "FLOWPIPE_OTEL_ENDPOINT": "b:1"},
            OtlpTarget("a:1", False, True),
        ),
        ({"OTEL_EXPORTER_OTLP_INSECURE": "false"}, OtlpTarget("localhost:4317", False, False)),
        ({"FLOWPIPE_OTEL_USE_SSL_CREDENTIALS": "true"}, OtlpTarget("localhost:4317", False, False)),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, OtlpTarget("http://localhost:4318", True, True)),
        # The flow's endpoint counts only when the environment allows overrides.
        ({"FLOWPIPE_ALLOW_FLOW_ENDPOINT_OVERRIDES": "true"}, OtlpTarget("flow:4317", False, True)),
    ],
)
def test_endpoint_transport_and_tls_from_the_environment(env: dict[str, str], expected: OtlpTarget) -> None:
    settings = resolve(config(metrics_enabled=True, otlp_endpoint="flow:4317"), {**ALL_ON, **env})
    assert settings.otlp == expected


def test_http_transport_urls_per_signal() -> None:
    target = resolve(config(metrics_enabled=True, transport="http"), ALL_ON).otlp
    assert target is not None and target.url("traces") == "http://localhost:4318/v1/traces"
    assert OtlpTarget("http://collector:4318/custom/path", True, True).url("logs") == (
        "http://collector:4318/custom/path"
    )


def test_intervals_batches_sampler_and_debug() -> None:
    metrics = {"collection_interval_ms": 100, "min_collection_interval_ms": 1000}
    tracing = {"trace_hint": "TRACE_HINT_NEVER", "batch": {"max_queue_size": 10, "max_export_batch_size": 50}}
    settings = resolve(config(**SIGNALS, metrics=metrics, tracing=tracing), ALL_ON)
    assert settings.metric_interval_s == 1.0
    assert settings.span_batch is not None and settings.span_batch.max_export_batch_size == 10
    assert settings.sampler == "always_off"
    debug = resolve(config(**SIGNALS, debug=True, logging={"processor": "LOG_PROCESSOR_SIMPLE"}), ALL_ON)
    assert debug.metric_interval_s == 0.5 and debug.log_batch is None
    assert debug.span_batch is not None and debug.span_batch.schedule_delay_ms == 200
    assert debug.span_batch.max_export_batch_size == 64


FLOW = """
name: switches
execution: {mode: job}
queues: [{name: q, capacity: 4}]
stages:
  - {name: gen, type: noop_source, output_queue: q, config: {max_messages: 3}}
  - {name: out, type: stdout_sink, input_queue: q}
observability: {metrics: %s}
"""


def scrape(metrics: str) -> set[str]:
    """The sample names served for a finished run of FLOW with ``metrics`` switches."""
    plan = plan_flow(parse_flow_text(FLOW % metrics, "flow.yaml"), build_registry())
    run = FlowRun(plan)
    assert run.run() == 0
    groups = resolve(plan.observability, {}).groups
    registry = make_registry(FlowCollector(lambda: collect(run, groups)), groups.process)
    return {line.split("{")[0].split(" ")[0] for line in generate_latest(registry).decode().splitlines()}


def test_the_flow_switches_choose_the_groups_served() -> None:
    everything = scrape("{}")
    assert {"flowpipe_queue_depth", "flowpipe_stage_latency_ns_bucket", "flowpipe_flow_info"} <= everything
    assert "process_resident_memory_bytes" in everything
    counters = scrape("{counters_only: true}")
    assert "flowpipe_queue_enqueue_count_total" in counters and "flowpipe_stage_errors_total" in counters
    assert not {n for n in counters if not n.startswith("#") and not n.endswith("_total")}
    no_histograms = scrape("{latency_histograms_disabled: true}")
    assert "flowpipe_queue_depth" in no_histograms and "flowpipe_queue_dwell_ns_bucket" not in no_histograms
    no_stages = scrape(
        "{stage_metrics_disabled: true, flow_metrics_disabled: true, jemalloc_metrics_disabled: true}"
    )
    assert all(n.startswith(("#", "flowpipe_queue_")) for n in no_stages)
    assert MetricGroups.from_config(None) == MetricGroups()
