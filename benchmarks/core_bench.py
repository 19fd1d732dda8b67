"""Core runtime benchmark (issue #2): figures go to benchmarks/README.md, never into tests.

Measures, in one run so that ratios are comparable on a noisy machine:

1. throughput of ``noop_source -> noop_transform -> stdout_sink`` in job mode, stdout to
   /dev/null, run as ``flowpipe run`` in a subprocess (wall time, start-up included);
2. a bare Python loop doing the same per-record work (make the bytes, uppercase, count), in
   two forms: formatting each record, and making the bytes a batch at a time as noop_source does;
3. latency of single records through a three-stage flow at a low rate (p50/p99);
4. wall time of a one-record job (``flowpipe run``, start-up included).

With ``--metrics`` (issue #4) it measures instead the cost of metrics: the flow of 1. run
alternately without metrics, with ``--metrics-addr 127.0.0.1:0``, and with that plus a scraper
reading ``/metrics`` every 100 ms; records/s by wall time and by the flow's own time (its
"job finished ... in X s" log line, start-up excluded).

Usage: ``python benchmarks/core_bench.py [--records N] [--repeat K] [--metrics]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

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


class Observed(NamedTuple):
    wall: float  # seconds, start-up included
    own: float  # the flow's own time, from its "... reached the sinks in X s" line
    cpu: float  # CPU seconds of the flowpipe process (every thread)
    scrapes: int


def run_observed(text: str, metrics: bool, scrape_s: float | None) -> Observed:
    """One ``flowpipe run`` of the flow ``text``, with ``--metrics-addr 127.0.0.1:0`` when
    ``metrics``, and a scraper reading its /metrics every ``scrape_s`` seconds when given."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(text)
    command = [FLOWPIPE, "run", handle.name, *(["--metrics-addr", "127.0.0.1:0"] if metrics else [])]
    done, scrapes, lines = threading.Event(), [0], []

    def scrape(url: str) -> None:
        while not done.wait(scrape_s):
            with contextlib.suppress(OSError):  # the last one may meet the server closing
                urllib.request.urlopen(url, timeout=5).read()
                scrapes[0] += 1

    try:
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if scrape_s and (found := re.search(r"serving metrics on (http://\S+/metrics)", line)):
                threading.Thread(target=scrape, args=(found.group(1),), daemon=True).start()
        assert process.wait() == 0, "".join(lines)
        wall = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        done.set()
    finally:
        os.unlink(handle.name)
    own = next(float(m.group(1)) for line in lines if (m := re.search(r"sinks in ([0-9.]+) s", line)))
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return Observed(wall, own, cpu, scrapes[0])


def metrics_cost(n: int, repeat: int) -> None:
    """Prints records/s without and with metrics (and a scraper), medians of ``repeat`` rounds."""
    variants = {"no metrics": (False, None), "metrics": (True, None), "metrics, scraped /100 ms": (True, 0.1)}
    results: dict[str, list[Observed]] = {name: [] for name in variants}
    text = NOOP_FLOW.format(records=n)
    names = list(variants)
    for round_ in range(repeat):
        # Interleaved and rotated, so that the machine's load and the order hit every variant alike.
        for name in names[round_ % 3 :] + names[: round_ % 3]:
            results[name].append(run_observed(text, *variants[name]))

    def rate(name: str, field: str) -> float:
        return statistics.median(n / getattr(run, field) for run in results[name])

    print(f"records per run: {n:,}; medians of {repeat} interleaved rounds; Python {sys.version.split()[0]}")
    print("M records/s (share of 'no metrics'): by wall time (start-up included), by the flow's own")
    print("time (start-up excluded), per CPU-second of the process (least sensitive to other load)")
    for name in variants:
        cells = [
            f"{rate(name, f) / 1e6:5.2f} ({rate(name, f) / rate('no metrics', f):6.1%})"
            for f in Observed._fields[:3]
        ]
        scraped = statistics.median(run.scrapes for run in results[name])
        print(f"{name:<25} wall {cells[0]}  own {cells[1]}  cpu {cells[2]}  scrapes {scraped:g}")


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
    parser.add_argument("--metrics", action="store_true", help="measure the cost of metrics instead")
    args = parser.parse_args()
    n = args.records
    if args.metrics:
        metrics_cost(n, args.repeat)
        return

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
