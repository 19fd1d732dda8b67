"""What one worker thread does with its stage instance, per stage kind.

Each loop moves whole batches: one queue operation, one stage call and two clock readings
per batch, and counters updated per batch by the only thread that writes them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import perf_counter_ns

from ..sdk import EndOfStream, SideEffect, Sink, Source, Stage, StageConfig, StageKind, Transform
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
) -> Loop:
    """The work loop of one worker: returns when its input ends or the flow stops."""
    if stage.kind is StageKind.SOURCE:
        assert isinstance(stage, Source) and output is not None
        return lambda: _source(stage, output, stats, stopping, batch_limit)
    if stage.kind is StageKind.TRANSFORM:
        assert isinstance(stage, Transform) and output is not None
        return lambda: _transform(stage, reader, output, stats)
    if stage.kind is StageKind.SINK:
        assert isinstance(stage, Sink)
        return lambda: _sink(stage, reader, stats)
    assert isinstance(stage, SideEffect)
    return lambda: _side_effect(stage, reader, output, stats)


def _source(
    stage: Source[StageConfig], out: BatchQueue, stats: WorkerStats, stopping: threading.Event, limit: int
) -> None:
    produce_batch, put = stage.produce_batch, out.put
    while not stopping.is_set():
        started = perf_counter_ns()
        try:
            batch = produce_batch(limit)
        except EndOfStream:
            return
        if batch.data:  # an idle call is not work: leave it out of the timings
            stats.timed(started, perf_counter_ns())
            if not put(batch):
                return
            stats.records_out += len(batch.data)


def _transform(
    stage: Transform[StageConfig], reader: InputReader, out: BatchQueue, stats: WorkerStats
) -> None:
    get, put, process_batch = reader.get, out.put, stage.process_batch
    while (batch := get()) is not None:
        stats.records_in += len(batch.data)
        started = perf_counter_ns()
        result = process_batch(batch)
        stats.timed(started, perf_counter_ns())
        if result.data:
            if not put(result):
                return
            stats.records_out += len(result.data)
    if reader.aborted:  # a hard stop: no final output
        return
    started = perf_counter_ns()
    final = stage.finish()
    stats.timed(started, perf_counter_ns())
    if final is not None and final.data and put(final):
        stats.records_out += len(final.data)


def _sink(stage: Sink[StageConfig], reader: InputReader, stats: WorkerStats) -> None:
    get, consume_batch = reader.get, stage.consume_batch
    while (batch := get()) is not None:
        stats.records_in += len(batch.data)
        started = perf_counter_ns()
        consume_batch(batch)
        stats.timed(started, perf_counter_ns())


def _side_effect(
    stage: SideEffect[StageConfig], reader: InputReader, out: BatchQueue | None, stats: WorkerStats
) -> None:
    get, observe_batch = reader.get, stage.observe_batch
    while (batch := get()) is not None:
        stats.records_in += len(batch.data)
        started = perf_counter_ns()
        observe_batch(batch)
        stats.timed(started, perf_counter_ns())
        if out is not None:
            if not out.put(batch):
                return
            stats.records_out += len(batch.data)
