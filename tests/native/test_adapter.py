"""The adapter, driven directly: records, metadata and errors across the C ABI."""

from __future__ import annotations

import logging
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest

from flowpipe import Batch, EndOfStream, PayloadMeta, StageKind
from flowpipe.native import NativeStageError

from .native_support import Plugins, make_context

TRACE = bytes(range(1, 17))
SPAN = bytes(range(0xA0, 0xA8))


def test_each_library_is_a_stage_class_of_its_kind(plugins: Plugins) -> None:
    kinds = {
        "noop_stage": StageKind.TRANSFORM,
        "split_transform": StageKind.TRANSFORM,
        "repeat_transform": StageKind.TRANSFORM,
        "counter_source": StageKind.SOURCE,
        "collect_sink": StageKind.SINK,
    }
    for type_name, kind in kinds.items():
        cls = plugins.load(type_name)
        assert cls.kind is kind
        assert cls is plugins.load(type_name)  # loaded once
    assert plugins.load("split_transform").__doc__ == "Native transform from libstage_split_transform.so."


def test_pass_through_forwards_the_records_themselves(opened: Any) -> None:
    noop = opened("noop_stage")
    records = [b"a", b"", "text", bytearray(b"xyz"), memoryview(b"view")]
    metas: list[PayloadMeta | None] = [None, PayloadMeta(flags=1), None, None, PayloadMeta(schema_id="s")]
    out = noop.process_batch(Batch(records, metas))
    assert all(o is i for o, i in zip(out.data, records, strict=True))
    assert out.metas is not None
    assert all(o is i for o, i in zip(out.metas, metas, strict=True))
    assert noop.process_batch(Batch(records)).metas is None


def test_records_must_be_bytes_like(opened: Any) -> None:
    with pytest.raises(TypeError, match="record 1 is int"):
        opened("noop_stage").process_batch(Batch([b"ok", 5]))


def test_source_batches_end_of_stream_and_limit(opened: Any) -> None:
    source = opened("counter_source", {"count": 5})
    assert source.produce_batch(2).data == [b"record-0", b"record-1"]
    assert source.produce_batch(10).data == [b"record-2", b"record-3", b"record-4"]
    with pytest.raises(EndOfStream):
        source.produce_batch(10)


def test_metadata_from_native_code(opened: Any) -> None:
    batch = opened("counter_source", {"count": 2, "with_meta": True}).produce_batch(10)
    assert batch.data == [b"record-0", b"record-1"]
    assert batch.metas == [
        PayloadMeta(
            trace_id=TRACE,
            span_id=SPAN,
            flags=1,
            schema_id="counter.v1",
            attrs={"index": i, "ratio": i / 2, "even": i % 2 == 0, "origin": "cpp"},
        )
        for i in range(2)
    ]


def test_metadata_into_native_code_and_back(opened: Any) -> None:
    meta = PayloadMeta(
        enqueue_ts_ns=123,
        trace_id=TRACE,
        span_id=SPAN,
        flags=3,
        schema_id="s.v1",
        attrs={"hops": 1, "drop_me": True, "pi": 3.25, "who": "py"},
    )
    out = opened("edit_transform").process_batch(Batch([b"x", b"y"], [meta, None]))
    assert out.data == [b"x!", b"y!"]
    assert out.metas == [
        PayloadMeta(
            enqueue_ts_ns=123,
            trace_id=TRACE,
            span_id=SPAN,
            flags=3,
            schema_id="s.v1",
            attrs={"hops": 2, "pi": 3.25, "who": "py", "seen_by": "cpp"},
        ),
        PayloadMeta(attrs={"hops": 1, "seen_by": "cpp"}),
    ]
    assert meta.attrs["hops"] == 1  # the input's metadata is not modified


def test_metadata_reaches_a_native_sink(opened: Any, tmp_path: Path) -> None:
    out = tmp_path / "collected.tsv"
    sink = opened("collect_sink", {"path": str(out)})
    meta = PayloadMeta(trace_id=TRACE, span_id=SPAN, flags=1, schema_id="s", attrs={"n": -5, "ok": False})
    sink.consume_batch(Batch([b"a", b"b"], [meta, None]))
    assert out.read_text().splitlines() == [
        f"a\t{TRACE.hex()}\t{SPAN.hex()}\t1\ts\tn=int:-5;ok=bool:false;",
        f"b\t{'0' * 32}\t{'0' * 16}\t0\t\t",
    ]


def test_bad_metadata_names_the_record(opened: Any) -> None:
    with pytest.raises(ValueError, match=r"metadata of record 1: PayloadMeta\.trace_id must be 16 bytes"):
        opened("noop_stage").process_batch(Batch([b"a", b"b"], [None, PayloadMeta(trace_id=b"short")]))
    with pytest.raises(TypeError, match="attribute 'k': value must be int, float, bool or str"):
        opened("noop_stage").process_batch(Batch([b"a"], [PayloadMeta(attrs={"k": [1]})]))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"range", "emit: source is not the index of an input of this call"),
        (b"null", "emit: data is NULL but size is not 0"),
    ],
)
def test_the_host_refuses_a_bad_emit(opened: Any, record: bytes, message: str) -> None:
    with pytest.raises(NativeStageError, match=f"native stage 'bad_emit' \\(bad_emit\\): {message}$"):
        opened("bad_emit").process_batch(Batch([b"fine", record]))


