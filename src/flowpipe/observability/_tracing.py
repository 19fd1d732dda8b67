"""OpenTelemetry spans per stage per record, and W3C trace context carried in ``PayloadMeta``.

Each stage instance is wrapped (``Instrument.wrap_stage``) so that every batch call makes one
span per record, named after the stage and parented by the context in the record's metadata
(``trace_id``, ``span_id``, the low byte of ``flags``). A record without a trace starts one.
The new span's context is then written back into the metadata, before the stage sees the
batch, so that outputs inheriting it carry it on: one trace follows a record through the
flow, and a stage can read its own span's ids (to pass a ``traceparent`` on, for instance).

A record's span covers the batch call that handled it: stages are called per batch, and a
source's span covers the ``produce_batch`` call that made the record (the original made a
zero-length span after ``produce``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, Status, StatusCode, TraceFlags

from ..runtime import Instrument
from ..sdk import (
    Batch,
    PayloadMeta,
    SideEffect,
    Sink,
    Source,
    Stage,
    StageConfig,
    StageKind,
    Transform,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from ..runtime import FlowRun, StagePlan

__all__ = ["TracingInstrument"]

_NO_PARENT = Context()


class TracingInstrument(Instrument):
    """Wraps every stage to trace each record; shuts ``provider`` down (flushing it) at the end."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("flowpipe.runtime", "1.0.0")

    def wrap_stage(self, run: FlowRun, stage: StagePlan, instance: Stage[StageConfig]) -> Stage[StageConfig]:
        attributes = {
            "flowpipe.flow": run.plan.name,
            "flowpipe.stage": stage.name,
            "flowpipe.stage.type": stage.info.type_name,
            "flowpipe.worker": instance.context.worker_index,
        }
        spans = _Spans(self.tracer, stage.name, attributes)
        return cast("Stage[StageConfig]", _wrapper_class(type(instance))(instance, spans))

    def flow_ended(self, run: FlowRun, exit_code: int) -> None:
        self.provider.shutdown()


class _Spans:
    """Starts and ends the spans of one stage instance, one per record of a batch."""

    def __init__(self, tracer: trace.Tracer, name: str, attributes: dict[str, Any]) -> None:
        self.start_span = tracer.start_span
        self.name = name
        self.attributes = attributes

    def start(self, batch: Batch, start_ns: int) -> list[Span]:
        """A span per record, each record's metadata set to its span's context."""
        metas = batch.metas
        if metas is None:
            metas = batch.metas = [None] * len(batch.data)
        start_span, name, attributes = self.start_span, self.name, self.attributes
        spans = []
        for index, meta in enumerate(metas):
            if meta is None:
                meta = metas[index] = PayloadMeta()
            parent = _NO_PARENT
            if meta.has_trace:
                remote = SpanContext(
                    int.from_bytes(meta.trace_id),
                    int.from_bytes(meta.span_id),
                    is_remote=True,
                    trace_flags=TraceFlags(meta.flags & 0xFF),
                )
                parent = trace.set_span_in_context(NonRecordingSpan(remote), _NO_PARENT)
            span = start_span(name, parent, attributes=attributes, start_time=start_ns)
            context = span.get_span_context()
            meta.trace_id = context.trace_id.to_bytes(16)
            meta.span_id = context.span_id.to_bytes(8)
            meta.flags = (meta.flags & ~0xFF) | context.trace_flags
            spans.append(span)
        return spans

    @staticmethod
    def end(spans: list[Span], error: BaseException | None = None) -> None:
        end_ns = time.time_ns()
        for span in spans:
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.end(end_ns)

    def around(self, batch: Batch, call: Callable[[Batch], Any]) -> Any:
        """``call(batch)`` inside the spans of the batch's records."""
        spans = self.start(batch, time.time_ns())
        try:
            result = call(batch)
        except BaseException as error:
            self.end(spans, error)
            raise
        self.end(spans)
        return result


class _Traced:
    """What every wrapper shares: it is its inner stage, for the runtime, plus spans."""

    def __init__(self, inner: Stage[StageConfig], spans: _Spans) -> None:
        super().__init__(inner.config, inner.context)  # type: ignore[call-arg]
        self.inner = inner
        self.spans = spans

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()


class _TracedSource(_Traced, Source[StageConfig]):
    inner: Source[StageConfig]

    def wake(self) -> None:
        self.inner.wake()

    def produce_batch(self, limit: int) -> Batch:
        started = time.time_ns()
        batch = self.inner.produce_batch(limit)
        if batch.data:
            if batch.metas is not None:
                # The source's own metas may be one object shared by several records.
                batch.metas = [None if meta is None else meta.copy() for meta in batch.metas]
            self.spans.end(self.spans.start(batch, started))
        return batch


class _TracedTransform(_Traced, Transform[StageConfig]):
    inner: Transform[StageConfig]

    def process_batch(self, batch: Batch) -> Batch:
        result: Batch = self.spans.around(batch, self.inner.process_batch)
        return result


class _TracedSink(_Traced, Sink[StageConfig]):
    inner: Sink[StageConfig]

    def consume_batch(self, batch: Batch) -> None:
        self.spans.around(batch, self.inner.consume_batch)


class _TracedSideEffect(_Traced, SideEffect[StageConfig]):
    inner: SideEffect[StageConfig]

    def observe_batch(self, batch: Batch) -> None:
        self.spans.around(batch, self.inner.observe_batch)


_BASES: dict[StageKind, type[_Traced]] = {
    StageKind.SOURCE: _TracedSource,
    StageKind.TRANSFORM: _TracedTransform,
    StageKind.SINK: _TracedSink,
    StageKind.SIDE_EFFECT: _TracedSideEffect,
}
_classes: dict[type[Stage[Any]], type[_Traced]] = {}


def _wrapper_class(cls: type[Stage[Any]]) -> type[_Traced]:
    """A wrapper class that shows the runtime what ``cls`` declares: the hooks the runtime
    looks for on the class (``acknowledge``, ``finish``) exist only when ``cls`` has them."""
    wrapper = _classes.get(cls)
    if wrapper is None:
        namespace: dict[str, Any] = {"named_inputs": cls.named_inputs, "config_model": cls.config_model}
        if issubclass(cls, Source) and cls.can_acknowledge():
            namespace["acknowledge"] = lambda self, tokens: self.inner.acknowledge(tokens)
        if issubclass(cls, Transform) and cls.finish is not Transform.finish:
            namespace["finish"] = lambda self: self.inner.finish()
        wrapper = _classes[cls] = type(f"Traced{cls.__name__}", (_BASES[cls.kind],), namespace)
    return wrapper
