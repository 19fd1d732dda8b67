"""What one worker thread does with its stage instance, per stage kind.

Each loop moves whole batches: one queue operation, one stage call and two clock readings
per batch, and counters updated per batch by the only thread that writes them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import perf_counter_ns

from ..sdk import Batch, EndOfStream, SideEffect, Sink, Source, Stage, StageConfig, StageKind, Transform
from ._acks import AckInbox, Tracker, release
from ._queue import BatchQueue, InputReader
from ._stats import WorkerStats

__all__ = ["loop_for"]

Loop = Callable[[], None]


def loop_for(
    stage: Stage[StageConfig],
    reader: InputReader,
    output: BatchQueue | None,
    stats: WorkerStats,
    stopping: threading.Event,
    batch_limit: int,
    close_output: Callable[[], None],
) -> Loop:
    """The work loop of one worker: returns when its input ends or the flow stops.

    ``close_output`` tells the output queue this worker will write no more; a source calls it
    as soon as it ends, then waits for its acknowledgements while the rest drains.
    """
    if stage.kind is StageKind.SOURCE:
        assert isinstance(stage, Source) and output is not None
        return lambda: _source(stage, output, stats, stopping, batch_limit, close_output)
    if stage.kind is StageKind.TRANSFORM:
        assert isinstance(stage, Transform) and output is not None
        return lambda: _transform(stage, reader, output, stats)
    if stage.kind is StageKind.SINK:
        assert isinstance(stage, Sink)
        return lambda: _sink(stage, reader, stats)
    assert isinstance(stage, SideEffect)
    return lambda: _side_effect(stage, reader, output, stats)


def _source(
    stage: Source[StageConfig],
    out: BatchQueue,
    stats: WorkerStats,
    stopping: threading.Event,
    limit: int,
    close_output: Callable[[], None],
) -> None:
    produce_batch, put = stage.produce_batch, out.put
    inbox = AckInbox(_waker(stage)) if stage.can_acknowledge() else None
    while not stopping.is_set():
        if inbox is not None and (done := inbox.take()):
            stage.acknowledge(done)
        started = perf_counter_ns()
        try:
            batch = produce_batch(limit)
        except EndOfStream:
            break
        if batch.data:  # an idle call is not work: leave it out of the timings
            stats.timed(started, perf_counter_ns())
            if inbox is not None:
                inbox.track(batch)
            if not put(batch):
                stats.records_dropped += len(batch.data)
                return
            stats.records_out += len(batch.data)
    close_output()
    if inbox is not None:  # what was delivered gets acknowledged; the rest is redelivered
        while not inbox.wait_all(0.1) and not out.aborted:
            if done := inbox.take():
                stage.acknowledge(done)
        if done := inbox.take():
            stage.acknowledge(done)


def _waker(stage: Source[StageConfig]) -> Callable[[], None]:
    def wake() -> None:
        stage.context.wake()
        stage.wake()

    return wake


def _transform(
    stage: Transform[StageConfig], reader: InputReader, out: BatchQueue, stats: WorkerStats
) -> None:
    get, put, process_batch = reader.get, out.put, stage.process_batch
    # A stage with finish() may keep what it read for its final output: so do its acks.
    holds = type(stage).finish is not Transform.finish
    held: list[Tracker] = []
    while (batch := get()) is not None:
        stats.records_in += len(batch.data)
        started = perf_counter_ns()
        result = process_batch(batch)
        stats.timed(started, perf_counter_ns())
        if batch._lineage and result is not batch:
            _pass_lineage(batch, result, held if holds else None)
        if result.data:
            if not put(result):
                stats.records_dropped += len(result.data)
                return
            stats.records_out += len(result.data)
    if reader.aborted:  # a hard stop: no final output
        return
    started = perf_counter_ns()
    final = stage.finish() or Batch([])
    stats.timed(started, perf_counter_ns())
    if held:
        if final.data:
            final._lineage = (*final._lineage, *held)
        else:
            release(held)
    if final.data and put(final):
        stats.records_out += len(final.data)


def _pass_lineage(batch: Batch, result: Batch, held: list[Tracker] | None) -> None:
    """The output of a batch carries its acknowledgements; an empty output releases them."""
    if result.data:
        result._lineage = (*result._lineage, *batch._lineage)
    elif held is not None:
        held.extend(batch._lineage)
    else:
        release(batch._lineage)


def _sink(stage: Sink[StageConfig], reader: InputReader, stats: WorkerStats) -> None:
    get, consume_batch = reader.get, stage.consume_batch
    while (batch := get()) is not None:
        stats.records_in += len(batch.data)
        started = perf_counter_ns()
        consume_batch(batch)
        stats.timed(started, perf_counter_ns())
        if batch._lineage:
            release(batch._lineage)


def _side_effect(
    stage: SideEffect[StageConfig], reader: InputReader, out: BatchQueue | None, stats: WorkerStats
) -> None:
    get, observe_batch = reader.get, stage.observe_batch
    while (batch := get()) is not None:
        stats.records_in += len(batch.data)
        started = perf_counter_ns()
        observe_batch(batch)
        stats.timed(started, perf_counter_ns())
        if out is None:
            if batch._lineage:
                release(batch._lineage)
            continue
        if not out.put(batch):
            stats.records_dropped += len(batch.data)
            return
        stats.records_out += len(batch.data)
