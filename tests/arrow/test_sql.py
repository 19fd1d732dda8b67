"""sql_transform: streaming vs blocking, equal to DuckDB's own answer, several workers, errors."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv
import pyarrow.orc
import pyarrow.parquet as pq
import pytest
from arrow_helpers import as_table, config_error, job, make, sample_table

from flowpipe import Batch, EndOfStream, FlowSpecError, Payload, Source, StageConfig
from flowpipe.stages.sql import SqlTransform
from flowpipe.testing import TestingSink, TestingSource, run_flow


def duckdb_answer(sql: str, **tables: pa.Table) -> pa.Table:
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    result: pa.Table = con.sql(sql).to_arrow_table()
    return result


def run_sql(config: dict[str, Any], table: pa.Table, workers: int = 1) -> tuple[list[Any], list[bool]]:
    """Feed ``table`` (as batches of 500 rows, dealt out to the workers) to sql_transform
    workers, as the runtime would; returns every output record and each worker's mode."""
    shared: dict[str, Any] = {}
    stages = [make(SqlTransform, config, index, workers, shared) for index in range(workers)]
    out: list[Any] = []
    for i, part in enumerate(table.to_batches(max_chunksize=500)):
        batch = Batch([part])
        batch.input = "t"
        out.extend(stages[i % workers].process_batch(batch).data)
    for stage in stages:
        final = stage.finish()
        out.extend(final.data if final else [])
        stage.close()
    return out, [bool(stage._streaming) for stage in stages]


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize(
    ("sql", "streaming"),
    [
        ("SELECT id, price * 2 AS double_price FROM t WHERE flag AND name IS NOT NULL", True),
        ('SELECT "group", count(*) AS n, sum(amount) AS total FROM t GROUP BY ALL ORDER BY "group"', False),
        ("SELECT sum(price) AS s FROM t WHERE day >= DATE '2024-06-01'", False),
        ("SELECT id FROM t ORDER BY price DESC LIMIT 7", False),
        ('SELECT id, rank() OVER (PARTITION BY "group" ORDER BY price) AS r FROM t ORDER BY id', False),
        ("SELECT DISTINCT small FROM t ORDER BY small", False),
        # Read twice (a stream can be scanned once: these are stored before the query runs).
        ("SELECT id FROM t WHERE price > (SELECT avg(price) FROM t) ORDER BY id", False),
        ("SELECT count(*) AS n, sum(a.price - b.price) AS d FROM t a JOIN t b ON a.id = b.id", False),
        ("SELECT id FROM t WHERE small = 1 UNION ALL SELECT id FROM t WHERE small = 2 ORDER BY id", False),
    ],
)
def test_results_equal_duckdb(sql: str, streaming: bool, workers: int) -> None:
    table = sample_table()
    out, modes = run_sql({"sql": sql}, table, workers)
    assert modes == [streaming] * workers
    expected = duckdb_answer(sql, t=table)
    got = as_table(out)
    if streaming:  # batches come back in any order
        got, expected = got.sort_by("id"), expected.sort_by("id")
    assert got.equals(expected)


def test_filter_and_columns_mode_streams() -> None:
    table = sample_table()
    config = {"filter": "small < 10", "columns": ["id", "price + 1 AS p"], "table": "t"}
    out, modes = run_sql(config, table)
    expected = duckdb_answer("SELECT id, price + 1 AS p FROM t WHERE small < 10", t=table)
    assert modes == [True] and as_table(out).equals(expected)


def test_forced_modes() -> None:
    table = sample_table()
    sql = "SELECT id FROM t WHERE small = 1"
    out, modes = run_sql({"sql": sql, "mode": "MODE_BLOCKING"}, table)
    assert modes == [False] and len(out) == 1 and out[0].num_rows == 50


def test_two_named_inputs_join_in_a_flow() -> None:
    orders = pa.table({"order_id": list(range(100)), "customer": [i % 7 for i in range(100)]})
    items = pa.table({"order_id": [i % 100 for i in range(1000)], "price": [float(i) for i in range(1000)]})
    sql = (
        "SELECT customer, sum(price) AS total FROM items JOIN orders USING (order_id) "
        "GROUP BY customer ORDER BY customer"
    )
    out: list[Payload] = []
    flow = job(
        f"""
  - {{name: o, type: orders, output_queue: a}}
  - {{name: i, type: items, output_queue: b, threads: 2}}
  - name: q
    type: datafusion_sql_transform
    threads: 2
    input_queues: [{{queue: a, table: orders}}, {{queue: b, table: items}}]
    output_queue: c
    config: {{sql: "{sql}"}}
  - {{name: out, type: out, input_queue: c}}
""",
        queues="[{name: a, capacity: 4}, {name: b, capacity: 4}, {name: c, capacity: 4}]",
    )
    result = run_flow(
        flow,
        stages={
            "orders": TestingSource.of(orders.to_batches(max_chunksize=10)),
            "items": TestingSource.of(items.to_batches(max_chunksize=50)),
            "out": TestingSink.into(out),
        },
    )
    assert result.exit_code == 0, result.failure
    assert as_table([p.data for p in out]).equals(duckdb_answer(sql, orders=orders, items=items))


