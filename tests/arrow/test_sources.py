"""The Arrow sources: every format, TABLE vs RECORD_BATCH, work split among threads, options."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.orc as pa_orc
import pyarrow.parquet as pa_pq
import pytest
from arrow_helpers import as_table, config_error, drain, ids, make, preflight, sample_table
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from flowpipe import EndOfStream
from flowpipe.stages.arrow_sources import CsvArrowSource, JsonArrowSource, OrcArrowSource, ParquetArrowSource


def write_json(table: pa.Table, path: Path) -> None:
    rows = table.select(["id", "name", "price", "flag"]).to_pylist()
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("output_type", ["OUTPUT_TYPE_TABLE", "OUTPUT_TYPE_RECORD_BATCH"])
def test_every_format_reads_every_row_once(tmp_path: Path, workers: int, output_type: str) -> None:
    table = sample_table()
    pa_csv.write_csv(table.drop_columns(["at", "amount"]), tmp_path / "t.csv")
    pa_pq.write_table(table, tmp_path / "t.parquet", row_group_size=700)
    pa_orc.write_table(table.drop_columns(["amount"]), tmp_path / "t.orc", stripe_size=16_384)
    write_json(table, tmp_path / "t.jsonl")
    small = {"read_options": {"block_size": 16_384}}
    cases: list[tuple[type[Any], str, dict[str, Any]]] = [
        (CsvArrowSource, "t.csv", small),
        (JsonArrowSource, "t.jsonl", small),
        (ParquetArrowSource, "t.parquet", {}),
        (OrcArrowSource, "t.orc", {"batch_size": 1000}),
    ]
    for stage, name, extra in cases:
        config = {"path": str(tmp_path / name), "output_type": output_type, **extra}
        records = drain(stage, config, workers)
        if output_type == "OUTPUT_TYPE_TABLE":
            assert len(records) == workers and all(isinstance(r, pa.Table) for r in records)
        else:
            assert len(records) > workers and all(isinstance(r, pa.RecordBatch) for r in records)
        read = as_table(records)
        assert ids(read) == list(range(table.num_rows)), name


def test_parquet_and_orc_keep_the_schema(tmp_path: Path) -> None:
    table = sample_table()
    pa_pq.write_table(table, tmp_path / "t.parquet", row_group_size=1000)
    assert (
        as_table(drain(ParquetArrowSource, {"path": str(tmp_path / "t.parquet")}, 2))
        .sort_by("id")
        .equals(table)
    )
    orc_table = table.drop_columns(["amount", "at"])  # ORC reads timestamps back as ns
    pa_orc.write_table(orc_table, tmp_path / "t.orc")
    assert as_table(drain(OrcArrowSource, {"path": str(tmp_path / "t.orc")})).equals(orc_table)


def test_declared_schema_is_the_read_one(tmp_path: Path) -> None:
    # What a Parquet or ORC source declares before start (for the queries downstream to check)
    # is exactly the schema of the batches it reads: one file's, or a directory's whose files
    # agree. Unknown when they differ, or when hive partitions add columns.
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    for path in (
        tmp_path / "t.parquet",
        tmp_path / "dir" / "a.parquet",
        tmp_path / "dir" / "sub" / "b.parquet",
    ):
        pa_pq.write_table(sample_table(20), path)
    for path in (tmp_path / "t.orc", tmp_path / "dir" / "a.orc", tmp_path / "dir" / "sub" / "b.orc"):
        pa_orc.write_table(sample_table(20).drop_columns(["amount", "at"]), path)
    for source, name in (
        (ParquetArrowSource, "t.parquet"),
        (OrcArrowSource, "t.orc"),
        (ParquetArrowSource, "dir"),
        (OrcArrowSource, "dir"),
    ):
        for columns in ([], ["price", "id"]):
            config = {"path": str(tmp_path / name), "columns": columns}
            declared = source.output_schema(source.config_model.model_validate(config), {})
            assert declared == as_table(drain(source, config)).schema, (source, name, columns)

    def declared(path: Path, columns: tuple[str, ...] = ()) -> Any:
        return ParquetArrowSource.output_schema(
            ParquetArrowSource.config_model.model_validate({"path": str(path), "columns": list(columns)}), {}
        )

    with pytest.raises(
        ValueError, match=f"^config.columns: {tmp_path / 'dir'}: no column nope; columns are: id,"
    ):
        declared(tmp_path / "dir", ("id", "nope"))
    pa_pq.write_table(sample_table(20).drop_columns(["flag"]), tmp_path / "dir" / "c.parquet")
    assert declared(tmp_path / "dir") is None
    (tmp_path / "dir" / "c.parquet").unlink()
    (tmp_path / "dir" / "group=g0").mkdir()
    pa_pq.write_table(sample_table(20), tmp_path / "dir" / "group=g0" / "d.parquet")
    assert declared(tmp_path / "dir") is None


def test_csv_and_json_declare_a_schema_only_when_fully_typed(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b,c\n1,x,2.5\n2,y,3.5\n")
    (tmp_path / "t.json").write_text('{"b": 1, "a": "x", "z": 3}\n{"a": "y"}\n')
    typed = {"c": {"type": "DATA_TYPE_FLOAT32"}, "a": {"type": "DATA_TYPE_INT16"}}
    json_types = {"a": {"type": "DATA_TYPE_STRING"}, "b": {"type": "DATA_TYPE_INT32"}}
    cases: list[tuple[Any, dict[str, Any], bool]] = [
        (CsvArrowSource, {"convert_options": {"include_columns": ["c", "a"], "column_types": typed}}, True),
        (CsvArrowSource, {"convert_options": {"include_columns": ["c", "b"], "column_types": typed}}, False),
        (CsvArrowSource, {"convert_options": {"column_types": typed}}, False),  # b inferred
        (
            JsonArrowSource,
            {"parse_options": {"explicit_schema": json_types, "unexpected_field_behavior": "IGNORE"}},
            True,
        ),
        (JsonArrowSource, {"parse_options": {"explicit_schema": json_types}}, False),  # z inferred
    ]
    for source, options, known in cases:
        name = "t.csv" if source is CsvArrowSource else "t.json"
        config = {"path": str(tmp_path / name), **options}
        declared = source.output_schema(source.config_model.model_validate(config), {})
        assert declared == (as_table(drain(source, config)).schema if known else None), options


def test_parquet_columns_directory_and_hive_partitions(tmp_path: Path) -> None:
    table = sample_table()
    for group in ("g0", "g1"):
        part = tmp_path / "ds" / f"group={group}"
        part.mkdir(parents=True)
        rows = table.filter(pc.equal(table["group"], pa.scalar(group))).drop_columns(["group"])
        pa_pq.write_table(rows, part / "part-0.parquet", row_group_size=300)
    (tmp_path / "ds" / "_SUCCESS").write_text("")
    read = as_table(drain(ParquetArrowSource, {"path": str(tmp_path / "ds"), "columns": ["id", "group"]}, 2))
    assert read.column_names == ["id", "group"]
    assert ids(read) == [i for i in range(table.num_rows) if i % 4 < 2]
    assert set(read.column("group").to_pylist()) == {"g0", "g1"}


def test_one_table_of_files_typed_differently_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,v\n1,10\n")
    (tmp_path / "b.csv").write_text("id,v\n3,x\n")
    with pytest.raises(
        ValueError, match=r"^OUTPUT_TYPE_TABLE: the files' columns differ \(id: int64, v: int64, then"
    ):
        drain(CsvArrowSource, {"path": str(tmp_path)})


def test_parquet_and_orc_columns_come_in_the_order_asked(tmp_path: Path) -> None:
    table = sample_table(100).select(["id", "small", "name"])
    pa_pq.write_table(table, tmp_path / "t.parquet")
    pa_orc.write_table(table, tmp_path / "t.orc")
    for source, name in ((ParquetArrowSource, "t.parquet"), (OrcArrowSource, "t.orc")):
        config = {"path": str(tmp_path / name), "columns": ["name", "id"]}
        read = as_table(drain(source, config, 2))
        declared = source.output_schema(source.config_model.model_validate(config), {})
        assert read.schema == declared == table.select(["name", "id"]).schema, source
        assert sorted(read.column("id").to_pylist()) == list(range(100))


def test_columnar_footers_are_checked_before_start(tmp_path: Path) -> None:
    table = sample_table(100).select(["id", "small"])
    good_parquet, good_orc = tmp_path / "t.parquet", tmp_path / "t.orc"
    pa_pq.write_table(table, good_parquet)
    pa_orc.write_table(table, good_orc)
    truncated = tmp_path / "cut.parquet"
    truncated.write_bytes(good_parquet.read_bytes()[:300])
    (tmp_path / "text.orc").write_text("not orc")
    (tmp_path / "empty").mkdir()
    assert preflight(ParquetArrowSource, {"path": str(good_parquet), "columns": ["small"]}) == ""
    assert preflight(OrcArrowSource, {"path": str(good_orc)}) == ""
    assert preflight(ParquetArrowSource, {"path": str(truncated)}) == (
        f"config.path: {truncated}: Parquet magic bytes not found in footer."
        " Either the file is corrupted or this is not a parquet file."
    )
    assert preflight(OrcArrowSource, {"path": str(tmp_path / "text.orc")}).startswith(
        f"config.path: {tmp_path / 'text.orc'}: "
    )
    assert preflight(ParquetArrowSource, {"path": str(good_parquet), "columns": ["id", "nope"]}) == (
        f"config.columns: {good_parquet}: no column nope; columns are: id, small"
    )
    assert preflight(ParquetArrowSource, {"path": str(tmp_path / "empty")}) == (
        f"config.path: no .parquet files under {tmp_path / 'empty'}"
    )
    hive = tmp_path / "ds" / "group=g0"
    hive.mkdir(parents=True)
    pa_pq.write_table(table, hive / "part-0.parquet")  # `group` lives in the directory names
    assert preflight(ParquetArrowSource, {"path": str(tmp_path / "ds"), "columns": ["id", "group"]}) == ""


def test_csv_threads_split_byte_ranges_and_agree_on_types(tmp_path: Path) -> None:
    # The last rows alone would infer other types: every worker must use the file head's.
    lines = (
        ["id,value,note"] + [f"{i},{i},x{i}" for i in range(3000)] + [f"{i},,{i}" for i in range(3000, 3100)]
    )
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    records = drain(CsvArrowSource, {"path": str(tmp_path / "t.csv"), "output_type": "RECORD_BATCH"}, 4)
    assert {r.schema for r in records} == {records[0].schema}
    read = as_table(records)
    assert ids(read) == list(range(3100))
    assert read.schema.field("value").type == pa.int64()


def test_csv_options_and_gzip_files_split_by_file(tmp_path: Path) -> None:
    for part in range(3):
        rows = "".join(f"{part * 10 + i};{'yes' if i % 2 else 'no'};{i}.5\n" for i in range(10))
        with gzip.open(tmp_path / f"p{part}.csv.gz", "wt") as handle:
            handle.write("# header to skip\n" + rows)
    config = {
        "path": str(tmp_path),
        "read_options": {"skip_rows": 1, "column_names": ["id", "ok", "x"]},
        "parse_options": {"delimiter": ";"},
        "convert_options": {
            "true_values": ["yes"],
            "false_values": ["no"],
            "column_types": {"id": {"type": "DATA_TYPE_INT32"}, "x": {"type": "FLOAT32"}},
            "include_columns": ["x", "id", "ok"],
        },
    }
    read = as_table(drain(CsvArrowSource, config, 2)).sort_by("id")
    expected: list[tuple[str, pa.DataType]] = [("x", pa.float32()), ("id", pa.int32()), ("ok", pa.bool_())]
    assert read.schema == pa.schema(expected)
    assert read.column("id").to_pylist() == list(range(30))


def _lower_camel(config: Any) -> Any:
    """``config`` with every key in lowerCamel (the column names here have no underscore)."""
    if isinstance(config, dict):
        return {to_camel(key): _lower_camel(value) for key, value in config.items()}
    return config


def test_lower_camel_config_keys_read_as_the_proto_names(tmp_path: Path) -> None:
    # flow-pipe's plugins parse their config with protobuf JSON, which takes either spelling,
    # and an enum by number, even quoted (flow-pipe's YAML reader made every scalar a string).
    path = tmp_path / "t.csv"
    path.write_text("# skipped\na;b\n1;x\n2;y\n")
    snake = {
        "path": str(path),
        "output_type": "OUTPUT_TYPE_RECORD_BATCH",
        "read_options": {"skip_rows": 1, "block_size": 1 << 16},
        "parse_options": {"delimiter": ";"},
        "convert_options": {
            "column_types": {
                "a": {"type": "DATA_TYPE_DECIMAL128", "decimal_precision": 5, "decimal_scale": 1}
            }
        },
    }
    camel = _lower_camel(snake) | {"outputType": "1"}
    assert camel["convertOptions"]["columnTypes"]["a"]["decimalPrecision"] == 5
    model = CsvArrowSource.config_model
    assert model.model_validate(camel) == model.model_validate(snake)
    # Numbers in a list of strings read as their text, as flow-pipe's string-only YAML gave them.
    numbers = model.model_validate({"path": "x", "convert_options": {"null_values": [-999, "NA"]}})
    assert numbers.convert_options.null_values == ["-999", "NA"]
    read = as_table(drain(CsvArrowSource, camel))
    assert read.schema == pa.schema([("a", pa.decimal128(5, 1)), ("b", pa.string())])
    assert read.column("b").to_pylist() == ["x", "y"]


@pytest.mark.parametrize("behavior", ["UNEXPECTED_FIELD_BEHAVIOR_IGNORE", 1, "1"])
def test_json_explicit_schema(tmp_path: Path, behavior: str | int) -> None:
    # By number as in flow-pipe's enum: INFER_TYPE = 0, IGNORE = 1, ERROR = 2.
    write_json(sample_table(100), tmp_path / "t.json")
    config: dict[str, Any] = {
        "path": str(tmp_path / "t.json"),
        "parse_options": {
            "explicit_schema": {"id": {"type": "DATA_TYPE_INT32"}},
            "unexpected_field_behavior": behavior,
        },
    }
    read = as_table(drain(JsonArrowSource, config, 2))
    assert read.schema == pa.schema([("id", pa.int32())]) and read.num_rows == 100
    config["parse_options"]["unexpected_field_behavior"] = 2
    with pytest.raises(pa.ArrowInvalid, match="unexpected field"):
        drain(JsonArrowSource, config)


def test_malformed_csv_row_names_file_and_line(tmp_path: Path) -> None:
    lines = ["a,b"] + [f"{i},{i}" for i in range(2000)]
    lines[1500] = "7"  # line 1501 of the file
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    for workers in (1, 2):
        with pytest.raises(
            pa.ArrowInvalid, match=rf"{path}:1501: malformed CSV row: expected 2 columns, got 1"
        ):
            drain(CsvArrowSource, {"path": str(path), "read_options": {"block_size": 4096}}, workers)


def test_csv_conversion_failure_names_file_line_and_column(tmp_path: Path) -> None:
    lines = ["a,b"] + [f"{i},{i}" for i in range(2000)]
    lines[1800] = "1799,x"  # line 1801, in the second worker's range
    path = tmp_path / "conv.csv"
    path.write_text("\n".join(lines) + "\n")
    for workers in (1, 2):
        config = {"path": str(path), "convert_options": {"column_types": {"b": {"type": "INT64"}}}}
        with pytest.raises(pa.ArrowInvalid, match=rf"{path}:1801: column 'b': .*int64: invalid value 'x'"):
            drain(CsvArrowSource, config, workers)
    # gzip data whose name does not say so: the column's name is read through the codec too.
    packed = tmp_path / "conv.data"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    config = {
        "path": str(packed),
        "common": {"compression": "COMPRESSION_GZIP"},
        "convert_options": {"column_types": {"b": {"type": "INT64"}}},
    }
    with pytest.raises(pa.ArrowInvalid, match=rf"{packed}:1801: column 'b': .*int64: invalid value 'x'$"):
        drain(CsvArrowSource, config)
    # A type inferred from the first block that a later value does not fit: the fix is named.
    with pytest.raises(
        pa.ArrowInvalid, match=r"invalid value 'x' \(its type was inferred from the file's first block"
    ):
        drain(CsvArrowSource, {"path": str(path), "read_options": {"block_size": 4096}})


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ('{"a": 7', r"JSON parse error: Missing a comma or '}' after an object member\."),
        ('{"a": "seven"}', r"JSON parse error: Column\(/a\) changed from number to string"),
    ],
)
def test_malformed_json_names_file_and_line(tmp_path: Path, bad: str, problem: str) -> None:
    lines = [f'{{"a": {i}}}' for i in range(3000)]
    lines[10] = ""  # blank lines hold no record but count as lines
    lines[2500] = bad  # line 2501 of the file
    path = tmp_path / "bad.json"
    path.write_text("\n".join(lines) + "\n")
    for workers in (1, 2):
        config = {"path": str(path), "read_options": {"block_size": 4096}}
        with pytest.raises(pa.ArrowInvalid, match=rf"^{path}:2501: {problem}$"):
            drain(JsonArrowSource, config, workers)
    gzipped = tmp_path / "bad.json.gz"
    gzipped.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(pa.ArrowInvalid, match=rf"^{gzipped}:2501: {problem}$"):
        drain(JsonArrowSource, {"path": str(gzipped), "read_options": {"block_size": 4096}})
    spanning = {"path": str(path), "parse_options": {"newlines_in_values": True}}
    with pytest.raises(pa.ArrowInvalid, match=rf"^{path}: record 2500: {problem}$"):
        drain(JsonArrowSource, spanning)


def test_missing_input_and_bad_options_fail_validation(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.csv")
    assert f"config.path: no such file or directory: {missing}" == preflight(
        CsvArrowSource, {"path": missing}
    )
    assert preflight(CsvArrowSource, {"path": str(tmp_path)}) == ""
    path = str(tmp_path)
    assert "remote filesystems" in config_error(ParquetArrowSource, {"path": "s3://bucket/key"})
    assert "FILE_SYSTEM_S3 is not supported" in config_error(
        ParquetArrowSource, {"path": path, "common": {"filesystem": "FILE_SYSTEM_S3"}}
    )
    assert "conflicts with column_names" in config_error(
        CsvArrowSource,
        {"path": path, "read_options": {"column_names": ["a"], "autogenerate_column_names": True}},
    )
    assert "exactly one character" in config_error(
        CsvArrowSource, {"path": path, "parse_options": {"delimiter": ";;"}}
    )
    assert "needs include_columns" in config_error(
        CsvArrowSource, {"path": path, "convert_options": {"include_missing_columns": True}}
    )
    assert "needs decimal_precision" in config_error(
        CsvArrowSource, {"path": path, "convert_options": {"column_types": {"a": {"type": "DECIMAL128"}}}}
    )
    # A column that column_types or include_columns names must exist: Arrow would ignore the
    # type of a misspelt one, and the column would silently get another type.
    named = {"column_names": ["id", "l_discount"]}
    assert "no column 'l_discuont' in read_options.column_names: did you mean 'l_discount'?" in config_error(
        CsvArrowSource,
        {
            "path": path,
            "read_options": named,
            "convert_options": {"column_types": {"l_discuont": {"type": "INT8"}}},
        },
    )
    header = tmp_path / "h.csv"
    header.write_text("id,l_discount\n1,0.5\n")
    typo = {"column_types": {"l_discuont": {"type": "FLOAT32"}}, "include_columns": ["id", "i"]}
    assert preflight(CsvArrowSource, {"path": str(header), "convert_options": typo}).splitlines() == [
        f"config.convert_options.column_types: no column 'l_discuont' in the header of {header}:"
        " did you mean 'l_discount'?",
        f"config.convert_options.include_columns: no column 'i' in the header of {header}:"
        " did you mean 'id'?",
    ]
    typo["include_missing_columns"] = True  # then a missing one is a column of nulls
    assert len(preflight(CsvArrowSource, {"path": str(header), "convert_options": typo}).splitlines()) == 1
    # Another engine's name for a type gets the flow-pipe name as its fix.
    with pytest.raises(ValidationError) as caught:
        CsvArrowSource.config_model.model_validate(
            {"path": path, "convert_options": {"column_types": {"a": {"type": "DATA_TYPE_DOUBLE"}}}}
        )
    assert caught.value.errors()[0]["ctx"]["hint"] == "did you mean DATA_TYPE_FLOAT64?"
    assert "DECIMAL128 holds at most 38 digits" in config_error(
        CsvArrowSource,
        {
            "path": path,
            "convert_options": {"column_types": {"a": {"type": "DECIMAL128", "decimal_precision": 50}}},
        },
    )
    for source in (CsvArrowSource, JsonArrowSource):
        assert "COMPRESSION_SNAPPY cannot compress a text stream" in config_error(
            source, {"path": path, "common": {"compression": "COMPRESSION_SNAPPY"}}
        )
    valid = "(valid: OUTPUT_TYPE_TABLE, OUTPUT_TYPE_RECORD_BATCH)"
    assert f"unknown value 'OUTPUT_TYPE_ROWS' {valid}" in config_error(
        CsvArrowSource, {"path": path, "output_type": "OUTPUT_TYPE_ROWS"}
    )


def test_empty_directory_and_unknown_column_fail_at_open(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    source = make(ParquetArrowSource, {"path": str(tmp_path / "empty")})
    with pytest.raises(FileNotFoundError, match=r"no \.parquet files under"):
        source.produce_batch(1)
    pa_pq.write_table(sample_table(10), tmp_path / "t.parquet")
    source = make(ParquetArrowSource, {"path": str(tmp_path / "t.parquet"), "columns": ["id", "nope"]})
    with pytest.raises(KeyError, match="no column nope; columns are: id, small"):
        source.produce_batch(1)


def test_enum_forms_are_equivalent(tmp_path: Path) -> None:
    path = str(tmp_path)
    models = [
        ParquetArrowSource.config_model.model_validate({"path": path, "output_type": form})
        for form in ("OUTPUT_TYPE_RECORD_BATCH", "record_batch", "RECORD_BATCH", 1)
    ]
    assert len({m.model_dump_json() for m in models}) == 1


def test_empty_share_ends_without_records(tmp_path: Path) -> None:
    pa_pq.write_table(sample_table(10), tmp_path / "t.parquet")  # one row group for three workers
    source = make(ParquetArrowSource, {"path": str(tmp_path / "t.parquet")}, index=2, workers=3)
    with pytest.raises(EndOfStream):
        source.produce_batch(1)
