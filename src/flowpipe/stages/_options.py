"""Config pieces shared by the file and Arrow stage families: flow-pipe's proto enums, the
``common`` block, ``ColumnType``, and the path checks that let a flow fail before it starts
(exit 2) instead of after.

No pyarrow here: ``file_source``/``file_sink`` use this module without the ``arrow`` extra.
"""

from __future__ import annotations

import difflib
import enum
import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, GetCoreSchemaHandler, ValidationError, field_validator, model_validator
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

from flowpipe import StageConfig

__all__ = [
    "ColumnType",
    "CommonOptions",
    "Compression",
    "DataType",
    "FileSystem",
    "OutputType",
    "ProtoEnum",
    "TimeUnit",
    "conflict",
    "input_problems",
    "local_path",
    "output_dir_problems",
    "output_file_problems",
]


class ProtoEnum(enum.Enum):
    """An enum read as flow-pipe writes it: the proto name (``COMPRESSION_SNAPPY``), the short
    form (``snappy``, any case) or the proto number (the member's position, quoted or not).
    Anything else is an error listing the valid names and suggesting the nearest."""

    __prefix__ = ""
    __synonyms__: ClassVar[dict[str, str]] = {}  # other engines' names -> member value, for hints

    @classmethod
    def _missing_(cls, value: object) -> ProtoEnum | None:
        members = list(cls)
        if isinstance(value, str) and value.strip().isdigit():  # flow-pipe's YAML made "1" of 1
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return members[value] if 0 <= value < len(members) else None
        if isinstance(value, str):
            short = value.strip().lower().removeprefix(cls.__prefix__)
            return next((m for m in members if m.value == short), None)
        return None

    @property
    def proto_name(self) -> str:
        """The name in flow-pipe's proto: ``COMPRESSION_SNAPPY``."""
        return f"{self.__prefix__.upper()}{self.name}"

    @classmethod
    def _parse(cls, value: object) -> ProtoEnum:
        try:
            return cls(value)
        except ValueError:
            pass
        names = [m.proto_name for m in cls]
        word = str(value).strip().upper().removeprefix(cls.__prefix__.upper())
        if synonym := cls.__synonyms__.get(word):
            near = [cls(synonym).proto_name]
        else:
            near = difflib.get_close_matches(str(value).upper(), names, n=1)
        raise PydanticCustomError(
            "proto_enum",
            "unknown value {value} (valid: {names})",
            {
                "value": repr(value),
                "names": ", ".join(names),
                "hint": f"did you mean {near[0]}?" if near else f"use one of {', '.join(names)}",
            },
        )

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._parse,
            json_schema_input_schema=core_schema.literal_schema(
                [*(m.proto_name for m in cls), *(m.value for m in cls)]
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda m: m.proto_name, when_used="json"
            ),
        )


class OutputType(ProtoEnum):
    __prefix__ = "output_type_"
    TABLE = "table"
    RECORD_BATCH = "record_batch"


class FileSystem(ProtoEnum):
    __prefix__ = "file_system_"
    AUTO = "auto"
    LOCAL = "local"
    S3 = "s3"
    GCS = "gcs"
    HDFS = "hdfs"


class Compression(ProtoEnum):
    __prefix__ = "compression_"
    AUTO = "auto"
    UNCOMPRESSED = "uncompressed"
    SNAPPY = "snappy"
    GZIP = "gzip"
    BROTLI = "brotli"
    ZSTD = "zstd"
    LZ4 = "lz4"
    LZ4_FRAME = "lz4_frame"
    LZO = "lzo"
    BZ2 = "bz2"


class DataType(ProtoEnum):
    __prefix__ = "data_type_"
    __synonyms__: ClassVar[dict[str, str]] = {
        "DOUBLE": "float64",
        "FLOAT": "float32",
        "REAL": "float32",
        "INT": "int32",
        "INTEGER": "int32",
        "LONG": "int64",
        "BIGINT": "int64",
        "SMALLINT": "int16",
        "TINYINT": "int8",
        "BOOLEAN": "bool",
        "UTF8": "string",
        "VARCHAR": "string",
        "TEXT": "string",
        "BYTES": "binary",
        "DATE": "date32",
        "DECIMAL": "decimal128",
    }
    UNSPECIFIED = "unspecified"
    NULL = "null"
    BOOL = "bool"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    UINT8 = "uint8"
    UINT16 = "uint16"
    UINT32 = "uint32"
    UINT64 = "uint64"
    FLOAT16 = "float16"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"
    LARGE_STRING = "large_string"
    BINARY = "binary"
    LARGE_BINARY = "large_binary"
    DATE32 = "date32"
    DATE64 = "date64"
    TIMESTAMP = "timestamp"
    TIME32 = "time32"
    TIME64 = "time64"
    DURATION = "duration"
    DECIMAL128 = "decimal128"
    DECIMAL256 = "decimal256"
    FIXED_SIZE_BINARY = "fixed_size_binary"


class TimeUnit(ProtoEnum):
    __prefix__ = "time_unit_"
    UNSPECIFIED = "unspecified"
    SECOND = "second"
    MILLI = "milli"
    MICRO = "micro"
    NANO = "nano"


def conflict(loc: tuple[str | int, ...], message: str, value: Any) -> ValidationError:
    """A validation error located at ``loc`` inside the model being validated, so that the
    flow's error points at the offending key rather than at the whole config."""
    return ValidationError.from_exception_data(
        "config", [InitErrorDetails(type=PydanticCustomError("conflict", message), loc=loc, input=value)]
    )


