"""Emits `count` records, then stays idle (without ending) until the flow is stopped."""

from pydantic import Field

from flowpipe import Batch, Source, StageConfig


class CountedSourceConfig(StageConfig):
    count: int = Field(100, ge=0, description="records to emit before idling")


class CountedSource(Source[CountedSourceConfig]):
    def open(self) -> None:
        self.sent = 0

    def produce_batch(self, limit: int) -> Batch:
        left = min(limit, self.config.count - self.sent)
        if left <= 0:
            self.context.wait(0.05)
            return Batch([])
        self.sent += left
        return Batch([b"record %d" % n for n in range(self.sent - left, self.sent)])
