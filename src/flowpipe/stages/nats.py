"""NATS stages: ``nats_source``/``_sink`` (core NATS) and ``nats_jetstream_source``/``_sink``.

nats-py is asyncio-only: each stage instance runs its client on an event loop thread of its
own (:class:`LoopThread`) and hands it one coroutine per batch, so the client keeps answering
the server while the worker blocks on a queue. Core NATS keeps no messages, so ``nats_source``
cannot acknowledge; ``nats_jetstream_source`` acknowledges each message only once every record
derived from it reached the sinks, and JetStream redelivers what was not acknowledged within
``ack_wait_ms``.
"""

from __future__ import annotations

import asyncio
import math
import queue
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pydantic import Field

from flowpipe import Batch, Sink, Source, StageContext

from ._net import (
    LoopThread,
    Outage,
    ReconnectConfig,
    SourceEnd,
    SourceEndConfig,
    backoff_delay,
    idle_wait,
    missing_library,
    probe,
    split_endpoints,
)

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import api as js_api
except ImportError as error:  # pragma: no cover - the messaging extra is not installed
    raise missing_library("nats-py", "nats_* stages") from error

__all__ = ["NatsJetStreamSink", "NatsJetStreamSource", "NatsSink", "NatsSource"]

T = TypeVar("T")
_ERRORS = (nats.errors.Error, TimeoutError, OSError)
_CONNECT_TIMEOUT_S = 2.0
_SETUP_TIMEOUT_S = 10.0  # connecting, subscribing, looking up a stream
_FLUSH_ON_CLOSE_S = 2  # seconds (nats-py takes whole seconds)
# Core NATS has no flow control: messages that arrive while this many wait for the flow are
# dropped (and counted), as the server itself does with a slow consumer.
_MAX_BUFFERED = 65536
_DROP_REPORT_S = 5.0


class NatsConfig(ReconnectConfig):
    url: str = Field(
        "nats://127.0.0.1:4222", description="server URL; several, comma-separated, for a cluster"
    )


class _Nats:
    """A stage's NATS connection on its own event loop thread.

    nats-py reconnects by itself; the callbacks log it through :class:`Outage`, whose attempt
    count also paces the reconnections (exponential backoff, as for the other clients).
    """

    def __init__(self, config: NatsConfig, context: StageContext) -> None:
        endpoints = split_endpoints(config.url, 4222)
        unreachable = probe("NATS", endpoints)
        if unreachable:
            raise ConnectionError(unreachable[0])
        self.outage = Outage(context, f"NATS at {config.url}", config.reconnect_timeout_ms)
        self._closing = False
        self.loop = LoopThread(f"{context.stage_name}-{context.worker_index}-nats")
        try:
            self.client: Client = self.loop.run(
                nats.connect(
                    servers=[url.strip() for url in config.url.split(",") if url.strip()],
                    connect_timeout=_CONNECT_TIMEOUT_S,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_to_server_handler=self._reconnect_delay,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                    error_cb=self._error,
                ),
                _SETUP_TIMEOUT_S,
            )
        except _ERRORS as error:
            self.loop.close()
            raise ConnectionError(f"cannot connect to NATS at {config.url}: {error!r}") from error

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = _SETUP_TIMEOUT_S) -> T:
        return self.loop.run(coroutine, timeout)

    def call(
        self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float, *, ends_on_stop: bool = False
    ) -> T:
        """``make()`` run on the loop, retried with backoff while NATS is unreachable."""
        return self.outage.call(lambda: self.loop.run(make(), timeout), _ERRORS, ends_on_stop=ends_on_stop)

    def close(self) -> None:
        self._closing = True
        try:
            # Publishes (and acknowledgements) still buffered go out before the connection closes.
            self.loop.run(self.client.flush(_FLUSH_ON_CLOSE_S), _FLUSH_ON_CLOSE_S + 1.0)
        except _ERRORS as error:
            self.outage.context.logger.warning("NATS: could not flush before closing: %r", error)
        self.loop.run(self.client.close())
        self.loop.close()

    def _reconnect_delay(self, servers: list[Any], info: dict[str, Any]) -> tuple[Any, float]:
        return None, backoff_delay(max(self.outage.attempts - 1, 0))

    async def _disconnected(self) -> None:
        if not self._closing:
            self.outage.lost("disconnected")

    async def _reconnected(self) -> None:
        self.outage.restored()

    async def _error(self, error: Exception) -> None:
        if self.outage.since is not None:
            self.outage.lost(error)
        elif not self._closing:
            self.outage.context.logger.warning("NATS: %r", error)


