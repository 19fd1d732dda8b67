"""What one worker thread does with its stage instance, per stage kind.

Each loop moves whole batches: one queue operation and one stage call per batch, and
counters updated per batch by the only thread that writes them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..sdk import Batch, EndOfStream, SideEffect, Sink, Source, Stage, StageConfig, StageKind, Transform
from ._queue import BatchQueue

__all__ = ["WorkerStats", "loop_for"]


class WorkerStats:
    """Records a worker took in and handed on; written only by that worker."""

    __slots__ = ("records_in", "records_out")

    def __init__(self) -> None:
        self.records_in = 0
        self.records_out = 0


Loop = Callable[[], None]


def loop_for(
    stage: Stage[StageConfig],
    inputs: list[BatchQueue],
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
        return lambda: _transform(stage, inputs[0], output, stats)
    if stage.kind is StageKind.SINK:
        assert isinstance(stage, Sink)
        return lambda: _sink(stage, inputs[0], stats)
    assert isinstance(stage, SideEffect)
    return lambda: _side_effect(stage, inputs[0], output, stats)


def _source(
    stage: Source[StageConfig], out: BatchQueue, stats: WorkerStats, stopping: threading.Event, limit: int
) -> None:
    produce_batch = stage.produce_batch
    put = out.put
    while not stopping.is_set():
        try:
            batch = produce_batch(limit)
        except EndOfStream:
            return
        if batch.data:
            if not put(batch):
                return
            stats.records_out += len(batch.data)


def _transform(stage: Transform[StageConfig], inq: BatchQueue, out: BatchQueue, stats: WorkerStats) -> None:
    get, put, process_batch = inq.get, out.put, stage.process_batch
    while (batch := get()) is not None:
        stats.records_in += len(batch.data)
        result: Batch = process_batch(batch)
        if result.data:
            if not put(result):
                return
            stats.records_out += len(result.data)


def _sink(stage: Sink[StageConfig], inq: BatchQueue, stats: WorkerStats) -> None:
    get, consume_batch = inq.get, stage.consume_batch
    while (batch := get()) is not None:
        stats.records_in += len(batch.data)
        consume_batch(batch)


def _side_effect(
    stage: SideEffect[StageConfig], inq: BatchQueue, out: BatchQueue | None, stats: WorkerStats
) -> None:
    get, observe_batch = inq.get, stage.observe_batch
    while (batch := get()) is not None:
        stats.records_in += len(batch.data)
        observe_batch(batch)
        if out is not None:
            if not out.put(batch):
                return
            stats.records_out += len(batch.data)
