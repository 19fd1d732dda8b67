# ruff: noqa: I001  (pyarrow and duckdb after .arrow, whose import error says how to install them)
"""``sql_transform`` (alias ``datafusion_sql_transform``, the name flow-pipe's benchmarks use):
SQL over the Arrow data arriving on the stage's inputs, run by an embedded DuckDB.

DuckDB and DataFusion were measured (benchmarks/README.md): a tie on TPC-H aggregates over Arrow
tables, DataFusion faster on the Q14 join, DuckDB per batch. DuckDB was chosen for its physical
plan (which tells streaming from blocking queries, below), its data-free SQL validation and its
binder errors.

Each input is a table: the ``table`` of its ``input_queues`` entry, else the queue's name (or
``config.table``). A query runs in one of two ways:

- **streaming**: on each incoming batch alone, its result sent on at once. Right for queries
  that look at one row at a time: filters, projections, computed columns.
- **blocking**: once, in ``finish()``, over the whole input; needed by aggregates, joins,
  ORDER BY, DISTINCT, LIMIT, window functions. The input is held in memory as Arrow data
  (read only the columns you need at the source). With ``threads: N`` the N workers collect
  into one shared input and the last one to finish runs the query once.

``mode: MODE_AUTO`` (default) picks streaming when DuckDB's plan of the query over the first
batch holds only scans, filters and projections, blocking otherwise (and for several inputs). ``filter`` and
``columns`` build a streaming filter/projection without writing a query.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from flowpipe import Batch, StageConfig, Transform

from ._options import ProtoEnum, conflict
from .arrow import INSTALL_HINT, emit, record_batches

import pyarrow as pa

try:
    import duckdb
except ImportError as error:
    raise ImportError(INSTALL_HINT) from error

__all__ = ["SqlTransform"]


class Mode(ProtoEnum):
    __prefix__ = "mode_"
    AUTO = "auto"
    STREAMING = "streaming"
    BLOCKING = "blocking"


class SqlConfig(StageConfig):
    sql: str = Field("", description="one SELECT over the input tables (or use filter/columns)")
    filter: str = Field("", description="a SQL condition: keep the rows where it holds (streaming)")
    columns: list[str] = Field([], description="SQL expressions to output, e.g. 'a * 2 AS b' (streaming)")
    table: str = Field("", description="name of a single input's table (default: its queue's name)")
    mode: Mode = Field(Mode.AUTO, description="MODE_AUTO, MODE_STREAMING (per batch) or MODE_BLOCKING")

    @field_validator("sql")
    @classmethod
    def _one_select(cls, value: str) -> str:
        if value.strip():
            _check_syntax(value)
        return value

    @model_validator(mode="after")
    def _query(self) -> SqlConfig:
        if self.sql.strip() and (self.filter or self.columns):
            raise conflict(
                ("filter" if self.filter else "columns",), "give either sql or filter/columns", None
            )
        if not self.sql.strip() and not (self.filter or self.columns):
            raise conflict(("sql",), "a query is required: sql, or filter and/or columns", None)
        if self.mode is Mode.BLOCKING and not self.sql.strip():
            raise conflict(("mode",), "filter/columns run per batch: MODE_BLOCKING needs sql", self.mode.name)
        return self

    def query(self, table: str) -> str:
        if self.sql.strip():
            return self.sql
        where = f" WHERE {self.filter}" if self.filter else ""
        return f'SELECT {", ".join(self.columns) or "*"} FROM "{table}"{where}'


def _check_syntax(sql: str) -> None:
    try:
        statements = duckdb.connect().extract_statements(sql)
    except duckdb.Error as error:
        raise ValueError(str(error)) from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ValueError(f"expected one SELECT statement, got {len(statements)} statement(s)")


# Physical operators that map each row on its own; any other (aggregate, join, sort, limit,
# window…) makes a query blocking.
_ROW_BY_ROW = frozenset({"PROJECTION", "FILTER", "PYTHON_ARROW_SCAN", "ARROW_SCAN", "TABLE_SCAN"})


def _operators(plan: Any) -> Iterator[str]:
    for node in plan:
        yield node["name"]
        yield from _operators(node.get("children", ()))


class _Collected:
    """The whole input of a blocking query, shared by the stage's workers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tables: dict[str, list[pa.RecordBatch]] = {}
        self.finished = 0


