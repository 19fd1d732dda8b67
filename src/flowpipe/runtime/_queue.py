"""Bounded many-producer, many-consumer queues of batches.

A queue is bounded in records, not batches: it never holds more than ``capacity`` records, and
``put`` blocks while a batch does not fit (backpressure). Locking and wake-ups happen once per
batch, never per record. Consumers compete: each batch goes to exactly one of them.

The queue closes when its last producer is done; consumers then drain what is left and get
``None``. ``abort`` is the hard stop: every blocked call returns at once and queued records
are abandoned.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from ..sdk import Batch
from ._stats import Histogram

__all__ = ["BatchQueue"]


class BatchQueue:
    __slots__ = (
        "_aborted",
        "_batches",
        "_closed",
        "_count",
        "_lock",
        "_not_empty",
        "_not_full",
        "_producers",
        "blocked_ns",
        "capacity",
        "dequeued",
        "dwell",
        "enqueued",
        "name",
    )

    def __init__(self, name: str, capacity: int, producers: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"queue '{name}': capacity must be ≥ 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        # Statistics, updated under the queue's lock once per batch.
        self.enqueued = 0  # records
        self.dequeued = 0
        self.blocked_ns = 0  # total time producers waited on a full queue
        self.dwell = Histogram()  # time records spent queued, weighted by record
        self._batches: deque[Batch] = deque()
        self._count = 0
        self._producers = producers
        self._closed = False
        self._aborted = False
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    @property
    def depth(self) -> int:
        """Records in the queue now."""
        return self._count

    def add_producers(self, count: int) -> None:
        with self._lock:
            self._producers += count

    def put(self, batch: Batch) -> bool:
        """Enqueue, blocking while full. False once the queue was aborted (batch dropped)."""
        if len(batch) > self.capacity:
            return self._put_split(batch)
        size = len(batch)
        with self._lock:
            if self._count + size > self.capacity and not self._aborted:
                started = time.monotonic_ns()
                while self._count + size > self.capacity and not self._aborted:
                    self._not_full.wait()
                self.blocked_ns += time.monotonic_ns() - started
            if self._aborted:
                return False
            batch.enqueue_ts_ns = time.monotonic_ns()
            self._batches.append(batch)
            self._count += size
            self.enqueued += size
            self._not_empty.notify()
        return True

    def _put_split(self, batch: Batch) -> bool:
        step = self.capacity
        data, metas = batch.data, batch.metas
        for start in range(0, len(data), step):
            part = Batch(data[start : start + step], None if metas is None else metas[start : start + step])
            if not self.put(part):
                return False
        return True

    def get(self) -> Batch | None:
        """The next batch, blocking while empty; None once closed and drained, or aborted."""
        with self._lock:
            while not self._batches:
                if self._closed or self._aborted:
                    return None
                self._not_empty.wait()
            if self._aborted:
                return None
            batch = self._batches.popleft()
            size = len(batch)
            self._count -= size
            self.dequeued += size
            self.dwell.observe(time.monotonic_ns() - batch.enqueue_ts_ns, size)
            self._not_full.notify()
            return batch

    def producer_done(self) -> None:
        """One producer worker ended; the last one closes the queue."""
        with self._lock:
            self._producers -= 1
            if self._producers <= 0:
                self._closed = True
                self._not_empty.notify_all()

    def abort(self) -> int:
        """Hard stop: wake everyone, refuse further work. Returns the records abandoned."""
        with self._lock:
            self._aborted = True
            abandoned = self._count
            self._batches.clear()
            self._count = 0
            self._not_empty.notify_all()
            self._not_full.notify_all()
            return abandoned
