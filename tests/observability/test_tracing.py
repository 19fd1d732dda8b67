"""Spans per stage per record, one trace per record, context carried in PayloadMeta."""

from __future__ import annotations

from collections import defaultdict

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flowpipe import Batch, Payload, PayloadMeta, StageConfig, Transform
from flowpipe.observability._tracing import TracingInstrument
from flowpipe.registry import build_registry
from flowpipe.runtime import FlowRun, plan_flow
from flowpipe.spec import parse_flow_text
from flowpipe.testing import TestingSink, TestingSource

FLOW = """
name: traced
execution: {mode: job}
queues: [{name: a, capacity: 8}, {name: b, capacity: 8}]
stages:
  - {name: read, type: numbers, output_queue: a}
  - {name: shout, type: %s, input_queue: a, output_queue: b, threads: 2}
  - {name: write, type: collect, input_queue: b}
"""

PARENT_TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
PARENT_SPAN = bytes.fromhex("b7ad6b7169203331")


class Shout(Transform[StageConfig]):
    def process(self, record: Payload) -> bytes:
        return bytes(record.data).upper()


class Explode(Transform[StageConfig]):
    def process_batch(self, batch: Batch) -> Batch:
        raise RuntimeError("boom")


def run_traced(
    records: list[object], transform: type[Transform[StageConfig]] = Shout
) -> tuple[int, list[ReadableSpan], list[Payload]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    out: list[Payload] = []
    stages = {"numbers": TestingSource.of(records), "collect": TestingSink.into(out), "t": transform}
    plan = plan_flow(parse_flow_text(FLOW % "t", "flow.yaml"), build_registry((), stages))
    code = FlowRun(plan, batch_size=4, instruments=[TracingInstrument(provider)]).run()
    return code, list(exporter.get_finished_spans()), out


def test_one_trace_per_record_across_three_stages() -> None:
    parent = PayloadMeta(trace_id=PARENT_TRACE, span_id=PARENT_SPAN, flags=1)
    records: list[object] = [b"r%d" % i for i in range(20)]
    records[7] = Payload(b"r7", parent)  # a context the source got from outside (a message header)
    code, spans, out = run_traced(records)
    assert code == 0 and len(out) == 20 and len(spans) == 60

    traces: dict[int, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        assert span.context is not None
        traces[span.context.trace_id].append(span)
    assert len(traces) == 20
    for trace_spans in traces.values():
        by_name = {span.name: span for span in trace_spans}
        assert sorted(by_name) == ["read", "shout", "write"]
        read, shout, write = by_name["read"], by_name["shout"], by_name["write"]
        assert read.context is not None and shout.context is not None and write.context is not None
        assert shout.parent is not None and shout.parent.span_id == read.context.span_id
        assert write.parent is not None and write.parent.span_id == shout.context.span_id
        assert shout.attributes is not None and shout.attributes["flowpipe.stage.type"] == "t"
        assert shout.attributes["flowpipe.flow"] == "traced"

    honoured = traces[int.from_bytes(PARENT_TRACE)]
    read_span = next(span for span in honoured if span.name == "read")
    assert read_span.parent is not None and read_span.parent.span_id == int.from_bytes(PARENT_SPAN)
    assert read_span.parent.is_remote

    # The metadata that reached the sink carries the sink's own span: the last hop of the trace.
    for payload in out:
        sink_span = next(
            s for s in traces[int.from_bytes(payload.meta.trace_id)] if s.name == "write" and s.context
        )
        assert sink_span.context is not None
        assert payload.meta.span_id == sink_span.context.span_id.to_bytes(8)
        assert payload.meta.flags & 0x01  # the W3C sampled flag
    assert {bytes(p.data) for p in out} == {b"R%d" % i for i in range(20)}


def test_a_failing_stage_ends_its_spans_with_an_error() -> None:
    code, spans, _ = run_traced([b"x", b"y"], Explode)
    assert code == 1
    failed = [span for span in spans if span.name == "shout"]
    assert failed and all(span.status.status_code is StatusCode.ERROR for span in failed)
    assert failed[0].status.description == "RuntimeError: boom"
