"""A blocking query fed by a one-file Parquet source reads the file itself (``take_scans``):
the source does not run, and the result is the one the source's batches give."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from arrow_helpers import job, sample_table

from flowpipe.registry import build_registry
from flowpipe.runtime import FlowPlan, plan_flow
from flowpipe.spec import parse_flow_text
from flowpipe.testing import FlowResult, run_flow


def every_type_alike(rows: int = 300) -> pa.Table:
    """A column of each type DuckDB reads from Parquet as from Arrow, nulls included."""

    def col(values: list[object], type: pa.DataType) -> pa.Array:
        return pa.array([None if i % 7 == 3 else v for i, v in enumerate(values)], type)

    ints = list(range(rows))
    return pa.table(
        {
            "id": pa.array(ints, pa.int64()),
            **{f"i{bits}": col([i % 100 for i in ints], getattr(pa, f"int{bits}")()) for bits in (8, 16, 32)},
            **{
                f"u{bits}": col([i % 200 for i in ints], getattr(pa, f"uint{bits}")())
                for bits in (8, 16, 32, 64)
            },
            "f32": col([i / 8 for i in ints], pa.float32()),
            "f64": col([i / 3 for i in ints], pa.float64()),
            "flag": col([i % 2 == 0 for i in ints], pa.bool_()),
            "text": col([f"t{i}" for i in ints], pa.string()),
            "long_text": col([f"long {i}" for i in ints], pa.large_string()),
            "day": col([dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in ints], pa.date32()),
            "money": col([Decimal(i) / 100 for i in ints], pa.decimal128(12, 2)),
            "wide": col([Decimal(i) * 10**20 for i in ints], pa.decimal128(38, 0)),
            "at": col([dt.datetime(2021, 1, 1) + dt.timedelta(seconds=i) for i in ints], pa.timestamp("us")),
            "at_utc": col([i * 1_000_000 for i in ints], pa.timestamp("us", tz="UTC")),
            "at_ns_here": col([i * 10**9 + 1 for i in ints], pa.timestamp("ns", tz="Europe/Paris")),
            "clock": col([i * 1000 for i in ints], pa.time64("us")),
            "blob": col([bytes([i % 256]) * 3 for i in ints], pa.binary()),
            "long_blob": col([b"x" * (i % 5) for i in ints], pa.large_binary()),
            "fixed": col([i.to_bytes(4, "little") for i in ints], pa.binary(4)),
            "kind": pa.array([f"k{i % 3}" for i in ints]).dictionary_encode(),
            "tags": col([[i, i + 1] for i in ints], pa.list_(pa.int32())),
            "spans": col([[Decimal(i)] for i in ints], pa.large_list(pa.decimal128(10, 0))),
            "point": col(
                [{"x": i, "label": f"p{i}"} for i in ints],
                pa.struct([("x", pa.int16()), ("label", pa.string())]),
            ),
            "attrs": col([[("a", i)] for i in ints], pa.map_(pa.string(), pa.int64())),
        }
    )


def query_flow(source_config: str, sql: str, out: Path, mode: str = "MODE_AUTO") -> str:
    return job(
        f"""
  - {{name: read, type: parquet_arrow_source, output_queue: a, config: {source_config}}}
  - name: query
    type: sql_transform
    input_queues: [{{queue: a, table: t}}]
    output_queue: b
    config: {{sql: "{sql}", mode: {mode}}}
  - {{name: write, type: parquet_arrow_sink, input_queue: b, config: {{path: '{out}'}}}}