def join_flow(sql: str) -> str:
    return job(
        f"""
  - {{name: o, type: orders, output_queue: a}}
  - {{name: i, type: items, output_queue: b}}
  - name: q
    type: sql_transform
    input_queues: [{{queue: a, table: orders}}, {{queue: b, table: items}}]
    output_queue: c
    config: {{sql: "{sql}"}}
  - {{name: out, type: out, input_queue: c}}
""",
        queues="[{name: a}, {name: b}, {name: c}]",
    )


def test_options_for_one_input_are_refused_with_several_before_start() -> None:
    stages = {"orders": TestingSource.of([]), "items": TestingSource.of([]), "out": TestingSink.into([])}
    for option, problem in (
        ("table: orders", "config.table: names the table of a stage's one input"),
        ("mode: MODE_STREAMING", "config.mode: MODE_STREAMING runs per batch of one input"),
    ):
        flow = join_flow("SELECT * FROM orders").replace("config: {", f"config: {{{option}, ")
        with pytest.raises(FlowSpecError, match=problem):
            run_flow(flow, stages=stages)


ORDERS = pa.schema([("order_id", pa.int64()), ("customer", pa.int64())])
ITEMS = pa.table({"order_id": [1, 2, 3], "price": [1.5, 2.5, 3.5]})


def test_an_input_that_sends_nothing_is_an_empty_table_when_its_schema_is_known() -> None:
    sql = "SELECT order_id, customer, price FROM items LEFT JOIN orders USING (order_id) ORDER BY order_id"
    out: list[Payload] = []
    stages = {
        "orders": TestingSource.of([], schema=ORDERS),
        "items": TestingSource.of(ITEMS.to_batches()),
        "out": TestingSink.into(out),
    }
    result = run_flow(join_flow(sql), stages=stages)
    assert result.exit_code == 0, result.failure
    assert as_table([p.data for p in out]).equals(
        duckdb_answer(sql, orders=ORDERS.empty_table(), items=ITEMS)
    )
    # One input alone: an aggregate answers over the empty table, a filter sends nothing.
    for query, expected in (
        ("SELECT count(*) AS n FROM t", [{"n": 0}]),
        ("SELECT * FROM t WHERE price > 2", []),
    ):
        out.clear()
        flow = job(
            f"""
  - {{name: s, type: src, output_queue: a}}
  - {{name: q, type: sql_transform, input_queue: a, output_queue: b, config: {{table: t, sql: "{query}"}}}}
  - {{name: out, type: out, input_queue: b}}
"""
        )
        stages = {"src": TestingSource.of([], schema=ITEMS.schema), "out": TestingSink.into(out)}
        assert run_flow(flow, stages=stages).exit_code == 0
        assert [row for p in out for row in p.data.to_pylist()] == expected, query


def test_an_input_that_sends_nothing_of_unknown_schema_is_named() -> None:
    out: list[Payload] = []
    stages = {
        "orders": TestingSource.of([]),
        "items": TestingSource.of(ITEMS.to_batches()),
        "out": TestingSink.into(out),
    }
    result = run_flow(join_flow("SELECT * FROM items LEFT JOIN orders USING (order_id)"), stages=stages)
    assert result.exit_code == 1 and result.failure is not None and result.failure.stage_name == "q"
    assert "input 'orders' sent no data, and its columns are not known before data comes" in str(
        result.failure
    )
    stages["items"] = TestingSource.of([])  # nothing at all came and nothing is known: no answer
    assert run_flow(join_flow("SELECT count(*) FROM items, orders"), stages=stages).exit_code == 0
    assert out == []


def test_unknown_column_fails_at_the_first_batch_with_engine_message() -> None:
    stage = make(SqlTransform, {"sql": "SELECT nope FROM t"})
    batch = Batch([sample_table(10).to_batches()[0]])
    batch.input = "t"
    with pytest.raises(ValueError, match=r'^Binder Error: Referenced column "nope" not found'):
        stage.process_batch(batch)
    stage.close()


