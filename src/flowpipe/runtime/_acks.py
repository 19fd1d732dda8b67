"""End-to-end acknowledgements, tracked per batch.

A source that can acknowledge sets ``batch.ack`` on what it emits. The runtime gives that
batch a :class:`Tracker` and every batch derived from it — a transform's output, the parts
of a split, a stage's final output — carries the tracker along (its *lineage*). A tracker
completes when every batch carrying it has been consumed by a sink or deliberately dropped;
its token then goes back to the source's :class:`AckInbox`, and the source's own worker
thread hands it to ``Source.acknowledge``. A failure or a crash completes nothing, so the
broker delivers those messages again.

Everything here happens once per batch, never per record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..sdk import Batch

__all__ = ["AckInbox", "Tracker", "carry", "release"]

_lock = threading.Lock()  # guards every tracker's count; held for a few instructions per batch


class AckInbox:
    """Completed tokens on their way back to one source worker."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.outstanding = 0  # trackers of this worker not yet completed
        self.wake = wake  # tells the idle source that tokens are waiting
        self._done: list[Any] = []
        self._changed = threading.Condition(_lock)

    def track(self, batch: Batch) -> None:
        """Give a freshly produced batch its tracker (when the source set ``batch.ack``)."""
        if batch.ack is None:
            return
        tracker = Tracker(batch.ack, self)
        with _lock:
            self.outstanding += 1
        batch._lineage = (tracker,)

    def take(self) -> list[Any]:
        """The tokens completed since the last call."""
        with _lock:
            done, self._done = self._done, []
            return done

    def wait_all(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for every tracker to complete; True when none is left."""
        with _lock:
            if self.outstanding:
                self._changed.wait(timeout)
            return self.outstanding == 0

    def _complete(self, token: Any) -> None:  # called with _lock held
        self.outstanding -= 1
        self._done.append(token)
        self._changed.notify_all()


class Tracker:
    __slots__ = ("inbox", "pending", "token")

    def __init__(self, token: Any, inbox: AckInbox) -> None:
        self.token = token
        self.inbox = inbox
        self.pending = 1  # batches carrying this tracker that are not yet consumed


def carry(lineage: tuple[Tracker, ...], copies: int) -> None:
    """``copies`` more batches now carry ``lineage`` (a split, or outputs held together)."""
    if lineage and copies:
        with _lock:
            for tracker in lineage:
                tracker.pending += copies


def release(lineage: Iterable[Tracker]) -> None:
    """One batch carrying ``lineage`` was consumed or dropped."""
    completed = []
    with _lock:
        for tracker in lineage:
            tracker.pending -= 1
            if tracker.pending == 0:
                tracker.inbox._complete(tracker.token)
                completed.append(tracker.inbox)
    for inbox in completed:  # outside the lock: a source's wake() may take locks of its own
        inbox.wake()