class _NatsStage:
    @classmethod
    def preflight(cls, config: NatsConfig) -> list[str]:
        """Problems to report before the flow starts: no server accepting connections."""
        return probe("NATS", split_endpoints(config.url, 4222))


# -- core NATS ----------------------------------------------------------------------------------


class NatsSourceConfig(NatsConfig, SourceEndConfig):
    subject: str = Field(min_length=1, description="subject to subscribe to (wildcards allowed)")
    queue_group: str = Field(
        "", description="queue group: the replicas subscribed in one group share the messages, each to one"
    )
    poll_timeout_ms: int = Field(
        1000, ge=0, description="longest one poll waits for a message (at most 100 ms are used)"
    )


class NatsSource(_NatsStage, Source[NatsSourceConfig]):
    """Each message on a NATS subject is a record (at most once: core NATS keeps nothing)."""

    def open(self) -> None:
        config = self.config
        self._end = SourceEnd(config)
        self._wait = idle_wait(config.poll_timeout_ms)
        inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._inbox = inbox
        self._dropped = self._reported = 0
        self._report_at = 0.0

        async def on_message(msg: Msg) -> None:
            if inbox.qsize() < _MAX_BUFFERED:
                inbox.put(msg.data)
            else:
                self._dropped += 1

        self._nats = _Nats(config, self.context)
        client = self._nats.client

        async def subscribe() -> None:
            await client.subscribe(config.subject, queue=config.queue_group, cb=on_message)
            await client.flush()  # subscribed at the server before the flow starts

        self._nats.run(subscribe())

    def produce_batch(self, limit: int) -> Batch:
        self._nats.outage.check()
        if self._dropped != self._reported:
            self._report_drops()
        want = self._end.room(limit)
        inbox = self._inbox
        try:
            data = [inbox.get(timeout=self._wait)]
        except queue.Empty:
            self._end.took(0)
            return Batch([])
        get = inbox.get_nowait
        try:
            while len(data) < want:
                data.append(get())
        except queue.Empty:
            pass
        self._end.took(len(data))
        return Batch(data)

    def _report_drops(self) -> None:
        now = time.monotonic()
        if now >= self._report_at:
            self.context.logger.warning(
                "dropped %d messages so far: the flow is slower than subject %r (slow consumer)",
                self._dropped,
                self.config.subject,
            )
            self._reported = self._dropped
            self._report_at = now + _DROP_REPORT_S

    def close(self) -> None:
        self._nats.close()


class NatsSinkConfig(NatsConfig):
    subject: str = Field(min_length=1, description="subject to publish to")
    flush_timeout_ms: int = Field(1000, ge=1, description="how long the flush after each batch may take")


class NatsSink(_NatsStage, Sink[NatsSinkConfig]):
    """Publishes each record on a NATS subject, with one flush per batch."""

    def open(self) -> None:
        self._nats = _Nats(self.config, self.context)
        self._timeout = math.ceil(self.config.flush_timeout_ms / 1000)  # nats-py takes whole seconds

    def consume_batch(self, batch: Batch) -> None:
        client, subject, timeout, data = self._nats.client, self.config.subject, self._timeout, batch.data

        async def publish() -> None:
            send = client.publish
            for record in data:
                await send(subject, record)
            await client.flush(timeout)

        self._nats.call(publish, timeout + 1)

    def close(self) -> None:
        self._nats.close()


# -- JetStream ----------------------------------------------------------------------------------