def test_unknown_column_in_a_flow_exits_1_naming_the_stage() -> None:
    flow = job(
        """
  - {name: src, type: src, output_queue: a}
  - {name: query, type: sql_transform, input_queue: a, output_queue: b, config: {sql: "SELECT nope FROM a"}}
  - {name: out, type: out, input_queue: b}
"""
    )
    result = run_flow(flow, stages={"src": TestingSource.of([sample_table(5)]), "out": TestingSink.into([])})
    assert result.exit_code == 1 and result.failure is not None
    assert result.failure.stage_name == "query" and 'column "nope" not found' in str(result.failure)
    # The stage is named once, by the failure, not again inside the engine's message.
    assert str(result.failure).startswith("stage 'query' (sql_transform) failed: ValueError: Binder Error:")


def test_unknown_columns_over_parquet_inputs_are_found_before_start(tmp_path: Path) -> None:
    # The Parquet footers give the inputs' schemas; each query is bound to them before anything
    # runs, its result's schema passed on to the next query, and every problem is reported.
    pq.write_table(sample_table(50), tmp_path / "items.parquet")
    pq.write_table(pa.table({"group": ["g0", "g1"], "label": ["zero", "one"]}), tmp_path / "groups.parquet")
    out = tmp_path / "out.parquet"
    flow = job(
        f"""
  - {{name: items, type: parquet_arrow_source, output_queue: a,
     config: {{path: "{tmp_path}/items.parquet", columns: [id, price, group]}}}}
  - {{name: groups, type: parquet_arrow_source, output_queue: g,
     config: {{path: "{tmp_path}/groups.parquet"}}}}
  - name: doubled
    type: sql_transform
    input_queue: a
    output_queue: b
    config: {{sql: "SELECT id, price * 2 AS twice, \\"group\\" FROM a"}}
  - name: joined
    type: sql_transform
    input_queues: [{{queue: b, table: items}}, {{queue: g, table: groups}}]
    output_queue: c
    config:
      sql: |
        SELECT label, sum(price) AS total
        FROM items JOIN groups USING ("group") GROUP BY label
  - name: named
    type: sql_transform
    input_queue: c
    output_queue: d
    config: {{sql: "SELECT labl FROM c"}}
  - {{name: out, type: parquet_arrow_sink, input_queue: d, config: {{path: "{out}"}}}}
""",
        queues="[{name: a, capacity: 4}, {name: b, capacity: 4}, {name: c, capacity: 4}, "
        "{name: d, capacity: 4}, {name: g, capacity: 4}]",
    )
    with pytest.raises(FlowSpecError) as caught:
        run_flow(flow)
    lines = str(caught.value).splitlines()
    # `price` was renamed by the first query: the join cannot see it. The last query reads the
    # join's result, whose schema is not known once the join failed: nothing more is claimed.
    assert len(lines) == 1, lines
    assert "flow.yaml:20:12: error: stage 'joined' (sql_transform): config.sql: Binder Error:" in lines[0]
    assert 'column "price" not found' in lines[0] and "twice" in lines[0]
    assert not out.exists()

    fixed = flow.replace("sum(price)", "sum(twice)")
    with pytest.raises(FlowSpecError, match=r"flow\.yaml:27:19: error: stage 'named' .*\"labl\" not found"):
        run_flow(fixed)
    result = run_flow(fixed.replace("labl", "label"))
    assert result.exit_code == 0, result.failure
    assert sorted(pq.read_table(out)["label"].to_pylist()) == ["one", "zero"]


def test_declared_result_schema_of_each_query_form() -> None:
    schema = sample_table(1).schema

    def declared(config: dict[str, Any], inputs: dict[str, Any]) -> Any:
        return SqlTransform.output_schema(SqlTransform.config_model.model_validate(config), inputs)

    assert declared({"sql": "SELECT id, price * 2 AS twice FROM t"}, {"t": schema}) == pa.schema(
        [("id", pa.int64()), ("twice", pa.float64())]
    )
    assert declared({"filter": "flag", "columns": ["name"]}, {"q": schema}) == pa.schema(
        [("name", pa.string())]
    )
    assert declared({"sql": "SELECT * FROM mine", "table": "mine"}, {"q": schema}) == schema
    assert declared({"sql": "SELECT nope FROM t"}, {"t": None}) is None  # an input not known yet
    with pytest.raises(ValueError, match=r'^config\.filter: Binder Error: Referenced column "nope"'):
        declared({"filter": "nope > 1"}, {"q": schema})


