"""The public stage SDK: records, batches, default batch methods, the exported surface."""

from __future__ import annotations

import importlib.metadata
import inspect
import time
from typing import Any

import pytest
from pydantic import Field, ValidationError

import flowpipe
from flowpipe import (
    Batch,
    EndOfStream,
    Payload,
    PayloadMeta,
    Sink,
    Source,
    StageConfig,
    StageContext,
    StageKind,
    Transform,
)
from flowpipe.registry import check_stage_class


def context() -> StageContext:
    return StageContext(flow_name="f", stage_name="s", stage_type="t")


def test_public_names_are_exactly_all_and_sorted() -> None:
    names = {n for n in dir(flowpipe) if not n.startswith("_") and not inspect.ismodule(getattr(flowpipe, n))}
    assert names == set(flowpipe.__all__) - {"__version__"}
    assert flowpipe.__all__ == sorted(flowpipe.__all__)
    assert flowpipe.__version__ == importlib.metadata.version("flow-pipe")


def test_payload_meta_is_created_on_demand_and_copies_are_independent() -> None:
    record = Payload(b"x")
    assert not record.has_meta
    record.meta.attrs["k"] = 1
    assert record.has_meta
    copy = record.meta.copy()
    copy.attrs["k"] = 2
    assert record.meta.attrs == {"k": 1}
    assert not PayloadMeta().has_trace and PayloadMeta(trace_id=b"\x01" * 16).has_trace


def test_batch_of_mixes_data_and_payloads_allocating_metas_only_when_needed() -> None:
    plain = Batch.of([b"a", b"b"])
    assert plain.data == [b"a", b"b"] and plain.metas is None
    meta = PayloadMeta(schema_id="s")
    mixed = Batch.of([b"a", Payload(b"b", meta), b"c"])
    assert mixed.data == [b"a", b"b", b"c"] and mixed.metas == [None, meta, None]
    assert [p.data for p in mixed.payloads()] == [b"a", b"b", b"c"]


def test_default_produce_batch_hands_over_early_when_records_come_slowly() -> None:
    class Slow(Source[StageConfig]):
        def open(self) -> None:
            self.n = 0

        def produce(self) -> Any:
            self.n += 1
            if self.n > 3:
                raise EndOfStream
            time.sleep(0.002)  # slower than the 1 ms collection window
            return self.n

    source = Slow(StageConfig(), context())
    source.open()
    sizes = []
    with pytest.raises(EndOfStream):
        while True:
            sizes.append(len(source.produce_batch(100)))
    assert sizes == [1, 1, 1]


def test_default_produce_batch_fills_up_and_ends_after_the_last_records() -> None:
    class Fast(Source[StageConfig]):
        def open(self) -> None:
            self.items = iter(range(25))

        def produce(self) -> Any:
            try:
                return next(self.items)
            except StopIteration:
                raise EndOfStream from None

    source = Fast(StageConfig(), context())
    source.open()
    batches = [source.produce_batch(10).data for _ in range(3)]
    assert batches == [list(range(10)), list(range(10, 20)), list(range(20, 25))]
    with pytest.raises(EndOfStream):
        source.produce_batch(10)


def test_config_model_comes_from_the_type_argument_and_rejects_unknown_keys() -> None:
    class Cfg(StageConfig):
        level: int = Field(1, ge=0, description="how much")

    class T(Transform[Cfg]):
        def process(self, record: Payload) -> Any:
            return record.data

    assert T.config_model is Cfg and T.kind is StageKind.TRANSFORM
    with pytest.raises(ValidationError, match=r"extra_forbidden|Extra inputs"):
        Cfg.model_validate({"level": 2, "lvl": 3})


def test_a_stage_class_must_implement_one_of_its_methods() -> None:
    class Nothing(Sink[StageConfig]):
        pass

    with pytest.raises(flowpipe.PluginError, match="overrides neither consume"):
        check_stage_class(Nothing, "here")
    with pytest.raises(flowpipe.PluginError, match="not a Source, Transform, Sink or SideEffect"):
        check_stage_class(int, "here")


def test_context_wait_wakes_on_stop() -> None:
    import threading

    stop = threading.Event()
    ctx = StageContext(flow_name="f", stage_name="s", stage_type="t", stop=stop)
    stop.set()
    started = time.monotonic()
    assert ctx.wait(30) is True
    assert time.monotonic() - started < 5
    assert ctx.stopping
