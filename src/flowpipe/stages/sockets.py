"""Socket stages: ``tcp_source``/``_sink`` and ``udp_source``/``_sink`` (IP or unix sockets).

TCP is a byte stream, so records need framing; the original emitted each ``recv()`` chunk as a
record, which splits and merges records at random. Here both ends agree on ``framing``:
``newline`` (a record per line) or ``length_prefixed`` (a 4-byte big-endian length, then the
bytes). A UDP datagram is one record. Neither protocol acknowledges anything to its sender,
so these sources cannot acknowledge: what is in flight when a process dies is lost.
"""

from __future__ import annotations

import collections
import contextlib
import select
import selectors
import socket
import struct
from enum import StrEnum
from typing import Any

from pydantic import Field

from flowpipe import Batch, Sink, Source

from ._net import (
    EndpointConfig,
    Outage,
    ReconnectConfig,
    SourceEnd,
    SourceEndConfig,
    idle_wait,
    listen,
    listen_problems,
    probe,
    remove_socket_file,
)

__all__ = ["TcpSink", "TcpSource", "UdpSink", "UdpSource"]

_RECV_BYTES = 256 * 1024
_MAX_TCP_RECORD = 1 << 20
_MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4
_RECEIVE_BUFFER = 4 << 20  # bytes asked for a datagram socket's receive buffer
_LENGTH = struct.Struct(">I")
_CONNECT_TIMEOUT_S = 2.0
_SEND_TIMEOUT_S = 10.0


class Framing(StrEnum):
    NEWLINE = "newline"
    LENGTH_PREFIXED = "length_prefixed"


class _FrameError(ValueError):
    pass


def _as_bytes(record: Any) -> bytes:
    if isinstance(record, (bytes, bytearray, memoryview)):
        return bytes(record)
    return (record if isinstance(record, str) else str(record)).encode()


def _frame(records: list[Any], framing: Framing) -> bytes:
    """The bytes that carry ``records`` with ``framing``."""
    data: list[bytes] = records if all(type(r) is bytes for r in records) else [_as_bytes(r) for r in records]
    if framing is Framing.LENGTH_PREFIXED:
        pack = _LENGTH.pack
        return b"".join(pack(len(d)) + d for d in data)
    payload = b"\n".join(data) + b"\n"
    if payload.count(b"\n") != len(data):
        raise _FrameError("a record contains a newline: use framing: length_prefixed")
    return payload


class _Deframer:
    """Cuts one connection's byte stream into records."""

    __slots__ = ("buffer", "framing", "limit")

    def __init__(self, framing: Framing, limit: int) -> None:
        self.framing = framing
        self.limit = limit
        self.buffer = b""

    def feed(self, chunk: bytes, out: collections.deque[bytes]) -> None:
        data = self.buffer + chunk if self.buffer else chunk
        if self.framing is Framing.NEWLINE:
            parts = data.split(b"\n")
            self.buffer = parts.pop()
            if len(data) > self.limit and max(map(len, parts), default=0) > self.limit:
                raise _FrameError(f"a record is longer than max_payload_size ({self.limit} bytes)")
            out.extend(parts)
        else:
            pos, end = 0, len(data)
            while end - pos >= 4:
                (size,) = _LENGTH.unpack_from(data, pos)
                if size > self.limit:
                    raise _FrameError(
                        f"a frame of {size} bytes is longer than max_payload_size ({self.limit})"
                    )
                if end - pos - 4 < size:
                    break
                out.append(data[pos + 4 : pos + 4 + size])
                pos += 4 + size
            self.buffer = data[pos:]
        if len(self.buffer) > self.limit + 4:
            raise _FrameError(f"a record is longer than max_payload_size ({self.limit} bytes)")

    def end(self, out: collections.deque[bytes]) -> None:
        """The sender closed: an unterminated last line is still a record; a cut frame is not."""
        if self.buffer:
            if self.framing is Framing.NEWLINE:
                out.append(self.buffer)
            else:
                raise _FrameError(f"connection closed in the middle of a frame ({len(self.buffer)} bytes)")


# -- TCP ----------------------------------------------------------------------------------------