class NatsJetStreamSourceConfig(NatsConfig, SourceEndConfig):
    subject: str = Field(min_length=1, description="subject to consume (the consumer's filter subject)")
    stream_name: str = Field("", description="stream holding the subject; empty = looked up by subject")
    durable_name: str = Field(
        "",
        description="durable consumer: replicas with the same name share its messages, and what was "
        "acknowledged survives restarts; empty = an ephemeral consumer for this run only",
    )
    poll_timeout_ms: int = Field(
        1000, ge=0, description="longest one fetch waits for messages (at most 100 ms are used)"
    )
    ack_wait_ms: int = Field(
        30000,
        ge=1,
        description="when flowpipe creates the consumer: how long a message may stay unacknowledged "
        "before JetStream delivers it again (keep it above the flow's end-to-end latency)",
    )
    max_ack_pending: int = Field(
        20000, ge=1, description="when flowpipe creates the consumer: most messages in flight unacknowledged"
    )


class NatsJetStreamSource(_NatsStage, Source[NatsJetStreamSourceConfig]):
    """Pulls messages from a JetStream consumer; acknowledges each once its records reached the sinks."""

    def open(self) -> None:
        config = self.config
        self._end = SourceEnd(config)
        self._wait = idle_wait(config.poll_timeout_ms)
        self._nats = _Nats(config, self.context)
        consumer = js_api.ConsumerConfig(
            ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=config.ack_wait_ms / 1000,
            max_ack_pending=config.max_ack_pending,
        )
        try:
            self._subscription = self._nats.run(
                self._nats.client.jetstream().pull_subscribe(
                    config.subject,
                    durable=config.durable_name or None,
                    stream=config.stream_name or None,
                    config=consumer,
                )
            )
        except nats.js.errors.NotFoundError as error:
            self._nats.close()
            raise LookupError(f"no JetStream stream captures subject {config.subject!r}: {error}") from error

    def produce_batch(self, limit: int) -> Batch:
        self._nats.outage.check()
        want = self._end.room(limit)
        subscription, wait = self._subscription, self._wait

        async def fetch() -> list[Msg]:
            try:
                return await subscription.fetch(want, timeout=wait)
            except TimeoutError:  # nothing to fetch now
                return []

        messages = self._nats.call(fetch, wait + _SETUP_TIMEOUT_S, ends_on_stop=True)
        self._end.took(len(messages))
        batch = Batch([message.data for message in messages])
        if messages:
            batch.ack = [message.reply for message in messages]
        return batch

    def acknowledge(self, tokens: list[Any]) -> None:
        client = self._nats.client
        replies = [reply for token in tokens for reply in token]

        async def ack() -> None:
            send = client.publish
            for reply in replies:
                await send(reply)  # an empty message on the reply subject is +ACK

        self._nats.call(ack, _SETUP_TIMEOUT_S)

    def close(self) -> None:
        self._nats.close()


class NatsJetStreamSinkConfig(NatsConfig):
    subject: str = Field(min_length=1, description="subject to publish to (a stream must capture it)")
    publish_timeout_ms: int = Field(
        5000, ge=1, description="how long JetStream has to confirm the records of one batch"
    )


class NatsJetStreamSink(_NatsStage, Sink[NatsJetStreamSinkConfig]):
    """Publishes each record to JetStream; a batch is done once the stream confirmed all of it."""

    def open(self) -> None:
        config = self.config
        self._nats = _Nats(config, self.context)
        self._js = self._nats.client.jetstream()
        self._timeout = config.publish_timeout_ms / 1000
        try:
            self._nats.run(self._js.find_stream_name_by_subject(config.subject))
        except nats.js.errors.NotFoundError as error:
            self._nats.close()
            raise LookupError(f"no JetStream stream captures subject {config.subject!r}") from error

    def consume_batch(self, batch: Batch) -> None:
        js, subject, timeout, data = self._js, self.config.subject, self._timeout, batch.data

        async def publish() -> None:
            pending = [await js.publish_async(subject, record) for record in data]
            try:
                await asyncio.wait_for(asyncio.gather(*pending), timeout)
            finally:
                for future in pending:
                    future.cancel()  # after a failure: frees their slots; the batch is sent again

        self._nats.call(publish, timeout + 1)

    def close(self) -> None:
        self._nats.close()
