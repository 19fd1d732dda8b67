"""Core runtime benchmark (issue #2): figures go to benchmarks/README.md, never into tests.

Measures, in one run so that ratios are comparable on a noisy machine:

1. throughput of ``noop_source -> noop_transform -> stdout_sink`` in job mode, stdout to
   /dev/null, run as ``flowpipe run`` in a subprocess (wall time, start-up included);
2. a bare Python loop doing the same per-record work (make the bytes, uppercase, count), in
   two forms: formatting each record, and making the bytes a batch at a time as noop_source does;
3. latency of single records through a three-stage flow at a low rate (p50/p99);
4. wall time of a one-record job (``flowpipe run``, start-up included).

Usage: ``python benchmarks/core_bench.py [--records N] [--repeat K]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flowpipe import Batch, Sink, Source, StageConfig
from flowpipe.testing import run_flow

FLOWPIPE = str(Path(sys.executable).with_name("flowpipe"))

NOOP_FLOW = """\
name: noop-bench
execution: {{mode: EXECUTION_MODE_JOB}}
queues:
  - {{name: q1, capacity: 4096}}
  - {{name: q2, capacity: 4096}}
stages:
  - {{name: source, type: noop_source, output_queue: q1, config: {{max_messages: {records}}}}}
  - {{name: transform, type: noop_transform, input_queue: q1, output_queue: q2}}
  - {{name: sink, type: stdout_sink, input_queue: q2}}
"""


def run_flow_file(text: str) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(text)
    try:
        started = time.perf_counter()
        with open(os.devnull, "wb") as devnull:
            subprocess.run(
                [FLOWPIPE, "run", handle.name], stdout=devnull, stderr=subprocess.DEVNULL, check=True
            )
        return time.perf_counter() - started
    finally:
        os.unlink(handle.name)


def bare_loop_per_record(n: int) -> float:
    started = time.perf_counter()
    count = 0
    for i in range(n):
        data = b"noop_source #%d" % i
        data.upper()
        count += 1
    assert count == n
    return time.perf_counter() - started


def bare_loop_batched(n: int, batch: int = 1024) -> float:
    started = time.perf_counter()
    count = 0
    for start in range(0, n, batch):
        for data in [b"noop_source #%d" % i for i in range(start, min(start + batch, n))]:
            data.upper()
            count += 1
    assert count == n
    return time.perf_counter() - started


def latency(samples: int = 300, interval_s: float = 0.005) -> tuple[float, float]:
    """p50 and p99 of source-to-sink time, in milliseconds, one record at a time."""
    seen: list[float] = []

    class Ticker(Source[StageConfig]):
        def open(self) -> None:
            self.sent = 0

        def produce(self) -> Any:
            if self.sent == samples:
                from flowpipe import EndOfStream

                raise EndOfStream
            self.context.wait(interval_s)
            self.sent += 1
            return time.perf_counter_ns()

    class Clock(Sink[StageConfig]):
        def consume_batch(self, batch: Batch) -> None:
            now = time.perf_counter_ns()
            seen.extend((now - sent) / 1e6 for sent in batch.data)

    flow = """
name: latency
execution: {mode: job}
queues: [{name: a, capacity: 1024}, {name: b, capacity: 1024}]
stages:
  - {name: src, type: ticker, output_queue: a}
  - {name: mid, type: noop_transform, input_queue: a, output_queue: b}
  - {name: out, type: clock, input_queue: b}
"""
    result = run_flow(flow, stages={"ticker": Ticker, "clock": Clock})
    assert result.exit_code == 0 and len(seen) == samples
    quantiles = statistics.quantiles(seen, n=100)
    return quantiles[49], quantiles[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.records

    flow_rates, bare_rates, batched_rates = [], [], []
    for _ in range(args.repeat):
        flow_rates.append(n / run_flow_file(NOOP_FLOW.format(records=n)))
        bare_rates.append(n / bare_loop_per_record(n))
        batched_rates.append(n / bare_loop_batched(n))
    flow_rate = statistics.median(flow_rates)
    bare_rate = statistics.median(bare_rates)
    batched_rate = statistics.median(batched_rates)
    p50, p99 = latency()
    one = statistics.median(run_flow_file(NOOP_FLOW.format(records=1)) for _ in range(5))

    print(f"records per run: {n:,}; medians of {args.repeat} runs; Python {sys.version.split()[0]}")
    print(f"flow noop_source->noop_transform->stdout_sink: {flow_rate / 1e6:.2f} M records/s")
    print(f"bare loop, bytes formatted per record:         {bare_rate / 1e6:.2f} M records/s")
    print(f"bare loop, bytes made per batch (as the source): {batched_rate / 1e6:.2f} M records/s")
    print(f"ratio flow / bare (per record):  {flow_rate / bare_rate:.2f}")
    print(f"ratio flow / bare (batched):     {flow_rate / batched_rate:.2f}")
    print(f"single-record latency at {1 / 0.005:.0f} records/s: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    print(f"one-record job, wall time (median of 5): {one:.3f} s")


if __name__ == "__main__":
    main()