def test_zero_to_many_outputs_in_c(opened: Any) -> None:
    split = opened("split_transform", {"separator": ";"})
    meta = PayloadMeta(attrs={"k": 1})
    out = split.process_batch(Batch([b"a;b;;c", b";;", b"d"], [meta, None, None]))
    assert out.data == [b"a", b"b", b"c", b"d"]
    assert out.metas is not None
    assert out.metas[:3] == [meta, meta, meta]
    assert out.metas[0] is meta and out.metas[1] is not meta  # siblings get their own copy
    assert out.metas[3] is None


def test_zero_to_many_outputs_in_cpp(opened: Any) -> None:
    repeat = opened("repeat_transform")
    meta = PayloadMeta(schema_id="r")
    out = repeat.process_batch(Batch([b"2:ab", b"0:gone", b"1:c"], [None, None, meta]))
    assert out.data == [b"ab", b"ab", b"c"]
    assert out.metas == [None, None, meta]


def test_native_logs_go_to_the_stage_logger(plugins: Plugins, caplog: pytest.LogCaptureFixture) -> None:
    cls = plugins.load("counter_source")
    logger = logging.getLogger("flowpipe.stage.counting")
    stage = cls(cls.config_model.model_validate({"count": 3}), make_context("counter_source", logger=logger))
    with caplog.at_level(logging.INFO, logger="flowpipe.stage.counting"):
        stage.open()
        stage.close()
    record = next(r for r in caplog.records if r.name == "flowpipe.stage.counting")
    assert record.getMessage() == "counter_source: configured for 3 records"
    assert record.levelno == logging.INFO
    assert record.pathname.endswith("counter_source.cc") and record.lineno > 0


def test_config_reaches_configure(opened: Any) -> None:
    crc = opened("crc32_transform", {"rounds": 3})
    crc_of_abc = zlib.crc32(b"abc", zlib.crc32(b"abc", zlib.crc32(b"abc")))
    assert crc.process_batch(Batch([b"abc"])).data == [b"abc crc32=%08x" % crc_of_abc]


@pytest.mark.parametrize(
    ("type_name", "config", "message"),
    [
        ("counter_source", {"colour": "red"}, "counter_source: unknown config key 'colour'"),
        (
            "counter_source",
            {"count": "many"},
            "configure: std::invalid_argument: config.count must be an integer",
        ),
        ("crc32_transform", {"rounds": 0}, "config.rounds must be an integer from 1 to 1000000, got 0"),
        (
            "split_transform",
            {"sep": ","},
            "split_transform: unknown config key 'sep' (known keys: separator)",
        ),
    ],
)
def test_check_config_shows_the_stages_own_reason(
    plugins: Plugins, type_name: str, config: dict[str, Any], message: str
) -> None:
    cls = plugins.load(type_name)
    [problem] = cls.check_config(cls.config_model.model_validate(config))
    assert "the stage rejected its config: " in problem
    assert message in problem
    assert "\n" not in problem


def test_a_stage_that_is_not_configurable_warns_about_its_config(
    opened: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        opened("noop_stage", {"unused": 1})
    assert "stage 'noop_stage' is not configurable; its config is ignored" in caplog.text


def test_a_cpp_exception_fails_the_batch_naming_the_stage(opened: Any) -> None:
    stage = opened("edit_transform", {"fail_at": 2}, stage_name="thrower")
    with pytest.raises(NativeStageError) as caught:
        stage.process_batch(Batch([b"a", b"b", b"c", b"d"]))
    assert str(caught.value) == (
        "native stage 'thrower' (edit_transform): process: std::runtime_error: boom at record 2"
    )


def test_stop_requests_cross_the_boundary_both_ways(opened: Any) -> None:
    source = opened("counter_source", {"count": 100, "stop_at": 3})
    source.produce_batch(2)
    assert not source.context.stopping
    source.produce_batch(5)  # the stage calls StageContext::request_stop at record 3
    assert source.context.stopping

    stopped = opened("counter_source", {"count": 100})
    stopped.context._stop.set()  # the flow stops: the stage sees stop_requested()
    with pytest.raises(EndOfStream):
        stopped.produce_batch(5)


def test_native_calls_release_the_gil(opened: Any) -> None:
    crc = opened("crc32_transform", {"rounds": 200_000})
    ticks = 0
    done = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        before = ticks
        crc.process_batch(Batch([b"x" * 64] * 4))  # ~50-300 ms of native work
        during = ticks - before
    finally:
        done.set()
        spinner.join()
    assert during > 10_000, "another Python thread could not run during the native call"


def test_instances_on_several_threads(plugins: Plugins) -> None:
    cls = plugins.load("crc32_transform")
    records = [b"record %d" % i for i in range(2000)]
    results: dict[int, list[bytes]] = {}

    def work(index: int) -> None:
        stage = cls(cls.config_model.model_validate({"rounds": 50}), make_context("crc32_transform"))
        stage.open()
        try:
            results[index] = [
                d
                for i in range(0, len(records), 100)
                for d in stage.process_batch(Batch(records[i : i + 100])).data
            ]
        finally:
            stage.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    def expected(data: bytes) -> bytes:
        crc = 0
        for _ in range(50):
            crc = zlib.crc32(data, crc)
        return data + b" crc32=%08x" % crc

    assert all(results[i] == [expected(r) for r in records] for i in range(4))
