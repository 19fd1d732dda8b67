"""Bounded many-producer, many-consumer queues of batches, and readers over several of them.

A queue is bounded in records and in bytes: it never holds more than ``capacity`` records,
nor more than ``max_bytes`` of the batches whose size is known (``Batch.nbytes``) — except a
single batch larger than that, which passes alone. ``put`` blocks while a batch does not fit
(backpressure). Locking and wake-ups happen once per batch, never per record. Consumers
compete: each batch goes to exactly one of them.

The queue closes when its last producer is done; consumers then drain what is left and get
``None``. ``abort`` is the hard stop: every blocked call returns at once and queued records
are abandoned.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..sdk import Batch
from ._acks import carry
from ._stats import Histogram

__all__ = ["DEFAULT_MAX_BYTES", "BatchQueue", "InputReader"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class BatchQueue:
    __slots__ = (
        "_aborted",
        "_batches",
        "_bytes",
        "_closed",
        "_count",
        "_listeners",
        "_lock",
        "_not_empty",
        "_not_full",
        "_producers",
        "admit",
        "blocked_ns",
        "capacity",
        "dequeued",
        "dwell",
        "enqueued",
        "max_bytes",
        "name",
    )

    def __init__(
        self,
        name: str,
        capacity: int,
        producers: int = 0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        admit: Callable[[Batch], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"queue '{name}': capacity must be ≥ 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.admit = admit  # the queue's format check (_formats.py), run on each batch put
        # Statistics, updated under the queue's lock once per batch.
        self.enqueued = 0  # records
        self.dequeued = 0
        self.blocked_ns = 0  # total time producers waited on a full queue
        self.dwell = Histogram()  # time records spent queued, weighted by record
        self._batches: deque[Batch] = deque()
        self._count = 0
        self._bytes = 0
        self._producers = producers
        self._closed = False
        self._aborted = False
        self._listeners: list[threading.Event] = []
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    @property
    def depth(self) -> int:
        """Records in the queue now."""
        return self._count

    @property
    def aborted(self) -> bool:
        return self._aborted

    def add_producers(self, count: int) -> None:
        with self._lock:
            self._producers += count

    def _full_for(self, size: int, nbytes: int) -> bool:
        if self._count + size > self.capacity:
            return True
        return nbytes > 0 and self._bytes > 0 and self._bytes + nbytes > self.max_bytes

    def put(self, batch: Batch) -> bool:
        """Enqueue, blocking while full. False once the queue was aborted (batch dropped)."""
        if self.admit is not None:
            self.admit(batch)
        if len(batch) > self.capacity:
            return self._put_split(batch)
        size, nbytes = len(batch), batch.nbytes or 0
        with self._lock:
            if self._full_for(size, nbytes) and not self._aborted:
                started = time.monotonic_ns()
                while self._full_for(size, nbytes) and not self._aborted:
                    self._not_full.wait()
                self.blocked_ns += time.monotonic_ns() - started
            if self._aborted:
                return False
            batch.enqueue_ts_ns = time.monotonic_ns()
            self._batches.append(batch)
            self._count += size
            self._bytes += nbytes
            self.enqueued += size
            self._not_empty.notify()
            self._wake_listeners()
        return True

    def _put_split(self, batch: Batch) -> bool:
        step, total = self.capacity, len(batch)
        data, metas, nbytes, lineage = batch.data, batch.metas, batch.nbytes, batch._lineage
        starts = range(0, total, step)
        carry(lineage, len(starts) - 1)  # every part carries the batch's acknowledgements
        for start in starts:
            part = Batch(data[start : start + step], None if metas is None else metas[start : start + step])
            part._lineage = lineage
            if nbytes is not None:
                part.nbytes = nbytes * len(part.data) // total
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
            return self._take()

    def poll(self) -> Batch | bool | None:
        """The next batch without waiting; True while it may still get one, False once ended."""
        with self._lock:
            if self._batches:
                return self._take()
            return not (self._closed or self._aborted)

    def _take(self) -> Batch | None:
        if self._aborted:
            return None
        batch = self._batches.popleft()
        size = len(batch)
        self._count -= size
        self._bytes -= batch.nbytes or 0
        self.dequeued += size
        self.dwell.observe(time.monotonic_ns() - batch.enqueue_ts_ns, size)
        self._not_full.notify()
        return batch

    def listen(self, event: threading.Event) -> None:
        """Set ``event`` whenever a batch arrives or the queue ends (for multi-queue readers)."""
        with self._lock:
            self._listeners.append(event)

    def _wake_listeners(self) -> None:
        for event in self._listeners:
            event.set()

    def producer_done(self) -> None:
        """One producer worker ended; the last one closes the queue."""
        with self._lock:
            self._producers -= 1
            if self._producers <= 0:
                self._closed = True
                self._not_empty.notify_all()
                self._wake_listeners()

    def abort(self) -> int:
        """Hard stop: wake everyone, refuse further work. Returns the records abandoned."""
        with self._lock:
            self._aborted = True
            abandoned = self._count
            self._batches.clear()
            self._count = self._bytes = 0
            self._not_empty.notify_all()
            self._not_full.notify_all()
            self._wake_listeners()
            return abandoned


class InputReader:
    """What one worker reads: one or several queues, each batch tagged with its input name."""

    def __init__(self, inputs: Sequence[tuple[str, BatchQueue]]) -> None:
        self._inputs = list(inputs)
        self._next = 0
        self._wakeup = threading.Event()
        if len(self._inputs) > 1:
            for _, queue in self._inputs:
                queue.listen(self._wakeup)

    @property
    def aborted(self) -> bool:
        return any(queue.aborted for _, queue in self._inputs)

    def get(self) -> Batch | None:
        """The next batch from any input; None once every input ended (or was aborted)."""
        if len(self._inputs) == 1:
            name, queue = self._inputs[0]
            batch = queue.get()
            if batch is not None:
                batch.input = name
            return batch
        return self._get_any()

    def _get_any(self) -> Batch | None:
        open_inputs = self._inputs
        while open_inputs:
            # Clear before polling: a batch arriving after a poll sets the event again.
            self._wakeup.clear()
            still_open = []
            count = len(open_inputs)
            for step in range(count):  # start where the last call stopped, for fairness
                name, queue = open_inputs[(self._next + step) % count]
                result = queue.poll()
                if isinstance(result, Batch):
                    self._next = (self._next + step + 1) % count
                    result.input = name
                    return result
                if result:
                    still_open.append((name, queue))
            if any(queue.aborted for _, queue in open_inputs):
                return None
            open_inputs = self._inputs = still_open
            if open_inputs:
                self._wakeup.wait()
        return None
