"""Native stage benchmark (issue #3): figures go to benchmarks/README.md, never into tests.

Builds the examples with cmake (Release), then measures, each flow run as ``flowpipe run`` in
a subprocess in job mode with stdout to /dev/null (wall time, start-up included), runs of the
variants interleaved so that drift on a noisy machine hits them alike:

a. ``noop_source -> X -> stdout_sink``, X = the native ``noop_stage`` (C++ example) or the
   Python ``noop_transform``: records/s of each;
b. ``noop_source -> crc32_transform -> stdout_sink`` with the CPU-heavy native transform at
   ``threads: 1`` and ``threads: 2``: the speed-up shows whether native workers run in parallel
   (the adapter releases the GIL during native calls).

Usage: ``python benchmarks/native_bench.py [--records N] [--crc-records N] [--rounds R] [--repeat K]``
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flowpipe.native import sdk_paths

FLOWPIPE = str(Path(sys.executable).with_name("flowpipe"))
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

FLOW = """\
name: native-bench
execution: {{mode: EXECUTION_MODE_JOB}}
queues:
  - {{name: q1, capacity: 4096}}
  - {{name: q2, capacity: 4096}}
stages:
  - {{name: source, type: noop_source, output_queue: q1, config: {{max_messages: {records}}}}}
  - {{name: transform, type: {transform}, threads: {threads}, input_queue: q1, output_queue: q2{config}}}
  - {{name: sink, type: stdout_sink, input_queue: q2}}
"""


def build_examples(build: Path) -> str:
    """Builds the C++ examples; returns the FLOW_PIPE_PLUGIN_PATH that finds them."""
    dirs = []
    for example in ("stage-example", "cpu-transform"):
        out = build / example
        subprocess.run(
            [
                "cmake",
                "-S",
                str(EXAMPLES / example),
                "-B",
                str(out),
                "-DCMAKE_BUILD_TYPE=Release",
                f"-Dflowpipe_DIR={sdk_paths().cmake_dir}",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(["cmake", "--build", str(out), "--parallel"], check=True, capture_output=True)
        dirs.append(str(out))
    return os.pathsep.join(dirs)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_flow(text: str, plugin_path: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``flowpipe run``."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(text)
    try:
        env = {**os.environ, "FLOW_PIPE_PLUGIN_PATH": plugin_path}
        cpu = children_cpu()
        started = time.perf_counter()
        with open(os.devnull, "wb") as devnull:
            subprocess.run(
                [FLOWPIPE, "run", handle.name], stdout=devnull, stderr=subprocess.DEVNULL, env=env, check=True
            )
        return time.perf_counter() - started, children_cpu() - cpu
    finally:
        os.unlink(handle.name)


def machine_cores() -> float:
    """Cores the machine gives right now: a CPU-bound process alone vs two at once."""
    busy = [sys.executable, "-c", "x = 0\nfor i in range(8_000_000): x += i"]

    def wall(count: int) -> float:
        started = time.perf_counter()
        for process in [subprocess.Popen(busy) for _ in range(count)]:
            process.wait()
        return time.perf_counter() - started

    return 2 * wall(1) / wall(2)


def flow(transform: str, records: int, threads: int = 1, config: str = "") -> str:
    return FLOW.format(
        transform=transform, records=records, threads=threads, config=f", config: {config}" if config else ""
    )


def medians(variants: dict[str, str], repeat: int, plugin_path: str) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of each flow's median run (by wall time); runs interleaved."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, text in variants.items():
            runs[name].append(run_flow(text, plugin_path))
    return {name: sorted(r)[len(r) // 2] for name, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5_000_000, help="records of the noop comparison")
    parser.add_argument("--crc-records", type=int, default=200_000, help="records of the threads comparison")
    parser.add_argument("--rounds", type=int, default=1000, help="crc32_transform rounds per record")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant (median reported)")
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as build:
        plugin_path = build_examples(Path(build))

        noop = medians(
            {
                "native noop_stage (C++)": flow("noop_stage", args.records),
                "Python noop_transform": flow("noop_transform", args.records),
            },
            args.repeat,
            plugin_path,
        )
        print(f"\na. noop_source -> X -> stdout_sink, {args.records:,} records, median of {args.repeat}")
        print("| X | wall s | records/s |\n|---|---|---|")
        for name, (seconds, _) in noop.items():
            print(f"| {name} | {seconds:.2f} | {args.records / seconds / 1e6:.2f} M |")

        config = f"{{rounds: {args.rounds}}}"
        cores_before = machine_cores()
        crc = medians(
            {
                "threads: 1": flow("crc32_transform", args.crc_records, 1, config),
                "threads: 2": flow("crc32_transform", args.crc_records, 2, config),
            },
            args.repeat,
            plugin_path,
        )
        cores_after = machine_cores()
        print(
            f"\nb. crc32_transform (rounds {args.rounds}), {args.crc_records:,} records, "
            f"median of {args.repeat}"
        )
        # CPU s / wall s: the cores the flow kept busy, which a GIL-bound flow cannot push past ~1.
        print("| threads | wall s | records/s | CPU s | cores used |\n|---|---|---|---|---|")
        for name, (seconds, cpu) in crc.items():
            rate = args.crc_records / seconds / 1e3
            print(f"| {name.split()[-1]} | {seconds:.2f} | {rate:.1f} k | {cpu:.2f} | {cpu / seconds:.2f} |")
        print(f"\nspeed-up threads 2 vs 1: {crc['threads: 1'][0] / crc['threads: 2'][0]:.2f}x")
        # Other jobs on a shared machine cap what two threads can get.
        print(
            f"cores the machine offered (two busy processes vs one): {cores_before:.2f} before, "
            f"{cores_after:.2f} after"
        )


if __name__ == "__main__":
    main()
