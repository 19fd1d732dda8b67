"""HTTP stages: ``http_sink`` (one request per record) and ``http_source`` (accepts POSTs).

``http_source`` acknowledges: with ``wait_for_delivery`` (the default) a client's request is
answered 200 only once its record reached the sinks, and 503 if the flow stops or fails
first, so a client that retries until it gets a 2xx never loses a record.
"""

from __future__ import annotations

import contextlib
import http.client
import queue
import socket
import threading
from enum import StrEnum
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowpipe import Batch, Sink, Source

from ._net import (
    Outage,
    ReconnectConfig,
    SourceEnd,
    SourceEndConfig,
    idle_wait,
    listen,
    listen_problems,
    probe,
)

__all__ = ["HttpSink", "HttpSource"]


# -- sink ---------------------------------------------------------------------------------------


class Method(StrEnum):
    POST = "POST"
    PUT = "PUT"


class Header(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="header name")
    value: str = Field("", description="header value")


class HttpSinkConfig(ReconnectConfig):
    url: str = Field(min_length=1, description="http:// or https:// URL each record is sent to")
    method: Method = Field(Method.POST, description="METHOD_POST (default) or METHOD_PUT (POST/PUT work too)")
    content_type: str = Field("application/json", description="Content-Type of each request")
    timeout_ms: int = Field(5000, ge=1, description="timeout of each request, in milliseconds")
    headers: list[Header] = Field(default_factory=list, description="extra headers: [{name, value}]")

    @field_validator("method", mode="before")
    @classmethod
    def _proto_name(cls, value: Any) -> Any:
        return value.upper().removeprefix("METHOD_") if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url


class _Retryable(Exception):
    """A response worth retrying: 408, 429 or a server error."""


_SEND_ERRORS = (OSError, http.client.HTTPException, _Retryable)


