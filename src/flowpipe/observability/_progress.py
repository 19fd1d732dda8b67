"""``flowpipe run --progress``: a live view of the run on the terminal (stderr), then a summary.

Log lines keep flowing above the view: while it is shown, flowpipe's stderr log handlers write
through it. The view reads the same metrics as ``/metrics``, twice a second, in its own thread.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from ..runtime import Instrument
from ._collect import collect
from ._policy import MetricGroups
from ._view import LiveFrame, Snapshot, render, snapshot, summary

if TYPE_CHECKING:
    from ..runtime import FlowRun

__all__ = ["ProgressView"]

_REFRESH_S = 0.5


class ProgressView(Instrument):
    def __init__(self, stream: TextIO = sys.stderr, refresh_s: float = _REFRESH_S) -> None:
        self.frame = LiveFrame(stream)
        self.refresh_s = refresh_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handlers: list[logging.StreamHandler[TextIO]] = []

    def flow_started(self, run: FlowRun) -> None:
        for handler in logging.getLogger("flowpipe").handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is self.frame.stream:
                handler.setStream(self.frame)
                self._handlers.append(handler)
        self._thread = threading.Thread(target=self._loop, args=(run,), name="progress", daemon=True)
        self._thread.start()

    def flow_ended(self, run: FlowRun, exit_code: int) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.frame.clear()
        for handler in self._handlers:
            handler.setStream(self.frame.stream)
        wall = time.monotonic() - run.started_at
        self.frame.stream.write("\n".join(summary(self._read(run), wall, exit_code)) + "\n")
        self.frame.stream.flush()

    def _read(self, run: FlowRun) -> Snapshot:
        from ._prometheus import FlowCollector

        collector = FlowCollector(lambda: collect(run, MetricGroups()))
        return snapshot(collector.collect(), time.monotonic())

    def _loop(self, run: FlowRun) -> None:
        before: Snapshot | None = None
        while True:
            now = self._read(run)
            self.frame.draw(render(now, before))
            before = now
            if self._stop.wait(self.refresh_s):
                return
