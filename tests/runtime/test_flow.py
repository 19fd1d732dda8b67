"""Flows run in-process: draining, fan-in, competing consumers, backpressure, failures."""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

from flowpipe import (
    Batch,
    EndOfStream,
    Payload,
    PayloadMeta,
    SideEffect,
    Sink,
    Source,
    StageConfig,
    Transform,
)
from flowpipe.testing import TestingSink, TestingSource, run_flow


def flow(stages: str, queues: str = "[{name: a, capacity: 64}, {name: b, capacity: 64}]") -> str:
    return f"name: t\nexecution: {{mode: job}}\nqueues: {queues}\nstages:\n{stages}"


LINEAR = flow(
    """
  - {name: src, type: src, output_queue: a}
  - {name: mid, type: mid, input_queue: a, output_queue: b}
  - {name: out, type: out, input_queue: b}
"""
)


def test_job_drains_every_record_in_order() -> None:
    out: list[Payload] = []
    records = [f"r{i}".encode() for i in range(20_000)]
    result = run_flow(
        LINEAR,
        stages={
            "src": TestingSource.of(records),
            "mid": _upper_transform(),
            "out": TestingSink.into(out),
        },
    )
    assert result.exit_code == 0 and result.failure is None
    assert [p.data for p in out] == [r.upper() for r in records]
    assert result.records_out["src"] == result.records_in["out"] == 20_000


def _upper_transform() -> type[Transform[StageConfig]]:
    class Upper(Transform[StageConfig]):
        def process(self, record: Payload) -> Any:
            return record.data.upper()

    return Upper


def test_fan_in_two_sources_one_queue() -> None:
    out: list[Payload] = []
    result = run_flow(
        flow(
            """
  - {name: s1, type: s1, output_queue: a}
  - {name: s2, type: s2, output_queue: a}
  - {name: out, type: out, input_queue: a}
""",
            "[{name: a, capacity: 8}]",
        ),
        stages={
            "s1": TestingSource.of(range(0, 5000)),
            "s2": TestingSource.of(range(5000, 9000)),
            "out": TestingSink.into(out),
        },
    )
    assert result.exit_code == 0
    assert sorted(p.data for p in out) == list(range(9000))


def test_competing_consumers_split_the_work_without_duplicates() -> None:
    out: list[Payload] = []
    seen_by: dict[int, int] = {}
    lock = threading.Lock()

    class Tag(Transform[StageConfig]):
        def process_batch(self, batch: Batch) -> Batch:
            with lock:
                seen_by[self.context.worker_index] = seen_by.get(self.context.worker_index, 0) + len(batch)
            return batch

    result = run_flow(
        flow(
            """
  - {name: src, type: src, output_queue: a, threads: 2}
  - {name: mid, type: mid, input_queue: a, output_queue: b, threads: 3}
  - {name: out, type: out, input_queue: b, threads: 2}
"""
        ),
        stages={"src": TestingSource.of(range(30_000)), "mid": Tag, "out": TestingSink.into(out)},
        batch_size=16,
    )
    assert result.exit_code == 0
    assert sorted(p.data for p in out) == list(range(30_000))
    assert sum(seen_by.values()) == 30_000


def test_backpressure_keeps_in_flight_records_bounded() -> None:
    capacity, limit = 32, 8
    produced = [0]
    consumed = [0]
    worst = [0]

    class Counting(Source[StageConfig]):
        def produce_batch(self, n: int) -> Batch:
            if produced[0] >= 5000:
                raise EndOfStream
            produced[0] += n
            return Batch([b"x"] * n)

    class Slow(Sink[StageConfig]):
        def consume_batch(self, batch: Batch) -> None:
            if consumed[0] == 0:
                # Hold the first batch until the producer has filled both queues.
                deadline = time.monotonic() + 10
                while produced[0] < 2 * capacity and time.monotonic() < deadline:
                    time.sleep(0.001)
                assert produced[0] >= 2 * capacity
            worst[0] = max(worst[0], produced[0] - consumed[0])
            consumed[0] += len(batch)

    result = run_flow(
        flow(
            """
  - {name: src, type: src, output_queue: a}
  - {name: mid, type: noop_transform, input_queue: a, output_queue: b}
  - {name: out, type: out, input_queue: b}
""",
            f"[{{name: a, capacity: {capacity}}}, {{name: b, capacity: {capacity}}}]",
        ),
        stages={"src": Counting, "out": Slow},
        batch_size=limit,
    )
    assert result.exit_code == 0
    assert consumed[0] == produced[0] >= 5000
    # Two full queues, plus one batch each in the hands of the source, transform and sink.
    assert worst[0] <= 2 * capacity + 3 * limit


