"""Redis stages: ``redis_pubsub_source``/``_sink`` and ``redis_stream_source``/``_sink``.

Pub/sub delivers each message once to whoever is subscribed at that moment and keeps none, so
``redis_pubsub_source`` cannot acknowledge. ``redis_stream_source`` with a ``group`` reads
with XREADGROUP and XACKs an entry only once every record derived from it reached the sinks;
entries in flight when a process dies stay pending and are read again: by the same consumer
when it restarts, or claimed (XAUTOCLAIM) by another replica after ``claim_idle_ms``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from pydantic import Field

from flowpipe import Batch, Sink, Source, StageContext

from ._net import Outage, ReconnectConfig, SourceEnd, SourceEndConfig, idle_wait, missing_library, probe

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as error:  # pragma: no cover - the messaging extra is not installed
    raise missing_library("redis", "redis_* stages") from error

__all__ = ["RedisPubSubSink", "RedisPubSubSource", "RedisStreamSink", "RedisStreamSource"]

T = TypeVar("T")
_ERRORS = (redis.ConnectionError, redis.TimeoutError)
_CONNECT_TIMEOUT_S = 2.0
_SOURCE_SOCKET_TIMEOUT_S = 10.0  # well above one blocking read (at most 100 ms)


class RedisConfig(ReconnectConfig):
    host: str = Field("127.0.0.1", description="Redis server host")
    port: int = Field(6379, ge=1, le=65535, description="Redis server port")
    username: str = Field("", description="AUTH user name (empty: none, or 'default' with a password)")
    password: str = Field("", description="AUTH password (empty: no AUTH)")
    database: int = Field(0, ge=0, description="database number (SELECT)")


class _Redis:
    """A stage's connection: a clear error when unreachable at start, logged reconnection
    with backoff when lost later (redis-py's own silent retries are switched off).

    Commands go over one connection of redis-py's, bypassing its reply parsing: the raw
    replies (lists of bytes) are what the stages need, and parsing stream entries into dicts
    cost more than the rest of the relay. Batches of writes are packed into one RESP buffer.
    """

    def __init__(self, config: RedisConfig, context: StageContext, timeout_s: float) -> None:
        self.where = f"{config.host}:{config.port}"
        self.client = _client(config, timeout_s)
        self.outage = Outage(context, f"Redis at {self.where}", config.reconnect_timeout_ms)
        try:
            # redis-py leaves the connection's methods untyped.
            self._conn: Any = cast(Any, self.client.connection_pool.get_connection())
            self._conn.connect()  # when the pool did not already
        except _ERRORS as error:
            self.client.close()
            raise ConnectionError(f"cannot reach Redis at {self.where}: {error}") from error

    def call(self, operation: Callable[[], T], *, ends_on_stop: bool = False) -> T:
        return self.outage.call(operation, _ERRORS, ends_on_stop=ends_on_stop)

    def command(self, *args: Any) -> Any:
        """One command's raw reply (a connection error is for :meth:`call` to retry)."""
        conn = self._conn
        try:
            conn.send_command(*args)
            return conn.read_response()
        except _ERRORS:
            conn.disconnect()  # the next command connects again
            raise

    def send_each(self, head: tuple[Any, ...], records: list[Any]) -> None:
        """The command ``head + (record,)`` for each record, as one round trip; resent whole
        after a reconnection (so records may be written twice, never lost)."""
        prefix = _resp_head(head)
        if not all(type(record) is bytes for record in records):
            records = [_as_bytes(record) for record in records]
        packed = b"".join([b"%b$%d\r\n%b\r\n" % (prefix, len(r), r) for r in records])

        def send() -> None:
            conn = self._conn
            try:
                conn.send_packed_command([packed], check_health=False)
                read, failed = conn.read_response, None
                for _ in records:
                    try:
                        read()
                    except redis.ResponseError as error:  # read every reply before raising
                        failed = failed or error
            except _ERRORS:
                conn.disconnect()
                raise
            if failed is not None:
                raise failed

        self.call(send)

    def close(self) -> None:
        self._conn.disconnect()
        self.client.close()


def _client(config: RedisConfig, timeout_s: float) -> redis.Redis:
    """redis-py's client for ``config``: AUTH and SELECT at connect, no retries of its own."""
    return redis.Redis(
        host=config.host,
        port=config.port,
        username=config.username or None,
        password=config.password or None,
        db=config.database,
        socket_timeout=timeout_s,
        socket_connect_timeout=_CONNECT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        protocol=2,  # the stages read raw RESP2 arrays
    )


def _resp_head(args: tuple[Any, ...]) -> bytes:
    """RESP for a command of ``args`` plus one more argument, without that last argument."""
    parts = [b"*%d\r\n" % (len(args) + 1)]
    for arg in args:
        data = _as_bytes(arg)
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return (value if isinstance(value, str) else str(value)).encode()


class _RedisStage:
    @classmethod
    def preflight(cls, config: RedisConfig) -> list[str]:
        """Problems to report before the flow starts: the server not accepting connections, or
        refusing the credentials (AUTH) or the database (SELECT)."""
        problems = probe("Redis", [(config.host, config.port)])
        if problems:
            return problems
        client = _client(config, _CONNECT_TIMEOUT_S)  # logs in as the stage will
        where = f"Redis at {config.host}:{config.port}"
        try:
            client.ping()
        except redis.AuthenticationError as error:
            return [f"{where} refused the credentials ({error}): check username and password"]
        except redis.ResponseError as error:
            return [f"{where} refused the connection's set-up ({error}): check password and database"]
        except _ERRORS:
            pass  # it accepted a connection a moment ago: a passing outage is for the stage
        finally:
            client.close()
        return []


# -- pub/sub ------------------------------------------------------------------------------------


class RedisPubSubSourceConfig(RedisConfig, SourceEndConfig):
    channel: str = Field(min_length=1, description="channel to SUBSCRIBE to")
    poll_timeout_ms: int = Field(
        1000, ge=0, description="longest one poll waits for a message (at most 100 ms are used)"
    )


class RedisPubSubSource(_RedisStage, Source[RedisPubSubSourceConfig]):
    """Each message published on a Redis channel is a record (at most once: pub/sub keeps nothing)."""

    def open(self) -> None:
        config = self.config
        self._redis = _Redis(config, self.context, _SOURCE_SOCKET_TIMEOUT_S)
        self._end = SourceEnd(config)
        self._wait = idle_wait(config.poll_timeout_ms)
        # redis-py subscribes again by itself whenever it reconnects.
        self._pubsub = self._redis.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._redis.call(lambda: self._pubsub.subscribe(config.channel))

    def produce_batch(self, limit: int) -> Batch:
        want = self._end.room(limit)
        data = self._redis.call(lambda: self._read(want), ends_on_stop=True)
        self._end.took(len(data))
        return Batch(data)

    def _read(self, want: int) -> list[Any]:
        get = self._pubsub.get_message
        data: list[Any] = []
        message = get(timeout=self._wait)
        while message is not None:
            data.append(message["data"])
            if len(data) >= want:
                break
            message = get(timeout=0.0)
        return data

    def close(self) -> None:
        self._pubsub.close()
        self._redis.close()


class RedisPubSubSinkConfig(RedisConfig):
    channel: str = Field(min_length=1, description="channel to PUBLISH to")
    command_timeout_ms: int = Field(5000, ge=1, description="socket timeout of each round trip")


class RedisPubSubSink(_RedisStage, Sink[RedisPubSubSinkConfig]):
    """PUBLISHes each record on a Redis channel, one pipelined round trip per batch."""

    def open(self) -> None:
        self._redis = _Redis(self.config, self.context, self.config.command_timeout_ms / 1000)

    def consume_batch(self, batch: Batch) -> None:
        self._redis.send_each(("PUBLISH", self.config.channel), batch.data)

    def close(self) -> None:
        self._redis.close()


# -- streams ------------------------------------------------------------------------------------


class RedisStreamSourceConfig(RedisConfig, SourceEndConfig):
    stream: str = Field(min_length=1, description="stream key")
    start_id: str = Field(
        "$",
        description="where reading starts: '$' = entries added after start, '0' = the beginning, or an "
        "entry id; with a group, where the group starts when it does not exist yet",
    )
    block_timeout_ms: int = Field(
        100, ge=0, description="longest one read waits for new entries (at most 100 ms are used)"
    )
    count: int = Field(0, ge=0, description="most entries per read; 0 = the runtime's batch size")
    field_name: str = Field("", description="the entry field whose value is the record; empty = the first")
    group: str = Field(
        "",
        description="consumer group: read with XREADGROUP and XACK each entry once its records reached "
        "the sinks (created if missing); empty = plain XREAD, no acknowledgement",
    )
    consumer: str = Field(
        "",
        description="consumer name within the group; empty = the host name (plus '-<worker>' with "
        "threads > 1). Keep it stable: a restarted consumer first re-reads its unacknowledged entries",
    )
    claim_idle_ms: int = Field(
        30000,
        ge=0,
        description="with a group: take over entries another consumer left unacknowledged this long "
        "(a replica that died); 0 = never",
    )


class RedisStreamSource(_RedisStage, Source[RedisStreamSourceConfig]):
    """Reads entries of a Redis stream; with a consumer group, at least once (XACK after the sinks)."""

    def open(self) -> None:
        config, context = self.config, self.context
        self._redis = _Redis(config, context, _SOURCE_SOCKET_TIMEOUT_S)
        self._end = SourceEnd(config)
        self._block_ms = max(1, round(idle_wait(config.block_timeout_ms) * 1000))
        self._field = config.field_name.encode()
        command = self._redis.command
        if not config.group:
            self._last_id: Any = config.start_id
            if config.start_id == "$":
                # Pin '$' to an id now: entries added between two reads would be missed otherwise.
                last = self._redis.call(lambda: command("XREVRANGE", config.stream, "+", "-", "COUNT", 1))
                self._last_id = last[0][0] if last else "0-0"
            return
        self._consumer = config.consumer or socket.gethostname()
        if not config.consumer and context.worker_count > 1:
            self._consumer += f"-{context.worker_index}"
        self._create_group(config.start_id)
        self._next_id: Any = "0"  # this consumer's own pending entries first, then '>'
        self._in_flight: set[bytes] = set()  # read, not yet acknowledged: never emitted twice
        self._claim_cursor: Any = "0-0"
        self._next_claim = 0.0

    def _create_group(self, start_id: str) -> None:
        config, command = self.config, self._redis.command
        try:
            self._redis.call(
                lambda: command("XGROUP", "CREATE", config.stream, config.group, start_id, "MKSTREAM")
            )
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def produce_batch(self, limit: int) -> Batch:
        want = self._end.room(limit)
        if self.config.count:
            want = min(want, self.config.count)
        if not self.config.group:
            entries = self._redis.call(lambda: self._read(want), ends_on_stop=True)
            if entries:
                self._last_id = entries[-1][0]
            data = self._values(entries)
            self._end.took(len(data))
            return Batch(data)
        entries, fresh = self._redis.call(lambda: self._read_group(want), ends_on_stop=True)
        in_flight = self._in_flight
        if not fresh:  # claimed or pending again: some may still be on their way to the sinks
            entries = [entry for entry in entries if entry[0] not in in_flight]
        ids = [entry[0] for entry in entries]
        data = self._values(entries)
        self._end.took(len(data))
        if ids and not data:  # only deleted entries or entries without the field: nothing to wait for
            self.acknowledge([ids])
        elif ids:
            in_flight.update(ids)
        batch = Batch(data)
        if data:
            batch.ack = ids
        return batch

    def _values(self, entries: list[Any]) -> list[Any]:
        """The records of raw entries ``[id, [field, value, ...]]``; a deleted entry (no
        fields) or one without the field has none."""
        field = self._field
        if field:
            values = [
                (fields[1] if fields[0] == field else _field_value(fields, field)) if fields else None
                for _, fields in entries
            ]
        else:
            values = [fields[1] if fields else None for _, fields in entries]
        if None in values:
            skipped = values.count(None)
            self.context.logger.debug("skipped %d stream entries without the field or deleted", skipped)
            return [value for value in values if value is not None]
        return values

    def _read(self, count: int) -> list[Any]:
        config = self.config
        reply = self._redis.command(
            "XREAD", "COUNT", count, "BLOCK", self._block_ms, "STREAMS", config.stream, self._last_id
        )
        return _entries(reply)

    def _read_group(self, count: int) -> tuple[list[Any], bool]:
        """The next entries, and whether they are new to this consumer (never delivered)."""
        config, command = self.config, self._redis.command
        head = ("XREADGROUP", "GROUP", config.group, self._consumer, "COUNT", count)
        try:
            if config.claim_idle_ms and time.monotonic() >= self._next_claim:
                claimed = self._claim(count)
                if claimed:
                    return claimed, False
            if self._next_id != ">":
                entries = _entries(command(*head, "STREAMS", config.stream, self._next_id))
                if entries:
                    self._next_id = entries[-1][0]
                    return entries, False
                self._next_id = ">"
            return _entries(command(*head, "BLOCK", self._block_ms, "STREAMS", config.stream, ">")), True
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            # The stream or the group went away (deleted, or a server restarted without data):
            # whatever the stream holds from now on is new to this group.
            self.context.logger.warning(
                "group %r of stream %r is gone; creating it again", config.group, config.stream
            )
            self._create_group("0")
            return [], True

    def _claim(self, count: int) -> list[Any]:
        """The next entries, from one XAUTOCLAIM scan of the group, left idle by other consumers."""
        config = self.config
        reply = self._redis.command(
            "XAUTOCLAIM",
            config.stream,
            config.group,
            self._consumer,
            config.claim_idle_ms,
            self._claim_cursor,
            "COUNT",
            count,
        )
        self._claim_cursor = reply[0]
        if self._claim_cursor == b"0-0":  # a full scan done: the next one later
            self._next_claim = time.monotonic() + max(config.claim_idle_ms / 2000, 0.1)
        claimed: list[Any] = reply[1]
        if claimed:
            self.context.logger.info("claimed %d entries left pending by other consumers", len(claimed))
        return claimed

    def acknowledge(self, tokens: list[Any]) -> None:
        ids = [entry_id for token in tokens for entry_id in token]
        self._in_flight.difference_update(ids)
        config, command = self.config, self._redis.command
        self._redis.call(lambda: command("XACK", config.stream, config.group, *ids))

    def close(self) -> None:
        self._redis.close()


def _entries(reply: Any) -> list[Any]:
    """The ``[id, [field, value, ...]]`` entries of an XREAD/XREADGROUP reply on one stream."""
    return reply[0][1] if reply else []


def _field_value(fields: list[Any], field: bytes) -> Any:
    for name, value in zip(fields[::2], fields[1::2], strict=True):
        if name == field:
            return value
    return None


class RedisStreamSinkConfig(RedisConfig):
    stream: str = Field(min_length=1, description="stream key")
    field_name: str = Field("data", min_length=1, description="field that holds the record")
    maxlen: int = Field(0, ge=0, description="trim the stream to about this many entries; 0 = no trimming")
    maxlen_approx: bool = Field(False, description="trim with '~' (cheaper, approximate) instead of '='")
    id: str = Field("*", description="entry id given to XADD; '*' lets Redis choose")
    command_timeout_ms: int = Field(5000, ge=1, description="socket timeout of each round trip")


class RedisStreamSink(_RedisStage, Sink[RedisStreamSinkConfig]):
    """XADDs each record to a Redis stream, one pipelined round trip per batch."""

    def open(self) -> None:
        config = self.config
        self._redis = _Redis(config, self.context, config.command_timeout_ms / 1000)
        trim = ["MAXLEN", "~" if config.maxlen_approx else "=", config.maxlen] if config.maxlen else []
        self._head = ("XADD", config.stream, *trim, config.id, config.field_name)

    def consume_batch(self, batch: Batch) -> None:
        self._redis.send_each(self._head, batch.data)

    def close(self) -> None:
        self._redis.close()
