"""The flow spec's protobuf enums, readable by proto name, number or a friendly short name."""

from __future__ import annotations

import enum
import functools
import re
from typing import Any, Self

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from ._text import show, suggest

__all__ = [
    "AttributeLevel",
    "CronConcurrencyPolicy",
    "ExecutionMode",
    "ImagePullPolicy",
    "InMemorySchemaFormat",
    "LogProcessor",
    "OtlpTransport",
    "ProtoEnum",
    "QueueType",
    "RestartPolicy",
    "StreamingWorkloadKind",
    "TraceHint",
    "TraceProcessor",
]


@functools.cache
def _prefix(cls: type[ProtoEnum]) -> str:
    """The part every member name starts with, e.g. ``EXECUTION_MODE_`` (value 0 is ``*_UNSPECIFIED``)."""
    return cls(0).name.removesuffix("UNSPECIFIED")


@functools.cache
def _lookup(cls: type[ProtoEnum]) -> dict[str, ProtoEnum]:
    """Every accepted spelling of every member, normalized."""
    return {_normalize(key): m for m in cls for key in (m.name, m.short_name)}


def _normalize(text: str) -> str:
    """``IfNotPresent``, ``if-not-present`` and ``IF_NOT_PRESENT`` all become ``ifnotpresent``."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


class ProtoEnum(enum.IntEnum):
    """A protobuf enum. Members are named as in the proto; values are the proto numbers.

    A flow file may give a value as the proto name (``EXECUTION_MODE_JOB``), its number (``2``)
    or the name without the enum's prefix in any case or spelling (``job``, ``IfNotPresent``).
    Values are written back as the proto name.
    """

    @property
    def short_name(self) -> str:
        """The name without the enum's prefix, lower case: ``if_not_present``."""
        return self.name.removeprefix(_prefix(type(self))).lower()

    @classmethod
    def parse(cls, value: object) -> Self:
        """Read one value as a flow file may write it; raise a pydantic error naming the valid ones."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if value in cls._value2member_map_:
                return cls(value)
        elif isinstance(value, str) and (member := _lookup(cls).get(_normalize(value))) is not None:
            return member  # type: ignore[return-value]  # _lookup(cls) holds members of cls
        shorts = [m.short_name for m in cls]
        raise PydanticCustomError(
            "proto_enum",
            "unknown value {value} (valid: {names}, or {shorts})",
            {
                "value": show(value),
                "names": ", ".join(m.name for m in cls),
                "shorts": ", ".join(shorts),
                "hint": suggest(str(value).lower(), shorts, f"use one of: {', '.join(shorts)}"),
            },
        )

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda m: m.name, when_used="json"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"enum": [m.name for m in cls] + [m.short_name for m in cls] + [m.value for m in cls]}


class ExecutionMode(ProtoEnum):
    EXECUTION_MODE_UNSPECIFIED = 0
    EXECUTION_MODE_STREAMING = 1
    EXECUTION_MODE_JOB = 2


class QueueType(ProtoEnum):
    QUEUE_TYPE_UNSPECIFIED = 0
    QUEUE_TYPE_IN_MEMORY = 1


class InMemorySchemaFormat(ProtoEnum):
    IN_MEMORY_SCHEMA_FORMAT_UNSPECIFIED = 0
    IN_MEMORY_SCHEMA_FORMAT_ARROW = 1
    IN_MEMORY_SCHEMA_FORMAT_PROTOBUF = 2
    IN_MEMORY_SCHEMA_FORMAT_FLATBUFFERS = 3
    IN_MEMORY_SCHEMA_FORMAT_JSON = 4


class ImagePullPolicy(ProtoEnum):
    IMAGE_PULL_POLICY_UNSPECIFIED = 0
    IMAGE_PULL_POLICY_ALWAYS = 1
    IMAGE_PULL_POLICY_IF_NOT_PRESENT = 2
    IMAGE_PULL_POLICY_NEVER = 3


class RestartPolicy(ProtoEnum):
    RESTART_POLICY_UNSPECIFIED = 0
    RESTART_POLICY_ALWAYS = 1
    RESTART_POLICY_ON_FAILURE = 2
    RESTART_POLICY_NEVER = 3


class StreamingWorkloadKind(ProtoEnum):
    STREAMING_WORKLOAD_KIND_UNSPECIFIED = 0
    STREAMING_WORKLOAD_KIND_DEPLOYMENT = 1
    STREAMING_WORKLOAD_KIND_DAEMONSET = 2


class CronConcurrencyPolicy(ProtoEnum):
    CRON_CONCURRENCY_POLICY_UNSPECIFIED = 0
    CRON_CONCURRENCY_POLICY_ALLOW = 1
    CRON_CONCURRENCY_POLICY_FORBID = 2
    CRON_CONCURRENCY_POLICY_REPLACE = 3


class OtlpTransport(ProtoEnum):
    OTLP_TRANSPORT_UNSPECIFIED = 0
    OTLP_TRANSPORT_GRPC = 1
    OTLP_TRANSPORT_HTTP = 2


class TraceHint(ProtoEnum):
    TRACE_HINT_UNSPECIFIED = 0
    TRACE_HINT_DEFAULT = 1
    TRACE_HINT_ALWAYS = 2
    TRACE_HINT_NEVER = 3


class TraceProcessor(ProtoEnum):
    TRACE_PROCESSOR_UNSPECIFIED = 0
    TRACE_PROCESSOR_SIMPLE = 1
    TRACE_PROCESSOR_BATCH = 2


class AttributeLevel(ProtoEnum):
    ATTRIBUTES_UNSPECIFIED = 0
    ATTRIBUTES_MINIMAL = 1
    ATTRIBUTES_STANDARD = 2
    ATTRIBUTES_VERBOSE = 3


class LogProcessor(ProtoEnum):
    LOG_PROCESSOR_UNSPECIFIED = 0
    LOG_PROCESSOR_SIMPLE = 1
    LOG_PROCESSOR_BATCH = 2
