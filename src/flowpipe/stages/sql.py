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
- **blocking**: once over the whole input, its result sent on when the input ends; needed by
  aggregates, joins, ORDER BY, DISTINCT, LIMIT, window functions. The query starts with the
  first batches and reads the input as a stream while it arrives (see ``_BlockingQuery``): an
  aggregate holds its running state, not the input; a sort or a join holds what DuckDB needs.
  With ``threads: N`` the N workers feed one query.

``mode: MODE_AUTO`` (default) picks streaming when DuckDB's plan of the query over the first
batch holds only scans, filters and projections, blocking otherwise (and for several inputs). ``filter`` and
``columns`` build a streaming filter/projection without writing a query.

A blocking query whose input comes straight from a ``parquet_arrow_source`` of known schema
reads the files itself (``take_scans``): DuckDB then reads only the row groups and columns the
query needs, on all cores, and the source does not run (``flowpipe run --no-fuse`` keeps it).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from flowpipe import Batch, FileScan, StageConfig, Transform

from ._options import ProtoEnum, conflict
from .arrow import INSTALL_HINT, conform, emit, record_batches

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
        if not self.sql.strip():
            self._check_filter_and_columns()
        return self

    def query(self, table: str) -> str:
        if self.sql.strip():
            return self.sql
        where = f" WHERE ({self.filter})" if self.filter else ""
        return f"SELECT {', '.join(self.columns) or '*'} FROM {_quoted(table)}{where}"

    def _check_filter_and_columns(self) -> None:
        """``filter`` must be one condition and each of ``columns`` one expression: the query
        they make is then one plain SELECT over the input, never a second statement or a
        UNION smuggled in."""
        key = "filter" if self.filter else "columns"
        query = self.query("__input")
        try:
            _check_syntax(query)
        except ValueError as error:
            raise conflict((key,), f"{error}, in the query it makes: {query}", None) from None
        node = _parsed(query)["statements"][0]["node"]
        simple = (
            node["type"] == "SELECT_NODE"
            and node["from_table"].get("table_name") == "__input"
            and len(node["select_list"]) == max(1, len(self.columns))
            and not (node["modifiers"] or node["group_expressions"] or node["cte_map"]["map"])
            and node["having"] is None
            and node["qualify"] is None
        )
        if not simple:
            raise conflict(
                (key,),
                "filter must be one SQL condition and each columns entry one expression"
                " (for anything else, write the whole query as sql)",
                None,
            )


@functools.cache
def _database() -> duckdb.DuckDBPyConnection:
    """The process's one DuckDB database. Opening a database takes ~40 ms; a cursor on it is a
    connection of its own (its own registered tables, interruptible alone) and costs nothing."""
    return duckdb.connect()


def _check_syntax(sql: str) -> None:
    try:
        statements = _database().cursor().extract_statements(sql)
    except duckdb.Error as error:
        raise ValueError(_one_line(error)) from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ValueError(f"expected one SELECT statement, got {len(statements)} statement(s)")


def _one_line(error: duckdb.Error) -> str:
    """DuckDB's message on one line: its picture of the query with a caret under the fault
    becomes "(at line L, column C of the query)"."""
    lines = str(error).splitlines()
    text: list[str] = []
    for index, line in enumerate(lines):
        shown = re.match(r"LINE (\d+): ", line)
        if shown is None:
            text += [line.strip()] if line.strip() else []
            continue
        caret = lines[index + 1].find("^") if index + 1 < len(lines) else -1
        column = caret - shown.end() + 1
        text = text or ["error"]
        # DuckDB cuts long lines to a window around the fault, starting it with "...".
        exact = caret >= 0 and not line[shown.end() :].startswith("...")
        text[-1] += f" (at line {shown[1]}{f', column {column}' if exact else ''} of the query)"
        break
    return " ".join(text)


# Physical operators that map each row on its own; any other (aggregate, join, sort, limit,
# window…) makes a query blocking.
_ROW_BY_ROW = frozenset({"PROJECTION", "FILTER", "PYTHON_ARROW_SCAN", "ARROW_SCAN", "TABLE_SCAN"})


def _nodes(plan: Any) -> Iterator[Any]:
    for node in plan:
        yield node
        yield from _nodes(node.get("children", ()))


