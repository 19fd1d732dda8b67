"""What the Arrow stages share at run time, and the public IPC pair for other components.

Records on a queue between Arrow stages are ``pyarrow.RecordBatch`` or ``pyarrow.Table``
objects, never copied. :func:`to_ipc` / :func:`from_ipc` turn them into Arrow IPC *stream*
bytes and back, the form flow-pipe's native plugins exchange.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from flowpipe import Batch

from ._options import ColumnType, CommonOptions, Compression, DataType, conflict

#: The line the registry shows when a flow uses an Arrow stage without the ``arrow`` extra.
INSTALL_HINT = "the Arrow stages need pyarrow and duckdb: pip install 'flow-pipe[arrow]'"

try:
    import pyarrow as pa
except ImportError as error:
    raise ImportError(INSTALL_HINT) from error

__all__ = [
    "INSTALL_HINT",
    "ArrowData",
    "arrow_type",
    "check_text_codec",
    "conform",
    "emit",
    "formats",
    "from_ipc",
    "record_batches",
    "stream_codec",
    "to_ipc",
]

ArrowData = pa.RecordBatch | pa.Table


class _Formats:
    """pyarrow's format modules (``formats.csv``, ``formats.parquet``…), each imported on first
    use: importing them all would add a tenth of a second to every flow's start."""

    def __getattr__(self, name: str) -> ModuleType:
        module = importlib.import_module(f"pyarrow.{name}")
        setattr(self, name, module)
        return module


formats = _Formats()


def to_ipc(data: ArrowData) -> bytes:
    """An Arrow IPC stream (schema, batches, end marker) holding ``data``."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write(data)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes | bytearray | memoryview | pa.Buffer) -> pa.Table:
    """The table held by one Arrow IPC stream (zero-copy over ``data``)."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def record_batches(record: Any) -> list[pa.RecordBatch]:
    """The record batches of one record: a RecordBatch, a Table or IPC stream bytes. A table
    without rows gives one empty batch: its columns still count (a sink writes an empty file
    of them, a query sees an empty table)."""
    if isinstance(record, pa.RecordBatch):
        return [record]
    if isinstance(record, pa.Table):
        return record.to_batches() or [pa.RecordBatch.from_pylist([], schema=record.schema)]
    if isinstance(record, (bytes, bytearray, memoryview, pa.Buffer)):
        try:
            return record_batches(from_ipc(record))
        except pa.ArrowInvalid as error:
            raise TypeError(
                f"expected Arrow data (RecordBatch, Table or IPC stream bytes), got {len(record)} bytes"
                f" that are not an Arrow IPC stream ({error}): is this queue fed raw records?"
            ) from None
    raise TypeError(f"expected Arrow data (RecordBatch, Table or IPC bytes), got {type(record).__name__}")


def conform(part: pa.RecordBatch, schema: pa.Schema, what: str) -> pa.RecordBatch:
    """``part`` cast to ``schema`` (the first batch's), or a one-line ValueError naming, for
    ``what`` (an input, a file), the columns that differ."""
    if part.schema.equals(schema):
        return part
    try:
        return part.cast(schema)
    except (pa.ArrowException, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{what}: a batch's columns differ from the first batch's and cannot be cast to them"
            f" ({_difference(part.schema, schema)}): {reason}"
        ) from None


def _difference(got: pa.Schema, first: pa.Schema) -> str:
    changes = [
        f"{field.name} is {field.type}, was {first.field(field.name).type}"
        for field in got
        if field.name in first.names and field.type != first.field(field.name).type
    ]
    changes += [f"{name} is new" for name in got.names if name not in first.names]
    changes += [f"{name} is missing" for name in first.names if name not in got.names]
    return "; ".join(changes) or "same columns in another order"


def emit(records: list[ArrowData]) -> Batch:
    """A batch of Arrow records with its size set, so that queues bound it in bytes."""
    return Batch(records, nbytes=sum(r.nbytes for r in records))


_UNITS = {"second": "s", "milli": "ms", "micro": "us", "nano": "ns"}
_SIMPLE: dict[DataType, Callable[[], pa.DataType]] = {
    DataType.NULL: pa.null,
    DataType.BOOL: pa.bool_,
    DataType.INT8: pa.int8,
    DataType.INT16: pa.int16,
    DataType.INT32: pa.int32,
    DataType.INT64: pa.int64,
    DataType.UINT8: pa.uint8,
    DataType.UINT16: pa.uint16,
    DataType.UINT32: pa.uint32,
    DataType.UINT64: pa.uint64,
    DataType.FLOAT16: pa.float16,
    DataType.FLOAT32: pa.float32,
    DataType.FLOAT64: pa.float64,
    DataType.STRING: pa.string,
    DataType.LARGE_STRING: pa.large_string,
    DataType.BINARY: pa.binary,
    DataType.LARGE_BINARY: pa.large_binary,
    DataType.DATE32: pa.date32,
    DataType.DATE64: pa.date64,
}


def arrow_type(column: ColumnType) -> pa.DataType:
    """The pyarrow type a (validated) :class:`ColumnType` names."""
    kind = column.type
    if kind in _SIMPLE:
        return _SIMPLE[kind]()
    unit: Any = _UNITS.get(column.time_unit.value, "")  # validated against the type already
    timed: dict[DataType, Callable[[Any], pa.DataType]] = {
        DataType.TIMESTAMP: pa.timestamp,
        DataType.TIME32: pa.time32,
        DataType.TIME64: pa.time64,
        DataType.DURATION: pa.duration,
    }
    if kind in timed:
        return timed[kind](unit)
    if kind is DataType.FIXED_SIZE_BINARY:
        return pa.binary(column.fixed_size_binary_length or 0)
    if kind is DataType.DECIMAL128:
        return pa.decimal128(column.decimal_precision or 0, column.decimal_scale or 0)
    return pa.decimal256(column.decimal_precision or 0, column.decimal_scale or 0)


# Stream codecs by file extension; COMPRESSION_AUTO picks one from the name.
_EXTENSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4", ".br": "brotli"}
_STREAM_CODECS = {
    Compression.GZIP: "gzip",
    Compression.BZ2: "bz2",
    Compression.ZSTD: "zstd",
    Compression.LZ4_FRAME: "lz4",
    Compression.LZ4: "lz4",
    Compression.BROTLI: "brotli",
}


def check_text_codec(common: CommonOptions, path: str) -> None:
    """Validator of a CSV or JSON stage's ``common.compression``: a codec a text stream can use."""
    try:
        stream_codec(common.compression, path)
    except ValueError as error:
        raise conflict(("common", "compression"), str(error), common.compression.name) from None


def stream_codec(compression: Compression, path: str | Path) -> str | None:
    """The codec of a compressed text stream (CSV, JSON), or None for plain bytes."""
    if compression is Compression.AUTO:
        return _EXTENSIONS.get(Path(path).suffix.lower())
    if compression is Compression.UNCOMPRESSED:
        return None
    if compression not in _STREAM_CODECS:
        raise ValueError(f"COMPRESSION_{compression.name} cannot compress a text stream")
    return _STREAM_CODECS[compression]
