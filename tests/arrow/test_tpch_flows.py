"""The example TPC-H flows of ``flows/``, run on a small generated lineitem and part: each
result equals DuckDB's answer to the same SQL over the same files."""

from __future__ import annotations

import datetime as dt
import math
import random
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_pq
import pytest
import yaml

from flowpipe.testing import run_flow

FLOWS = Path(__file__).resolve().parents[2] / "flows"


def tpch_like(rows: int, parts: int) -> tuple[pa.Table, pa.Table]:
    pick = random.Random(5)
    money = pa.decimal128(15, 2)
    day = [dt.date(1992, 1, 1) + dt.timedelta(days=pick.randrange(2500)) for _ in range(rows)]
    lineitem = pa.table(
        {
            "l_orderkey": pa.array(range(rows), pa.int64()),
            "l_partkey": pa.array([pick.randrange(1, parts + 1) for _ in range(rows)], pa.int64()),
            "l_quantity": pa.array([Decimal(pick.randrange(1, 51)) for _ in range(rows)], money),
            "l_extendedprice": pa.array(
                [Decimal(pick.randrange(100_000, 10_000_000)) / 100 for _ in range(rows)], money
            ),
            "l_discount": pa.array([Decimal(pick.randrange(11)) / 100 for _ in range(rows)], money),
            "l_tax": pa.array([Decimal(pick.randrange(9)) / 100 for _ in range(rows)], money),
            "l_returnflag": pa.array([pick.choice("ANR") for _ in range(rows)]),
            "l_linestatus": pa.array([pick.choice("OF") for _ in range(rows)]),
            "l_shipdate": pa.array(day, pa.date32()),
            "l_comment": pa.array([f"comment {i}" for i in range(rows)]),
        }
    )
    kinds = ["PROMO BRUSHED TIN", "STANDARD POLISHED COPPER", "ECONOMY ANODIZED STEEL"]
    part = pa.table(
        {
            "p_partkey": pa.array(range(1, parts + 1), pa.int64()),
            "p_type": [pick.choice(kinds) for _ in range(parts)],
        }
    )
    return lineitem, part


@pytest.fixture
def tpch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``data/tpch/sf1`` under the test's working directory, as the flows expect."""
    data = tmp_path / "data" / "tpch" / "sf1"
    (data / "out").mkdir(parents=True)
    lineitem, part = tpch_like(20_000, 1_000)
    pa_pq.write_table(lineitem, data / "lineitem.parquet", row_group_size=3_000)
    pa_pq.write_table(part, data / "part.parquet", row_group_size=500)
    pa_csv.write_csv(lineitem, data / "lineitem.csv")
    monkeypatch.chdir(tmp_path)
    return data


def values(table: pa.Table) -> list[object]:
    """Every value, row by row (rows sorted), decimals as floats."""
    rows = sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)
    return [float(v) if isinstance(v, Decimal) else v for row in rows for v in row]


def close(a: object, b: object) -> bool:
    """Equal, floats to 1e-9: sums over batches in another order may differ in the last bits."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


@pytest.mark.parametrize("fuse", [True, False], ids=["query-reads-files", "sources-run"])
@pytest.mark.parametrize("name", ["tpch_q1", "tpch_q6", "tpch_q14"])
def test_query_flows_equal_duckdb(tpch: Path, name: str, fuse: bool) -> None:
    flow = FLOWS / f"{name}.yaml"
    result = run_flow(flow, fuse=fuse)
    assert result.exit_code == 0, result.failure
    sources = [stage for stage in ("lineitem_reader", "part_reader") if stage in result.records_out]
    assert sources and all((result.records_out[stage] > 0) is not fuse for stage in sources)
    sql = next(
        s["config"]["sql"] for s in yaml.safe_load(flow.read_text())["stages"] if "sql" in s.get("config", {})
    )
    con = duckdb.connect()
    for table in ("lineitem", "part"):
        con.register(table, pa_pq.read_table(tpch / f"{table}.parquet"))
    expected = con.sql(sql).to_arrow_table()
    got = pa_pq.read_table(tpch / "out" / f"{name}.parquet")
    assert got.schema == expected.schema
    mine, theirs = values(got), values(expected)
    assert len(mine) == len(theirs) and all(close(a, b) for a, b in zip(mine, theirs, strict=True))


def test_csv_to_parquet_flow(tpch: Path) -> None:
    result = run_flow(FLOWS / "csv_to_parquet.yaml")
    assert result.exit_code == 0, result.failure
    written = pa_pq.read_table(tpch / "out" / "lineitem.parquet")
    source = pa_csv.read_csv(tpch / "lineitem.csv")
    assert written.num_rows == source.num_rows and written.schema == source.schema
    assert written.sort_by("l_orderkey").equals(source.sort_by("l_orderkey"))
    assert (
        pa_pq.ParquetFile(tpch / "out" / "lineitem.parquet").metadata.row_group(0).column(0).compression
        == "SNAPPY"
    )