# Blocking inputs by (flow, stage): the workers of one stage share one.
_SHARED: dict[tuple[str, str], _Collected] = {}
_SHARED_LOCK = threading.Lock()


class SqlTransform(Transform[SqlConfig]):
    """Runs SQL (DuckDB) over Arrow data, per batch or over the whole input.

    Per batch for filters and projections, over the whole input for aggregates, joins, sorts:
    see the module docs."""

    named_inputs: ClassVar[bool] = True

    def open(self) -> None:
        context = self.context
        self._key = (context.flow_name, context.stage_name)
        self._db = duckdb.connect()
        self._streaming: bool | None = None  # decided on the first batch (MODE_AUTO)
        self._bound = False
        self._finished = False
        with _SHARED_LOCK:
            self._shared = _SHARED.setdefault(self._key, _Collected())

    def _table(self, batch: Batch) -> str:
        return self.config.table or batch.input or "input"

    def process_batch(self, batch: Batch) -> Batch:
        table = self._table(batch)
        parts = [part for record in batch.data for part in record_batches(record)]
        if not parts:
            return Batch([])
        if self._streaming is None:
            self._streaming = self._decide(table, parts[0])
        if self._streaming:
            self._db.register(table, pa.Table.from_batches(parts))
            result = self._run(self.config.query(table))
            return emit([result]) if result.num_rows else Batch([])
        shared = self._shared
        with shared.lock:
            first = table not in shared.tables
            shared.tables.setdefault(table, []).extend(parts)
        if first and not self._bound:  # a query that cannot bind fails now, not at the end
            self._db.register(table, parts[0])
            self._bound = self._plan() is not None
        return Batch([])

    def _decide(self, table: str, first: pa.RecordBatch) -> bool:
        """Streaming or blocking, from DuckDB's plan of the query over the first batch."""
        config = self.config
        if not config.sql.strip():
            return True
        self._db.register(table, first)
        plan = self._plan()
        self._bound = plan is not None
        if config.mode is not Mode.AUTO:
            if config.mode is Mode.STREAMING and plan is None:
                raise ValueError(f"{self.context.stage_name}: MODE_STREAMING queries read one input only")
            return config.mode is Mode.STREAMING
        return plan is not None and all(name in _ROW_BY_ROW for name in _operators(plan))

    def _plan(self) -> Any:
        """The query's physical plan, or None while an input it reads has not been seen."""
        try:
            text = self._db.sql(f"EXPLAIN (FORMAT json) {self.config.sql}").fetchall()[0][1]
        except duckdb.CatalogException:
            return None
        except duckdb.Error as error:
            raise ValueError(f"{self.context.stage_name}: {error}") from error
        return json.loads(text)

    def _run(self, query: str) -> pa.Table:
        try:
            result: pa.Table = self._db.sql(query).to_arrow_table()
        except duckdb.Error as error:
            raise ValueError(f"{self.context.stage_name}: {error}") from error
        return result

    def finish(self) -> Batch | None:
        self._finished = True
        shared = self._shared
        with shared.lock:
            shared.finished += 1
            last = shared.finished == self.context.worker_count
        if last:
            with _SHARED_LOCK:
                _SHARED.pop(self._key, None)
        # Only the last worker to finish has every batch: it alone runs a blocking query.
        if self._streaming or not last or not shared.tables:
            return None
        for table, parts in shared.tables.items():
            self._db.register(table, pa.Table.from_batches(parts))
        return emit([self._run(self.config.sql)])

    def close(self) -> None:
        if not self._finished:  # stopped or failed: drop what was read
            with _SHARED_LOCK:
                _SHARED.pop(self._key, None)
        self._db.close()
