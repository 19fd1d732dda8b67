"""The Arrow sinks: one file across batches, every compression, schemas kept, datasets."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_ds
import pyarrow.orc as pa_orc
import pyarrow.parquet as pa_pq
import pytest
from arrow_helpers import config_error, ids, make, preflight, sample_table
from conftest import Run

from flowpipe import Batch
from flowpipe.stages.arrow import from_ipc, to_ipc
from flowpipe.stages.arrow_sinks import CsvArrowSink, OrcArrowSink, ParquetArrowSink


def feed(
    stage_class: type[Any],
    config: dict[str, Any],
    table: pa.Table,
    index: int = 0,
    workers: int = 1,
    shared: dict[str, Any] | None = None,
) -> None:
    """Hand ``table`` to a sink in several batches, as RecordBatches, a Table and IPC bytes."""
    sink = make(stage_class, config, index, workers, shared)
    parts = table.to_batches(max_chunksize=max(table.num_rows // 6, 1))
    third = len(parts) // 3
    sink.consume_batch(Batch(parts[:third]))
    sink.consume_batch(Batch([pa.Table.from_batches(parts[third : 2 * third])]))
    sink.consume_batch(Batch([to_ipc(pa.Table.from_batches(parts[2 * third :]))]))
    sink.close()


def test_ipc_helpers_round_trip() -> None:
    table = sample_table(100)
    assert from_ipc(to_ipc(table)).equals(table)
    assert from_ipc(to_ipc(table.to_batches()[0])).equals(table)


@pytest.mark.parametrize("codec", ["UNCOMPRESSED", "SNAPPY", "GZIP", "BROTLI", "ZSTD", "LZ4"])
def test_parquet_round_trip_per_codec_keeps_schema(tmp_path: Path, codec: str) -> None:
    table = sample_table()
    path = tmp_path / "out.parquet"
    feed(ParquetArrowSink, {"path": str(path), "common": {"compression": f"COMPRESSION_{codec}"}}, table)
    assert pa_pq.read_table(path).equals(table)
    metadata = pa_pq.ParquetFile(path).metadata
    assert metadata.row_group(0).column(0).compression == codec
    assert not list(tmp_path.glob(".*"))  # the temporary file was renamed into place


@pytest.mark.parametrize("codec", ["UNCOMPRESSED", "SNAPPY", "GZIP", "ZSTD", "LZ4"])
def test_orc_round_trip_per_codec(tmp_path: Path, codec: str) -> None:
    table = sample_table().drop_columns(["amount", "at"])  # ORC keeps decimals and times its own way
    path = tmp_path / "out.orc"
    feed(OrcArrowSink, {"path": str(path), "write_options": {"compression": f"COMPRESSION_{codec}"}}, table)
    orc = pa_orc.ORCFile(path)
    assert orc.read().equals(table)
    assert orc.compression == {"GZIP": "ZLIB"}.get(codec, codec)


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2", ".zst", ".lz4"])
def test_csv_round_trip_per_codec_by_extension(tmp_path: Path, suffix: str) -> None:
    table = sample_table().drop_columns(["at"])
    path = tmp_path / f"out.csv{suffix}"
    feed(CsvArrowSink, {"path": str(path)}, table)
    convert = pa_csv.ConvertOptions(column_types=table.schema, strings_can_be_null=True)
    read = pa_csv.read_csv(path, convert_options=convert)
    assert read.equals(table)


def test_csv_append_writes_one_header_and_write_options(tmp_path: Path) -> None:
    table = sample_table(10).select(["id", "name"])
    path = tmp_path / "out.csv"
    config = {
        "path": str(path),
        "append": True,
        "write_options": {
            "delimiter": ";",
            "null_string": "NULL",
            "quoting_style": "QUOTING_STYLE_ALL_VALID",
        },
    }
    feed(CsvArrowSink, config, table)
    feed(CsvArrowSink, config, table)
    lines = path.read_text().splitlines()
    assert lines[0] == '"id";"name"' and len(lines) == 21
    assert lines[1] == '"0";NULL' and lines[2] == '"1";"name-1"'


def test_parquet_writer_properties(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    config = {
        "path": str(path),
        "row_group_size": 1000,
        "writer_properties": {
            "compression": "ZSTD",
            "compression_level": 9,  # GZIP's highest, so valid for the price column too
            "version": "PARQUET_VERSION_1_0",
            "encoding": "ENCODING_PLAIN",
            "column_properties": {
                "price": {"encoding": "BYTE_STREAM_SPLIT", "compression": "COMPRESSION_GZIP"},
                "group": {"dictionary_enabled": True, "encoding": "RLE_DICTIONARY"},
            },
            "sorting_columns": [{"column_index": 0}],
            "statistics_enabled": False,
        },
    }
    table = sample_table()
    feed(ParquetArrowSink, config, table)
    metadata = pa_pq.ParquetFile(path).metadata
    assert metadata.format_version == "1.0" and metadata.num_row_groups == 5
    columns = {
        metadata.row_group(0).column(i).path_in_schema: metadata.row_group(0).column(i) for i in range(9)
    }
    assert columns["price"].compression == "GZIP" and "BYTE_STREAM_SPLIT" in columns["price"].encodings
    assert columns["id"].compression == "ZSTD" and "PLAIN" in columns["id"].encodings
    assert "PLAIN_DICTIONARY" in columns["group"].encodings and not columns["id"].is_stats_set
    assert pa_pq.read_table(path).equals(table)


@pytest.mark.parametrize(
    ("limit", "dictionary_bytes"), [(None, range(128 << 10, 140 << 10)), (4 << 20, range(800_000, 820_000))]
)
def test_dictionary_pages_stop_at_128_kib_unless_told(
    tmp_path: Path, limit: int | None, dictionary_bytes: range
) -> None:
    path = tmp_path / "out.parquet"
    properties = {"compression": "UNCOMPRESSED"} | ({"dictionary_page_size_limit": limit} if limit else {})
    table = pa.table({"key": pa.array(range(100_000), pa.int64())})  # 800 KB of distinct values
    feed(ParquetArrowSink, {"path": str(path), "writer_properties": properties}, table)
    column = pa_pq.ParquetFile(path).metadata.row_group(0).column(0)
    assert column.data_page_offset - column.dictionary_page_offset in dictionary_bytes
    assert pa_pq.read_table(path).equals(table)


def test_partitioned_dataset_from_two_workers(tmp_path: Path) -> None:
    table = sample_table()
    config = {
        "path": str(tmp_path / "ds"),
        "write_opts": {
            "partition_columns": ["group"],
            "max_rows_per_file": 400,
            "basename_template": "f{i}.parquet",
        },
    }
    halves = [table.slice(0, 2500), table.slice(2500)]
    shared: dict[str, Any] = {}  # the runtime's, for the workers of one stage
    feed(ParquetArrowSink, config, halves[0], 0, workers=2, shared=shared)
    assert not list((tmp_path / "ds").rglob("*.parquet"))  # hidden until the last worker closes
    feed(ParquetArrowSink, config, halves[1], 1, workers=2, shared=shared)
    files = sorted(p.relative_to(tmp_path / "ds").as_posix() for p in (tmp_path / "ds").rglob("*.parquet"))
    assert files[0].startswith("group=g0/fw0-") and any("fw1-" in f for f in files)
    assert all(pa_pq.read_metadata(tmp_path / "ds" / f).num_rows <= 400 for f in files)
    read = pa_ds.dataset(tmp_path / "ds", partitioning="hive").to_table()
    assert ids(read) == list(range(table.num_rows))


def test_single_file_sink_refuses_threads(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="writes one file: run it with threads: 1"):
        make(ParquetArrowSink, {"path": str(tmp_path / "x.parquet")}, 0, 2)


def test_schema_change_mid_stream_fails_clearly_and_keeps_what_was_written(tmp_path: Path) -> None:
    sink = make(ParquetArrowSink, {"path": str(tmp_path / "x.parquet")})
    sink.consume_batch(Batch([pa.record_batch({"a": [1]})]))
    with pytest.raises(
        ValueError,
        match=r"x\.parquet: a batch's columns differ from the first batch's .* \(b is new; a is missing\)",
    ):
        sink.consume_batch(Batch([pa.record_batch({"b": ["x"]})]))
    sink.close()  # not a failure of the writer: the file is finished, as after a SIGTERM
    assert pa_pq.read_table(tmp_path / "x.parquet").to_pydict() == {"a": [1]}


def test_sink_without_data_writes_nothing(tmp_path: Path) -> None:
    make(OrcArrowSink, {"path": str(tmp_path / "x.orc")}).close()
    assert not list(tmp_path.iterdir())


def test_unwritable_outputs_fail_preflight(tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "dir" / "x.parquet")
    assert f"directory {tmp_path / 'no' / 'dir'} does not exist" in preflight(
        ParquetArrowSink, {"path": missing}
    )
    assert preflight(ParquetArrowSink, {"path": missing, "write_opts": {}}) == ""  # a dataset is created
    assert "is a directory" in preflight(CsvArrowSink, {"path": str(tmp_path)})
    (tmp_path / "file").write_text("")
    assert "does not exist" in preflight(OrcArrowSink, {"path": str(tmp_path / "file" / "x.orc")})
    assert "is not a directory" in preflight(
        ParquetArrowSink, {"path": str(tmp_path / "file"), "write_opts": {}}
    )
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root may write anywhere
        assert "permission denied" in preflight(OrcArrowSink, {"path": str(locked / "x.orc")})
    assert "remote filesystems are not supported" in config_error(
        ParquetArrowSink, {"path": "gs://b/x.parquet"}
    )


def test_bad_sink_configs_fail_validation(tmp_path: Path) -> None:
    path = str(tmp_path / "x")
    assert "Parquet cannot use COMPRESSION_LZO" in config_error(
        ParquetArrowSink, {"path": path, "common": {"compression": "LZO"}}
    )
    assert "ORC cannot use COMPRESSION_BROTLI" in config_error(
        OrcArrowSink, {"path": path, "write_options": {"compression": "BROTLI"}}
    )
    assert "cannot compress a text stream" in config_error(
        CsvArrowSink, {"path": path, "common": {"compression": "SNAPPY"}}
    )
    assert "cannot exceed max_rows_per_file" in config_error(
        ParquetArrowSink, {"path": path, "write_opts": {"max_rows_per_file": 10, "max_rows_per_group": 20}}
    )
    assert "must contain {i}" in config_error(
        ParquetArrowSink, {"path": path, "write_opts": {"basename_template": "part.parquet"}}
    )
    assert "conflicts with encoding ENCODING_PLAIN" in config_error(
        ParquetArrowSink,
        {"path": path, "writer_properties": {"encoding": "PLAIN", "dictionary_enabled": True}},
    )
    assert "not supported by pyarrow" in config_error(
        ParquetArrowSink, {"path": path, "writer_properties": {"created_by": "me"}}
    )
    assert "0.11 or 0.12" in config_error(
        OrcArrowSink, {"path": path, "write_options": {"file_version": {"major_version": 1}}}
    )


@pytest.mark.parametrize(
    ("properties", "located", "message"),
    [
        (
            {"compression": "SNAPPY", "compression_level": 3},
            "writer_properties.compression_level",
            "COMPRESSION_SNAPPY (snappy) has no compression levels: remove compression_level",
        ),
        (
            {"compression": "GZIP", "compression_level": 12},
            "writer_properties.compression_level",
            "COMPRESSION_GZIP's levels are 1..9",
        ),
        (
            {"compression": "ZSTD", "column_properties": {"name": {"compression_level": 40}}},
            "writer_properties.column_properties.name.compression_level",
            "COMPRESSION_ZSTD's levels are -131072..22",
        ),
        (
            {
                "compression": "ZSTD",
                "compression_level": 12,
                "column_properties": {"name": {"compression": "GZIP"}},
            },
            "writer_properties.column_properties.name.compression",
            "COMPRESSION_GZIP's levels are 1..9, and writer_properties.compression_level 12 applies to this",
        ),
        (
            {"content_defined_chunking_options": {"min_chunk_size": 4096, "max_chunk_size": 4096}},
            "writer_properties.content_defined_chunking_options.min_chunk_size",
            "must be less than max_chunk_size (4096)",
        ),
    ],
)
def test_compression_levels_and_chunk_sizes_arrow_refuses_fail_validation_at_the_key(
    tmp_path: Path, properties: dict[str, Any], located: str, message: str
) -> None:
    config = {"path": str(tmp_path / "x.parquet"), "writer_properties": properties}
    assert f"{located}\n  {message}" in config_error(ParquetArrowSink, config)


def test_partition_columns_missing_from_a_known_input_schema_are_refused_before_start(tmp_path: Path) -> None:
    config = ParquetArrowSink.config_model.model_validate(
        {"path": str(tmp_path / "ds"), "write_opts": {"partition_columns": ["group", "nope"]}}
    )
    schema = sample_table(1).schema
    with pytest.raises(
        ValueError, match=r"^config.write_opts.partition_columns: partition columns nope not in"
    ):
        ParquetArrowSink.output_schema(config, {"q": schema})
    assert ParquetArrowSink.output_schema(config, {"q": None}) is None  # unknown: checked when data comes
    fine = config.model_copy(
        update={"write_opts": config.write_opts.model_copy(update={"partition_columns": ["group"]})}
    )
    assert ParquetArrowSink.output_schema(fine, {"q": schema}) is None


def test_dataset_writer_errors_reach_the_stage(tmp_path: Path) -> None:
    config = {
        "path": str(tmp_path / "ds"),
        "write_opts": {"partition_columns": ["group"], "max_partitions": 2},
    }
    with pytest.raises(pa.ArrowInvalid, match="exceeds the maximum of 2"):
        feed(ParquetArrowSink, config, sample_table())
    with pytest.raises(KeyError, match="partition columns nope not in the data"):
        feed(
            ParquetArrowSink,
            {"path": str(tmp_path / "ds"), "write_opts": {"partition_columns": ["nope"]}},
            sample_table(),
        )


def test_raw_records_reaching_an_arrow_sink_are_named_as_such(tmp_path: Path) -> None:
    sink = make(ParquetArrowSink, {"path": str(tmp_path / "out.parquet")})
    with pytest.raises(TypeError, match=r"got 5 bytes that are not an Arrow IPC stream .*fed raw records\?"):
        sink.consume_batch(Batch([b"hello"]))
    with pytest.raises(TypeError, match=r"expected Arrow data .*got str"):
        sink.consume_batch(Batch(["hello"]))
    sink.close()
    assert not (tmp_path / "out.parquet").exists()


def column_chunks(path: Path) -> list[Any]:
    """The metadata of every column chunk of a Parquet file, or of every file under a directory."""
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    chunks = []
    for file in files:
        metadata = pa_pq.read_metadata(file)
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            chunks += [row_group.column(i) for i in range(row_group.num_columns)]
    return chunks


@pytest.mark.parametrize("dataset", [False, True])
def test_dictionary_enabled_false_turns_dictionaries_off_except_where_a_column_asks(
    tmp_path: Path, dataset: bool
) -> None:
    path = tmp_path / ("ds" if dataset else "out.parquet")
    properties = {"dictionary_enabled": False, "column_properties": {"group": {"dictionary_enabled": True}}}
    config = {"path": str(path), "writer_properties": properties} | ({"write_opts": {}} if dataset else {})
    feed(ParquetArrowSink, config, sample_table())
    with_dictionary = {c.path_in_schema for c in column_chunks(path) if c.has_dictionary_page}
    assert with_dictionary == {"group"}


@pytest.mark.parametrize(
    ("sizes", "group_rows"),
    [
        ({"writer_properties": {"max_row_group_length": 400}}, 400),
        ({"writer_properties": {"max_row_group_length": 400}, "row_group_size": 300}, 300),
        (
            {"writer_properties": {"max_row_group_length": 400}, "write_opts": {"max_rows_per_group": 1000}},
            400,
        ),
        (
            {"writer_properties": {"max_row_group_length": 900}, "write_opts": {"max_rows_per_group": 700}},
            700,
        ),
    ],
)
def test_dataset_row_groups_follow_the_smallest_limit_set(
    tmp_path: Path, sizes: dict[str, Any], group_rows: int
) -> None:
    config = {"path": str(tmp_path / "ds"), "write_opts": {}} | sizes
    feed(ParquetArrowSink, config, sample_table())
    (file,) = (tmp_path / "ds").glob("*.parquet")
    metadata = pa_pq.read_metadata(file)
    rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert rows[:-1] == [group_rows] * (len(rows) - 1) and sum(rows) == 5000 and rows[-1] <= group_rows


def interval_table() -> pa.Table:
    """A month_day_nano_interval column (what ``ts - TIMESTAMP '…'`` gives): Parquet and ORC have
    no such type."""
    return pa.table({"since": pa.array([pa.MonthDayNano([0, 1, 5])] * 10, pa.month_day_nano_interval())})


def fail_writing(stage_class: type[Any], config: dict[str, Any], table: pa.Table, error: str) -> None:
    """Feed ``table`` as the runtime would, closing the sink after the failure ``error``."""
    sink = make(stage_class, config)
    with pytest.raises(Exception, match=error):
        try:
            for part in table.to_batches(max_chunksize=1000):
                sink.consume_batch(Batch([part]))
        finally:
            sink.close()


DELTA_ON_STRINGS = {"writer_properties": {"column_properties": {"name": {"encoding": "DELTA_BINARY_PACKED"}}}}


@pytest.mark.parametrize(
    ("config", "table", "error"),
    [
        pytest.param(DELTA_ON_STRINGS, sample_table(), "only supports INT32", id="encoder-fails-at-close"),
        pytest.param(
            DELTA_ON_STRINGS | {"row_group_size": 1000},
            sample_table(),
            "only supports INT32",
            id="encoder-fails-at-a-row-group",
        ),
        # refused when the writer starts, which has created its file already
        pytest.param({}, interval_table(), "Unhandled type for Arrow to Parquet", id="type-fails-at-start"),
        pytest.param(
            {
                "writer_properties": {
                    "content_defined_chunking_enabled": True,
                    "content_defined_chunking_options": {"norm_level": 20},
                }
            },
            sample_table(),
            "CDC mask must be between 1 and 63",
            id="chunking-fails-at-start",
        ),
    ],
)
def test_a_failed_parquet_writer_leaves_the_old_file_and_no_temporary_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, config: dict[str, Any], table: pa.Table, error: str
) -> None:
    path = tmp_path / "out.parquet"
    feed(ParquetArrowSink, {"path": str(path)}, sample_table(10))
    before = path.read_bytes()
    with caplog.at_level(logging.WARNING):
        fail_writing(ParquetArrowSink, {"path": str(path)} | config, table, error)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["out.parquet"]
    assert caplog.messages == [f"stage: writing {path} failed; nothing was replaced"]


def test_a_failed_orc_writer_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "out.orc"
    feed(OrcArrowSink, {"path": str(path)}, sample_table(10).select(["id"]))
    before = path.read_bytes()
    fail_writing(OrcArrowSink, {"path": str(path)}, interval_table(), "unsupported Arrow type")
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["out.orc"]


def test_a_flow_whose_orc_write_fails_exits_1_and_keeps_the_old_file(flowpipe: Run, tmp_path: Path) -> None:
    pa_pq.write_table(
        pa.table({"ts": pa.array([1_700_000_000_000_000], pa.timestamp("us"))}), tmp_path / "in.parquet"
    )
    out = tmp_path / "out.orc"
    pa_orc.write_table(pa.table({"kept": [1, 2, 3]}), out)
    flow = tmp_path / "f.yaml"
    flow.write_text(f"""\