class HttpSink(Sink[HttpSinkConfig]):
    """Sends each record as the body of one HTTP request, on a kept-alive connection."""

    @classmethod
    def preflight(cls, config: HttpSinkConfig) -> list[str]:
        """Problems to report before the flow starts: nothing listening at the URL's host:port."""
        parts = urlsplit(config.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return probe("the HTTP endpoint", [(parts.hostname or "", port)])

    def open(self) -> None:
        config = self.config
        parts = urlsplit(config.url)
        self._https = parts.scheme == "https"
        self._netloc = parts.netloc
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": config.content_type, **{h.name: h.value for h in config.headers}}
        self._outage = Outage(self.context, f"HTTP endpoint {config.url}", config.reconnect_timeout_ms)
        self._conn: http.client.HTTPConnection | None = None
        self._rejected = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            # The original gave timeout_ms to curl's seconds option; this is milliseconds.
            self._conn = kind(self._netloc, timeout=self.config.timeout_ms / 1000)
        return self._conn

    def consume_batch(self, batch: Batch) -> None:
        for record in batch.data:
            body = record if isinstance(record, (bytes, bytearray)) else str(record).encode()
            status, reason = self._outage.call(partial(self._send, body), _SEND_ERRORS)
            if status >= 300:
                # Sending it again cannot succeed: logged and dropped, as the original did.
                self._rejected += 1
                self.context.logger.warning(
                    "http_sink: %s rejected a record: %d %s (%d so far)",
                    self.config.url,
                    status,
                    reason,
                    self._rejected,
                )

    def _send(self, body: bytes | bytearray) -> tuple[int, str]:
        conn = self._connection()
        try:
            conn.request(self.config.method.value, self._target, body=body, headers=self._headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self._conn = None
            raise
        if response.status in (408, 429) or response.status >= 500:
            raise _Retryable(f"{response.status} {response.reason}")
        return response.status, response.reason

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


# -- source -------------------------------------------------------------------------------------


class HttpSourceConfig(SourceEndConfig):
    bind_address: str = Field("0.0.0.0", description="address to listen on")
    port: int = Field(ge=1, le=65535, description="port to listen on")
    path: str = Field("/", description="path that accepts POST and PUT requests (others get 404)")
    max_payload_size: int = Field(1 << 20, ge=1, description="largest body accepted; larger ones get 413")
    wait_for_delivery: bool = Field(
        True,
        description="answer 200 once the record reached the sinks (503 if the flow stopped or failed "
        "first); false: answer 202 as soon as it is queued",
    )
    delivery_timeout_ms: int = Field(
        30000, ge=1, description="with wait_for_delivery: how long a request waits before a 504"
    )
    max_pending: int = Field(
        1024, ge=1, description="requests queued ahead of the flow; more get 503 with Retry-After"
    )
    poll_timeout_ms: int = Field(
        1000, ge=0, description="longest one poll waits for a request (at most 100 ms are used)"
    )


class _Request:
    __slots__ = ("body", "delivered", "done")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.delivered = False
        self.done = threading.Event()

    def finish(self, delivered: bool) -> None:
        self.delivered = delivered
        self.done.set()


class HttpSource(Source[HttpSourceConfig]):
    """Each POST (or PUT) body is a record; the client hears 200 once it reached the sinks."""

    @classmethod
    def preflight(cls, config: HttpSourceConfig) -> list[str]:
        """Problems to report before the flow starts: the port already in use."""
        return listen_problems(socket.SOCK_STREAM, config.bind_address, config.port)

    def open(self) -> None:
        config = self.config
        self._end = SourceEnd(config)
        self._wait = idle_wait(config.poll_timeout_ms)
        # None is a wake-up call (see wake()), not a request.
        self._requests: queue.Queue[_Request | None] = queue.Queue(config.max_pending)
        self._in_flight: set[_Request] = set()
        self._closed = False
        self._server = ThreadingHTTPServer(
            (config.bind_address, config.port), _Handler, bind_and_activate=False
        )
        self._server.socket.close()
        self._server.socket = listen(
            socket.SOCK_STREAM, config.bind_address, config.port, shared=self.context.worker_count > 1
        )
        self._server.daemon_threads = True
        self._server.source = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.1,),
            name=f"{self.context.stage_name}-{self.context.worker_index}-http",
            daemon=True,
        )
        self._thread.start()

    def offer(self, body: bytes) -> _Request | None:
        """Queue a request's body (from a server thread); None when full or closed."""
        if self._closed:
            return None
        request = _Request(body)
        try:
            self._requests.put_nowait(request)
        except queue.Full:
            return None
        return request

    def produce_batch(self, limit: int) -> Batch:
        want = self._end.room(limit)
        taken: list[_Request] = []
        try:
            first = self._requests.get(timeout=self._wait)
            while first is not None and len(taken) < want:
                taken.append(first)
                first = self._requests.get_nowait()
        except queue.Empty:
            pass
        self._end.took(len(taken))
        if not taken:
            return Batch([])
        batch = Batch([request.body for request in taken])
        if self.config.wait_for_delivery:  # else the client was answered 202 already
            self._in_flight.update(taken)
            batch.ack = taken
        return batch

    def wake(self) -> None:
        # Acknowledgements are ready (or a stop came): end the idle wait in produce_batch.
        with contextlib.suppress(queue.Full):
            self._requests.put_nowait(None)

    def acknowledge(self, tokens: list[Any]) -> None:
        for taken in tokens:
            self._in_flight.difference_update(taken)
            for request in taken:
                request.finish(True)

    def close(self) -> None:
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        # Whatever was not delivered by now never will be: its clients get 503 and retry.
        undelivered: list[_Request | None] = list(self._in_flight)
        while True:
            try:
                undelivered.append(self._requests.get_nowait())
            except queue.Empty:
                break
        for request in undelivered:
            if request is not None:
                request.finish(False)


# Refused bodies up to this size are read to their end first: a client still sending would
# otherwise meet a reset connection instead of the answer. Larger ones: answer and close.
_DRAIN_LIMIT = 64 << 20


class _Handler(BaseHTTPRequestHandler):
    server: Any
    protocol_version = "HTTP/1.1"  # keep-alive

    def _refuse(self, status: int, reason: str, length: int) -> None:
        remaining = length if length <= _DRAIN_LIMIT else 0
        while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 16))):
            remaining -= len(chunk)
        self.close_connection = length > _DRAIN_LIMIT or remaining > 0
        self._reply(status, reason)

    def do_POST(self) -> None:
        self._accept()

    def do_PUT(self) -> None:
        self._accept()

    def _accept(self) -> None:
        source: HttpSource = self.server.source
        config = source.config
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._reply(411, "Length Required")
            self.close_connection = True  # where the body ends is unknown
            return
        if urlsplit(self.path).path != config.path:
            self._refuse(404, "Not Found", int(length))
            return
        if int(length) > config.max_payload_size:
            self._refuse(413, "Payload Too Large", int(length))
            return
        request = source.offer(self.rfile.read(int(length)))
        if request is None:
            self._reply(503, "Busy or stopping", {"Retry-After": "1"})
        elif not config.wait_for_delivery:
            self._reply(202, "Accepted")
        elif not request.done.wait(config.delivery_timeout_ms / 1000):
            self._reply(504, "Not delivered in time")
        elif request.delivered:
            self._reply(200, "Delivered")
        else:
            self._reply(503, "Not delivered", {"Retry-After": "1"})

    def _reply(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        self.server.source.context.logger.debug("http_source: " + format, *args)
