"""End-to-end acknowledgements: a source hears back only about records fully handled."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from flowpipe import Batch, EndOfStream, Payload, Sink, Source, StageConfig, Transform
from flowpipe.testing import TestingSink, run_flow

FLOW = """
name: acks
execution: {mode: job}
queues: [{name: a, capacity: %(cap)d}, {name: b, capacity: %(cap)d}]
stages:
  - {name: src, type: src, output_queue: a}
  - {name: mid, type: mid, input_queue: a, output_queue: b}
  - {name: out, type: out, input_queue: b}
"""


def acking_source(batches: list[list[Any]]) -> type[Source[StageConfig]]:
    class Acking(Source[StageConfig]):
        acked: ClassVar[list[Any]] = []
        threads: ClassVar[set[str]] = set()
        closed_after: ClassVar[list[int]] = []

        def open(self) -> None:
            self.pending = list(enumerate(batches))
            self.thread = threading.current_thread().name

        def produce_batch(self, limit: int) -> Batch:
            if not self.pending:
                raise EndOfStream
            token, data = self.pending.pop(0)
            batch = Batch(list(data))
            batch.ack = token
            return batch

        def acknowledge(self, tokens: list[Any]) -> None:
            self.threads.add(threading.current_thread().name)
            self.acked.extend(tokens)

        def close(self) -> None:
            self.closed_after.append(len(self.acked))

    return Acking


class Split(Transform[StageConfig]):
    """Drops 'drop', splits 'a,b' into two records."""

    def process(self, record: Payload) -> Any:
        if record.data != "drop":
            yield from record.data.split(",")


def test_every_token_is_acknowledged_once_on_the_source_thread_before_close() -> None:
    source = acking_source([["a,b", "c"], ["drop"], ["d"] * 10, ["e,f,g"]])
    out: list[Payload] = []
    result = run_flow(FLOW % {"cap": 4}, stages={"src": source, "mid": Split, "out": TestingSink.into(out)})
    assert result.exit_code == 0
    assert len(out) == 2 + 1 + 10 + 3
    assert sorted(source.acked) == [0, 1, 2, 3]  # includes the batch split across queue parts
    assert source.threads == {"src-0"}
    assert source.closed_after == [4]


def test_a_failing_sink_acknowledges_nothing_it_did_not_consume() -> None:
    consumed: list[Any] = []

    class Fragile(Sink[StageConfig]):
        def consume_batch(self, batch: Batch) -> None:
            if "boom" in batch.data:
                raise RuntimeError("sink down")
            consumed.extend(batch.data)

    source = acking_source([["ok1"], ["boom"], ["never"]])
    result = run_flow(
        FLOW % {"cap": 1},
        stages={"src": source, "mid": Split, "out": Fragile},
        batch_size=1,
    )
    assert result.exit_code == 1
    assert 1 not in source.acked and 2 not in source.acked
    assert set(source.acked) <= {0}
    assert consumed[:1] == ["ok1"]


def test_a_stage_that_waits_for_all_input_holds_the_acks_until_its_output_is_consumed() -> None:
    seen_at_finish: list[list[Any]] = []

    class CountAll(Transform[StageConfig]):
        def open(self) -> None:
            self.total = 0

        def process_batch(self, batch: Batch) -> Batch:
            self.total += len(batch)
            return Batch([])

        def finish(self) -> Batch:
            seen_at_finish.append(list(source.acked))
            return Batch([self.total])

    source = acking_source([["x"] * 3, ["y"] * 4])
    out: list[Payload] = []
    result = run_flow(
        FLOW % {"cap": 8}, stages={"src": source, "mid": CountAll, "out": TestingSink.into(out)}
    )
    assert result.exit_code == 0
    assert [p.data for p in out] == [7]
    assert seen_at_finish == [[]]  # nothing acknowledged while the total was still pending
    assert sorted(source.acked) == [0, 1]


def test_sources_that_do_not_override_acknowledge_say_so() -> None:
    from flowpipe.stages.noop import NoopSource

    assert not NoopSource.can_acknowledge()
    assert acking_source([]).can_acknowledge()


def test_an_idle_source_is_woken_when_its_acknowledgements_are_ready() -> None:
    import time

    waits: list[float] = []

    class Patient(Source[StageConfig]):
        def open(self) -> None:
            self.sent = False
            self.acked: list[Any] = []

        def produce_batch(self, limit: int) -> Batch:
            if self.acked:
                raise EndOfStream
            if self.sent:
                started = time.monotonic()
                self.context.wait(60)  # idle: only a wake-up ends this early
                waits.append(time.monotonic() - started)
                return Batch([])
            self.sent = True
            batch = Batch(["one"])
            batch.ack = "token"
            return batch

        def acknowledge(self, tokens: list[Any]) -> None:
            self.acked.extend(tokens)

    result = run_flow(FLOW % {"cap": 4}, stages={"src": Patient, "mid": Split, "out": TestingSink.into([])})
    assert result.exit_code == 0
    assert waits and max(waits) < 30  # woken by the acknowledgement, not by the timeout
