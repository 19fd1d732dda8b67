"""BatchQueue: bounds, fan-in closing, competing consumers, abort."""

from __future__ import annotations

import threading

import pytest

from flowpipe import Batch
from flowpipe.runtime import BatchQueue


def batch(*items: int) -> Batch:
    return Batch(list(items))


def drain(queue: BatchQueue) -> list[int]:
    out: list[int] = []
    while (b := queue.get()) is not None:
        out.extend(b.data)
    return out


def test_closes_when_the_last_producer_is_done_and_consumers_drain_first() -> None:
    queue = BatchQueue("q", capacity=10, producers=2)
    assert queue.put(batch(1, 2))
    queue.producer_done()
    assert queue.put(batch(3))  # the second producer still writes
    queue.producer_done()
    assert drain(queue) == [1, 2, 3]
    assert queue.get() is None


def test_put_blocks_while_full_and_never_exceeds_capacity() -> None:
    queue = BatchQueue("q", capacity=4, producers=1)
    assert queue.put(batch(1, 2, 3))
    entered, finished = threading.Event(), threading.Event()

    def producer() -> None:
        entered.set()
        queue.put(batch(4, 5))  # 3 + 2 > 4: must wait
        finished.set()

    thread = threading.Thread(target=producer)
    thread.start()
    entered.wait()
    # The producer cannot finish before space is made; it is blocked, not lost.
    assert not finished.wait(0.05)
    assert queue.depth == 3
    assert queue.get() is not None
    assert finished.wait(5)
    thread.join()
    assert queue.depth == 2
    assert queue.blocked_ns > 0


def test_a_batch_larger_than_capacity_is_split() -> None:
    queue = BatchQueue("q", capacity=3, producers=1)
    results: list[list[int]] = []

    def consumer() -> None:
        while (b := queue.get()) is not None:
            assert len(b) <= 3
            results.append(b.data)

    thread = threading.Thread(target=consumer)
    thread.start()
    assert queue.put(Batch(list(range(10))))
    queue.producer_done()
    thread.join()
    assert [x for part in results for x in part] == list(range(10))


def test_metas_are_split_with_their_records() -> None:
    from flowpipe import PayloadMeta

    metas: list[PayloadMeta | None] = [PayloadMeta(flags=i) for i in range(5)]
    queue = BatchQueue("q", capacity=2, producers=1)
    got: list[Batch] = []
    thread = threading.Thread(target=lambda: got.extend(iter(queue.get, None)))
    thread.start()
    queue.put(Batch(list(range(5)), metas))
    queue.producer_done()
    thread.join()
    assert [m.flags for b in got for m in (b.metas or []) if m] == [0, 1, 2, 3, 4]


def test_competing_consumers_each_batch_goes_to_exactly_one() -> None:
    queue = BatchQueue("q", capacity=64, producers=1)
    seen: list[list[int]] = [[], [], []]

    def consume(slot: int) -> None:
        while (b := queue.get()) is not None:
            seen[slot].extend(b.data)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for start in range(0, 3000, 10):
        queue.put(Batch(list(range(start, start + 10))))
    queue.producer_done()
    for t in threads:
        t.join()
    everything = sorted(x for part in seen for x in part)
    assert everything == list(range(3000))


def test_abort_wakes_blocked_producers_and_consumers() -> None:
    full = BatchQueue("full", capacity=1, producers=1)
    full.put(batch(1))
    empty = BatchQueue("empty", capacity=1, producers=1)
    results: dict[str, object] = {}
    threads = [
        threading.Thread(target=lambda: results.update(put=full.put(batch(2)))),
        threading.Thread(target=lambda: results.update(get=empty.get())),
    ]
    for t in threads:
        t.start()
    assert full.abort() == 1
    empty.abort()
    for t in threads:
        t.join(5)
    assert results == {"put": False, "get": None}


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        BatchQueue("q", capacity=0)


def test_bytes_bound_blocks_but_a_single_large_batch_passes_alone() -> None:
    queue = BatchQueue("q", capacity=100, producers=1, max_bytes=1000)
    big = Batch([b"x"], nbytes=5000)
    assert queue.put(big)  # larger than max_bytes, but the queue was empty
    done = threading.Event()

    def producer() -> None:
        queue.put(Batch([b"y"], nbytes=10))  # must wait: the queue holds 5000 bytes
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not done.wait(0.05)
    assert queue.get() is big
    assert done.wait(5)
    thread.join()
    # Batches of unknown size are bounded by records only.
    assert queue.put(Batch([b"z"] * 50))


def test_input_reader_merges_several_queues_and_tags_each_batch() -> None:
    from flowpipe.runtime import InputReader

    left = BatchQueue("q1", capacity=8, producers=1)
    right = BatchQueue("q2", capacity=8, producers=1)
    reader = InputReader([("orders", left), ("lineitem", right)])
    got: list[tuple[str, list[int]]] = []
    thread = threading.Thread(target=lambda: got.extend((b.input, b.data) for b in iter(reader.get, None)))
    thread.start()
    left.put(batch(1))
    right.put(batch(2))
    left.producer_done()
    right.put(batch(3))
    right.producer_done()
    thread.join(10)
    assert not thread.is_alive()
    assert sorted(got) == [("lineitem", [2]), ("lineitem", [3]), ("orders", [1])]