def test_transform_can_drop_and_multiply_and_metadata_follows() -> None:
    out: list[Payload] = []

    class Split(Transform[StageConfig]):
        def process(self, record: Payload) -> Any:
            if record.data == b"drop":
                return
            record.meta.attrs["seen"] = True
            yield from record.data.split(b",")

    source_records = [Payload(b"a,b", PayloadMeta(schema_id="s1")), b"drop", b"c"]
    result = run_flow(
        LINEAR,
        stages={"src": TestingSource.of(source_records), "mid": Split, "out": TestingSink.into(out)},
    )
    assert result.exit_code == 0
    assert [p.data for p in out] == [b"a", b"b", b"c"]
    assert [p.meta.schema_id for p in out] == ["s1", "s1", ""]
    assert all(p.meta.attrs == {"seen": True} for p in out)
    assert out[0].meta is not out[1].meta  # siblings do not share one mutable meta


def test_side_effect_sees_every_record_and_passes_it_on() -> None:
    out: list[Payload] = []
    observed: list[Any] = []

    class Tap(SideEffect[StageConfig]):
        def observe(self, record: Payload) -> None:
            observed.append(record.data)

    result = run_flow(
        LINEAR,
        stages={"src": TestingSource.of([1, 2, 3]), "mid": Tap, "out": TestingSink.into(out)},
    )
    assert result.exit_code == 0
    assert observed == [1, 2, 3] and [p.data for p in out] == [1, 2, 3]


class _Recorder(Sink[StageConfig]):
    events: ClassVar[list[str]] = []

    def open(self) -> None:
        self.events.append("open")

    def consume_batch(self, batch: Batch) -> None:
        self.events.extend(str(d) for d in batch.data)

    def close(self) -> None:
        self.events.append("close")


def test_a_failing_stage_stops_the_flow_with_exit_1_and_sinks_are_closed() -> None:
    _Recorder.events = []
    records: list[Any] = [1, 2, TestingSource.FAIL, 4]
    result = run_flow(
        LINEAR,
        stages={"src": TestingSource.of(records), "mid": _upper_transform(), "out": _Recorder},
    )
    assert result.exit_code == 1
    assert result.failure is not None
    assert result.failure.stage_name == "src" and "TestingSource.FAIL" in str(result.failure)
    assert _Recorder.events[0] == "open" and _Recorder.events[-1] == "close"


def test_a_transform_exception_names_the_transform() -> None:
    class Boom(Transform[StageConfig]):
        def process(self, record: Payload) -> Any:
            raise ValueError(f"bad record {record.data!r}")

    result = run_flow(
        LINEAR, stages={"src": TestingSource.of([b"x"]), "mid": Boom, "out": TestingSink.into([])}
    )
    assert result.exit_code == 1
    assert result.failure is not None and result.failure.stage_name == "mid"
    assert "ValueError: bad record b'x'" in str(result.failure)


def test_named_inputs_and_finish_join_two_queues() -> None:
    out: list[Payload] = []

    class Join(Transform[StageConfig]):
        """Counts records per input and emits the counts once every input ended."""

        named_inputs = True

        def open(self) -> None:
            self.seen: dict[str, int] = {}

        def process_batch(self, batch: Batch) -> Batch:
            self.seen[batch.input] = self.seen.get(batch.input, 0) + len(batch)
            return Batch([])

        def finish(self) -> Batch:
            return Batch(sorted(self.seen.items()))

    result = run_flow(
        """
name: join
execution: {mode: job}
queues: [{name: a, capacity: 4}, {name: b, capacity: 4}, {name: c, capacity: 4}]
stages:
  - {name: s1, type: s1, output_queue: a}
  - {name: s2, type: s2, output_queue: b}
  - name: join
    type: join
    input_queues: [{queue: a, table: orders}, {queue: b, table: lineitem}]
    output_queue: c
  - {name: out, type: out, input_queue: c}
""",
        stages={
            "s1": TestingSource.of(range(30)),
            "s2": TestingSource.of(range(70)),
            "join": Join,
            "out": TestingSink.into(out),
        },
    )
    assert result.exit_code == 0
    assert [p.data for p in out] == [("lineitem", 70), ("orders", 30)]


def test_several_inputs_need_a_stage_that_takes_them() -> None:
    import pytest

    from flowpipe import FlowSpecError

    with pytest.raises(FlowSpecError, match="does not take several input_queues"):
        run_flow(
            """
name: j
execution: {mode: job}
queues: [{name: a, capacity: 4}, {name: b, capacity: 4}]
stages:
  - {name: s1, type: noop_source, output_queue: a}
  - {name: s2, type: noop_source, output_queue: b}
  - {name: out, type: stdout_sink, input_queues: [{queue: a, table: x}, {queue: b, table: y}]}
"""
        )


