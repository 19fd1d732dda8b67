"""``uppercase_transform``: the example stage of flow-pipe's plugin repository."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from flowpipe import Batch, StageConfig, Transform

__all__ = ["UppercaseTransform"]

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class UppercaseConfig(StageConfig):
    verbose: bool = Field(False, description="log every record")


class UppercaseTransform(Transform[UppercaseConfig]):
    """Uppercases the ASCII letters of bytes or str records; other bytes are kept."""

    def process_batch(self, batch: Batch) -> Batch:
        upper: list[bytes | str]
        try:
            upper = list(map(bytes.upper, batch.data))
        except TypeError:  # not all bytes: take each record by its type
            upper = [_upper(data) for data in batch.data]
        if self.config.verbose:
            for data in upper:
                self.context.logger.info("uppercase_transform: %r", data)
        return Batch(upper, batch.metas)


def _upper(data: Any) -> bytes | str:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data).upper()
    if isinstance(data, str):
        return data.translate(_ASCII_UPPER)
    raise TypeError(f"uppercase_transform takes bytes or str records, got {type(data).__name__}")
