"""The terminal view of a running flow, shared by ``flowpipe run --progress`` and ``flowpipe top``.

Both read the same Prometheus samples: ``--progress`` from its own collector in-process, ``top``
from a flow's ``/metrics``. A series the flow does not serve (a metric group switched off)
shows as ``-``.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["LiveFrame", "Snapshot", "render", "snapshot", "summary"]


@dataclass
class StageRow:
    name: str
    type: str
    workers: float | None = None
    handled: float | None = None  # records produced (sources) or taken (the rest)
    records_in: float | None = None
    records_out: float | None = None
    errors: float | None = None


@dataclass
class QueueRow:
    name: str
    depth: float | None = None
    capacity: float | None = None
    enqueued: float | None = None
    blocked_ns: float | None = None


@dataclass
class Snapshot:
    taken_at: float  # time.monotonic() of the reading
    flow: str = "?"
    state: str = "?"
    uptime: float | None = None
    stages: dict[str, StageRow] = field(default_factory=dict)
    queues: dict[str, QueueRow] = field(default_factory=dict)


_STAGE_FIELDS = {
    "flowpipe_stage_workers": "workers",
    "flowpipe_stage_process_count_total": "handled",
    "flowpipe_stage_records_in_total": "records_in",
    "flowpipe_stage_records_out_total": "records_out",
    "flowpipe_stage_errors_total": "errors",
}
_QUEUE_FIELDS = {
    "flowpipe_queue_depth": "depth",
    "flowpipe_queue_capacity": "capacity",
    "flowpipe_queue_enqueue_count_total": "enqueued",
    "flowpipe_queue_blocked_ns_total": "blocked_ns",
}


def snapshot(metrics: Iterable[Metric], taken_at: float) -> Snapshot:
    """What the view shows, from Prometheus metric families (parsed or collected)."""
    view = Snapshot(taken_at)
    for metric in metrics:
        for sample in metric.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if "flow" in labels and view.flow == "?":
                view.flow = labels["flow"]
            if name in _STAGE_FIELDS:
                stage = view.stages.setdefault(
                    labels["stage"], StageRow(labels["stage"], labels.get("type", ""))
                )
                setattr(stage, _STAGE_FIELDS[name], value)
            elif name in _QUEUE_FIELDS:
                queue = view.queues.setdefault(labels["queue"], QueueRow(labels["queue"]))
                setattr(queue, _QUEUE_FIELDS[name], value)
            elif name == "flowpipe_flow_state" and value == 1:
                view.state = labels["state"]
            elif name == "flowpipe_flow_uptime_seconds":
                view.uptime = value
    return view


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _rate(now: Snapshot, before: Snapshot | None, stage: StageRow) -> str:
    if stage.handled is None:
        return "-"
    if before is not None and stage.name in before.stages and now.taken_at > before.taken_at:
        earlier = before.stages[stage.name].handled or 0
        return _count((stage.handled - earlier) / (now.taken_at - before.taken_at))
    # A first reading: the average since the flow started.
    return _count(stage.handled / now.uptime) if now.uptime else "-"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(
            cell.ljust(width) if index < 2 else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in (header, *rows)
    ]


def _bar(depth: float | None, capacity: float | None, width: int = 20) -> str:
    if depth is None or not capacity:
        return ""
    filled = round(width * min(depth / capacity, 1))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def render(now: Snapshot, before: Snapshot | None = None) -> list[str]:
    """The live view: per stage records/s and errors, per queue depth against capacity."""
    uptime = "" if now.uptime is None else f", up {now.uptime:.1f} s"
    lines = [f"flow {now.flow}: {now.state}{uptime}"]
    lines += _table(
        ("STAGE", "TYPE", "WORKERS", "IN", "OUT", "REC/S", "ERRORS"),
        [
            (
                s.name,
                s.type,
                _count(s.workers),
                _count(s.records_in),
                _count(s.records_out),
                _rate(now, before, s),
                _count(s.errors),
            )
            for s in now.stages.values()
        ],
    )
    lines += _table(
        ("QUEUE", "FILL", "DEPTH", "CAPACITY", "ENQUEUED", "BLOCKED S"),
        [
            (
                q.name,
                _bar(q.depth, q.capacity),
                _count(q.depth),
                _count(q.capacity),
                _count(q.enqueued),
                "-" if q.blocked_ns is None else f"{q.blocked_ns / 1e9:.3f}",
            )
            for q in now.queues.values()
        ],
    )
    return lines


def summary(final: Snapshot, wall_s: float, exit_code: int) -> list[str]:
    """The summary at exit: records per stage and wall time."""
    lines = [f"flow {final.flow}: {final.state} (exit {exit_code}) in {wall_s:.2f} s"]
    lines += _table(
        ("STAGE", "TYPE", "IN", "OUT", "ERRORS", "AVG REC/S"),
        [
            (
                s.name,
                s.type,
                _count(s.records_in),
                _count(s.records_out),
                _count(s.errors),
                _count((s.handled or 0) / wall_s) if wall_s > 0 else "-",
            )
            for s in final.stages.values()
        ],
    )
    return lines


def _terminal_size(stream: TextIO) -> os.terminal_size:
    """The size of the terminal ``stream`` is on (stdout may be redirected while stderr is not)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        size = None
    return size if size and size.columns and size.lines else shutil.get_terminal_size()


class LiveFrame:
    """A block of lines redrawn in place at the bottom of a terminal. Text written through
    :meth:`write` (log lines) goes above it, so the two never overwrite each other."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lines: list[str] = []
        self._lock = threading.RLock()

    def draw(self, lines: list[str]) -> None:
        size = _terminal_size(self.stream)
        with self._lock:
            self._erase()
            # A wrapped line, or a frame taller than the screen, could not be erased.
            self._lines = [line[: size.columns - 1] for line in lines[: max(size.lines - 1, 1)]]
            self._put()

    def write(self, text: str) -> int:
        with self._lock:
            self._erase()
            self.stream.write(text)
            self._put()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def clear(self) -> None:
        with self._lock:
            self._erase()
            self._lines = []
            self.stream.flush()

    def _erase(self) -> None:
        if self._lines:
            self.stream.write(f"\x1b[{len(self._lines)}F\x1b[J")  # up to the frame's first line, clear below

    def _put(self) -> None:
        if self._lines:
            self.stream.write("\n".join(self._lines) + "\n")
        self.stream.flush()
