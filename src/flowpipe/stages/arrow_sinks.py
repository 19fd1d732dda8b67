# ruff: noqa: I001  (pyarrow after .arrow, whose import error says how to install it)
"""``csv_arrow_sink``, ``parquet_arrow_sink``, ``orc_arrow_sink``.

Each writes ONE file across all the batches it receives (flow-pipe rewrote the file for every
payload) and finishes it in ``close()``, which the runtime calls on every exit path: the file
is complete after the job ends, after a SIGTERM drain and after another failure. Parquet and
ORC files, which are only readable once their footer is written, are written under a hidden
temporary name and renamed into place when complete; when their writer itself fails, the
temporary file is removed and the target left as it was. ``parquet_arrow_sink`` with
``write_opts`` writes a (hive-partitioned) dataset directory instead, replaced as a whole.

Records may be RecordBatches, Tables or Arrow IPC stream bytes.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from abc import ABCMeta, abstractmethod
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from pydantic import Field, field_validator, model_validator

from flowpipe import Batch, Sink, StageConfig, StageContext

from ._options import (
    CommonOptions,
    Compression,
    ProtoEnum,
    conflict,
    local_path,
    output_dir_problems,
    output_file_problems,
)
from .arrow import check_text_codec, conform, formats, record_batches, stream_codec

import pyarrow as pa

__all__ = ["CsvArrowSink", "OrcArrowSink", "ParquetArrowSink"]


class ArrowSinkConfig(StageConfig):
    path: str = Field(description="file to write (replaced when the stage finishes)")
    common: CommonOptions = Field(CommonOptions(), description="filesystem (local only) and compression")

    _path = field_validator("path")(local_path)


ConfigT = TypeVar("ConfigT", bound=ArrowSinkConfig)
T = TypeVar("T")
P = ParamSpec("P")


class _Writer(Protocol):
    """Where one sink worker's batches go; created on the first batch, which gives the schema."""

    def write(self, part: pa.RecordBatch) -> None: ...

    def finish(self) -> None:
        """Complete the output and put it in place."""

    def discard(self) -> None:
        """Instead of :meth:`finish`, once the writer failed: release it, remove what it wrote."""


