"""``csv_arrow_source``, ``json_arrow_source``, ``parquet_arrow_source``, ``orc_arrow_source``.

Each streams its input: one record batch in memory at a time per worker (flow-pipe read whole
files in ``configure``). ``OUTPUT_TYPE_RECORD_BATCH`` emits one record per batch;
``OUTPUT_TYPE_TABLE`` (the original's default) emits one table holding the worker's whole
share, so its memory is that share. With ``threads: N`` the workers split the input — files,
Parquet row groups, ORC stripes, or byte ranges of a plain CSV/JSON file cut at line
boundaries — so every row is read exactly once.
"""

# ruff: noqa: I001  (pyarrow after .arrow, whose import error says how to install it)
from __future__ import annotations

import contextlib
import difflib
import functools
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from abc import ABCMeta, abstractmethod
from typing import Any, ClassVar, Literal, TypeVar, cast

from pydantic import Field, field_validator, model_validator

from flowpipe import Batch, EndOfStream, FileScan, Source, StageConfig

from ._options import ColumnType, CommonOptions, OutputType, ProtoEnum, conflict, input_problems, local_path
from ._split import input_files, line_ranges, lines_before, open_range
from .arrow import arrow_type, check_text_codec, emit, formats, stream_codec

import pyarrow as pa

__all__ = ["CsvArrowSource", "JsonArrowSource", "OrcArrowSource", "ParquetArrowSource"]


class ArrowSourceConfig(StageConfig):
    path: str = Field(description="file to read, or a directory: every matching file under it, in name order")
    output_type: OutputType = Field(
        OutputType.TABLE,
        description="OUTPUT_TYPE_TABLE: one table per worker; OUTPUT_TYPE_RECORD_BATCH: streamed batches",
    )
    common: CommonOptions = Field(CommonOptions(), description="filesystem (local only) and compression")

    _path = field_validator("path")(local_path)


class _TextSourceConfig(ArrowSourceConfig):
    """CSV and JSON: read through a stream codec."""

    @model_validator(mode="after")
    def _codec(self) -> _TextSourceConfig:
        check_text_codec(self.common, self.path)
        return self


ConfigT = TypeVar("ConfigT", bound=ArrowSourceConfig)