class _ListenConfig(EndpointConfig, SourceEndConfig):
    bind_address: str = Field("0.0.0.0", description="address to listen on")
    poll_timeout_ms: int = Field(
        1000, ge=0, description="longest one poll waits for data (at most 100 ms are used)"
    )


class TcpSourceConfig(_ListenConfig):
    framing: Framing = Field(
        Framing.NEWLINE,
        description="how records are delimited in the stream: newline (one per line, the newline "
        "removed) or length_prefixed (4-byte big-endian length, then the bytes)",
    )
    max_payload_size: int = Field(
        65536,
        ge=1,
        le=_MAX_TCP_RECORD,
        description="longest record; a client sending a longer one is disconnected",
    )


class TcpSource(Source[TcpSourceConfig]):
    """Accepts TCP (or unix socket) connections, any number at once; each framed record is a record."""

    @classmethod
    def preflight(cls, config: TcpSourceConfig) -> list[str]:
        """Problems to report before the flow starts: the port or path already in use."""
        return listen_problems(socket.SOCK_STREAM, config.bind_address, config.port, config.unix_socket_path)

    def open(self) -> None:
        config = self.config
        self._end = SourceEnd(config)
        self._wait = idle_wait(config.poll_timeout_ms)
        self._server = listen(
            socket.SOCK_STREAM,
            config.bind_address,
            config.port,
            config.unix_socket_path,
            shared=self.context.worker_count > 1,
        )
        self._server.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ)
        self._ready: collections.deque[bytes] = collections.deque()

    def produce_batch(self, limit: int) -> Batch:
        want = self._end.room(limit)
        ready = self._ready
        if not ready:  # read only once what was read is out: TCP then holds the senders back
            for key, _ in self._selector.select(self._wait):
                if key.fileobj is self._server:
                    self._accept()
                else:
                    self._receive(key.fileobj, key.data)  # type: ignore[arg-type]
        count = min(want, len(ready))
        data = [ready.popleft() for _ in range(count)]
        self._end.took(count)
        return Batch(data)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            self._selector.register(
                conn, selectors.EVENT_READ, _Deframer(self.config.framing, self.config.max_payload_size)
            )

    def _receive(self, conn: socket.socket, deframer: _Deframer) -> None:
        try:
            chunk = conn.recv(_RECV_BYTES)
            if chunk:
                deframer.feed(chunk, self._ready)
                return
            deframer.end(self._ready)
        except BlockingIOError:
            return
        except (_FrameError, OSError) as error:
            self.context.logger.warning("tcp_source: dropping a connection: %s", error)
        self._selector.unregister(conn)
        conn.close()

    def close(self) -> None:
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
        if self.config.unix_socket_path:
            remove_socket_file(self.config.unix_socket_path)


class _ConnectConfig(EndpointConfig, ReconnectConfig):
    host: str = Field("127.0.0.1", description="host to send to")


class TcpSinkConfig(_ConnectConfig):
    framing: Framing = Field(
        Framing.NEWLINE, description="how records are delimited: newline or length_prefixed (see tcp_source)"
    )


class TcpSink(Sink[TcpSinkConfig]):
    """Sends each record, framed, over one TCP (or unix socket) connection; reconnects when it breaks."""

    @classmethod
    def preflight(cls, config: TcpSinkConfig) -> list[str]:
        """Problems to report before the flow starts: nobody listening."""
        if config.unix_socket_path:
            return []  # checked by open(): probing would look like a client to the receiver
        return probe("the TCP receiver", [(config.host, config.port)])

    def open(self) -> None:
        config = self.config
        self._where = config.unix_socket_path or f"{config.host}:{config.port}"
        self._outage = Outage(self.context, f"TCP receiver at {self._where}", config.reconnect_timeout_ms)
        self._sock: socket.socket | None = None
        try:
            self._connect()
        except OSError as error:
            raise ConnectionError(
                f"cannot reach the TCP receiver at {self._where}: {error.strerror or error}"
            ) from error

    def _connect(self) -> socket.socket:
        config = self.config
        if config.unix_socket_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(_CONNECT_TIMEOUT_S)
            try:
                sock.connect(config.unix_socket_path)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((config.host, config.port), timeout=_CONNECT_TIMEOUT_S)
        sock.settimeout(_SEND_TIMEOUT_S)
        self._sock = sock
        return sock

    def consume_batch(self, batch: Batch) -> None:
        payload = _frame(batch.data, self.config.framing)
        self._outage.call(lambda: self._send(payload), (OSError,))

    def _send(self, payload: bytes) -> None:
        sock = self._sock
        if sock is not None and _peer_closed(sock):
            # A write to a connection the receiver closed would vanish without an error.
            sock.close()
            sock = self._sock = None
        sock = sock or self._connect()
        try:
            sock.sendall(payload)
        except OSError:
            # Resent whole on a new connection: the receiver may get part of it twice.
            sock.close()
            self._sock = None
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


