"""Consumes one batch per `delay_ms`: a sink slower than its producers (backpressure)."""

from pydantic import Field

from flowpipe import Batch, Sink, StageConfig


class SlowSinkConfig(StageConfig):
    delay_ms: int = Field(20, ge=0, description="pause per batch, in milliseconds")


class SlowSink(Sink[SlowSinkConfig]):
    def consume_batch(self, batch: Batch) -> None:
        self.context.wait(self.config.delay_ms / 1000)