class _ArrowSource(Source[ConfigT], metaclass=ABCMeta):
    """Emits the record batches of :meth:`_read`, this worker's share of the input."""

    @classmethod
    def preflight(cls, config: Any) -> list[str]:
        return input_problems(config.path)

    def open(self) -> None:
        self._batches = self._read()
        self._done = False

    @abstractmethod
    def _read(self) -> Iterator[pa.RecordBatch]:
        """This worker's share of the input, as record batches."""

    def produce_batch(self, limit: int) -> Batch:
        if self.config.output_type is OutputType.RECORD_BATCH:
            for batch in self._batches:
                if batch.num_rows:
                    return emit([batch])
            raise EndOfStream
        if self._done:
            raise EndOfStream
        self._done = True
        batches = [b for b in self._batches if b.num_rows]
        if not batches:
            raise EndOfStream
        if other := next((b.schema for b in batches if b.schema != batches[0].schema), None):
            first = ", ".join(f"{f.name}: {f.type}" for f in batches[0].schema)
            then = ", ".join(f"{f.name}: {f.type}" for f in other)
            raise ValueError(
                f"OUTPUT_TYPE_TABLE: the files' columns differ ({first}, then {then}), so they"
                " make no one table: give the column types, or read OUTPUT_TYPE_RECORD_BATCH"
            )
        return emit([pa.Table.from_batches(batches)])


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Errors raised while reading ``path`` name it (Arrow's messages often do not)."""
    try:
        yield
    except (pa.ArrowException, OSError) as error:
        if str(path) in str(error):
            raise
        raise type(error)(f"{path}: {error}") from error


# --- CSV -------------------------------------------------------------------------------------


def _one_char(value: str) -> str:
    if len(value) != 1:
        raise ValueError(f"must be exactly one character, got {value!r}")
    return value


class CsvReadOptions(StageConfig):
    use_threads: bool = Field(False, description="parse each block with several threads (no line numbers)")
    block_size: int = Field(1 << 20, gt=0, description="bytes per block; one record batch per block")
    skip_rows: int = Field(0, ge=0, description="rows to skip before the column names")
    skip_rows_after_names: int = Field(0, ge=0, description="rows to skip after the column names")
    column_names: list[str] = Field([], description="column names; the first row is then data")
    autogenerate_column_names: bool = Field(False, description="name the columns f0, f1, …")

    @model_validator(mode="after")
    def _names(self) -> CsvReadOptions:
        if self.column_names and self.autogenerate_column_names:
            raise conflict(
                ("autogenerate_column_names",), "conflicts with column_names: give one or the other", True
            )
        return self


class CsvParseOptions(StageConfig):
    delimiter: str = Field(",", description="field delimiter (one character)")
    quoting: bool = Field(True, description="values may be quoted")
    quote_char: str = Field('"', description="quoting character")
    double_quote: bool = Field(True, description="a doubled quote inside a quoted value is one quote")
    escaping: bool = Field(False, description="values may use escape_char")
    escape_char: str = Field("\\", description="escaping character")
    newlines_in_values: bool = Field(
        False, description="quoted values may hold newlines (no byte-range split)"
    )
    ignore_empty_lines: bool = Field(True, description="skip empty lines")

    _chars = field_validator("delimiter", "quote_char", "escape_char")(_one_char)

    @model_validator(mode="after")
    def _distinct(self) -> CsvParseOptions:
        if self.quoting and self.quote_char == self.delimiter:
            raise conflict(("quote_char",), "must differ from the delimiter", self.quote_char)
        return self


class CsvConvertOptions(StageConfig):
    check_utf8: bool = Field(True, description="check that string columns are valid UTF-8")
    column_types: dict[str, ColumnType] = Field({}, description="types by column name; others inferred")
    null_values: list[str] | None = Field(None, description="strings meaning null (Arrow's list by default)")
    true_values: list[str] | None = Field(None, description="strings meaning true")
    false_values: list[str] | None = Field(None, description="strings meaning false")
    strings_can_be_null: bool = Field(False, description="null_values apply to string columns too")
    quoted_strings_can_be_null: bool = Field(True, description="quoted values may be null")
    auto_dict_encode: bool = Field(False, description="dictionary-encode string columns")
    auto_dict_max_cardinality: int | None = Field(None, gt=0, description="limit for auto_dict_encode")
    decimal_point: str = Field(".", description="decimal point character")
    include_columns: list[str] = Field([], description="only these columns, in this order")
    include_missing_columns: bool = Field(False, description="include_columns absent from the file are null")

    _point = field_validator("decimal_point")(_one_char)

    @model_validator(mode="after")
    def _include(self) -> CsvConvertOptions:
        if self.include_missing_columns and not self.include_columns:
            raise conflict(("include_missing_columns",), "needs include_columns", True)
        return self


class CsvSourceConfig(_TextSourceConfig):
    read_options: CsvReadOptions = Field(CsvReadOptions(), description="Arrow CSV ReadOptions")
    parse_options: CsvParseOptions = Field(CsvParseOptions(), description="Arrow CSV ParseOptions")
    convert_options: CsvConvertOptions = Field(CsvConvertOptions(), description="Arrow CSV ConvertOptions")

    @model_validator(mode="after")
    def _named_columns(self) -> CsvSourceConfig:
        names = self.read_options.column_names
        if names and (unknown := _unknown_columns(self, names, "in read_options.column_names")):
            key, message = unknown[0]
            raise conflict(("convert_options", key), message, None)
        return self


def _unknown_columns(config: CsvSourceConfig, names: list[str], where: str) -> list[tuple[str, str]]:
    """(key of ``convert_options``, message) for each column ``column_types`` or
    ``include_columns`` names that ``names`` lacks (``include_columns`` may, with
    ``include_missing_columns``)."""
    convert = config.convert_options
    named = [("column_types", list(convert.column_types))]
    if not convert.include_missing_columns:
        named.append(("include_columns", convert.include_columns))
    problems = []
    for key, columns in named:
        for column in (c for c in columns if c not in names):
            near = difflib.get_close_matches(column, names, n=1)
            fix = f"did you mean '{near[0]}'?" if near else f"the columns are {', '.join(names)}"
            problems.append((key, f"no column '{column}' {where}: {fix}"))
    return problems


_COLUMN_NUMBER = re.compile(r"In CSV column #(\d+): ")
_ROW_NUMBER = re.compile(r"Row #(\d+): ")


class CsvArrowSource(_ArrowSource[CsvSourceConfig]):
    """Streams CSV files (plain or compressed) as Arrow record batches."""

    @classmethod
    def output_schema(cls, config: CsvSourceConfig, inputs: Mapping[str, Any]) -> pa.Schema | None:
        """Known when ``include_columns`` names the columns and ``column_types`` types each;
        otherwise the types are inferred from the data."""
        convert = config.convert_options
        if not convert.include_columns or any(c not in convert.column_types for c in convert.include_columns):
            return None
        return pa.schema([(c, arrow_type(convert.column_types[c])) for c in convert.include_columns])

    @classmethod
    def preflight(cls, config: CsvSourceConfig) -> list[str]:
        """Besides the path: every column ``column_types`` and ``include_columns`` name is in
        the file's header (one file; a directory's files may differ). Arrow ignores the type
        of a column it does not find, so a misspelt name would silently change a type."""
        problems = super().preflight(config)
        path = Path(local_path(config.path))
        if problems or not path.is_file() or config.read_options.column_names:
            return problems  # column_names are checked with the config
        read, parse, _ = cls._arrow_options(config, None)
        header = cls._header(path, stream_codec(config.common.compression, path), read, parse)
        unknown = _unknown_columns(config, header, f"in the header of {path}") if header else []
        return [f"config.convert_options.{key}: {message}" for key, message in unknown]

    def _options(self) -> tuple[Any, Any, Any]:
        self._invalid: list[Any] = []
        return self._arrow_options(self.config, self._invalid_row)

    @staticmethod
    def _arrow_options(
        config: CsvSourceConfig, on_invalid: Callable[[Any], Any] | None
    ) -> tuple[Any, Any, Any]:
        read, parse, convert = config.read_options, config.parse_options, config.convert_options
        return (
            formats.csv.ReadOptions(
                use_threads=read.use_threads,
                block_size=read.block_size,
                skip_rows=read.skip_rows,
                skip_rows_after_names=read.skip_rows_after_names,
                column_names=read.column_names or None,
                autogenerate_column_names=read.autogenerate_column_names,
            ),
            formats.csv.ParseOptions(
                delimiter=parse.delimiter,
                quote_char=parse.quote_char if parse.quoting else False,
                double_quote=parse.double_quote,
                escape_char=parse.escape_char if parse.escaping else False,
                newlines_in_values=parse.newlines_in_values,
                ignore_empty_lines=parse.ignore_empty_lines,
                invalid_row_handler=on_invalid,
            ),
            formats.csv.ConvertOptions(
                check_utf8=convert.check_utf8,
                column_types={name: arrow_type(t) for name, t in convert.column_types.items()},
                null_values=convert.null_values,
                true_values=convert.true_values,
                false_values=convert.false_values,
                strings_can_be_null=convert.strings_can_be_null,
                quoted_strings_can_be_null=convert.quoted_strings_can_be_null,
                auto_dict_encode=convert.auto_dict_encode,
                auto_dict_max_cardinality=convert.auto_dict_max_cardinality,
                decimal_point=convert.decimal_point,
                include_columns=convert.include_columns or None,
                include_missing_columns=convert.include_missing_columns,
            ),
        )

    def _invalid_row(self, row: Any) -> Literal["skip", "error"]:
        self._invalid.append(row)  # reported with its file and line by _explain
        return "error"

    def _read(self) -> Iterator[pa.RecordBatch]:
        config, context = self.config, self.context
        files = input_files(config.path)
        index, count = context.worker_index, context.worker_count
        read, parse, convert = self._options()
        if (
            count > 1
            and len(files) == 1
            and stream_codec(config.common.compression, files[0]) is None
            and not config.parse_options.newlines_in_values
        ):
            yield from self._read_range(files[0], read, parse, convert)
            return
        for path in files[index::count]:
            codec = stream_codec(config.common.compression, path)
            with _naming(path):
                stream = _input_stream(path, codec)
            yield from self._batches_of(path, 0, stream, read, parse, convert)

    def _read_range(self, path: Path, read: Any, parse: Any, convert: Any) -> Iterator[pa.RecordBatch]:
        """This worker's byte range of one plain file, typed as a single reader would type
        the whole file (from its first block), so that every worker's batches agree."""
        options = self.config.read_options
        with self._explaining(path, 0, read, parse):
            names = formats.csv.open_csv(str(path), read, parse, formats.csv.ConvertOptions()).schema.names
            head = formats.csv.open_csv(str(path), read, parse, convert).schema
        with path.open("rb") as handle:
            skipped = options.skip_rows + options.skip_rows_after_names
            skipped += 0 if options.column_names or options.autogenerate_column_names else 1
            for _ in range(skipped):
                handle.readline()
            first = handle.tell()
        start, end = line_ranges(path, first, self.context.worker_count)[self.context.worker_index]
        if start == end:
            return
        range_read = formats.csv.ReadOptions(
            use_threads=read.use_threads, block_size=read.block_size, column_names=names
        )
        convert.column_types = {field.name: field.type for field in head}
        yield from self._batches_of(path, start, open_range(path, start, end), range_read, parse, convert)

    def _batches_of(
        self, path: Path, start: int, stream: Any, read: Any, parse: Any, convert: Any
    ) -> Iterator[pa.RecordBatch]:
        try:
            with self._explaining(path, start, read, parse):
                yield from formats.csv.open_csv(stream, read, parse, convert)
        finally:
            stream.close()

    @contextlib.contextmanager
    def _explaining(self, path: Path, start: int, read: Any, parse: Any) -> Iterator[None]:
        try:
            with _naming(path):
                yield
        except pa.ArrowInvalid as error:
            raise self._explain(error, path, start, read, parse) from error

    def _explain(self, error: Exception, path: Path, start: int, read: Any, parse: Any) -> Exception:
        """The file and line of a malformed row or of a failed conversion, and its column."""
        message = str(error).removeprefix(f"{path}: ")
        if self._invalid:
            row = self._invalid[-1]
            line = f"{lines_before(path, start) + row.number}" if row.number else "?"
            return pa.ArrowInvalid(
                f"{path}:{line}: malformed CSV row: expected {row.expected_columns} columns, "
                f"got {row.actual_columns}: {row.text!r}"
            )
        where = str(path)
        if row_match := _ROW_NUMBER.search(message):  # known when parsing on one thread
            where += f":{lines_before(path, start) + int(row_match.group(1))}"
            message = message.replace(row_match.group(0), "")
        if column := _COLUMN_NUMBER.search(message):
            codec = stream_codec(self.config.common.compression, path)
            names = read.column_names or self._header(path, codec, read, parse)
            index = int(column.group(1))
            name = f"'{names[index]}'" if index < len(names) else f"#{index}"
            message = message.replace(column.group(0), f"column {name}: ")
            if index >= len(names) or names[index] not in self.config.convert_options.column_types:
                # Streaming, the type comes from the first block; flow-pipe read the whole file.
                message += (
                    " (its type was inferred from the file's first block: give it in"
                    " convert_options.column_types, or raise read_options.block_size)"
                )
        return pa.ArrowInvalid(f"{where}: {message}")

    @staticmethod
    def _header(path: Path, codec: str | None, read: Any, parse: Any) -> list[str]:
        try:
            names: list[str] = formats.csv.open_csv(_input_stream(path, codec), read, parse).schema.names
        except (pa.ArrowException, OSError):
            return []
        return names


def _quiet_undecodable_rows(hook: Callable[[Any], object]) -> Callable[[Any], object]:
    """``sys.unraisablehook`` without the traceback pyarrow prints when a malformed CSV row is
    not UTF-8 (it fails to decode the row for ``_invalid_row``): the read fails anyway with a
    message naming the file and line."""

    def unraisable(info: Any) -> object:
        if isinstance(info.exc_value, UnicodeDecodeError) and (
            getattr(info.object, "__func__", None) is CsvArrowSource._invalid_row
        ):
            return None
        return hook(info)

    return unraisable


sys.unraisablehook = _quiet_undecodable_rows(sys.unraisablehook)


# --- JSON ------------------------------------------------------------------------------------


class UnexpectedFieldBehavior(ProtoEnum):
    __prefix__ = "unexpected_field_behavior_"
    INFER_TYPE = "infer_type"  # 0: flow-pipe's enum has no UNSPECIFIED
    IGNORE = "ignore"
    ERROR = "error"


_BEHAVIOUR: dict[UnexpectedFieldBehavior, Literal["ignore", "error", "infer"]] = {
    UnexpectedFieldBehavior.INFER_TYPE: "infer",
    UnexpectedFieldBehavior.IGNORE: "ignore",
    UnexpectedFieldBehavior.ERROR: "error",
}


class JsonReadOptions(StageConfig):
    use_threads: bool = Field(False, description="parse each block with several threads")
    block_size: int = Field(1 << 20, gt=0, description="bytes per block; one record batch per block")


class JsonParseOptions(StageConfig):
    explicit_schema: dict[str, ColumnType] = Field({}, description="types by field name; others inferred")
    newlines_in_values: bool = Field(False, description="objects may span lines (no byte-range split)")
    unexpected_field_behavior: UnexpectedFieldBehavior = Field(
        UnexpectedFieldBehavior.INFER_TYPE,
        description="fields outside explicit_schema: INFER_TYPE, IGNORE or ERROR",
    )


class JsonSourceConfig(_TextSourceConfig):
    read_options: JsonReadOptions = Field(JsonReadOptions(), description="Arrow JSON ReadOptions")
    parse_options: JsonParseOptions = Field(JsonParseOptions(), description="Arrow JSON ParseOptions")


def _explicit_schema(options: JsonParseOptions) -> pa.Schema:
    return pa.schema([(name, arrow_type(t)) for name, t in options.explicit_schema.items()])


class JsonArrowSource(_ArrowSource[JsonSourceConfig]):
    """Streams line-delimited JSON files as Arrow record batches."""

    @classmethod
    def output_schema(cls, config: JsonSourceConfig, inputs: Mapping[str, Any]) -> pa.Schema | None:
        """``explicit_schema``, when fields outside it are ignored or refused (not inferred)."""
        options = config.parse_options
        if not options.explicit_schema or _BEHAVIOUR[options.unexpected_field_behavior] == "infer":
            return None
        return _explicit_schema(options)

    def _read(self) -> Iterator[pa.RecordBatch]:
        config, context = self.config, self.context
        options = config.parse_options
        schema = _explicit_schema(options)
        read = formats.json.ReadOptions(
            use_threads=config.read_options.use_threads, block_size=config.read_options.block_size
        )
        parse = formats.json.ParseOptions(
            explicit_schema=schema if len(schema) else None,
            newlines_in_values=options.newlines_in_values,
            unexpected_field_behavior=_BEHAVIOUR[options.unexpected_field_behavior],
        )
        files = input_files(config.path)
        index, count = context.worker_index, context.worker_count
        if (
            count > 1
            and len(files) == 1
            and stream_codec(config.common.compression, files[0]) is None
            and not options.newlines_in_values
        ):
            path = files[0]
            with _naming(path):
                head = formats.json.open_json(str(path), read, parse).schema
            # A single reader fails on fields first seen after its first block: so do ranges.
            parse.explicit_schema = head
            if parse.unexpected_field_behavior == "infer":
                parse.unexpected_field_behavior = "error"
            start, end = line_ranges(path, 0, count)[index]
            if start < end:
                yield from self._batches_of(path, partial(open_range, path, start, end), start, read, parse)
            return
        for path in files[index::count]:
            codec = stream_codec(config.common.compression, path)
            yield from self._batches_of(path, partial(_input_stream, path, codec), 0, read, parse)

    def _batches_of(
        self, path: Path, open_stream: Callable[[], Any], start: int, read: Any, parse: Any
    ) -> Iterator[pa.RecordBatch]:
        """The batches of one stream, which holds ``path`` from byte ``start`` on."""
        with _naming(path):
            stream = open_stream()
        rows = 0
        try:
            with _naming(path):
                try:
                    for batch in formats.json.open_json(stream, read, parse):
                        rows += batch.num_rows
                        yield batch
                except pa.ArrowInvalid as error:
                    raise self._located(error, path, open_stream, start, rows) from None
        finally:
            stream.close()

    def _located(
        self, error: pa.ArrowInvalid, path: Path, open_stream: Callable[[], Any], start: int, rows: int
    ) -> pa.ArrowInvalid:
        """Arrow's error with the file and line of its record: Arrow counts rows in a block."""
        message = str(error)
        found = re.search(r" in row (\d+)$", message)
        if found is None:
            return error
        record = rows + int(found[1])  # 0-based, blank lines not counted
        problem = message[: found.start()]
        if self.config.parse_options.newlines_in_values:  # records span lines: count records
            return pa.ArrowInvalid(f"{path}: record {record + 1}: {problem}")
        line = lines_before(path, start) + _line_of_record(open_stream(), record)
        return pa.ArrowInvalid(f"{path}:{line}: {problem}")


def _line_of_record(stream: Any, record: int) -> int:
    """The line (from 1) of the ``record``-th non-blank line (from 0); for error messages only."""
    seen = line = 0
    tail = b""
    try:
        while chunk := stream.read(1 << 20):
            *lines, tail = (tail + chunk).split(b"\n")
            for text in lines:
                line += 1
                if text.strip():
                    if seen == record:
                        return line
                    seen += 1
        return line + 1  # the last line, without a newline
    finally:
        stream.close()


# --- Parquet and ORC -------------------------------------------------------------------------


class ColumnarSourceConfig(ArrowSourceConfig):
    batch_size: int | None = Field(
        None, gt=0, description="rows per record batch (the reader's default if unset)"
    )
    columns: list[str] = Field([], description="read only these columns (all by default)")


class _ColumnarSource(_ArrowSource[ColumnarSourceConfig]):
    """A Parquet or ORC source: files whose footers tell their schema before anything runs."""

    _suffix: ClassVar[str]

    @staticmethod
    @abstractmethod
    def _file_schema(path: Path) -> pa.Schema:
        """The schema in the footer of one file of the format."""

    @staticmethod
    def _select(schema: pa.Schema, columns: list[str]) -> pa.Schema:
        """The schema of the batches read with ``columns`` (all present): in the order asked."""
        return pa.schema([schema.field(name) for name in columns])

    @classmethod
    def _footer(cls, path: Path) -> pa.Schema:
        """``_file_schema``, read once per version of the file: ``preflight``, ``output_schema``
        and ``file_scan`` each look at every file of a directory."""
        stat = path.stat()
        return _footers(cls._file_schema, str(path), stat.st_mtime_ns, stat.st_size)

    @classmethod
    def preflight(cls, config: ColumnarSourceConfig) -> list[str]:
        """Every input file's footer, read before the flow starts: a file that is not of the
        format, or a single file without a column of ``columns``, is found now rather than
        mid-run. (A directory's ``columns`` may name hive partition columns, which no file holds.)"""
        problems = input_problems(config.path)
        if problems:
            return problems
        try:
            files = input_files(config.path, (cls._suffix,))
        except FileNotFoundError as error:
            return [f"config.path: {error}"]
        for path in files:
            try:
                schema = cls._footer(path)
            except (pa.ArrowException, OSError) as error:
                return [f"config.path: {path}: {error}"]
            missing = _missing_columns(config.columns, schema, path)
            if missing and Path(config.path).is_file():
                return [f"config.columns: {missing}"]
        return []

    @classmethod
    def output_schema(cls, config: ColumnarSourceConfig, inputs: Mapping[str, Any]) -> pa.Schema | None:
        """The files' schema (of ``columns``) when they all have the same one; unknown when
        they differ or sit in hive partitions (``key=value`` folders add columns whose types
        only the reading tells)."""
        root = Path(config.path)
        files = input_files(config.path, (cls._suffix,))
        if any("=" in part for path in files for part in path.relative_to(root).parent.parts):
            return None
        schema = cls._footer(files[0])
        if any(not cls._footer(path).equals(schema) for path in files[1:]):
            return None
        missing = _missing_columns(config.columns, schema, root)
        if missing:
            raise ValueError(f"config.columns: {missing}")
        return cls._select(schema, config.columns) if config.columns else schema


class ParquetArrowSource(_ColumnarSource):
    """Streams Parquet files as Arrow record batches, row group by row group.

    A directory means the ``*.parquet`` files under it, hive partition columns included. Row
    groups are dealt out to the workers in turn."""

    _suffix = ".parquet"

    @staticmethod
    def _file_schema(path: Path) -> pa.Schema:
        schema: pa.Schema = formats.parquet.read_schema(str(path))
        return schema

    @classmethod
    def file_scan(cls, config: ColumnarSourceConfig) -> FileScan | None:
        """The files, when their schema is known (not for hive partitions, whose column types
        this source decides): a query can then read just the row groups and columns it needs."""
        schema = cls.output_schema(config, {})
        if schema is None:
            return None
        return FileScan(
            "parquet", tuple(str(path.resolve()) for path in input_files(config.path, (cls._suffix,))), schema
        )

    def _read(self) -> Iterator[pa.RecordBatch]:
        config, context = self.config, self.context
        root = Path(config.path)
        files = input_files(config.path, (self._suffix,))
        # Workers already decode in parallel; Arrow's own threads would only compete with them.
        options: dict[str, Any] = {"use_threads": context.worker_count == 1}
        if config.columns:
            options["columns"] = config.columns
        if config.batch_size:
            options["batch_size"] = config.batch_size
        mine = slice(context.worker_index, None, context.worker_count)
        if root.is_file():  # the common case, without pyarrow.dataset's import cost
            with _naming(root):
                reader = formats.parquet.ParquetFile(str(root))
                _check_columns(config.columns, reader.schema_arrow, root)
            for group in range(reader.num_row_groups)[mine]:
                with _naming(root):
                    yield from reader.iter_batches(row_groups=[group], **options)
            return
        with _naming(root):
            dataset = formats.dataset.dataset(
                [str(f) for f in files], format="parquet", partitioning="hive", partition_base_dir=str(root)
            )
            _check_columns(config.columns, dataset.schema, root)
            units = [part for fragment in dataset.get_fragments() for part in fragment.split_by_row_group()]
        for unit in units[mine]:
            with _naming(Path(unit.path)):
                yield from unit.to_batches(schema=dataset.schema, **options)


class OrcArrowSource(_ColumnarSource):
    """Streams ORC files (a directory: ``*.orc`` under it), stripe by stripe."""

    _suffix = ".orc"

    @staticmethod
    def _file_schema(path: Path) -> pa.Schema:
        schema: pa.Schema = formats.orc.ORCFile(str(path)).schema
        return schema

    def _read(self) -> Iterator[pa.RecordBatch]:
        config, context = self.config, self.context
        units: list[tuple[Path, Any, int]] = []
        for path in input_files(config.path, (self._suffix,)):
            with _naming(path):
                orc = formats.orc.ORCFile(str(path))
                _check_columns(config.columns, orc.schema, path)
            units += [(path, orc, stripe) for stripe in range(orc.nstripes)]
        columns = config.columns or None
        for path, orc, stripe in units[context.worker_index :: context.worker_count]:
            with _naming(path):
                batch = orc.read_stripe(stripe, columns=columns)
            if columns:  # ORC reads them in the file's order
                batch = batch.select(columns)
            step = config.batch_size or batch.num_rows or 1
            for offset in range(0, batch.num_rows, step):
                yield batch.slice(offset, step)


@functools.lru_cache(maxsize=1024)
def _footers(read: Callable[[Path], pa.Schema], path: str, mtime_ns: int, size: int) -> pa.Schema:
    return read(Path(path))


def _input_stream(path: Path, codec: str | None) -> Any:
    return pa.input_stream(str(path), compression=cast(Any, codec))


def _check_columns(columns: list[str], schema: pa.Schema, path: Path) -> None:
    missing = _missing_columns(columns, schema, path)
    if missing:
        raise KeyError(missing)


def _missing_columns(columns: list[str], schema: pa.Schema, path: Path) -> str:
    """What ``columns`` names that ``schema`` lacks, said in one line ("" when nothing)."""
    missing = [c for c in columns if c not in schema.names]
    if not missing:
        return ""
    return f"{path}: no column {', '.join(missing)}; columns are: {', '.join(schema.names)}"
