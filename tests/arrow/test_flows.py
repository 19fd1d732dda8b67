"""Arrow flows run as a user runs them: ``flowpipe run`` processes, signals, exit codes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.orc as pa_orc
import pyarrow.parquet as pa_pq
import pytest
from conftest import BIN, Run, eventually, tool_env

CSV_TO_PARQUET = """\
name: csv-to-parquet
execution: {{mode: EXECUTION_MODE_JOB}}
queues: [{{name: rows, capacity: 8}}]
stages:
  - name: reader
    type: csv_arrow_source
    threads: 2
    output_queue: rows
    config: {{path: {csv}, output_type: OUTPUT_TYPE_RECORD_BATCH, read_options: {{block_size: 65536}}}}
  - name: writer
    type: parquet_arrow_sink
    input_queue: rows
    config: {{path: {out}, common: {{compression: COMPRESSION_SNAPPY}}}}
"""

# A source that never ends: one small batch of consecutive ids every few milliseconds. Once it
# has sent 10 batches it creates the file $TICKER_MARK (the tests wait for that, not for time).
TICKER = """\
import os
from pathlib import Path

import pyarrow as pa
from flowpipe import Batch, Source, StageConfig

class Ticker(Source[StageConfig]):
    def open(self) -> None:
        self.next = 0

    def produce_batch(self, limit: int) -> Batch:
        if self.context.wait(0.002):
            return Batch([])
        ids = pa.array(range(self.next, self.next + 100), pa.int64())
        self.next += 100
        if self.next == 1000:
            Path(os.environ["TICKER_MARK"]).touch()
        batch = pa.record_batch({"id": ids, "text": pa.array([str(i) for i in ids.to_pylist()])})
        return Batch([batch], nbytes=batch.nbytes)
"""

STREAMING = """\
name: forever
execution: {{mode: EXECUTION_MODE_STREAMING}}
queues: [{{name: a, capacity: 8}}, {{name: b, capacity: 8}}, {{name: c, capacity: 8}}]
stages:
  - {{name: t1, type: ticker, output_queue: a}}
  - {{name: t2, type: ticker, output_queue: b}}
  - {{name: t3, type: ticker, output_queue: c}}
  - {{name: parquet, type: parquet_arrow_sink, input_queue: a, config: {{path: {dir}/out.parquet}}}}
  - {{name: orc, type: orc_arrow_sink, input_queue: b, config: {{path: {dir}/out.orc}}}}
  - {{name: csv, type: csv_arrow_sink, input_queue: c, config: {{path: {dir}/out.csv.gz}}}}