def test_engine_errors_are_one_line_pointing_into_the_query() -> None:
    message = config_error(SqlTransform, {"sql": "SELECT a,\n  b FROM t WHERE x = = 1"})
    assert 'syntax error at or near "=" (at line 2, column 22 of the query)' in message
    assert "LINE" not in message and "^" not in message


def test_bad_queries_fail_validation(tmp_path: Path) -> None:
    assert "syntax error" in config_error(SqlTransform, {"sql": "SELEC 1"})
    assert "expected one SELECT statement" in config_error(SqlTransform, {"sql": "SELECT 1; SELECT 2"})
    assert "expected one SELECT" in config_error(SqlTransform, {"sql": "CREATE TABLE x (a INT)"})
    assert "a query is required" in config_error(SqlTransform, {})
    assert "give either sql or filter/columns" in config_error(
        SqlTransform, {"sql": "SELECT 1", "filter": "a"}
    )
    assert "MODE_BLOCKING needs sql" in config_error(SqlTransform, {"filter": "a", "mode": "BLOCKING"})
    # filter is one condition and each columns entry one expression: nothing else gets in.
    for smuggled in ({"filter": "a < 3; SELECT 42"}, {"filter": "a < 3 UNION ALL SELECT * FROM t"}):
        assert "syntax error" in config_error(SqlTransform, smuggled)
    assert "expected one SELECT statement" in config_error(
        SqlTransform, {"columns": ["a FROM t; SELECT 1 --"]}
    )
    for smuggled in (
        {"columns": ["* FROM t UNION ALL SELECT * FROM u --"]},
        {"columns": ["a FROM t ORDER BY 1 --"]},
    ):
        assert "each columns entry one expression" in config_error(SqlTransform, smuggled)
    with pytest.raises(FlowSpecError, match=r"config.sql: .*syntax error"):
        run_flow(
            job('  - {name: q, type: sql_transform, input_queue: a, output_queue: b, config: {sql: "SELEC"}}')
        )


def _feed_in_thread(stage: Any, batches: list[pa.RecordBatch]) -> None:
    """Send ``batches`` to ``stage`` on another thread and wait for it (up to 60 s)."""
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            for part in batches:
                batch = Batch([part])
                batch.input = "t"
                stage.process_batch(batch)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the feed blocked: the query did not read its input as it came"
    if errors:
        raise errors[0]


def test_blocking_query_reads_its_input_as_it_arrives() -> None:
    # 200 batches through a feed that holds 8: they all go in before finish() only if the query
    # is already reading them.
    table = sample_table(20_000)
    sql = 'SELECT "group", sum(amount) AS total FROM t GROUP BY ALL ORDER BY "group"'
    stage = make(SqlTransform, {"sql": sql, "table": "t"})
    _feed_in_thread(stage, table.to_batches(max_chunksize=100))
    assert sum(len(feed._parts) for feed in stage._query._feeds.values()) <= 8  # no more than it holds
    final = stage.finish()
    stage.close()
    assert final is not None and as_table(final.data).equals(duckdb_answer(sql, t=table))


def test_query_that_stops_reading_early_takes_the_rest_of_the_input() -> None:
    table = sample_table(20_000)
    stage = make(SqlTransform, {"sql": "SELECT id FROM t LIMIT 5", "table": "t"})
    _feed_in_thread(stage, table.to_batches(max_chunksize=100))
    final = stage.finish()
    stage.close()
    assert final is not None
    got = as_table(final.data).column("id").to_pylist()
    assert len(got) == 5 and set(got) <= set(range(20_000))


def test_batches_of_another_schema_are_cast_or_named() -> None:
    first = pa.record_batch({"x": pa.array([1, 2], pa.int64())})
    narrower = pa.record_batch({"x": pa.array([3], pa.int32())})
    stage = make(SqlTransform, {"sql": "SELECT sum(x) AS s FROM t", "table": "t"})
    _feed_in_thread(stage, [first, narrower])
    final = stage.finish()
    stage.close()
    assert final is not None and as_table(final.data).column("s").to_pylist() == [6]

    words = pa.record_batch({"x": pa.array(["three"])})
    stage = make(SqlTransform, {"sql": "SELECT sum(x) AS s FROM t", "table": "t"})
    _feed_in_thread(stage, [first, words])
    with pytest.raises(
        ValueError,
        match=r"^input 't': a batch's columns differ from the first batch's and cannot be cast to"
        r" them \(x is string, was int64\): Failed to parse string: 'three'",
    ) as error:
        stage.finish()
    stage.close()
    assert "Traceback" not in str(error.value)  # the input's own error, not DuckDB's wrapping


