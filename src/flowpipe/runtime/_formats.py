"""What a queue's ``schema.format`` asks of the records put on it.

``IN_MEMORY_SCHEMA_FORMAT_ARROW``: every record is Arrow data. Tables and record batches pass
as they are; Arrow IPC stream bytes (what native stages emit) are opened, without a copy, into
a table, so the queue's readers always get pyarrow objects and the queue bounds them in bytes.
Anything else fails the stage that put it there. The other formats are not checked (the spec
warns). The check runs once per batch on the producer's thread, looking at each record's type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..sdk import Batch
from ..spec import InMemorySchemaFormat

__all__ = ["admission", "missing_library"]

ARROW = InMemorySchemaFormat.IN_MEMORY_SCHEMA_FORMAT_ARROW


def missing_library(format: InMemorySchemaFormat | None) -> str | None:
    """What to install for ``format``, when it is not installed."""
    if format is ARROW:
        try:
            import pyarrow  # noqa: F401 - the queue needs it as soon as the flow starts
        except ImportError:
            return "pip install 'flow-pipe[arrow]'"
    return None


def admission(queue: str, format: InMemorySchemaFormat | None) -> Callable[[Batch], None] | None:
    """The check a batch passes on its way into ``queue``, None for a format left unchecked."""
    if format is not ARROW:
        return None
    import pyarrow as pa

    arrow_types = (pa.RecordBatch, pa.Table)

    def arrow_only(batch: Batch) -> None:
        data, nbytes = batch.data, 0
        for index, record in enumerate(data):
            if not isinstance(record, arrow_types):
                data[index] = record = _opened(queue, record)
            nbytes += record.nbytes
        batch.nbytes = nbytes

    return arrow_only


def _opened(queue: str, record: Any) -> Any:
    import pyarrow as pa

    where = f"queue '{queue}' carries Arrow data (schema.format: IN_MEMORY_SCHEMA_FORMAT_ARROW)"
    if not isinstance(record, (bytes, bytearray, memoryview, pa.Buffer)):
        raise TypeError(
            f"{where}, but a record is a {type(record).__name__}: emit pyarrow RecordBatch or Table"
            " objects, or Arrow IPC stream bytes"
        )
    try:
        return pa.ipc.open_stream(pa.py_buffer(record)).read_all()
    except pa.ArrowInvalid as error:
        raise TypeError(
            f"{where}, but a record of {len(record)} bytes is not an Arrow IPC stream: {error}"
        ) from None
