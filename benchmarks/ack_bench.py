"""Cost of end-to-end acknowledgement tracking (issue #7): the #2 noop benchmark flow,
``noop_source -> noop_transform -> stdout_sink`` (stdout to /dev/null, job mode, run as
``flowpipe run`` in a subprocess), with the plain ``noop_source`` and with an acknowledging
subclass of it (sets ``batch.ack`` on every batch, counts what ``acknowledge`` receives),
alternating in the same run. Target: tracking keeps >= 80 % of the records/s.

Usage: ``python benchmarks/ack_bench.py [--records N] [--repeat K]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core_bench import NOOP_FLOW

FLOWPIPE = str(Path(sys.executable).with_name("flowpipe"))

# Checks at close that every batch came back, so that a fast run is not a broken one.
ACKING_SOURCE = '''\
from flowpipe import Batch
from flowpipe.stages.noop import NoopSource


class AckingNoopSource(NoopSource):
    """noop_source that acknowledges: one token per batch."""

    def open(self) -> None:
        super().open()
        self.emitted = self.acked = 0

    def produce_batch(self, limit: int) -> Batch:
        batch = super().produce_batch(limit)
        if batch.data:
            self.emitted += 1
            batch.ack = self.emitted
        return batch

    def acknowledge(self, tokens: list) -> None:
        self.acked += len(tokens)

    def close(self) -> None:
        assert self.acked == self.emitted, (self.acked, self.emitted)
'''


def run(flow: str, plugin_dir: str) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        handle.write(flow)
        handle.flush()
        started = time.perf_counter()
        subprocess.run(
            [FLOWPIPE, "run", handle.name, "--plugin-path", plugin_dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=True,
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = args.records
    plain_flow = NOOP_FLOW.format(records=n)
    acking_flow = plain_flow.replace("type: noop_source", "type: acking_noop_source")
    with tempfile.TemporaryDirectory() as plugin_dir:
        (Path(plugin_dir) / "stage_acking_noop_source.py").write_text(ACKING_SOURCE)
        plain, acking = [], []
        for _ in range(args.repeat):
            plain.append(n / run(plain_flow, plugin_dir))
            acking.append(n / run(acking_flow, plugin_dir))
    p, a = statistics.median(plain), statistics.median(acking)
    print(
        f"records per run: {n:,}; medians of {args.repeat} alternating runs; Python {sys.version.split()[0]}"
    )
    for name, rate, runs in (("plain noop_source", p, plain), ("acknowledging noop_source", a, acking)):
        print(f"noop flow, {name}: {rate / 1e6:.2f} M records/s (runs {[round(x / 1e6, 2) for x in runs]})")
    print(f"acks on / acks off: {a / p:.2f}")


if __name__ == "__main__":
    main()