def _row_by_row(plan: Any) -> bool:
    return all(node["name"] in _ROW_BY_ROW for node in _nodes(plan))


def _read_twice(sql: str, schemas: Mapping[str, pa.Schema], scans: Mapping[str, FileScan]) -> set[str]:
    """The tables of ``schemas`` that ``sql`` reads, if it scans any of them more than once (a
    self-join, a subquery over its own input): a stream can be scanned once only. Counted in
    DuckDB's plan over empty tables of theirs (and the ``scans``' views); the plan does not say
    which table a scan reads, so more scans than tables means storing every one the query
    names. Nothing if the query does not bind: running it will say why."""
    named = {table for table in _base_tables(sql) if table in schemas} if schemas else set()
    if not named:
        return named
    db = _database().cursor()
    try:
        for table, schema in schemas.items():
            db.register(table, schema.empty_table())
        for table, scan in scans.items():
            db.execute(_view(table, scan))
        scanned = sum(node["name"] == "PYTHON_ARROW_SCAN" for node in _nodes(_explain(db, sql)))
    except duckdb.Error:
        return set()
    finally:
        db.close()
    return named if scanned > len(named) else set()


def _parsed(sql: str) -> Any:
    """DuckDB's parse tree of ``sql`` (its ``json_serialize_sql``)."""
    with _database().cursor() as db:
        row = db.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    assert row is not None
    return json.loads(row[0])


