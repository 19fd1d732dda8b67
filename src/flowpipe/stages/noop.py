"""``noop_source`` and ``noop_transform``: flow-pipe's test stages."""

from __future__ import annotations

from pydantic import Field

from flowpipe import Batch, EndOfStream, Source, StageConfig, Transform

__all__ = ["NoopSource", "NoopTransform"]

_MAX_U32 = 2**32 - 1


class NoopSourceConfig(StageConfig):
    delay_ms: int = Field(0, ge=0, le=_MAX_U32, description="pause before each record, in milliseconds")
    message: str = Field("noop_source", description="text of each record, followed by ' #<n>'")
    max_messages: int = Field(0, ge=0, description="records to emit per worker; 0 means no limit")


class NoopSource(Source[NoopSourceConfig]):
    """Emits '<message> #<n>' records, n counting from 0 in each worker."""

    def open(self) -> None:
        self._next = 0
        self._format = (self.config.message.replace("%", "%%") + " #%d").encode()

    def produce_batch(self, limit: int) -> Batch:
        config = self.config
        count = limit
        if config.max_messages:
            count = min(limit, config.max_messages - self._next)
            if count <= 0:
                raise EndOfStream
        if config.delay_ms:
            if self.context.wait(config.delay_ms / 1000):
                return Batch([])
            count = 1
        start = self._next
        self._next = start + count
        fmt = self._format
        return Batch([fmt % n for n in range(start, start + count)])


class NoopTransformConfig(StageConfig):
    verbose: bool = Field(False, description="log every record")
    delay_ms: int = Field(0, ge=0, le=_MAX_U32, description="pause per record, in milliseconds")


class NoopTransform(Transform[NoopTransformConfig]):
    """Passes records through unchanged, data and metadata."""

    def process_batch(self, batch: Batch) -> Batch:
        config = self.config
        if config.verbose or config.delay_ms:
            for data in batch.data:
                if config.delay_ms:
                    self.context.wait(config.delay_ms / 1000)
                if config.verbose:
                    self.context.logger.info("noop_transform: %r", data)
        return batch
