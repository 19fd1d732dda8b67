"""Counters and histograms of a running flow, kept per batch by the thread doing the work.

Each object has a single writer (a worker thread, or a queue under its own lock), so nothing
here takes a lock; readers (a metrics scrape, the progress view) see values that are at most
one batch old. Times are in nanoseconds, as in flow-pipe's metric names (``*_ns``).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._plan import StagePlan

__all__ = ["LATENCY_BOUNDS_NS", "Histogram", "StageStats", "WorkerStats"]

# 1 µs .. 10 s, roughly three buckets per decade.
LATENCY_BOUNDS_NS: tuple[int, ...] = (
    *(int(m * 10**e) for e in range(3, 10) for m in (1, 2.5, 5)),
    10**10,
)


class Histogram:
    """Observation counts per bucket: ``counts[i]`` counts values ≤ ``bounds[i]`` (and above
    ``bounds[i-1]``); the last count is for values above every bound."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[int, ...] = LATENCY_BOUNDS_NS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.total = 0

    def observe(self, value: int, weight: int = 1) -> None:
        """Record ``weight`` observations of ``value`` (a batch of records that waited alike)."""
        self.counts[bisect_left(self.bounds, value)] += weight
        self.count += weight
        self.total += value * weight


class WorkerStats:
    """What one worker did: written only by that worker, once per batch."""

    __slots__ = (
        "batches",
        "busy_ns",
        "errors",
        "latency",
        "opened",
        "records_dropped",
        "records_in",
        "records_out",
    )

    def __init__(self) -> None:
        self.opened = False  # open() returned
        self.records_in = 0
        self.records_out = 0
        self.records_dropped = 0  # records it could not hand on: the output queue was aborted
        self.errors = 0  # exceptions raised by the stage (open, batch calls, close)
        self.batches = 0  # stage calls that handled a batch
        self.busy_ns = 0  # time spent inside those calls
        self.latency = Histogram()  # duration of each call

    def timed(self, started_ns: int, ended_ns: int) -> None:
        elapsed = ended_ns - started_ns
        self.batches += 1
        self.busy_ns += elapsed
        self.latency.observe(elapsed)


@dataclass
class StageStats:
    """A stage's workers' statistics, summed when read."""

    plan: StagePlan
    workers: list[WorkerStats] = field(default_factory=list)

    @property
    def records_in(self) -> int:
        return sum(w.records_in for w in self.workers)

    @property
    def records_out(self) -> int:
        return sum(w.records_out for w in self.workers)