"""
    )


def plan(text: str, fuse: bool = True) -> FlowPlan:
    return plan_flow(parse_flow_text(text, "flow.yaml"), build_registry(), preflight=True, fuse=fuse)


def fused(text: str) -> dict[str, str | None]:
    return {stage.name: stage.fused_into for stage in plan(text).stages if stage.fused_into}


def both_ways(text: str, out: Path) -> tuple[pa.Table, pa.Table, list[FlowResult]]:
    """The result written with the file read by the query, then by the source."""
    results, tables = [], []
    for fuse in (True, False):
        result = run_flow(text, fuse=fuse)
        assert result.exit_code == 0, result.failure
        results.append(result)
        tables.append(pq.read_table(out))
    return tables[0], tables[1], results


def test_every_type_gives_the_same_result_both_ways(tmp_path: Path) -> None:
    pq.write_table(every_type_alike(), tmp_path / "in.parquet", row_group_size=64)
    out = tmp_path / "out.parquet"
    text = query_flow(f"{{path: '{tmp_path / 'in.parquet'}'}}", "SELECT * FROM t ORDER BY id", out)
    assert fused(text) == {"read": "query"}
    by_query, by_source, (fused_run, plain_run) = both_ways(text, out)
    assert by_query.equals(by_source) and by_query.num_rows == 300
    assert fused_run.records_out["read"] == 0 and plain_run.records_out["read"] > 0
    assert fused_run.records_in["query"] == 0 and fused_run.records_in["write"] == 1


def test_aggregate_over_chosen_columns_with_several_workers(tmp_path: Path) -> None:
    pq.write_table(sample_table(), tmp_path / "in.parquet", row_group_size=700)
    out = tmp_path / "out.parquet"
    sql = 'SELECT \\"group\\", count(*) AS n, sum(amount) AS total FROM t GROUP BY ALL ORDER BY 1'
    text = query_flow(f"{{path: '{tmp_path / 'in.parquet'}', columns: [amount, group]}}", sql, out)
    text = text.replace("name: query\n", "name: query\n    threads: 2\n")
    assert fused(text) == {"read": "query"}
    by_query, by_source, _ = both_ways(text, out)
    assert by_query.equals(by_source) and by_query.column("n").to_pylist() == [1250] * 4


def test_the_table_has_the_columns_the_source_reads_in_its_order(tmp_path: Path) -> None:
    source, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pq.write_table(sample_table(), source)
    text = query_flow(f"{{path: '{source}', columns: [price, id]}}", "SELECT * FROM t ORDER BY id", out)
    assert fused(text) == {"read": "query"}
    by_query, by_source, _ = both_ways(text, out)
    assert by_query.equals(by_source) and by_query.column_names == ["price", "id"]


@pytest.mark.parametrize(
    ("config", "sql", "mode", "why"),
    [
        ("{path: IN}", "SELECT id * 2 AS twice FROM t WHERE flag", "MODE_AUTO", "answered batch by batch"),
        ("{path: IN}", "SELECT count(*) FROM t", "MODE_STREAMING", "asked batch by batch"),
        ("{path: DIR}", "SELECT count(*) FROM t", "MODE_AUTO", "hive partitions"),
        ("{path: IN}", "SELECT count(*) FROM t", "MODE_AUTO", "a millisecond timestamp column"),
        ("{path: IN}", "SELECT count(*) FROM t", "MODE_AUTO", "a list of millisecond timestamps"),
        ("{path: IN}", "SELECT count(*) FROM t", "MODE_AUTO", "a fixed-size list"),
    ],
)
def test_source_runs_when_the_query_could_not_read_the_file_alike(
    tmp_path: Path, config: str, sql: str, mode: str, why: str
) -> None:
    table = sample_table(100)
    unlike = {
        "a millisecond timestamp column": pa.array(range(100), pa.timestamp("ms")),
        "a list of millisecond timestamps": pa.array([[i] for i in range(100)], pa.list_(pa.timestamp("ms"))),
        "a fixed-size list": pa.array([[i, i] for i in range(100)], pa.list_(pa.int8(), 2)),
    }
    if why in unlike:
        table = table.append_column("unlike", unlike[why])
    (tmp_path / "dir" / "flag=true").mkdir(parents=True)
    pq.write_table(table, tmp_path / "in.parquet")
    pq.write_table(table.drop_columns(["flag"]), tmp_path / "dir" / "flag=true" / "part.parquet")
    config = config.replace("IN", f"'{tmp_path / 'in.parquet'}'").replace("DIR", f"'{tmp_path / 'dir'}'")
    text = query_flow(config, sql, tmp_path / "out.parquet", mode)
    assert fused(text) == {}, why
    if why in unlike:  # leaving that column out makes the file readable alike
        narrowed = text.replace("config: {path:", "config: {columns: [id], path:", 1)
        assert fused(narrowed) == {"read": "query"}


def test_a_directory_of_files_alike(tmp_path: Path) -> None:
    table, out = sample_table(), tmp_path / "out.parquet"
    (tmp_path / "dir" / "later").mkdir(parents=True)
    pq.write_table(table.slice(0, 2000), tmp_path / "dir" / "a.parquet", row_group_size=500)
    pq.write_table(table.slice(2000), tmp_path / "dir" / "later" / "b.parquet", row_group_size=500)
    (tmp_path / "dir" / "_SUCCESS").write_text("")
    sql = "SELECT day, count(*) AS n, sum(amount) AS total FROM t GROUP BY day ORDER BY day"
    text = query_flow(f"{{path: '{tmp_path / 'dir'}', columns: [day, amount]}}", sql, out)
    assert fused(text) == {"read": "query"}
    by_query, by_source, _ = both_ways(text, out)
    assert by_query.equals(by_source) and sum(by_query.column("n").to_pylist()) == table.num_rows


def test_not_with_no_fuse_nor_with_two_sources_on_the_queue(tmp_path: Path) -> None:
    source, out = tmp_path / "in.parquet", tmp_path / "o.parquet"
    pq.write_table(sample_table(100), source)
    text = query_flow(f"{{path: '{source}'}}", "SELECT count(*) AS n FROM t", out)
    assert not any(stage.fused_into or stage.scans for stage in plan(text, fuse=False).stages)
    second = (
        f"  - {{name: again, type: parquet_arrow_source, output_queue: a, config: {{path: '{source}'}}}}\n"
    )
    twice = text.replace("  - name: query", second + "  - name: query")
    assert fused(twice) == {}
    result = run_flow(twice)
    assert result.exit_code == 0 and pq.read_table(out).column("n").to_pylist() == [200]


def test_a_join_of_a_file_and_a_stream(tmp_path: Path) -> None:
    """One input read from its file, the other from the batches of a CSV source."""
    facts, groups, out = tmp_path / "facts.parquet", tmp_path / "groups.csv", tmp_path / "out.parquet"
    pq.write_table(sample_table(1000), facts)
    pa_csv.write_csv(
        pa.table({"group": ["g0", "g1", "g2", "g3"], "label": ["zero", "one", "two", "three"]}), groups
    )
    sql = 'SELECT label, sum(price) AS total FROM f JOIN g USING (\\"group\\") GROUP BY label ORDER BY label'
    text = job(
        f"""
  - {{name: facts, type: parquet_arrow_source, output_queue: a, config: {{path: '{facts}'}}}}
  - {{name: groups, type: csv_arrow_source, output_queue: g, config: {{path: '{groups}'}}}}
  - name: joined
    type: sql_transform
    input_queues: [{{queue: a, table: f}}, {{queue: g, table: g}}]
    output_queue: b
    config: {{sql: "{sql}"}}
  - {{name: write, type: parquet_arrow_sink, input_queue: b, config: {{path: '{out}'}}}}