class _ArrowSink(Sink[ConfigT], metaclass=ABCMeta):
    """Writes every incoming record batch through one :class:`_Writer`. Later batches must
    have the first one's schema, or one that casts to it."""

    #: False when several workers may write side by side (a dataset directory).
    single_file = True
    #: What a failed writer leaves at ``path``, for the log.
    left_on_failure = "nothing was replaced"

    @classmethod
    def preflight(cls, config: Any) -> list[str]:
        return output_file_problems(config.path)

    def open(self) -> None:
        if self.single_file and self.context.worker_count > 1:
            raise ValueError(f"{self.context.stage_type} writes one file: run it with threads: 1")
        self._schema: pa.Schema | None = None
        self._out: _Writer | None = None
        self._failed = False

    @abstractmethod
    def _writer(self, schema: pa.Schema) -> _Writer:
        """The writer of this sink's format, for batches of ``schema``."""

    def consume_batch(self, batch: Batch) -> None:
        for record in batch.data:
            for part in record_batches(record):
                if self._out is None:
                    self._schema = part.schema
                    self._out = self._writing(self._writer, part.schema)
                else:
                    part = conform(part, cast(pa.Schema, self._schema), self.config.path)
                self._writing(self._out.write, part)

    def _writing(self, step: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a step of the writer. Its failure discards the output, so that close() does not
        put a broken file in place of a good one; any other failure (a bad batch, another
        stage's, a SIGTERM) still has close() finish what was written."""
        try:
            return step(*args, **kwargs)
        except BaseException:
            self._failed = True
            if self._out is not None:
                self._out.discard()
            raise

    def close(self) -> None:
        try:
            if self._out is not None and not self._failed:
                self._writing(self._out.finish)
        finally:
            name, path = self.context.stage_name, self.config.path
            if self._failed:
                self.context.logger.warning("%s: writing %s failed; %s", name, path, self.left_on_failure)
            elif self._out is None:
                self.context.logger.warning("%s: no data received; %s not written", name, path)


# --- CSV -------------------------------------------------------------------------------------


class QuotingStyle(ProtoEnum):
    __prefix__ = "quoting_style_"
    NEEDED = "needed"
    ALL_VALID = "all_valid"
    NONE = "none"


class CsvWriteOptions(StageConfig):
    include_header: bool = Field(True, description="write the column names first (not when appending)")
    batch_size: int = Field(1024, gt=0, description="rows converted at a time")
    delimiter: str = Field(",", min_length=1, max_length=1, description="field delimiter")
    null_string: str = Field("", description="text of a null value")
    eol: str = Field("\n", min_length=1, description="end of line")
    quoting_style: QuotingStyle = Field(
        QuotingStyle.NEEDED, description="QUOTING_STYLE_NEEDED/ALL_VALID/NONE"
    )
    quoting_header: QuotingStyle = Field(QuotingStyle.NEEDED, description="the same, for the header")


class CsvSinkConfig(ArrowSinkConfig):
    append: bool = Field(False, description="append to the file instead of replacing it")
    write_options: CsvWriteOptions = Field(CsvWriteOptions(), description="Arrow CSV WriteOptions")

    @model_validator(mode="after")
    def _codec(self) -> CsvSinkConfig:
        check_text_codec(self.common, self.path)
        return self


class CsvArrowSink(_ArrowSink[CsvSinkConfig]):
    """Writes Arrow data to one CSV file (compressed by COMPRESSION_GZIP/ZSTD/… or by extension)."""

    left_on_failure = "it holds what was written before the failure (CSV is written in place)"

    def _writer(self, schema: pa.Schema) -> _Writer:
        return _CsvFile(self.config, schema)


class _CsvFile(_Writer):
    """Written in place: CSV is readable as it grows, and append must write in place."""

    def __init__(self, config: CsvSinkConfig, schema: pa.Schema) -> None:
        options = config.write_options
        path = Path(config.path)
        codec = stream_codec(config.common.compression, path)
        appending = config.append and path.exists() and path.stat().st_size > 0
        raw = pa.OSFile(str(path), "ab" if config.append else "wb")
        self._stream = pa.CompressedOutputStream(raw, cast(Any, codec)) if codec else raw
        csv = formats.csv
        self._writer = csv.CSVWriter(
            self._stream,
            schema,
            write_options=csv.WriteOptions(
                include_header=options.include_header and not appending,
                batch_size=options.batch_size,
                delimiter=options.delimiter,
                null_string=options.null_string,
                eol=options.eol,
                quoting_style=options.quoting_style.value,
                quoting_header=options.quoting_header.value,
            ),
        )

    def write(self, part: pa.RecordBatch) -> None:
        self._writer.write_batch(part)

    def finish(self) -> None:
        self._writer.close()
        self._stream.close()

    def discard(self) -> None:
        # What was written stays (in place); the writer's first error is the one reported.
        with contextlib.suppress(Exception):
            self.finish()


class _AsideFile(_Writer):
    """A file that is unreadable until complete (Parquet, ORC), written beside its target as
    ``.NAME.inprogress`` and renamed into place by :meth:`finish`: readers never see half a
    file, and a failed writer leaves the target as it was."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._temp = self._path.with_name(f".{self._path.name}.inprogress")

    def _create(self, make: Callable[[str], T]) -> T:
        """``make(temporary path)``, which may create the file before it fails."""
        try:
            return make(str(self._temp))
        except BaseException:
            self._temp.unlink(missing_ok=True)
            raise

    @abstractmethod
    def _close(self) -> None:
        """Write the footer and close the file."""

    def finish(self) -> None:
        self._close()
        os.replace(self._temp, self._path)

    def discard(self) -> None:
        with contextlib.suppress(Exception):  # the writer's first error is the one reported
            self._close()
        self._temp.unlink(missing_ok=True)


# --- Parquet ---------------------------------------------------------------------------------

_PARQUET_CODECS = {
    Compression.AUTO: "snappy",
    Compression.UNCOMPRESSED: "none",
    Compression.SNAPPY: "snappy",
    Compression.GZIP: "gzip",
    Compression.BROTLI: "brotli",
    Compression.ZSTD: "zstd",
    Compression.LZ4: "lz4",
    Compression.LZ4_FRAME: "lz4",
}


def _parquet_codec(value: Compression | None) -> Compression | None:
    if value is not None and value not in _PARQUET_CODECS:
        raise ValueError(f"Parquet cannot use COMPRESSION_{value.name}")
    return value


class Encoding(ProtoEnum):
    __prefix__ = "encoding_"
    UNSPECIFIED = "unspecified"
    PLAIN = "plain"
    PLAIN_DICTIONARY = "plain_dictionary"
    RLE = "rle"
    BIT_PACKED = "bit_packed"
    DELTA_BINARY_PACKED = "delta_binary_packed"
    DELTA_LENGTH_BYTE_ARRAY = "delta_length_byte_array"
    DELTA_BYTE_ARRAY = "delta_byte_array"
    RLE_DICTIONARY = "rle_dictionary"
    BYTE_STREAM_SPLIT = "byte_stream_split"

    @property
    def dictionary(self) -> bool:
        return self in (Encoding.PLAIN_DICTIONARY, Encoding.RLE_DICTIONARY)


class ParquetVersion(ProtoEnum):
    __prefix__ = "parquet_version_"
    UNSPECIFIED = "unspecified"
    V1_0 = "1_0"
    V2_6 = "2_6"


class DataPageVersion(ProtoEnum):
    __prefix__ = "data_page_version_"
    UNSPECIFIED = "unspecified"
    V1 = "v1"
    V2 = "v2"


class SortingColumn(StageConfig):
    column_index: int = Field(ge=0, description="position of the column in the schema")
    descending: bool = Field(False, description="sorted in descending order")
    nulls_first: bool = Field(False, description="nulls sort first")


class ColumnProperties(StageConfig):
    dictionary_enabled: bool | None = Field(None, description="dictionary-encode this column")
    statistics_enabled: bool | None = Field(None, description="write statistics for this column")
    encoding: Encoding = Field(Encoding.UNSPECIFIED, description="ENCODING_* of this column")
    compression: Compression | None = Field(None, description="COMPRESSION_* of this column")
    compression_level: int | None = Field(None, description="codec level of this column")

    _codec = field_validator("compression")(_parquet_codec)


class CdcOptions(StageConfig):
    min_chunk_size: int = Field(256 * 1024, gt=0, description="bytes")
    max_chunk_size: int = Field(1024 * 1024, gt=0, description="bytes")
    norm_level: int = Field(0, description="normalization level")

    @model_validator(mode="after")
    def _sizes(self) -> CdcOptions:
        if self.min_chunk_size >= self.max_chunk_size:
            raise conflict(
                ("min_chunk_size",),
                f"must be less than max_chunk_size ({self.max_chunk_size})",
                self.min_chunk_size,
            )
        return self


def _encoding_conflicts(props: Any, loc: tuple[str, ...]) -> None:
    if props.encoding is Encoding.BIT_PACKED:
        raise conflict((*loc, "encoding"), "ENCODING_BIT_PACKED is deprecated and not written", "BIT_PACKED")
    if _plain(props.encoding) and props.dictionary_enabled:
        raise conflict(
            (*loc, "dictionary_enabled"),
            f"conflicts with encoding ENCODING_{props.encoding.name} (not a dictionary encoding)",
            True,
        )


class WriterProperties(StageConfig):
    dictionary_page_size_limit: int | None = Field(None, gt=0, description="bytes per dictionary page")
    write_batch_size: int | None = Field(None, gt=0, description="rows written at a time")
    max_row_group_length: int | None = Field(None, gt=0, description="most rows per row group")
    data_page_size: int | None = Field(None, gt=0, description="bytes per data page")
    max_rows_per_page: int | None = Field(None, gt=0, description="most rows per data page")
    data_page_version: DataPageVersion = Field(DataPageVersion.UNSPECIFIED, description="V1 (default) or V2")
    version: ParquetVersion = Field(
        ParquetVersion.UNSPECIFIED, description="PARQUET_VERSION_1_0 or 2_6 (default)"
    )
    created_by: str | None = Field(None, description="not supported by pyarrow's writer")
    store_decimal_as_integer: bool | None = Field(None, description="small decimals as INT32/INT64")
    page_checksum_enabled: bool | None = Field(None, description="CRC of each page")
    size_statistics_level: str | None = Field(None, description="not supported by pyarrow's writer")
    dictionary_enabled: bool | None = Field(None, description="dictionary encoding (default true)")
    statistics_enabled: bool | None = Field(None, description="column statistics (default true)")
    page_index_enabled: bool | None = Field(None, description="write the page index")
    encoding: Encoding = Field(Encoding.UNSPECIFIED, description="ENCODING_* of every column")
    compression: Compression | None = Field(None, description="overrides common.compression")
    compression_level: int | None = Field(None, description="codec level")
    max_statistics_size: int | None = Field(None, description="not supported by pyarrow's writer")
    sorting_columns: list[SortingColumn] = Field([], description="declared sort order of the data")
    column_properties: dict[str, ColumnProperties] = Field({}, description="overrides by column name")
    content_defined_chunking_enabled: bool | None = Field(None, description="content-defined page chunking")
    content_defined_chunking_options: CdcOptions | None = Field(None, description="its chunk sizes")

    _codec = field_validator("compression")(_parquet_codec)

    @model_validator(mode="after")
    def _supported(self) -> WriterProperties:
        for name in ("created_by", "size_statistics_level", "max_statistics_size"):
            if getattr(self, name) is not None:
                raise conflict(
                    (name,), "not supported by pyarrow's Parquet writer; remove it", getattr(self, name)
                )
        _encoding_conflicts(self, ())
        for column, props in self.column_properties.items():
            _encoding_conflicts(props, ("column_properties", column))
        return self

    def writer_options(self, common: Compression, names: list[str]) -> dict[str, Any]:
        """Keyword arguments of ``pyarrow.parquet.ParquetWriter`` for columns ``names``."""
        columns = self.column_properties

        def per_column(attr: str, default: Any) -> dict[str, Any]:
            base = getattr(self, attr)
            base = default if base is None else base
            return {n: v for n in names if (v := _column_value(columns, n, attr, base)) is not None}

        codecs = per_column("compression", self.compression or common)
        encodings = {
            n: e.value.upper() for n, e in per_column("encoding", Encoding.UNSPECIFIED).items() if _plain(e)
        }
        # A column's own dictionary_enabled wins over the global one, as in Arrow's builder.
        dictionary = per_column("dictionary_enabled", True)
        options: dict[str, Any] = {
            "compression": {n: _PARQUET_CODECS[c] for n, c in codecs.items()},
            "use_dictionary": [n for n, on in dictionary.items() if on and n not in encodings],
            "write_statistics": [n for n, on in per_column("statistics_enabled", True).items() if on],
            "column_encoding": encodings or None,
        }
        levels = per_column("compression_level", None)
        if levels:
            options["compression_level"] = levels
        if self.version is not ParquetVersion.UNSPECIFIED:
            options["version"] = self.version.value.replace("_", ".")
        if self.data_page_version is not DataPageVersion.UNSPECIFIED:
            options["data_page_version"] = "1.0" if self.data_page_version is DataPageVersion.V1 else "2.0"
        renamed = {
            "dictionary_page_size_limit": "dictionary_pagesize_limit",
            "write_batch_size": "write_batch_size",
            "data_page_size": "data_page_size",
            "max_rows_per_page": "max_rows_per_page",
            "store_decimal_as_integer": "store_decimal_as_integer",
            "page_checksum_enabled": "write_page_checksum",
            "page_index_enabled": "write_page_index",
        }
        options["dictionary_pagesize_limit"] = _DICTIONARY_PAGE_BYTES
        options.update({arg: getattr(self, f) for f, arg in renamed.items() if getattr(self, f) is not None})
        if self.sorting_columns:
            options["sorting_columns"] = [
                formats.parquet.SortingColumn(s.column_index, s.descending, s.nulls_first)
                for s in self.sorting_columns
            ]
        if self.content_defined_chunking_enabled:
            cdc = self.content_defined_chunking_options
            options["use_content_defined_chunking"] = cdc.model_dump() if cdc else True
        return options


def _plain(encoding: Encoding) -> bool:
    return encoding is not Encoding.UNSPECIFIED and not encoding.dictionary


def _column_value(columns: dict[str, ColumnProperties], name: str, attr: str, default: Any) -> Any:
    value = getattr(columns[name], attr) if name in columns else None
    if value is None or value is Encoding.UNSPECIFIED:
        return default
    return value


class WriteOpts(StageConfig):
    """A dataset (directory of files) instead of one file."""

    basename_template: str = Field("part-{i}.parquet", description="file names; {i} counts files")
    max_rows_per_file: int = Field(0, ge=0, description="start a new file after this many rows; 0 = no limit")
    max_rows_per_group: int = Field(0, ge=0, description="most rows per row group; 0 = the writer's default")
    max_partitions: int = Field(1024, gt=0, description="most partitions (directories) written")
    partition_columns: list[str] = Field([], description="hive partitioning: one directory level per column")

    @field_validator("basename_template")
    @classmethod
    def _counter(cls, value: str) -> str:
        if "{i}" not in value:
            raise ValueError("must contain {i}, the file counter")
        return value

    @model_validator(mode="after")
    def _sizes(self) -> WriteOpts:
        if self.max_rows_per_file and self.max_rows_per_group > self.max_rows_per_file:
            raise conflict(
                ("max_rows_per_group",), "cannot exceed max_rows_per_file", self.max_rows_per_group
            )
        return self


class ParquetSinkConfig(ArrowSinkConfig):
    path: str = Field(description="file to write; with write_opts, the dataset's directory")
    row_group_size: int | None = Field(None, gt=0, description="rows per row group (default 1 Mi, or 24 MiB)")
    write_opts: WriteOpts | None = Field(None, description="write a (partitioned) dataset directory")
    writer_properties: WriterProperties = Field(WriterProperties(), description="Parquet writer settings")

    @model_validator(mode="after")
    def _codec(self) -> ParquetSinkConfig:
        props = self.writer_properties
        if props.compression is None and self.common.compression not in _PARQUET_CODECS:
            raise conflict(
                ("common", "compression"),
                f"Parquet cannot use COMPRESSION_{self.common.compression.name}",
                self.common.compression.name,
            )
        codec, level = props.compression or self.common.compression, props.compression_level
        if level is not None and (problem := _level_problem(codec, level)):
            raise conflict(("writer_properties", "compression_level"), problem, level)
        for name, column in props.column_properties.items():
            loc = ("writer_properties", "column_properties", name)
            own = column.compression_level
            if own is not None and (problem := _level_problem(column.compression or codec, own)):
                raise conflict((*loc, "compression_level"), problem, own)
            own_codec = column.compression  # which the global level applies to, without its own
            if (
                own is None
                and level is not None
                and own_codec is not None
                and (problem := _level_problem(own_codec, level))
            ):
                raise conflict(
                    (*loc, "compression"),
                    f"{problem}, and writer_properties.compression_level {level} applies to this "
                    "column too: use another codec here, or another global level",
                    own_codec.name,
                )
        return self


def _level_problem(codec: Compression, level: int) -> str:
    """Why ``codec`` cannot take compression ``level`` ("" when it can): Arrow would fail at the
    first row group, after the flow started."""
    name = _PARQUET_CODECS[codec]
    if name in ("none", "snappy"):
        return f"COMPRESSION_{codec.name} ({name}) has no compression levels: remove compression_level"
    arrow_name = cast(Any, name)  # pyarrow's stubs want a Literal
    low, high = pa.Codec.minimum_compression_level(arrow_name), pa.Codec.maximum_compression_level(arrow_name)
    return "" if low <= level <= high else f"COMPRESSION_{codec.name}'s levels are {low}..{high}"


def _group_rows(config: ParquetSinkConfig) -> int:
    """Rows per row group: the smallest of row_group_size, writer_properties.max_row_group_length
    and write_opts.max_rows_per_group that are set, else :data:`_GROUP_ROWS`."""
    opts = config.write_opts
    limits = (
        config.row_group_size,
        config.writer_properties.max_row_group_length,
        opts.max_rows_per_group if opts else None,
    )
    return min((n for n in limits if n), default=_GROUP_ROWS)


# A row group is written once this many rows, or bytes of Arrow data, are buffered. The writer
# encodes a whole row group in memory: 24 MiB (~180 Ki lineitem rows) keeps a CSV -> Parquet
# flow under 400 MB at a few percent more CPU than 64 MiB (benchmarks/README.md).
_GROUP_ROWS = 1 << 20
_GROUP_BYTES = 24 << 20
# Arrow's 1 MiB default dictionary page makes a column of many distinct values (keys, prices,
# free text) build a large dictionary before falling back to plain encoding: 128 KiB halved the
# writer's CPU on TPC-H lineitem and gave a smaller file (benchmarks/README.md).
_DICTIONARY_PAGE_BYTES = 128 << 10


class ParquetArrowSink(_ArrowSink[ParquetSinkConfig]):
    """Writes Arrow data to one Parquet file, or to a partitioned dataset (write_opts)."""

    @classmethod
    def preflight(cls, config: Any) -> list[str]:
        if config.write_opts is not None:
            return output_dir_problems(config.path)
        return output_file_problems(config.path)

    @classmethod
    def output_schema(cls, config: ParquetSinkConfig, inputs: Mapping[str, Any]) -> None:
        """Nothing comes out; partition columns the input's known schema lacks are refused."""
        schema = next(iter(inputs.values()), None)
        if config.write_opts is not None and schema is not None:
            missing = _missing_partition_columns(config.write_opts, schema)
            if missing:
                raise ValueError(f"config.write_opts.partition_columns: {missing}")

    def open(self) -> None:
        opts = self.config.write_opts
        self.single_file = opts is None
        super().open()
        self._dataset: _DatasetDir | None = None
        if opts is not None:
            context = self.context
            # setdefault is atomic: every worker gets the first one's object.
            self._dataset = context.shared.setdefault(
                "dataset", _DatasetDir(self.config.path, opts.basename_template, context.worker_count)
            )
            self._dataset.start()

    def _writer(self, schema: pa.Schema) -> _Writer:
        config = self.config
        options = config.writer_properties.writer_options(config.common.compression, schema.names)
        if config.write_opts is None:
            return _ParquetFile(config, schema, options)
        template = cast(_DatasetDir, self._dataset).hidden_template(self.context.worker_index)
        return _ParquetDataset(config, config.write_opts, schema, options, template, self.context)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._dataset is not None:
                self._dataset.release(wrote=self._out is not None, failed=self._failed)


class _ParquetFile(_AsideFile):
    """Buffers batches into row groups: ``write_table`` makes a row group of every call."""

    def __init__(self, config: ParquetSinkConfig, schema: pa.Schema, options: dict[str, Any]) -> None:
        super().__init__(config.path)
        self._group_rows = _group_rows(config)
        self._writer = self._create(lambda temp: formats.parquet.ParquetWriter(temp, schema, **options))
        self._buffer: list[pa.RecordBatch] = []
        self._rows = self._bytes = 0

    def write(self, part: pa.RecordBatch) -> None:
        self._buffer.append(part)
        self._rows += part.num_rows
        self._bytes += part.nbytes
        if self._rows >= self._group_rows or self._bytes >= _GROUP_BYTES:
            self._flush(whole=self._bytes >= _GROUP_BYTES)

    def _flush(self, whole: bool) -> None:
        """Write full row groups (everything when ``whole``); keep the rest buffered."""
        table = pa.Table.from_batches(self._buffer)
        keep = 0 if whole else table.num_rows % self._group_rows
        if table.num_rows > keep:
            self._writer.write_table(table.slice(0, table.num_rows - keep), row_group_size=self._group_rows)
        self._buffer = table.slice(table.num_rows - keep).to_batches() if keep else []
        self._rows, self._bytes = keep, sum(b.nbytes for b in self._buffer)

    def finish(self) -> None:
        if self._buffer:
            self._flush(whole=True)
        super().finish()

    def _close(self) -> None:
        self._writer.close()


def _missing_partition_columns(opts: WriteOpts, schema: pa.Schema) -> str:
    """Which partition columns ``schema`` lacks, said in one line ("" when none)."""
    missing = [c for c in opts.partition_columns if c not in schema.names]
    if not missing:
        return ""
    return f"partition columns {', '.join(missing)} not in the data: {', '.join(schema.names)}"


class _DatasetDir:
    """The directory of a ``write_opts`` sink, shared by the stage's workers. They write their
    files under hidden names (``.NAME.inprogress``); when the last one closes, the files are
    renamed into place and those of earlier runs removed, so that the directory holds exactly
    this run's output; when a writer failed, this run's files are removed instead and the
    earlier output stays. Only the names ``basename_template`` gives (any counter, any worker),
    in the directory and its hive partition directories (``key=value``), are touched."""

    _SUFFIX = ".inprogress"

    def __init__(self, root: str, template: str, workers: int) -> None:
        self._root = Path(root)
        self._template = template
        self._workers = self._open = workers
        name = re.escape(template).replace(re.escape("{i}"), r"(?:w\d+-)?\d+")
        self._final = re.compile(name)
        self._hidden = re.compile(rf"\.{name}{re.escape(self._SUFFIX)}")
        self._lock = threading.Lock()
        self._started = self._wrote = self._failed = False

    def hidden_template(self, worker: int) -> str:
        """Worker *k* of several names its files ``…w<k>-{i}…``: they write side by side."""
        template = self._template
        if self._workers > 1:
            template = template.replace("{i}", f"w{worker}-{{i}}")
        return f".{template}{self._SUFFIX}"

    def start(self) -> None:
        """Before the first worker writes: remove what a killed run left hidden."""
        with self._lock:
            if not self._started:
                self._started = True
                self._remove(self._files(self._hidden))

    def release(self, wrote: bool, failed: bool) -> None:
        """A worker closed; the last one puts this run's files in place, or removes them."""
        with self._lock:
            self._open -= 1
            self._wrote |= wrote
            self._failed |= failed
            if self._open:
                return
        written = self._files(self._hidden)
        if self._failed or not self._wrote:  # no data leaves the earlier output, as for a file
            self._remove(written)
            return
        placed = set()
        for path in written:
            final = path.with_name(path.name[1 : -len(self._SUFFIX)])
            os.replace(path, final)
            placed.add(final)
        self._remove([path for path in self._files(self._final) if path not in placed])

    def _files(self, name: re.Pattern[str]) -> list[Path]:
        """The files called ``name`` in the directory and its hive partition directories."""
        found: list[Path] = []
        for folder, folders, files in os.walk(self._root):
            folders[:] = [f for f in folders if "=" in f]
            found += [Path(folder, f) for f in files if name.fullmatch(f)]
        return found

    def _remove(self, files: list[Path]) -> None:
        """Remove ``files`` and the partition directories they leave empty."""
        for path in files:
            path.unlink()
            folder = path.parent
            while folder != self._root and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent


class _ParquetDataset(_Writer):
    """Arrow's dataset writer, which wants all its input as one reader, runs on its own thread
    fed through a small queue (a slow writer holds the stage back); it may keep several files
    open, one per partition. Its files are named by ``template``, which :class:`_DatasetDir`
    gives."""

    def __init__(
        self,
        config: ParquetSinkConfig,
        opts: WriteOpts,
        schema: pa.Schema,
        options: dict[str, Any],
        template: str,
        context: StageContext,
    ) -> None:
        missing = _missing_partition_columns(opts, schema)
        if missing:
            raise KeyError(missing)
        rows_per_group = _group_rows(config)
        if opts.max_rows_per_file:
            rows_per_group = min(rows_per_group, opts.max_rows_per_file)
        self._queue: queue.Queue[pa.RecordBatch | None] = queue.Queue(4)
        self._error: BaseException | None = None
        reader = pa.RecordBatchReader.from_batches(schema, iter(self._queue.get, None))
        arguments = {
            "format": "parquet",
            "file_options": formats.dataset.ParquetFileFormat().make_write_options(**options),
            "partitioning": opts.partition_columns or None,
            "partitioning_flavor": "hive" if opts.partition_columns else None,
            "basename_template": template,
            "max_rows_per_file": opts.max_rows_per_file,
            "max_rows_per_group": rows_per_group,
            "min_rows_per_group": min(rows_per_group, _GROUP_ROWS // 8),
            "max_partitions": opts.max_partitions,
            "existing_data_behavior": "overwrite_or_ignore",
        }
        self._thread = threading.Thread(
            target=self._write,
            args=(reader, config.path, arguments),
            name=f"{context.stage_name}-dataset-{context.worker_index}",
            daemon=True,
        )
        self._thread.start()

    def _write(self, reader: pa.RecordBatchReader, path: str, arguments: dict[str, Any]) -> None:
        try:
            formats.dataset.write_dataset(reader, path, **arguments)
        except BaseException as error:  # raised on the stage's thread by write() or finish()
            self._error = error
        finally:
            # A writer that failed may leave Arrow's own thread waiting on the queue for input:
            # end the input, or that thread, and the process at exit, would wait forever.
            while True:
                try:
                    self._queue.put_nowait(None)
                    break
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        self._queue.get_nowait()

    def _hand_over(self, item: pa.RecordBatch | None) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        self.finish()  # the writer stopped early: raise its error

    def write(self, part: pa.RecordBatch) -> None:
        self._hand_over(part)

    def finish(self) -> None:
        if self._thread.is_alive():
            self._hand_over(None)
            self._thread.join()
        if self._error is not None:
            raise self._error

    def discard(self) -> None:
        # Stop the thread; _DatasetDir removes the files once every worker closed.
        with contextlib.suppress(Exception):  # the writer's first error is the one reported
            self.finish()


# --- ORC -------------------------------------------------------------------------------------

_ORC_CODECS = {
    Compression.AUTO: "uncompressed",
    Compression.UNCOMPRESSED: "uncompressed",
    Compression.SNAPPY: "snappy",
    Compression.GZIP: "zlib",
    Compression.ZSTD: "zstd",
    Compression.LZ4: "lz4",
    Compression.LZ4_FRAME: "lz4",
}


class CompressionStrategy(ProtoEnum):
    __prefix__ = "compression_strategy_"
    SPEED = "speed"
    COMPRESSION = "compression"


class FileVersion(StageConfig):
    major_version: int = Field(0, description="0")
    minor_version: int = Field(12, description="11 or 12")


class OrcWriteOptions(StageConfig):
    batch_size: int = Field(1024, gt=0, description="rows the ORC writer handles at a time")
    file_version: FileVersion = Field(FileVersion(), description="ORC format version, 0.11 or 0.12")
    stripe_size: int = Field(64 << 20, gt=0, description="bytes per stripe")
    compression: Compression | None = Field(None, description="overrides common.compression")
    compression_block_size: int = Field(64 << 10, gt=0, description="bytes per compression block")
    compression_strategy: CompressionStrategy = Field(
        CompressionStrategy.SPEED, description="SPEED or COMPRESSION"
    )
    row_index_stride: int = Field(10000, gt=0, description="rows per row index entry")
    padding_tolerance: float = Field(0.0, ge=0, description="stripe padding tolerance")
    dictionary_key_size_threshold: float = Field(
        0.0, ge=0, le=1, description="0 disables dictionary encoding"
    )
    bloom_filter_columns: list[int] = Field([], description="indices of the columns with a bloom filter")
    bloom_filter_fpp: float = Field(0.05, gt=0, lt=1, description="bloom filter false-positive rate")

    @field_validator("file_version")
    @classmethod
    def _version(cls, value: FileVersion) -> FileVersion:
        if (value.major_version, value.minor_version) not in ((0, 11), (0, 12)):
            raise ValueError("ORC file version must be 0.11 or 0.12")
        return value


class OrcSinkConfig(ArrowSinkConfig):
    write_options: OrcWriteOptions = Field(OrcWriteOptions(), description="Arrow ORC writer options")

    @model_validator(mode="after")
    def _codec(self) -> OrcSinkConfig:
        chosen = self.write_options.compression or self.common.compression
        if chosen not in _ORC_CODECS:
            loc = (
                ("write_options", "compression")
                if self.write_options.compression
                else ("common", "compression")
            )
            raise conflict(loc, f"ORC cannot use COMPRESSION_{chosen.name}", chosen.name)
        return self


class OrcArrowSink(_ArrowSink[OrcSinkConfig]):
    """Writes Arrow data to one ORC file."""

    def _writer(self, schema: pa.Schema) -> _Writer:
        return _OrcFile(self.config)


class _OrcFile(_AsideFile):
    def __init__(self, config: OrcSinkConfig) -> None:
        super().__init__(config.path)
        options = config.write_options
        version = options.file_version
        self._writer = self._create(
            lambda temp: formats.orc.ORCWriter(
                temp,
                file_version=f"{version.major_version}.{version.minor_version}",
                batch_size=options.batch_size,
                stripe_size=options.stripe_size,
                compression=_ORC_CODECS[options.compression or config.common.compression],
                compression_block_size=options.compression_block_size,
                compression_strategy=options.compression_strategy.value,
                row_index_stride=options.row_index_stride,
                padding_tolerance=options.padding_tolerance,
                dictionary_key_size_threshold=options.dictionary_key_size_threshold,
                bloom_filter_columns=options.bloom_filter_columns or None,
                bloom_filter_fpp=options.bloom_filter_fpp,
            )
        )

    def write(self, part: pa.RecordBatch) -> None:
        self._writer.write(pa.Table.from_batches([part]))

    def _close(self) -> None:
        self._writer.close()
