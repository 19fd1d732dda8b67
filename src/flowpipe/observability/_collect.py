"""A running flow's metrics, read from the runtime's statistics when someone asks.

The runtime keeps its counters per batch (``run.stats``, ``run.queues``); nothing here runs
per record or per batch. ``collect`` turns them into exporter-neutral :class:`Family` objects,
which the Prometheus endpoint, the OTLP exporter and the terminal views each render.

Names are OpenTelemetry's, as in flow-pipe (``flowpipe.queue.enqueue.count``); Prometheus
replaces the dots with underscores and adds ``_total`` to counters. docs/observability.md
lists every family.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..sdk import StageKind
from ._policy import MetricGroups

if TYPE_CHECKING:
    from ..runtime import BatchQueue, FlowRun, Histogram, StageStats

__all__ = ["STATES", "Buckets", "Family", "collect"]

STATES = ("starting", "running", "draining", "finished", "failed")


@dataclass(frozen=True)
class Buckets:
    """A histogram's state: ``counts[i]`` observations ≤ ``bounds[i]``, the last above all bounds."""

    bounds: tuple[int, ...]
    counts: tuple[int, ...]
    total: int

    @classmethod
    def of(cls, histograms: Iterable[Histogram]) -> Buckets:
        bounds: tuple[int, ...] = ()
        counts: list[int] = []
        total = 0
        for histogram in histograms:
            # Copy first: a worker may add a batch meanwhile, and the counts must agree.
            snapshot = list(histogram.counts)
            bounds = histogram.bounds
            counts = [a + b for a, b in zip(counts, snapshot, strict=True)] if counts else snapshot
            total += histogram.total
        return cls(bounds, tuple(counts), total)

    @property
    def count(self) -> int:
        return sum(self.counts)


Value = float | Buckets


@dataclass
class Family:
    name: str  # OpenTelemetry name
    kind: str  # "counter", "gauge" or "histogram"
    help: str
    label_names: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], Value]] = field(default_factory=list)

    @property
    def prometheus_name(self) -> str:
        return self.name.replace(".", "_")


_QUEUE = ("flow", "queue")
_STAGE = ("flow", "stage", "type")


def collect(run: FlowRun | None, groups: MetricGroups) -> list[Family]:
    """The families ``groups`` selects, read now; none before the run started."""
    if run is None:
        return []
    families: list[Family] = []
    if groups.flow and groups.gauges:
        families += _flow_families(run)
    if groups.queue:
        families += _queue_families(run, groups)
    if groups.stage:
        families += _stage_families(run, groups)
    return families


@functools.cache
def _flowpipe_version() -> str:
    # Looked up at the first scrape, not at start-up: it costs tens of milliseconds.
    from importlib.metadata import version

    return version("flow-pipe")


def _flow_families(run: FlowRun) -> list[Family]:
    plan, state = run.plan, run.state
    info = Family(
        "flowpipe.flow.info",
        "gauge",
        "The flow running in this process (always 1): its name, spec version and execution mode.",
        ("flow", "version", "mode", "flowpipe_version"),
        [((plan.name, str(plan.version), "job" if plan.job else "streaming", _flowpipe_version()), 1)],
    )
    uptime = Family(
        "flowpipe.flow.uptime_seconds",
        "gauge",
        "Seconds since the flow's workers started.",
        ("flow",),
        [((plan.name,), time.monotonic() - run.started_at)],
    )
    states = Family(
        "flowpipe.flow.state",
        "gauge",
        "1 for the flow's current state (starting, running, draining, finished, failed), 0 for the others.",
        ("flow", "state"),
        [((plan.name, name), float(name == state)) for name in STATES],
    )
    return [info, uptime, states]


def _queue_families(run: FlowRun, groups: MetricGroups) -> list[Family]:
    flow = run.plan.name
    queues = [((flow, name), queue) for name, queue in run.queues.items()]

    def family(name: str, kind: str, help: str, read: Callable[[BatchQueue], Value]) -> Family:
        return Family(name, kind, help, _QUEUE, [(labels, read(queue)) for labels, queue in queues])

    families = [
        family(
            "flowpipe.queue.enqueue.count", "counter", "Records put into the queue.", lambda q: q.enqueued
        ),
        family(
            "flowpipe.queue.dequeue.count", "counter", "Records taken from the queue.", lambda q: q.dequeued
        ),
        family(
            "flowpipe.queue.blocked_ns",
            "counter",
            "Nanoseconds producers spent blocked because the queue was full (backpressure).",
            lambda q: q.blocked_ns,
        ),
    ]
    if groups.gauges:
        families += [
            family("flowpipe.queue.depth", "gauge", "Records in the queue now.", lambda q: q.depth),
            family("flowpipe.queue.capacity", "gauge", "Most records the queue holds.", lambda q: q.capacity),
        ]
    if groups.histograms:
        families.append(
            family(
                "flowpipe.queue.dwell_ns",
                "histogram",
                "Nanoseconds records waited in the queue, enqueue to dequeue (one observation per record).",
                lambda q: Buckets.of([q.dwell]),
            )
        )
    return families


def _stage_families(run: FlowRun, groups: MetricGroups) -> list[Family]:
    flow = run.plan.name
    stages = [((flow, s.plan.name, s.plan.info.type_name), s) for s in run.stats]

    def family(name: str, kind: str, help: str, read: Callable[[StageStats], Value]) -> Family:
        return Family(name, kind, help, _STAGE, [(labels, read(stats)) for labels, stats in stages])

    def total(attribute: str) -> Callable[[StageStats], Value]:
        return lambda s: sum(getattr(w, attribute) for w in s.workers)

    def handled(stats: StageStats) -> Value:
        # flow-pipe counted one "process" per record handled: produced by a source, taken by the rest.
        source = stats.plan.info.kind is StageKind.SOURCE
        return sum(w.records_out if source else w.records_in for w in stats.workers)

    families = [
        family("flowpipe.stage.process.count", "counter", "Records the stage handled.", handled),
        family("flowpipe.stage.records.in", "counter", "Records the stage read.", total("records_in")),
        family("flowpipe.stage.records.out", "counter", "Records the stage emitted.", total("records_out")),
        family(
            "flowpipe.stage.records.dropped",
            "counter",
            "Records the stage could not hand on because the flow was hard-stopped.",
            total("records_dropped"),
        ),
        family("flowpipe.stage.errors", "counter", "Exceptions the stage raised.", total("errors")),
        family(
            "flowpipe.stage.batches", "counter", "Calls of the stage that handled a batch.", total("batches")
        ),
        family(
            "flowpipe.stage.busy_ns",
            "counter",
            "Nanoseconds spent inside the stage's calls.",
            total("busy_ns"),
        ),
    ]
    if groups.gauges:
        families.append(
            family(
                "flowpipe.stage.workers", "gauge", "Worker threads of the stage.", lambda s: s.plan.threads
            )
        )
    if groups.histograms:
        families.append(
            family(
                "flowpipe.stage.latency_ns",
                "histogram",
                "Nanoseconds per call of the stage (one call handles one batch).",
                lambda s: Buckets.of(w.latency for w in s.workers),
            )
        )
    return families
