"""``stdout_sink``: each record on its own line of standard output."""

from __future__ import annotations

import sys
from typing import Any, BinaryIO

from flowpipe import Batch, Sink, StageConfig

__all__ = ["StdoutSink"]


class StdoutSink(Sink[StageConfig]):
    """Writes each record and a newline to stdout (empty records are skipped), one write and
    one flush per batch."""

    def open(self) -> None:
        self._out: BinaryIO = sys.stdout.buffer

    def consume_batch(self, batch: Batch) -> None:
        data = batch.data
        if not all(data):
            data = [d for d in data if d]
            if not data:
                return
        try:
            chunk = b"\n".join(data)
        except TypeError:  # str or other objects among the records
            chunk = b"\n".join(map(_to_bytes, data))
        self._out.write(chunk)
        self._out.write(b"\n")
        self._out.flush()

    def close(self) -> None:
        self._out.flush()


def _to_bytes(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return (data if isinstance(data, str) else str(data)).encode()