"""


def test_csv_to_parquet_flow_with_two_reader_threads(flowpipe: Run, tmp_path: Path) -> None:
    table = pa.table({"id": list(range(50_000)), "x": [i / 3 for i in range(50_000)]})
    pa_csv.write_csv(table, tmp_path / "in.csv")
    flow = tmp_path / "f.yaml"
    flow.write_text(CSV_TO_PARQUET.format(csv=tmp_path / "in.csv", out=tmp_path / "out.parquet"))
    done = flowpipe("run", flow)
    assert done.returncode == 0, done.stderr
    assert pa_pq.read_table(tmp_path / "out.parquet").sort_by("id").equals(table)


def run_ticking_until_sigterm(tmp_path: Path, flow_text: str) -> str:
    """Run ``flow_text`` (its ``ticker`` stages available) until the tickers have sent 10
    batches, then SIGTERM it; returns its log once it exited 0."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "stage_ticker.py").write_text(TICKER)
    flow = tmp_path / "f.yaml"
    flow.write_text(flow_text)
    mark = tmp_path / "ticked"
    env = tool_env(FLOW_PIPE_PLUGIN_PATH=str(tmp_path / "plugins"), TICKER_MARK=str(mark))
    with subprocess.Popen(
        [str(BIN / "flowpipe"), "run", str(flow)], stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        eventually(mark.exists, 30, "the tickers to send 10 batches")
        proc.send_signal(signal.SIGTERM)
        _, errors = proc.communicate(timeout=30)
    assert proc.returncode == 0, errors
    return errors


def test_sink_files_are_valid_after_sigterm(tmp_path: Path) -> None:
    run_ticking_until_sigterm(tmp_path, STREAMING.format(dir=tmp_path))
    tables = [
        pa_pq.read_table(tmp_path / "out.parquet"),
        pa_orc.read_table(tmp_path / "out.orc"),
        pa_csv.read_csv(tmp_path / "out.csv.gz"),
    ]
    for table in tables:  # complete files, holding every id from 0 on, each once
        assert table.num_rows >= 100
        assert table.column("id").to_pylist() == list(range(table.num_rows))


def test_sigterm_sends_a_blocking_query_result_over_what_was_read(tmp_path: Path) -> None:
    flow = f"""\
name: counting
execution: {{mode: EXECUTION_MODE_STREAMING}}
queues: [{{name: a, capacity: 8}}, {{name: b, capacity: 8}}]
stages:
  - {{name: ticks, type: ticker, output_queue: a}}
  - name: count
    type: sql_transform
    input_queue: a
    output_queue: b
    config: {{sql: "SELECT count(*) AS n, count(DISTINCT id) AS d, max(id) AS top FROM a"}}
  - {{name: out, type: csv_arrow_sink, input_queue: b, config: {{path: {tmp_path}/count.csv}}}}
"""
    log = run_ticking_until_sigterm(tmp_path, flow)
    batches = int(re.search(r"stage 'ticks': 0 in, (\d+) out", log)[1])  # type: ignore[index]
    (row,) = pa_csv.read_csv(tmp_path / "count.csv").to_pylist()
    assert batches >= 10 and row == {"n": batches * 100, "d": batches * 100, "top": batches * 100 - 1}


def test_missing_input_exits_2_before_start(flowpipe: Run, tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text(CSV_TO_PARQUET.format(csv=tmp_path / "missing.csv", out=tmp_path / "out.parquet"))
    done = flowpipe("run", flow)
    assert done.returncode == 2
    missing = tmp_path / "missing.csv"
    problem = f"stage 'reader' (csv_arrow_source): config.path: no such file or directory: {missing}"
    assert problem in done.stderr and "starting flow" not in done.stderr
    assert flowpipe("validate", flow).returncode == 0  # the data may live on another machine


def test_malformed_csv_exits_1_naming_stage_file_and_line(flowpipe: Run, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,x\n1,2\n3\n")
    flow = tmp_path / "f.yaml"
    flow.write_text(CSV_TO_PARQUET.format(csv=tmp_path / "in.csv", out=tmp_path / "out.parquet"))
    done = flowpipe("run", flow)
    assert done.returncode == 1
    assert "stage 'reader' (csv_arrow_source) failed" in done.stderr
    assert f"{tmp_path / 'in.csv'}:3: malformed CSV row: expected 2 columns, got 1" in done.stderr
    # A malformed row that is not UTF-8: pyarrow cannot decode it for the stage, and used to
    # print a traceback beside the error.
    (tmp_path / "in.csv").write_bytes(b"id,x\n1,2\n3,caf\xe9,4\n")
    done = flowpipe("run", flow)
    assert done.returncode == 1
    assert f"{tmp_path / 'in.csv'}:3: CSV parse error: Expected 2 columns, got 3" in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


@pytest.mark.parametrize(("missing", "module"), [("pyarrow", "arrow_sources"), ("duckdb", "sql")])
def test_without_the_extra_the_error_says_how_to_install(missing: str, module: str) -> None:
    code = f"import sys; sys.modules[{missing!r}] = None; import flowpipe.stages.{module}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    hint = "ImportError: the Arrow stages need pyarrow and duckdb: pip install 'flow-pipe[arrow]'"
    assert hint in done.stderr