def _base_tables(sql: str) -> set[str]:
    """The names ``sql`` reads as tables (its inputs, and any CTE it reads)."""
    tree = _parsed(sql)
    names: set[str] = set()
    stack: list[Any] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "BASE_TABLE":
                names.add(item["table_name"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return names


def _explain(db: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """DuckDB's physical plan of ``sql`` (binding it first: errors show the query as written)."""
    db.sql(sql)
    return json.loads(db.sql(f"EXPLAIN (FORMAT json) {sql}").fetchall()[0][1])


@contextlib.contextmanager
def _over_empty(config: SqlConfig, inputs: Mapping[str, pa.Schema]) -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor where each input is an empty table of its schema: binding a query costs no data."""
    if config.table:  # a single input's table named in the config
        inputs = {config.table: next(iter(inputs.values()))}
    db = _database().cursor()
    try:
        for table, schema in inputs.items():
            db.register(table, schema.empty_table())
        yield db
    finally:
        db.close()


def _reads_alike(type: pa.DataType) -> bool:
    """True for the Arrow types DuckDB reads from a Parquet file as it reads them from the
    batches pyarrow decodes from it, so that a query gives the same result, types included.
    Measured unlike: timestamps in s or ms (DuckDB reads them as µs), durations, fixed-size
    lists; float16 and decimal256 DuckDB does not take from Arrow at all."""
    types = pa.types
    if types.is_timestamp(type):
        return type.unit in ("us", "ns")
    if types.is_list(type) or types.is_large_list(type) or types.is_map(type) or types.is_struct(type):
        return all(_reads_alike(type.field(index).type) for index in range(type.num_fields))
    if types.is_dictionary(type):
        return _reads_alike(type.value_type)
    return any(is_alike(type) for is_alike in _ALIKE)


_ALIKE = (
    pa.types.is_null,
    pa.types.is_boolean,
    pa.types.is_integer,
    pa.types.is_float32,
    pa.types.is_float64,
    pa.types.is_decimal128,
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_string_view,
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_fixed_size_binary,
    pa.types.is_date32,
    pa.types.is_time,
)


_STREAM = "__flowpipe_stream_"  # the name a stream has while DuckDB stores it as its table


def _view(table: str, scan: FileScan) -> str:
    """SQL making ``table`` the scan's files, as the source would have emitted them."""
    columns = ", ".join(_quoted(name) for name in scan.schema.names)
    files = ", ".join("'" + path.replace("'", "''") + "'" for path in scan.paths)
    return f"CREATE TEMP VIEW {_quoted(table)} AS SELECT {columns} FROM read_parquet([{files}])"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Feed:
    """One input table's batches on their way to the query, in order.

    ``put`` waits while ``limit`` batches wait (0: no limit). Once the query stops reading
    (it ended early, failed or was stopped) the feed drops what it gets, so no worker waits on
    it forever."""

    def __init__(self, parts: list[pa.RecordBatch], limit: int) -> None:
        self._parts = collections.deque(parts)
        self._limit = limit
        self._closed = self._dropping = False
        self._changed = threading.Condition()
        self.error: Exception | None = None  # raised while DuckDB read the feed

    def put(self, part: pa.RecordBatch) -> None:
        with self._changed:
            while self._limit and len(self._parts) >= self._limit and not self._dropping:
                self._changed.wait()
            if not self._dropping:
                self._parts.append(part)
                self._changed.notify_all()

    def get(self) -> pa.RecordBatch | None:
        """The next batch, None once the feed is closed and empty."""
        with self._changed:
            while not self._parts and not self._closed:
                self._changed.wait()
            part = self._parts.popleft() if self._parts else None
            self._changed.notify_all()
            return part

    def close(self) -> None:
        """No more batches will come."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def drop(self) -> None:
        """The query reads no more: discard what waits and what comes."""
        with self._changed:
            self._dropping = True
            self._parts.clear()
            self._changed.notify_all()


class _BlockingQuery:
    """A blocking query, run once on its own thread over the stage's whole input as it arrives.

    Each input table is an Arrow stream that DuckDB pulls from a feed the workers fill, so DuckDB
    aggregates while the sources still read and holds its own state (sums, hash tables), not the
    input. The query starts once every input's schema is known: before start (``flowpipe run``
    learns it from the stages feeding it), else from its first batch. An input that sends
    nothing is then an empty table. One input's feed is bounded: a slow query holds the flow
    back. Several inputs' feeds are not, because DuckDB picks the order it reads them in (a join
    builds one side before it probes the other). The workers of a stage (``threads: N``) share
    one query. Tables read from files (``scans``) are DuckDB views over them."""

    def __init__(
        self,
        sql: str,
        tables: tuple[str, ...],
        stage: str,
        scans: Mapping[str, FileScan],
        schemas: Mapping[str, pa.Schema],
    ) -> None:
        """``tables``: the inputs read from batches, ``schemas`` those of them whose schema is
        known before the first batch; ``scans``: the tables read from files, by table name."""
        self.lock = threading.Lock()
        self._sql, self._tables, self._stage, self._scans = sql, tables, stage, scans
        self._schemas = schemas
        self._pending: dict[str, list[pa.RecordBatch]] = {}
        self._feeds: dict[str, _Feed] = {}
        self._collected: set[str] = set()  # tables the query reads twice: stored before it runs
        self._db: duckdb.DuckDBPyConnection | None = None
        self._thread: threading.Thread | None = None
        self._result: pa.Table | None = None
        self._error: BaseException | None = None
        self._aborted = False
        self.finished = 0  # workers done

    def feed(self, table: str, parts: list[pa.RecordBatch]) -> None:
        with self.lock:
            if self._thread is None:
                self._pending.setdefault(table, []).extend(parts)
                if not self._unknown():
                    self._start()
                return
            feed = self._feeds.get(table)
        self._raise_error()
        if feed is None:
            raise ValueError(f"input {table!r} is not one of {', '.join(self._tables)}")
        for part in parts:
            feed.put(part)

    def begin(self) -> None:
        """Start now if every table's schema is known (a view over files needs none)."""
        with self.lock:
            if self._thread is None and (self._tables or self._scans) and not self._unknown():
                self._start()

    def _unknown(self) -> list[str]:
        """The tables whose schema is still unknown: not known before start, no batch yet."""
        return [t for t in self._tables if t not in self._pending and t not in self._schemas]

    def _start(self) -> None:
        """Register each table as a stream (or view) and start the query (lock held)."""
        self._db = db = _database().cursor()
        tables = dict.fromkeys([*self._tables, *self._pending])  # the declared ones, and any that came
        limit = 8 if len(tables) == 1 else 0
        schemas = {t: self._schemas.get(t) or self._pending[t][0].schema for t in tables}
        self._collected = _read_twice(self._sql, schemas, self._scans)
        for table, schema in schemas.items():
            self._feeds[table] = feed = _Feed(self._pending.get(table, []), limit)
            stream = pa.RecordBatchReader.from_batches(schema, _stream(table, schema, feed))
            db.register(_STREAM + table if table in self._collected else table, stream)
        for table, scan in self._scans.items():
            db.execute(_view(table, scan))
        self._pending = {}
        self._thread = threading.Thread(target=self._run, name=f"{self._stage}-sql", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._db is not None
        try:
            for table in self._collected:  # DuckDB stores it (spilling to disk) to read it again
                self._db.execute(f"CREATE TEMP TABLE {_quoted(table)} AS FROM {_quoted(_STREAM + table)}")
            self._result = self._db.sql(self._sql).to_arrow_table()
        except BaseException as error:
            # An input's own error, not DuckDB's wrapping of it (which carries its traceback).
            self._error = next((f.error for f in self._feeds.values() if f.error), error)
        for feed in self._feeds.values():  # it may have ended before its input (LIMIT, a failure)
            feed.drop()

    def _raise_error(self) -> None:
        if self._error is not None and not self._aborted:
            text = _one_line(self._error) if isinstance(self._error, duckdb.Error) else self._error
            raise ValueError(str(text)) from self._error

    def result(self) -> pa.Table | None:
        """Close the feeds and wait for the query: its result, None if nothing came and no
        input's schema is known."""
        with self.lock:
            if self._thread is None:
                unknown = self._unknown()
                if unknown and not self._pending and not self._scans:
                    return None
                if unknown:
                    names = ", ".join(repr(table) for table in unknown)
                    raise ValueError(
                        f"input {names} sent no data, and its columns are not known"
                        " before data comes, so the query has no such table (a source that declares"
                        " its schema, such as Parquet, or CSV with typed include_columns, makes it"
                        " an empty table)"
                    )
                self._start()
        self._wait()
        self._raise_error()
        return self._result

    def abort(self) -> None:
        """Stop the query (the flow stopped or failed); idempotent."""
        with self.lock:
            started, self._aborted = self._thread is not None and not self._aborted, True
        if started:
            assert self._db is not None
            self._db.interrupt()
            for feed in self._feeds.values():
                feed.drop()
            self._wait()

    def _wait(self) -> None:
        assert self._thread is not None and self._db is not None
        for feed in self._feeds.values():
            feed.close()
        self._thread.join()
        self._db.close()


def _stream(table: str, schema: pa.Schema, feed: _Feed) -> Iterator[pa.RecordBatch]:
    try:
        while (part := feed.get()) is not None:
            yield conform(part, schema, f"input {table!r}")  # DuckDB reads a stream by its schema
    except Exception as error:
        feed.error = error
        raise


class SqlTransform(Transform[SqlConfig]):
    """Runs SQL (DuckDB) over Arrow data, per batch or over the whole input.

    Per batch for filters and projections, over the whole input for aggregates, joins, sorts:
    see the module docs."""

    named_inputs: ClassVar[bool] = True

    def open(self) -> None:
        config, context = self.config, self.context
        self._db = _database().cursor()
        self._streaming: bool | None = None  # decided on the first batch (MODE_AUTO)
        self._sent = False  # a row, when streaming
        self._nothing: pa.Table | None = None  # an empty result: its columns, if no row comes
        self._finished = False
        scans = {config.table or name: scan for name, scan in context.scans.items()}
        for table, scan in scans.items():  # for binding the query on the other inputs' batches
            self._db.execute(_view(table, scan))
        inputs = (config.table,) if config.table else context.inputs
        known = {config.table or name: schema for name, schema in context.input_schemas.items()}
        self._schemas = {t: known[t] for t in inputs if t not in scans and known.get(t) is not None}
        # One query for the stage's workers (dict.setdefault is atomic): used if it blocks.
        self._query = context.shared.setdefault(
            "query",
            _BlockingQuery(
                config.sql,
                tuple(t for t in inputs if t not in scans),
                context.stage_name,
                scans,
                self._schemas,
            ),
        )
        # With every input's schema known, `flowpipe run` bound the query before start.
        self._bound = bool(inputs) and all(t in scans or t in self._schemas for t in inputs)
        several = len(inputs) > 1 and config.mode is Mode.AUTO
        if scans or several or config.mode is Mode.BLOCKING:  # scans are taken for blocking queries only
            self._streaming = False
            self._query.begin()

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
            if not result.num_rows:
                self._nothing = result
                return Batch([])
            self._sent = True
            return emit([result])
        if not self._bound:  # a query that cannot bind fails now, not at the end
            self._db.register(table, parts[0])
            self._bound = self._plan() is not None
        self._query.feed(table, parts)
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
                raise ValueError("MODE_STREAMING queries read one input only")
            return config.mode is Mode.STREAMING
        return plan is not None and _row_by_row(plan)

    def _plan(self) -> Any:
        """The query's physical plan, or None while an input it reads has not been seen."""
        try:
            return _explain(self._db, self.config.sql)
        except duckdb.CatalogException:
            return None
        except duckdb.Error as error:
            raise ValueError(_one_line(error)) from error

    def _run(self, query: str) -> pa.Table:
        try:
            result: pa.Table = self._db.sql(query).to_arrow_table()
        except duckdb.Error as error:
            raise ValueError(_one_line(error)) from error
        return result

    @classmethod
    def output_schema(cls, config: SqlConfig, inputs: Mapping[str, Any]) -> pa.Schema | None:
        """The result's schema, from the query run over empty tables of its inputs' schemas:
        an unknown column or table is found before the flow starts. Unknown while an input's
        schema is."""
        if len(inputs) > 1 and config.table:
            raise ValueError(
                "config.table: names the table of a stage's one input; with input_queues each"
                " input's table is its entry's table"
            )
        if len(inputs) > 1 and config.mode is Mode.STREAMING:
            raise ValueError("config.mode: MODE_STREAMING runs per batch of one input; this has several")
        if not inputs or any(schema is None for schema in inputs.values()):
            return None
        try:
            with _over_empty(config, inputs) as db:
                query = config.query(config.table or next(iter(inputs)))
                result: pa.Schema = db.sql(query).limit(0).to_arrow_table().schema
        except duckdb.Error as error:
            key = "sql" if config.sql.strip() else "filter" if config.filter else "columns"
            raise ValueError(f"config.{key}: {_one_line(error)}") from None
        return result

    @classmethod
    def take_scans(
        cls, config: SqlConfig, scans: Mapping[str, FileScan], inputs: Mapping[str, Any]
    ) -> list[str]:
        """The Parquet files of a blocking query's inputs, for DuckDB to scan itself: it reads
        only the row groups and columns the query needs, in parallel, instead of the source
        decoding every batch. Nothing for a query run batch by batch (its per-batch answers would
        become one), nor for a column of a type DuckDB reads from Parquet otherwise than from
        Arrow."""
        if not config.sql.strip() or config.mode is Mode.STREAMING:
            return []
        taken = [
            name
            for name, scan in scans.items()
            if scan.format == "parquet" and all(_reads_alike(field.type) for field in scan.schema)
        ]
        if taken and config.mode is Mode.AUTO and len(inputs) == 1:
            with _over_empty(config, {name: scan.schema for name, scan in scans.items()}) as db:
                if _row_by_row(_explain(db, config.sql)):
                    return []
        return taken

    def finish(self) -> Batch | None:
        self._finished = True
        query = self._query
        with query.lock:
            query.finished += 1
            last = query.finished == self.context.worker_count
        if self._streaming is None:  # no batch came: decide as on a first batch, over an empty one
            known = next(iter(self._schemas.items()), None)
            self._streaming = known is not None and self._decide(known[0], known[1].empty_table())
        if self._streaming:
            # A query that matched nothing still gives its columns: a sink writes an empty file
            # of them, as for a blocking query's empty result.
            if self._nothing is None and not self._sent and self._schemas:  # decided over empty
                self._nothing = self._run(self.config.query(next(iter(self._schemas))))
            return None if self._sent or self._nothing is None else emit([self._nothing])
        # The last worker to finish closes the input: it alone has the query's result.
        if not last:
            return None
        result = query.result()
        return None if result is None else emit([result])

    def close(self) -> None:
        if not self._finished:  # stopped or failed: drop what was read
            self._query.abort()
        self._db.close()