def _peer_closed(sock: socket.socket) -> bool:
    """True when the receiver closed (or reset) the connection: readable, with nothing to read."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


# -- UDP ----------------------------------------------------------------------------------------


class UdpSourceConfig(_ListenConfig):
    max_payload_size: int = Field(
        _MAX_DATAGRAM,
        ge=1,
        le=_MAX_DATAGRAM,
        description="longest datagram; longer ones are dropped (logged)",
    )


class UdpSource(Source[UdpSourceConfig]):
    """Each UDP (or unix datagram) datagram received is a record (at most once)."""

    @classmethod
    def preflight(cls, config: UdpSourceConfig) -> list[str]:
        """Problems to report before the flow starts: the port or path already in use."""
        return listen_problems(socket.SOCK_DGRAM, config.bind_address, config.port, config.unix_socket_path)

    def open(self) -> None:
        config = self.config
        self._end = SourceEnd(config)
        self._sock = listen(
            socket.SOCK_DGRAM,
            config.bind_address,
            config.port,
            config.unix_socket_path,
            shared=self.context.worker_count > 1,
        )
        # A burst beyond the kernel's receive buffer is dropped unseen; ask for room (capped by
        # net.core.rmem_max) so that a batch's worth of datagrams waits for the next read.
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
        self._sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)
        self._wait_ms = idle_wait(config.poll_timeout_ms) * 1000
        self._oversized = 0

    def produce_batch(self, limit: int) -> Batch:
        want = self._end.room(limit)
        data: list[bytes] = []
        if self._poll.poll(self._wait_ms):
            # One byte more than allowed tells a too-long datagram from one of exactly the limit.
            recv, size = self._sock.recv, self.config.max_payload_size
            try:
                while len(data) < want:
                    datagram = recv(size + 1)
                    if len(datagram) <= size:
                        data.append(datagram)
                        continue
                    self._oversized += 1
                    self.context.logger.warning(
                        "udp_source: dropped a datagram longer than max_payload_size (%d so far)",
                        self._oversized,
                    )
            except BlockingIOError:  # all that was there is taken
                pass
        self._end.took(len(data))
        return Batch(data)

    def close(self) -> None:
        self._sock.close()
        if self.config.unix_socket_path:
            remove_socket_file(self.config.unix_socket_path)


class UdpSinkConfig(_ConnectConfig):
    pass


class UdpSink(Sink[UdpSinkConfig]):
    """Sends each record as one UDP (or unix datagram) datagram; nothing tells whether it arrived."""

    def open(self) -> None:
        config = self.config
        if config.unix_socket_path:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._target: Any = config.unix_socket_path
        else:
            family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
            self._target = (config.host, config.port)

    def consume_batch(self, batch: Batch) -> None:
        send, target = self._sock.sendto, self._target
        for record in batch.data:
            datagram = record if type(record) is bytes else _as_bytes(record)
            if len(datagram) > _MAX_DATAGRAM:
                self.context.logger.warning(
                    "udp_sink: dropped a record of %d bytes (too long for a datagram)", len(datagram)
                )
                continue
            with contextlib.suppress(ConnectionRefusedError, FileNotFoundError):
                send(datagram, target)  # nobody listening (yet): a datagram is fire and forget

    def close(self) -> None:
        self._sock.close()
