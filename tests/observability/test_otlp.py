"""A real ``flowpipe run`` exports spans, metrics and logs over OTLP/HTTP to a local receiver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import Run
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .support import OtlpReceiver

FLOW = """
name: otlp
execution: {mode: job}
queues: [{name: a, capacity: 16}, {name: b, capacity: 16}]
stages:
  - {name: gen, type: noop_source, output_queue: a, config: {max_messages: 5}}
  - {name: up, type: uppercase_transform, input_queue: a, output_queue: b}
  - {name: out, type: stdout_sink, input_queue: b}
observability:
  metrics_enabled: true
  tracing_enabled: true
  logs_enabled: true
  tracing: {stage_spans_enabled: true, processor: TRACE_PROCESSOR_SIMPLE}
"""
TO_HTTP = "  transport: OTLP_TRANSPORT_HTTP\n  otlp_endpoint: {}\n"

POLICY = {
    "FLOWPIPE_OBSERVABILITY_ENABLED": "true",
    "FLOWPIPE_TRACING_ENABLED": "true",
    "FLOWPIPE_LOGS_ENABLED": "1",
    "FLOWPIPE_ALLOW_FLOW_ENDPOINT_OVERRIDES": "TRUE",
}


def test_spans_metrics_and_logs_reach_an_otlp_http_receiver(
    otlp_receiver: OtlpReceiver, write: Callable[[str, str], Path], flowpipe: Run
) -> None:
    done = flowpipe("run", write("otlp.yaml", FLOW + TO_HTTP.format(otlp_receiver.url)), **POLICY)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"NOOP_SOURCE #{n}" for n in range(5)]

    spans = []
    for body in otlp_receiver.bodies("/v1/traces"):
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert resource["service.name"] == "flowpipe" and resource["flowpipe.flow"] == "otlp"
            spans += [span for scope in resource_spans.scope_spans for span in scope.spans]
    assert sorted(span.name for span in spans) == ["gen"] * 5 + ["out"] * 5 + ["up"] * 5
    assert len({span.trace_id for span in spans}) == 5

    sums: dict[tuple[str, str], float] = {}
    names = set()
    for body in otlp_receiver.bodies("/v1/metrics"):
        for resource_metrics in ExportMetricsServiceRequest.FromString(body).resource_metrics:
            for scope in resource_metrics.scope_metrics:
                assert scope.scope.name == "flowpipe.runtime"
                for metric in scope.metrics:
                    names.add(metric.name)
                    for point in metric.sum.data_points:
                        labels = {a.key: a.value.string_value for a in point.attributes}
                        key = labels.get("queue") or labels.get("stage", "")
                        sums[metric.name, key] = point.as_int or point.as_double
    assert sums["flowpipe.queue.enqueue.count", "a"] == 5
    assert sums["flowpipe.stage.process.count", "out"] == 5
    assert {"flowpipe.queue.dwell_ns", "flowpipe.stage.latency_ns", "flowpipe.queue.depth"} <= names

    logs = [
        record
        for body in otlp_receiver.bodies("/v1/logs")
        for resource_logs in ExportLogsServiceRequest.FromString(body).resource_logs
        for scope in resource_logs.scope_logs
        for record in scope.log_records
    ]
    finished = [r for r in logs if r.body.string_value.startswith("job finished: 5 records")]
    assert finished, [r.body.string_value for r in logs]
    attributes = {a.key: a.value.string_value for a in finished[0].attributes}
    assert attributes["flowpipe.flow"] == "otlp" and finished[0].severity_text == "INFO"


def test_spans_reach_an_otlp_grpc_receiver(write: Callable[[str, str], Path], flowpipe: Run) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    received: list[ExportTraceServiceRequest] = []

    class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: ExportTraceServiceRequest, context: object) -> ExportTraceServiceResponse:
            received.append(request)
            return ExportTraceServiceResponse()

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        # The flow names no transport and no endpoint: gRPC to the environment's endpoint.
        done = flowpipe(
            "run",
            write("grpc.yaml", FLOW),
            FLOWPIPE_OBSERVABILITY_ENABLED="1",
            FLOWPIPE_TRACING_ENABLED="1",
            FLOWPIPE_METRICS_ENABLED="false",
            FLOWPIPE_OTEL_GRPC_ENDPOINT=f"127.0.0.1:{port}",
        )
    finally:
        server.stop(None)
    assert done.returncode == 0, done.stderr
    spans = [s for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(span.name for span in spans) == ["gen"] * 5 + ["out"] * 5 + ["up"] * 5