name: t
execution: {{mode: EXECUTION_MODE_JOB}}
queues: [{{name: a, capacity: 8}}, {{name: b, capacity: 8}}]
stages:
  - {{name: read, type: parquet_arrow_source, output_queue: a, config: {{path: {tmp_path}/in.parquet}}}}
  - name: since
    type: sql_transform
    input_queue: a
    output_queue: b
    config: {{sql: "SELECT ts - TIMESTAMP '2020-01-01' AS since FROM a"}}
  - {{name: out, type: orc_arrow_sink, input_queue: b, config: {{path: {out}}}}}
""")
    done = flowpipe("run", flow)
    assert done.returncode == 1, done.stderr
    assert "stage 'out' (orc_arrow_sink) failed: " in done.stderr and "Traceback" not in done.stderr
    assert f"out: writing {out} failed; nothing was replaced" in done.stderr
    assert pa_orc.read_table(out).to_pydict() == {"kept": [1, 2, 3]}
    assert sorted(os.listdir(tmp_path)) == ["f.yaml", "in.parquet", "out.orc"]


def dataset_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_a_dataset_rerun_replaces_the_earlier_output_and_leaves_other_files(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    table = sample_table()
    first = {"path": str(root), "write_opts": {"max_rows_per_file": 1200, "partition_columns": ["group"]}}
    feed(ParquetArrowSink, first, table)
    assert len(dataset_files(root)) == 4 * 2  # 1250 rows per group: two files each
    (root / "notes.txt").write_text("mine")
    (root / "archive").mkdir()
    (root / "archive" / "part-0.parquet").write_bytes(b"mine too")  # not a partition directory
    (root / ".part-7.parquet.inprogress").write_bytes(b"left by a killed run")

    feed(ParquetArrowSink, {"path": str(root), "write_opts": {"max_rows_per_file": 2600}}, table)
    assert dataset_files(root) == ["archive/part-0.parquet", "notes.txt", "part-0.parquet", "part-1.parquet"]
    assert ids(pa_ds.dataset([root / "part-0.parquet", root / "part-1.parquet"]).to_table()) == list(
        range(5000)
    )


def test_a_failed_dataset_run_keeps_the_earlier_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "ds"
    config: dict[str, Any] = {
        "path": str(root),
        "write_opts": {"partition_columns": ["group"], "max_rows_per_file": 1000},
    }
    feed(ParquetArrowSink, config, sample_table())
    before = {name: (root / name).read_bytes() for name in dataset_files(root)}
    config["write_opts"]["max_partitions"] = 2
    with caplog.at_level(logging.WARNING):
        fail_writing(ParquetArrowSink, config, sample_table(), "exceeds the maximum of 2")
    assert {name: (root / name).read_bytes() for name in dataset_files(root)} == before
    assert caplog.messages == [f"stage: writing {root} failed; nothing was replaced"]


def test_a_dataset_worker_failure_discards_every_worker_s_files(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    config = {"path": str(root), "write_opts": {"partition_columns": ["group"]}}
    shared: dict[str, Any] = {}
    feed(ParquetArrowSink, config, sample_table(), 0, workers=2, shared=shared)
    sink = make(ParquetArrowSink, config, 1, 2, shared)
    with pytest.raises(KeyError, match="partition columns group not in the data"):
        sink.consume_batch(Batch([pa.record_batch({"id": [1]})]))
    sink.close()
    assert dataset_files(root) == []


def test_a_failed_csv_writer_says_the_file_holds_what_was_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "out.csv"
    lists = pa.table({"x": pa.array([[1]], pa.list_(pa.int64()))})
    with caplog.at_level(logging.WARNING):
        fail_writing(CsvArrowSink, {"path": str(path)}, lists, "Unsupported Type")
    left = "it holds what was written before the failure (CSV is written in place)"
    assert caplog.messages == [f"stage: writing {path} failed; {left}"]