class ColumnType(StageConfig):
    """An Arrow type, as flow-pipe's ``ColumnType`` message."""

    type: DataType = Field(DataType.UNSPECIFIED, description="DATA_TYPE_* (INT64, STRING, TIMESTAMP…)")
    time_unit: TimeUnit = Field(
        TimeUnit.UNSPECIFIED, description="TIME_UNIT_*; for TIMESTAMP, TIME32, TIME64, DURATION"
    )
    fixed_size_binary_length: int | None = Field(None, gt=0, description="for FIXED_SIZE_BINARY")
    decimal_precision: int | None = Field(None, gt=0, le=76, description="for DECIMAL128/256")
    decimal_scale: int | None = Field(None, description="for DECIMAL128/256 (default 0)")

    @model_validator(mode="after")
    def _complete(self) -> ColumnType:
        kind = self.type
        if kind is DataType.UNSPECIFIED:
            raise conflict(("type",), "a column type needs 'type', e.g. DATA_TYPE_INT64", None)
        if kind is DataType.FIXED_SIZE_BINARY and self.fixed_size_binary_length is None:
            raise conflict(("fixed_size_binary_length",), "FIXED_SIZE_BINARY needs its length", None)
        if kind in (DataType.DECIMAL128, DataType.DECIMAL256) and self.decimal_precision is None:
            raise conflict(("decimal_precision",), f"{kind.name} needs decimal_precision", None)
        if kind is DataType.DECIMAL128 and self.decimal_precision and self.decimal_precision > 38:
            raise conflict(
                ("decimal_precision",),
                f"DECIMAL128 holds at most 38 digits, got {self.decimal_precision}: use DATA_TYPE_DECIMAL256",
                None,
            )
        units = {
            DataType.TIME32: (TimeUnit.SECOND, TimeUnit.MILLI),
            DataType.TIME64: (TimeUnit.MICRO, TimeUnit.NANO),
        }.get(kind, tuple(TimeUnit)[1:])
        if kind in (DataType.TIMESTAMP, DataType.TIME32, DataType.TIME64, DataType.DURATION) and (
            self.time_unit not in units
        ):
            allowed = " or ".join(f"TIME_UNIT_{u.name}" for u in units)
            raise conflict(("time_unit",), f"{kind.name} needs time_unit {allowed}", self.time_unit.name)
        return self


_REMOTE = ("s3://", "gs://", "gcs://", "hdfs://", "viewfs://", "abfs://", "abfss://", "az://", "http")


class CommonOptions(StageConfig):
    """flow-pipe's ``common`` block. Only local files are supported: remote filesystems are
    rejected at validation."""

    filesystem: FileSystem = Field(FileSystem.AUTO, description="FILE_SYSTEM_AUTO or FILE_SYSTEM_LOCAL")
    compression: Compression = Field(
        Compression.AUTO, description="COMPRESSION_*; AUTO picks the codec from the file extension"
    )
    filesystem_options: dict[str, Any] | None = Field(
        None, description="s3/gcs/azure/hdfs options of the original; remote filesystems are not supported"
    )

    @field_validator("filesystem")
    @classmethod
    def _local_only(cls, value: FileSystem) -> FileSystem:
        if value not in (FileSystem.AUTO, FileSystem.LOCAL):
            raise ValueError(f"FILE_SYSTEM_{value.name} is not supported; only local files are")
        return value

    @field_validator("filesystem_options")
    @classmethod
    def _no_remote_options(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            raise ValueError("remote filesystem options are not supported; only local files are")
        return value


def local_path(path: str) -> str:
    """Validator: a local path (``file://`` accepted); remote URIs are a config error."""
    if path.lower().startswith(_REMOTE):
        raise ValueError(f"'{path}' is not a local path; remote filesystems are not supported")
    return str(Path(path.removeprefix("file://")).expanduser())


# The checks below look at the filesystem, so they run in the stages' ``preflight`` (``flowpipe
# run``, before anything starts: exit 2), not in validation: ``flowpipe validate`` and
# ``flowpipe k8s render`` must accept a flow on a machine that does not hold its data.


def input_problems(path: str) -> list[str]:
    """Why ``path`` cannot be read as a file or directory, if it cannot."""
    local = Path(path)
    if not local.exists():
        return [f"config.path: no such file or directory: {local}"]
    if not os.access(local, os.R_OK):
        return [f"config.path: not readable: {local}"]
    return []


def output_file_problems(path: str) -> list[str]:
    """Why a file cannot be created or replaced at ``path``, if it cannot."""
    local = Path(path)
    if local.is_dir():
        return [f"config.path: {local} is a directory; give a file path"]
    if not local.parent.is_dir():
        return [f"config.path: directory {local.parent} does not exist"]
    if not os.access(local.parent, os.W_OK | os.X_OK) or (local.exists() and not os.access(local, os.W_OK)):
        return [f"config.path: cannot write {local}: permission denied"]
    return []


def output_dir_problems(path: str) -> list[str]:
    """Why ``path`` cannot be, or be created as, a writable directory, if it cannot."""
    local = Path(path)
    if local.exists() and not local.is_dir():
        return [f"config.path: {local} exists and is not a directory"]
    existing = local
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return [f"config.path: cannot create or write directory {local}: {existing} is not writable"]
    return []