def test_query_failing_on_late_data_exits_1_naming_the_stage() -> None:
    good = [pa.record_batch({"s": pa.array([str(i)] * 100)}) for i in range(50)]
    bad = pa.record_batch({"s": pa.array(["not a number"])})
    flow = job(
        """
  - {name: src, type: src, output_queue: a}
  - {name: total, type: sql_transform, input_queue: a, output_queue: b,
     config: {sql: "SELECT sum(CAST(s AS INTEGER)) AS n FROM a"}}
  - {name: out, type: out, input_queue: b}
"""
    )
    result = run_flow(flow, stages={"src": TestingSource.of([*good, bad]), "out": TestingSink.into([])})
    assert result.exit_code == 1 and result.failure is not None
    assert result.failure.stage_name == "total" and "not a number" in str(result.failure)


def test_failure_upstream_stops_a_running_blocking_query() -> None:
    batches = sample_table(20_000).to_batches(max_chunksize=100)
    flow = job(
        """
  - {name: src, type: src, output_queue: a}
  - {name: total, type: sql_transform, input_queue: a, output_queue: b,
     config: {sql: "SELECT count(*) AS n FROM a"}}
  - {name: out, type: out, input_queue: b}
"""
    )
    out: list[Payload] = []
    records = [*batches, TestingSource.FAIL]
    result = run_flow(flow, stages={"src": TestingSource.of(records), "out": TestingSink.into(out)})
    assert result.exit_code == 1 and result.failure is not None
    assert result.failure.stage_name == "src" and out == []
    assert "total-sql" not in [thread.name for thread in threading.enumerate()]  # the query stopped


def test_two_runs_of_one_flow_at_once_keep_their_queries_apart() -> None:
    both_started = threading.Barrier(2, timeout=30)

    def source(values: list[int]) -> type[Source[StageConfig]]:
        class Halves(Source[StageConfig]):
            def open(self) -> None:
                self._parts = [values[:50], values[50:]]

            def produce_batch(self, limit: int) -> Batch:
                if not self._parts:
                    raise EndOfStream
                if len(self._parts) == 1:
                    both_started.wait()  # each run's query holds its first half now
                return Batch([pa.record_batch({"x": self._parts.pop(0)})])

        return Halves

    flow = job(
        """
  - {name: src, type: src, output_queue: a}
  - {name: total, type: sql_transform, input_queue: a, output_queue: b,
     config: {sql: "SELECT sum(x) AS s FROM a"}}
  - {name: out, type: out, input_queue: b}
"""
    )
    outs: list[list[Payload]] = [[], []]
    results: list[Any] = [None, None]

    def run(index: int) -> None:
        values = list(range(100)) if index == 0 else [1000] * 100
        stages = {"src": source(values), "out": TestingSink.into(outs[index])}
        results[index] = run_flow(flow, stages=stages)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [r.exit_code for r in results] == [0, 0]
    assert [as_table([p.data for p in out]).column("s").to_pylist() for out in outs] == [[4950], [100_000]]


@pytest.mark.parametrize(
    ("sink", "config"),
    [
        ("parquet", """{sql: 'SELECT "group", count(*) AS n FROM a WHERE id < 0 GROUP BY "group"'}"""),
        ("orc", """{sql: 'SELECT "group", count(*) AS n FROM a WHERE id < 0 GROUP BY "group"'}"""),
        ("csv", """{sql: 'SELECT "group", count(*) AS n FROM a WHERE id < 0 GROUP BY "group"'}"""),
        ("parquet", """{sql: 'SELECT "group", id AS n FROM a WHERE id < 0'}"""),  # per batch
        ("parquet", """{filter: 'id < 0', columns: ['"group"', 'id AS n']}"""),
    ],
)
def test_an_empty_result_is_an_empty_file_of_its_columns(tmp_path: Path, sink: str, config: str) -> None:
    # As DuckDB's COPY does: a query matching nothing still gives its columns to the file,
    # whether it runs once over the whole input or batch by batch (on two workers).
    out = tmp_path / f"out.{sink}"
    flow = job(
        f"""
  - {{name: src, type: src, output_queue: a}}
  - {{name: q, type: sql_transform, threads: 2, input_queue: a, output_queue: b, config: {config}}}
  - {{name: out, type: {sink}_arrow_sink, input_queue: b, config: {{path: "{out}"}}}}
"""
    )
    result = run_flow(flow, stages={"src": TestingSource.of(sample_table(100).to_batches(max_chunksize=30))})
    assert result.exit_code == 0, result.failure
    read = {"parquet": pq.read_table, "orc": pa.orc.read_table, "csv": pa.csv.read_csv}[sink](out)
    assert read.column_names == ["group", "n"] and read.num_rows == 0
