"""TPC-H benchmark of the Arrow stages (issue #5): figures go to benchmarks/README.md.

Reproduces flow-pipe's benchmark suite on data from ``tpchgen-cli`` at the scale factor given:

- ``csv``: lineitem CSV -> Parquet (snappy);
- ``q1``, ``q6``, ``q14``: TPC-H queries, parquet source -> sql_transform -> parquet sink;

each run as the flow in ``flows/`` (``flowpipe run``; ``no-fuse``: with ``--no-fuse``, the
sources decoding every batch instead of the query reading the Parquet files; ``preloaded``:
``flowpipe run`` in a process that imported its modules first, so that its *work* spans what
DuckDB's does: everything after the imports), and in the same
run with DuckDB directly, Polars and PySpark ``local[2]`` (skipped with a message when pyspark
or Java is missing), every one in its own process. Reports the median wall time, peak RSS of
the process tree (psutil, sampled every 20 ms) and MB/s of input, and checks every result
against DuckDB's. The queries
are read from the flow files, so every engine runs the same SQL. For the queries, ``imports``
is a process that only imports what a query flow imports and exits: the fixed cost under every
flow's wall time.

``engines`` compares DuckDB and DataFusion inside one process on Arrow tables, the choice the
``sql_transform`` stage rests on.

Usage (from the repo root; data goes to ``data/tpch/sf<N>``, ~1.3 GB at SF 1)::

    python benchmarks/tpch_bench.py --scale 1 [--repeat 3] [--only csv,q6,engines] [--no-spark]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
FLOWPIPE = str(Path(sys.executable).with_name("flowpipe"))
WORKLOADS = ("csv", "q1", "q6", "q14")
FLOWS = {"csv": "csv_to_parquet", "q1": "tpch_q1", "q6": "tpch_q6", "q14": "tpch_q14"}
# What a query flow imports before it reads a byte, then an exit without teardown as `flowpipe`
# does: the fixed cost under every flow's wall time.
IMPORTS = (
    "import os, sys, time, flowpipe.cli, flowpipe.runtime, flowpipe.spec, flowpipe.stages.arrow_sources,"
    " flowpipe.stages.arrow_sinks, flowpipe.stages.sql, pyarrow.parquet\n"
)
IMPORTS_ONLY = IMPORTS + "os._exit(0)\n"
# `flowpipe run` (its arguments follow the script) in a process that has made those imports
# first: its work is then everything after the imports (checks, planning, the run), the span
# that DuckDB's work covers (opening the database, the query).
PRELOADED = IMPORTS + (
    "started, status = time.perf_counter(), 0\n"
    "try:\n    flowpipe.cli.cli.main(sys.argv[1:], prog_name='flowpipe')\n"
    "except SystemExit as end:\n    status = end.code\n"
    "print(f'work: {time.perf_counter() - started:.3f} s', file=sys.stderr)\n"
    "sys.stderr.flush()\nos._exit(status if isinstance(status, int) else 1)\n"
)

# engine -> how `flowpipe run FLOW` is started: the command before `run`, and options after FLOW
FLOWPIPE_RUNS: dict[str, tuple[list[str], list[str]]] = {
    "flowpipe": ([FLOWPIPE], []),
    "no-fuse": ([FLOWPIPE], ["--no-fuse"]),
    "preloaded": ([PYTHON, "-c", PRELOADED], []),
}
TABLES = {"csv": ("lineitem",), "q1": ("lineitem",), "q6": ("lineitem",), "q14": ("lineitem", "part")}


@dataclass
class Measure:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    work: list[float] = field(default_factory=list)  # seconds after start-up
    valid: str = ""


def run_measured(command: list[str], cwd: Path) -> tuple[float, float, float, float]:
    """Wall seconds, CPU seconds, peak RSS (MB) of the process tree of ``command``, and the
    seconds of its work after start-up (what it reports on stderr); raises on failure. CPU time
    is the figure least disturbed by other load on the machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    root = psutil.Process(proc.pid)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, errors = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {proc.returncode}:\n{errors[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    # flowpipe logs "job finished: … in 0.286 s"; the engine scripts print "work: 0.123 s".
    work = re.findall(r"(?:job finished: .* in|^work:) ([0-9.]+) s$", errors, re.MULTILINE)
    return wall, cpu, peak / 2**20, float(work[-1]) if work else math.nan


def generate(scale: float, data: Path) -> None:
    """lineitem and part as CSV (with header) and as Parquet, unless already there."""
    cli = str(Path(sys.executable).with_name("tpchgen-cli"))
    for kind, suffix in (("csv", ".csv"), ("parquet", ".parquet")):
        if all((data / f"{t}{suffix}").exists() for t in ("lineitem", "part")):
            continue
        started = time.perf_counter()
        subprocess.run(
            [
                cli,
                kind,
                "-s",
                str(scale),
                "-T",
                "lineitem",
                "-T",
                "part",
                "-o",
                str(data),
                "--overwrite",
                "-q",
            ],
            check=True,
        )
        print(f"generated {kind} at SF {scale} in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def flow_file(workload: str, data: Path, out: Path, engine: str) -> Path:
    """The flow of ``flows/`` with its data and output paths pointed at this run's."""
    text = (ROOT / "flows" / f"{FLOWS[workload]}.yaml").read_text()
    text = re.sub(r"data/tpch/sf1/(out/)?", lambda m: f"{out}/{engine}-" if m[1] else f"{data}/", text)
    path = out / f"{engine}-{FLOWS[workload]}.yaml"
    path.write_text(text)
    return path


def flow_sql(workload: str) -> str:
    flow = yaml.safe_load((ROOT / "flows" / f"{FLOWS[workload]}.yaml").read_text())
    return str(next(s["config"]["sql"] for s in flow["stages"] if "sql" in s.get("config", {})))


def engine_script(engine: str, workload: str, data: Path, out: Path) -> str:
    """Python source doing ``workload`` with ``engine``, writing ``out/<engine>-<workload>``."""
    if engine == "imports":
        return IMPORTS_ONLY
    target = str(out / f"{engine}-{workload}.parquet")
    tables = {t: str(data / f"{t}.parquet") for t in TABLES[workload]}
    csv = str(data / "lineitem.csv")
    if engine == "duckdb":
        if workload == "csv":
            query = f"SELECT * FROM read_csv('{csv}')"
        else:
            query = flow_sql(workload)
            for name, path in tables.items():
                query = query.replace(f"FROM {name}", f"FROM '{path}' AS {name}")
                query = query.replace(f"JOIN {name}", f"JOIN '{path}' AS {name}")
        copy = f"COPY ({query}) TO '{target}' (FORMAT parquet, COMPRESSION snappy)"
        return _timed("import duckdb\n", f"duckdb.connect().execute({copy!r})\n")
    if engine == "polars":
        if workload == "csv":
            return _timed(
                "import polars as pl\n",
                f"pl.scan_csv({csv!r}).sink_parquet({target!r}, compression='snappy')\n",
            )
        frames = ", ".join(f"{name}=pl.scan_parquet({path!r})" for name, path in tables.items())
        return _timed(
            "import polars as pl\n",
            f"ctx = pl.SQLContext({frames})\n"
            f"ctx.execute({flow_sql(workload)!r}).collect()"
            f".write_parquet({target!r}, compression='snappy')\n",
        )
    session = (
        "from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.master('local[2]').config('spark.driver.memory', '4g')"
        ".config('spark.ui.enabled', 'false').getOrCreate()\n"
    )
    if workload == "csv":
        read = f"df = spark.read.csv({csv!r}, header=True, inferSchema=True)\n"
        write = f"df.write.mode('overwrite').option('compression', 'snappy').parquet({target!r})\n"
        return _timed(session, read + write)
    views = "".join(
        f"spark.read.parquet({path!r}).createOrReplaceTempView({name!r})\n" for name, path in tables.items()
    )
    write = f"spark.sql({flow_sql(workload)!r}).write.mode('overwrite').parquet({target!r})\n"
    return _timed(session, views + write)


def _timed(setup: str, work: str) -> str:
    """``setup`` then ``work``, printing the seconds of the work alone to stderr."""
    return (
        f"import sys, time\n{setup}started = time.perf_counter()\n{work}"
        "print(f'work: {time.perf_counter() - started:.3f} s', file=sys.stderr)\n"
    )


def spark_available() -> str:
    """Empty when PySpark can run, else why not."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install pyspark)"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (java 17+)"
    return ""


def summary(path: Path) -> list[tuple[Any, ...]]:
    """Rows of a result (file or Spark directory), numbers as floats, in a stable order."""
    table = pq.read_table(path) if path.is_file() else pq.ParquetDataset(path).read()
    rows = [
        tuple(float(v) if isinstance(v, (Decimal, int, float)) else v for v in row.values())
        for row in table.to_pylist()
    ]
    return sorted(rows, key=repr)


def csv_summary(path: Path) -> tuple[Any, ...]:
    import duckdb

    source = f"'{path}'" if path.is_file() else f"'{path}/*.parquet'"
    row = (
        duckdb.connect()
        .sql(
            "SELECT count(*), sum(l_quantity)::DOUBLE, sum(l_extendedprice)::DOUBLE, "
            f"count(DISTINCT l_orderkey), min(l_comment), max(l_shipdate::VARCHAR) FROM {source}"
        )
        .fetchall()[0]
    )
    return tuple(row)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        # flow-pipe's validate_results.py tolerance; Spark rounds averages to 6 decimals.
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def validate(workload: str, engine: str, out: Path) -> str:
    if engine == "imports":
        return "no output"
    ours = out / (
        f"{engine}-{FLOWS[workload]}.parquet" if workload != "csv" else f"{engine}-lineitem.parquet"
    )
    if engine not in FLOWPIPE_RUNS:
        ours = out / f"{engine}-{workload}.parquet"
    reference = out / f"duckdb-{workload}.parquet"
    if workload == "csv":
        ok = same(csv_summary(ours), csv_summary(reference))
    else:
        mine, theirs = summary(ours), summary(reference)
        ok = len(mine) == len(theirs) and all(same(a, b) for a, b in zip(mine, theirs, strict=True))
    return "= DuckDB" if ok else "DIFFERS"


def benchmark(workloads: list[str], engines: list[str], data: Path, out: Path, repeat: int) -> dict[str, Any]:
    results: dict[str, dict[str, Measure]] = {w: {e: Measure() for e in engines} for w in workloads}
    for workload in workloads:
        flows = {engine: flow_file(workload, data, out, engine) for engine in FLOWPIPE_RUNS}
        for round_ in range(repeat):
            order = (
                engines[round_ % len(engines) :] + engines[: round_ % len(engines)]
            )  # rotate: fair to noise
            for engine in order:
                if engine in ("imports", "no-fuse", "preloaded") and workload == "csv":
                    continue  # the fixed cost matters for the short queries only; no query to fuse
                if engine in FLOWPIPE_RUNS:
                    before, after = FLOWPIPE_RUNS[engine]
                    command = [*before, "run", str(flows[engine]), "--log-level", "info", *after]
                else:
                    command = [PYTHON, "-c", engine_script(engine, workload, data, out)]
                wall, cpu, rss, work = run_measured(command, out)
                measure = results[workload][engine]
                measure.wall.append(wall)
                measure.work.append(work)
                measure.cpu.append(cpu)
                measure.rss_mb.append(rss)
                print(
                    f"{workload:4} {engine:9} {wall:7.2f} s {cpu:7.2f} cpu-s {rss:6.0f} MB {work:6.3f} s",
                    file=sys.stderr,
                )
        for engine in engines:
            if results[workload][engine].wall:
                results[workload][engine].valid = validate(workload, engine, out)
    report: dict[str, Any] = {}
    for workload, by_engine in results.items():
        size = sum(
            (data / f"{t}{'.csv' if workload == 'csv' else '.parquet'}").stat().st_size
            for t in TABLES[workload]
        )
        report[workload] = {
            engine: {
                "wall_s": statistics.median(m.wall),
                "cpu_s": statistics.median(m.cpu),
                "peak_rss_mb": statistics.median(m.rss_mb),
                "work_s": statistics.median(m.work),
                "mb_s": size / 2**20 / statistics.median(m.wall),
                "runs": m.wall,
                "result": m.valid,
            }
            for engine, m in by_engine.items()
            if m.wall
        }
    return report


def engines_in_process(data: Path, repeat: int) -> dict[str, dict[str, float]]:
    """DuckDB vs DataFusion on Arrow tables in memory, as sql_transform would run them."""
    import datafusion
    import duckdb

    lineitem = pq.read_table(data / "lineitem.parquet")
    part = pq.read_table(data / "part.parquet")
    batches = lineitem.select(["l_partkey", "l_quantity", "l_extendedprice", "l_discount"]).to_batches(65536)
    per_batch = "SELECT l_partkey, l_extendedprice * (1 - l_discount) AS rev FROM batch WHERE l_quantity < 24"

    def duck(sql: str, tables: dict[str, pa.Table]) -> None:
        con = duckdb.connect()
        for name, table in tables.items():
            con.register(name, table)
        con.sql(sql).to_arrow_table()

    def fusion(sql: str, tables: dict[str, pa.Table]) -> None:
        ctx = datafusion.SessionContext()
        for name, table in tables.items():
            ctx.register_record_batches(name, [table.to_batches()])
        ctx.sql(sql).to_arrow_table()

    def duck_batches() -> None:
        con = duckdb.connect()
        for batch in batches:
            con.register("batch", batch)
            con.sql(per_batch).to_arrow_table()

    def fusion_batches() -> None:
        ctx = datafusion.SessionContext()
        for batch in batches:
            ctx.register_record_batches("batch", [[batch]])
            ctx.sql(per_batch).to_arrow_table()
            ctx.deregister_table("batch")

    tables = {"lineitem": lineitem, "part": part}
    cases: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {}
    for name in ("q1", "q6", "q14"):
        sql = flow_sql(name)
        cases[f"{name} (whole input)"] = (partial(duck, sql, tables), partial(fusion, sql, tables))
    cases[f"filter+projection per 64 Ki-row batch ({len(batches)} batches)"] = (duck_batches, fusion_batches)
    timings: dict[str, dict[str, float]] = {}
    for case, (with_duck, with_fusion) in cases.items():
        runs: dict[str, list[float]] = {"duckdb": [], "datafusion": []}
        for _ in range(repeat):
            for engine, call in (("duckdb", with_duck), ("datafusion", with_fusion)):
                started = time.perf_counter()
                call()
                runs[engine].append(time.perf_counter() - started)
        timings[case] = {engine: statistics.median(values) for engine, values in runs.items()}
        print(f"{case}: {timings[case]}", file=sys.stderr)
    return timings


def markdown(report: dict[str, Any], engines: dict[str, dict[str, float]] | None) -> str:
    names = {
        "csv": "lineitem CSV -> Parquet (snappy)",
        "q1": "TPC-H Q1",
        "q6": "TPC-H Q6",
        "q14": "TPC-H Q14",
    }
    lines = [
        "| workload | engine | wall s | work s | CPU s | peak RSS MB | MB/s | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload, by_engine in report.items():
        for engine, m in by_engine.items():
            figures = (
                f"{m['wall_s']:.2f} | {m['work_s']:.2f} | {m['cpu_s']:.2f} | {m['peak_rss_mb']:.0f}"
                f" | {m['mb_s']:.0f}"
            )
            lines.append(f"| {names[workload]} | {engine} | {figures} | {m['result']} |")
    ratios = ["", "| ratio of medians, same run | wall | work | CPU |", "|---|---|---|---|"]
    for workload, by_engine in report.items():
        for ours in FLOWPIPE_RUNS:
            flow = by_engine.get(ours)
            for other in ("duckdb", "pyspark"):
                if flow and other in by_engine:
                    wall = flow["wall_s"] / by_engine[other]["wall_s"]
                    work = flow["work_s"] / by_engine[other]["work_s"]
                    cpu = flow["cpu_s"] / by_engine[other]["cpu_s"]
                    ratios.append(
                        f"| {names[workload]}: {ours} / {other} | {wall:.2f} | {work:.2f} | {cpu:.2f} |"
                    )
    lines += ratios
    if engines:
        lines += ["", "| sql_transform engine, in process | DuckDB s | DataFusion s |", "|---|---|---|"]
        lines += [f"| {case} | {t['duckdb']:.3f} | {t['datafusion']:.3f} |" for case, t in engines.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="TPC-H scale factor (default 1)")
    parser.add_argument("--data-dir", type=Path, default=Path("data/tpch"), help="where data goes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine and workload (median)")
    parser.add_argument(
        "--only", default=",".join((*WORKLOADS, "engines")), help="generate,csv,q1,q6,q14,engines"
    )
    parser.add_argument("--no-spark", action="store_true", help="leave PySpark out")
    parser.add_argument("--json", type=Path, help="also write the figures there")
    args = parser.parse_args()
    chosen = args.only.split(",")
    data = (args.data_dir / f"sf{args.scale:g}").resolve()
    data.mkdir(parents=True, exist_ok=True)
    generate(args.scale, data)
    out = data / "out"
    out.mkdir(exist_ok=True)
    engines = [*FLOWPIPE_RUNS, "imports", "duckdb", "polars"]
    why_not = "--no-spark given" if args.no_spark else spark_available()
    if why_not:
        print(f"PySpark skipped: {why_not}", file=sys.stderr)
    else:
        engines.append("pyspark")
    workloads = [w for w in WORKLOADS if w in chosen]
    if not workloads and "engines" not in chosen:
        return  # --only generate
    report = benchmark(workloads, engines, data, out, args.repeat) if workloads else {}
    timings = engines_in_process(data, args.repeat) if "engines" in chosen else None
    print(f"SF {args.scale:g}, {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB\n")
    print(markdown(report, timings))
    if args.json:
        args.json.write_text(
            json.dumps({"scale": args.scale, "report": report, "engines": timings}, indent=2)
        )


if __name__ == "__main__":
    main()