""",
        queues="[{name: a}, {name: g}, {name: b}]",
    )
    assert fused(text) == {"facts": "joined"}
    by_query, by_source, (fused_run, _) = both_ways(text, out)
    assert by_query.equals(by_source)
    assert by_query.column("label").to_pylist() == ["one", "three", "two", "zero"]
    assert fused_run.records_out["groups"] > 0


def test_an_error_while_reading_the_file_names_the_query_stage(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pq.write_table(sample_table(100), source)
    text = query_flow(
        f"{{path: '{source}'}}", "SELECT sum(CAST(name AS INTEGER)) FROM t", tmp_path / "o.parquet"
    )
    assert fused(text) == {"read": "query"}
    result = run_flow(text)
    assert result.exit_code == 1 and result.failure is not None and result.failure.stage_name == "query"
    assert "Could not convert string 'name-1' to INT32" in str(result.failure)


def test_an_empty_file_is_an_empty_table_both_ways(tmp_path: Path) -> None:
    """SQL's answer over an empty table: read by the query, or through a source whose schema is
    known before start and that sends no batch."""
    source, out = tmp_path / "empty.parquet", tmp_path / "out.parquet"
    pq.write_table(sample_table(0), source)
    text = query_flow(f"{{path: '{source}'}}", "SELECT sum(price) AS s, count(*) AS n FROM t", out)
    by_query, by_source, (_, plain) = both_ways(text, out)
    assert by_query.equals(by_source) and by_query.to_pylist() == [{"s": None, "n": 0}]
    assert plain.records_out["read"] == 0
