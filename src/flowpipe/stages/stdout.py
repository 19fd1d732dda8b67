"""``stdout_sink``: each record on its own line of standard output."""

from __future__ import annotations

import sys
from typing import Any, BinaryIO

from pydantic import ConfigDict

from flowpipe import Batch, Sink, StageConfig

__all__ = ["StdoutSink"]


class StdoutConfig(StageConfig):
    """None; any keys given are ignored, with a warning, as flow-pipe's stdout_sink ignored them."""

    model_config = ConfigDict(extra="allow")


class StdoutSink(Sink[StdoutConfig]):
    """Writes each record and a newline to stdout (empty records are skipped), one write and
    one flush per batch."""

    def open(self) -> None:
        self._out: BinaryIO = sys.stdout.buffer
        ignored = self.config.model_extra
        if ignored and self.context.worker_index == 0:
            self.context.logger.warning(
                "stage '%s' (stdout_sink) takes no config; ignored: %s",
                self.context.stage_name,
                ", ".join(ignored),
            )

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