def test_cpu_pinning_and_realtime_priority_apply_per_worker_or_warn(caplog: Any) -> None:
    import logging
    import os

    seen: list[tuple[set[int], int]] = []

    class Probe(Sink[StageConfig]):
        def open(self) -> None:
            seen.append((os.sched_getaffinity(0), os.sched_getscheduler(0)))

        def consume_batch(self, batch: Batch) -> None:
            pass

    caplog.set_level(logging.WARNING, logger="flowpipe")
    result = run_flow(
        """
name: pin
execution: {mode: job}
kubernetes: {cpu_pinning: {out: {cpu: [0]}}}
queues: [{name: a, capacity: 4}]
stages:
  - {name: src, type: noop_source, output_queue: a, config: {max_messages: 3}}
  - {name: out, type: probe, input_queue: a, threads: 2, realtime_priority: 5}
""",
        stages={"probe": Probe},
    )
    assert result.exit_code == 0
    assert [affinity for affinity, _ in seen] == [{0}, {0}]  # each worker thread, not the process
    assert os.sched_getaffinity(0) != {0} or os.cpu_count() == 1
    refused = [r for r in caplog.records if "cannot set realtime priority 5" in r.getMessage()]
    # Either the OS applied SCHED_FIFO to both worker threads, or each said why not.
    assert all(policy == os.SCHED_FIFO for _, policy in seen) or len(refused) == 2


def test_pinning_to_a_cpu_this_machine_lacks_is_a_plan_error() -> None:
    import os

    import pytest

    from flowpipe import FlowSpecError

    missing = os.cpu_count() or 1
    with pytest.raises(FlowSpecError) as caught:
        run_flow(
            f"""
name: pin
execution: {{mode: job}}
kubernetes: {{cpu_pinning: {{out: {{cpu: [0, {missing}]}}}}}}
queues: [{{name: a, capacity: 4}}]
stages:
  - {{name: src, type: noop_source, output_queue: a, config: {{max_messages: 1}}}}
  - {{name: out, type: stdout_sink, input_queue: a}}
"""
        )
    [problem] = caught.value.problems
    assert problem.line == 4 and f"there is no CPU {missing}; this machine has {missing}" in problem.message

    # Every problem at once: a stage whose config is wrong, or that has no type, still has
    # its pinning checked, and a missing type is said once.
    with pytest.raises(FlowSpecError) as caught:
        run_flow(
            f"""
name: pin
execution: {{mode: job}}
kubernetes: {{cpu_pinning: {{src: {{cpu: [{missing}]}}, typeless: {{cpu: [{missing}]}}}}}}
queues: [{{name: a, capacity: 4}}]
stages:
  - {{name: src, type: noop_source, output_queue: a, config: {{max_mesages: 1}}}}
  - {{name: typeless, output_queue: a}}
  - {{name: out, type: stdout_sink, input_queue: a}}
"""
        )
    messages = [p.message for p in caught.value.problems]
    assert len(messages) == 4, messages
    assert sum("unknown key 'max_mesages'" in m for m in messages) == 1
    assert sum("has no type" in m for m in messages) == 1
    assert sum(f"there is no CPU {missing}" in m for m in messages) == 2


def test_workers_of_a_stage_share_one_dict_per_run_and_know_their_inputs() -> None:
    seen: list[tuple[str, dict[str, Any], tuple[str, ...]]] = []  # the dicts themselves: kept alive
    lock = threading.Lock()

    class Note(Transform[StageConfig]):
        def open(self) -> None:
            with lock:
                seen.append((self.context.stage_name, self.context.shared, self.context.inputs))

        def process_batch(self, batch: Batch) -> Batch:
            return batch

    text = flow(
        """
  - {name: src, type: src, output_queue: a}
  - {name: first, type: note, input_queue: a, output_queue: b, threads: 3}
  - {name: second, type: note, input_queues: [{queue: b, table: rows}], output_queue: c, threads: 2}
  - {name: out, type: out, input_queue: c}
""",
        queues="[{name: a}, {name: b}, {name: c}]",
    )
    for _ in range(2):
        stages = {"src": TestingSource.of(range(10)), "note": Note, "out": TestingSink.into([])}
        assert run_flow(text, stages=stages).exit_code == 0
    assert len(seen) == 10
    dicts: list[dict[str, Any]] = []
    for run in (seen[:5], seen[5:]):
        for stage, inputs, workers in (("first", ("a",), 3), ("second", ("rows",), 2)):
            mine = [(shared, got) for name, shared, got in run if name == stage]
            assert len(mine) == workers and all(got == inputs for _, got in mine)
            assert all(shared is mine[0][0] for shared, _ in mine)  # one dict for the stage's workers
            dicts.append(mine[0][0])
    assert len({id(d) for d in dicts}) == 4  # none shared across stages or runs
