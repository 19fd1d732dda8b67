"""What the network stages share: config fields, ending rules, reconnection, probes, sockets.

Private to the built-in stages; it uses only the public SDK.

Two kinds of failure are kept apart:

- at start, an unreachable server is a configuration problem: ``preflight`` (checked before
  anything starts) and ``open()`` report it at once, naming host:port, and never retry;
- at run time, a lost connection is retried with exponential backoff, every attempt logged,
  for ever or until ``reconnect_timeout_ms`` has passed, when the stage fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from flowpipe import EndOfStream, StageConfig, StageContext

__all__ = [
    "IDLE_WAIT_S",
    "EndpointConfig",
    "Outage",
    "ReconnectConfig",
    "SourceEnd",
    "SourceEndConfig",
    "backoff_delay",
    "idle_wait",
    "listen",
    "listen_problems",
    "missing_library",
    "probe",
    "remove_socket_file",
    "split_endpoints",
]

T = TypeVar("T")

# The longest an idle source call waits: the runtime delivers acknowledgements and notices a
# stop between calls, so a longer wait would hold both up.
IDLE_WAIT_S = 0.1
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0
PROBE_TIMEOUT_S = 2.0


def missing_library(package: str, stage_types: str) -> ImportError:
    """The one-line error of a stage module whose client library is not installed."""
    return ImportError(
        f"{stage_types} need the Python package '{package}': pip install 'flow-pipe[messaging]'"
    )


def idle_wait(poll_timeout_ms: int) -> float:
    """Seconds one idle poll waits: the configured timeout, at most :data:`IDLE_WAIT_S`."""
    return min(poll_timeout_ms / 1000, IDLE_WAIT_S) if poll_timeout_ms > 0 else IDLE_WAIT_S


def backoff_delay(attempt: int) -> float:
    """Seconds before retry number ``attempt`` (0-based): 0.1 s doubling up to 5 s."""
    return min(_BACKOFF_FIRST_S * 2.0 ** min(attempt, 16), _BACKOFF_MAX_S)


# -- config fields every network stage shares ---------------------------------------------------


class ReconnectConfig(StageConfig):
    reconnect_timeout_ms: int = Field(
        0,
        ge=0,
        description="how long a connection lost while running is retried (with backoff) before "
        "the stage fails; 0 = retry for ever",
    )


class SourceEndConfig(StageConfig):
    max_messages: int = Field(0, ge=0, description="end after this many messages per worker; 0 = never")
    exit_on_idle_ms: int = Field(
        0,
        ge=0,
        description="end after this long without a message (for jobs); 0 = never: an idle source waits",
    )


class EndpointConfig(StageConfig):
    """A socket endpoint: TCP/UDP host and port, or a unix socket path instead."""

    unix_socket_path: str = Field(
        "", description="unix socket path; when set, the IP address and port are not used"
    )
    port: int = Field(
        0, ge=0, le=65535, validate_default=True, description="port (required unless unix_socket_path is set)"
    )

    @field_validator("port")
    @classmethod
    def _port_or_path(cls, port: int, info: ValidationInfo) -> int:
        if not port and not info.data.get("unix_socket_path"):
            raise ValueError("port is required unless unix_socket_path is set")
        return port


class SourceEnd:
    """When a source ends by its own config: ``max_messages`` reached, or idle too long."""

    __slots__ = ("_idle_ns", "_idle_since", "_left")

    def __init__(self, config: SourceEndConfig) -> None:
        self._left = config.max_messages or -1  # -1: no limit
        self._idle_ns = config.exit_on_idle_ms * 1_000_000
        self._idle_since = time.monotonic_ns()

    def room(self, limit: int) -> int:
        """How many messages the next call may take; EndOfStream once the limit is reached."""
        if self._left == 0:
            raise EndOfStream
        return limit if self._left < 0 else min(limit, self._left)

    def took(self, count: int) -> None:
        """Record a call's count; EndOfStream when it was idle longer than allowed."""
        now = time.monotonic_ns()
        if count:
            self._idle_since = now
            if self._left > 0:
                self._left -= count
        elif self._idle_ns and now - self._idle_since >= self._idle_ns:
            raise EndOfStream


# -- run-time connection loss -------------------------------------------------------------------


class Outage:
    """Tracks a lost connection: logs its start, each retry and its end, and fails the stage
    once it has lasted longer than ``reconnect_timeout_ms``.

    ``what`` names the server ("Redis at 127.0.0.1:6379"). Used directly by stages whose
    client reconnects by itself (NATS, Kafka), and by :meth:`call` for those that do not.
    """

    def __init__(self, context: StageContext, what: str, reconnect_timeout_ms: int) -> None:
        self.context = context
        self.what = what
        self.timeout_s = reconnect_timeout_ms / 1000
        self.since: float | None = None  # time.monotonic() the connection was lost
        self.attempts = 0

    def lost(self, error: object) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.attempts = 0
            self.context.logger.warning(
                "lost connection to %s (%s); retrying with backoff", self.what, _describe(error)
            )
        else:
            self.context.logger.info(
                "still cannot reach %s (%s); retry %d", self.what, _describe(error), self.attempts
            )
        self.attempts += 1

    def restored(self) -> None:
        if self.since is not None:
            self.context.logger.warning(
                "reconnected to %s after %.1f s", self.what, time.monotonic() - self.since
            )
            self.since = None

    def check(self) -> None:
        """Raise when the outage has lasted longer than allowed (never when the timeout is 0)."""
        since = self.since
        if since is not None and self.timeout_s and time.monotonic() - since > self.timeout_s:
            raise ConnectionError(
                f"{self.what} unreachable for more than {self.timeout_s:g} s (reconnect_timeout_ms)"
            )

    def call(
        self,
        operation: Callable[[], T],
        errors: tuple[type[BaseException], ...],
        *,
        ends_on_stop: bool = False,
    ) -> T:
        """``operation()``, retried with backoff while it raises one of ``errors``.

        A source passes ``ends_on_stop``: a stop requested during an outage ends it
        (EndOfStream). Sinks and acknowledgements keep retrying through a graceful stop,
        since what they hold must still be delivered; the drain deadline bounds that.
        """
        while True:
            try:
                result = operation()
            except errors as error:
                self.lost(error)
                self.check()
                delay = backoff_delay(self.attempts - 1)
                if ends_on_stop:
                    if self.context.wait(delay):
                        raise EndOfStream from error
                else:
                    time.sleep(delay)
                continue
            self.restored()
            return result


def _describe(error: object) -> str:
    if isinstance(error, BaseException):
        text = str(error)
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return str(error)


# -- start-up checks ----------------------------------------------------------------------------


def split_endpoints(text: str, default_port: int) -> list[tuple[str, int]]:
    """``host:port`` pairs from a comma-separated list of addresses or URLs."""
    endpoints = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        parts = urlsplit(item if "://" in item else f"//{item}")
        endpoints.append((parts.hostname or "127.0.0.1", parts.port or default_port))
    return endpoints


def probe(system: str, endpoints: Iterable[tuple[str, int]]) -> list[str]:
    """An empty list when one endpoint accepts a TCP connection, else one problem naming them."""
    endpoints = list(endpoints)
    errors = []
    for host, port in endpoints:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            return []
        except OSError as error:
            errors.append(f"{host}:{port} ({error.strerror or error})")
    return [f"cannot reach {system} at {', '.join(errors)}"]


# -- listening sockets (tcp, udp, http sources) -------------------------------------------------


def listen(
    kind: socket.SocketKind,
    address: str,
    port: int,
    unix_path: str = "",
    *,
    shared: bool = False,
) -> socket.socket:
    """A bound socket (listening, for TCP), or OSError saying what is in the way.

    ``shared`` (several workers of one stage) lets each worker bind the same port
    (SO_REUSEPORT) and the kernel spreads connections or datagrams among them.
    """
    if unix_path:
        if shared:
            raise ValueError(f"unix socket {unix_path}: only one worker can listen (set threads: 1)")
        sock = socket.socket(socket.AF_UNIX, kind)
        where = unix_path
        _remove_stale_unix_socket(unix_path)
        target: Any = unix_path
    else:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, kind)
        where = f"{address}:{port}"
        target = (address, port)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart over TIME_WAIT
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(target)
        if kind == socket.SOCK_STREAM:
            sock.listen(64)
    except OSError as error:
        sock.close()
        reason = "address already in use" if error.errno == errno.EADDRINUSE else error.strerror or str(error)
        raise OSError(f"cannot listen on {where}: {reason}") from error
    return sock


def listen_problems(kind: socket.SocketKind, address: str, port: int, unix_path: str = "") -> list[str]:
    """For ``preflight``: the problem binding would meet now (a port in use), if any."""
    if not unix_path and port == 0:
        return []
    try:
        listen(kind, address, port, unix_path).close()
    except OSError as error:
        return [str(error)]
    if unix_path:
        remove_socket_file(unix_path)
    return []


def remove_socket_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _remove_stale_unix_socket(path: str) -> None:
    """A socket file left by a process that died is removed; one still served is in use."""
    if not os.path.exists(path):
        return
    probe_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe_sock.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
    except OSError:
        pass  # not a stream socket, or not a socket: bind reports it
    finally:
        probe_sock.close()


# -- asyncio clients (nats-py) ------------------------------------------------------------------


class LoopThread:
    """An asyncio event loop on a daemon thread of its own, for an asyncio-only client.

    The loop keeps running while the stage's worker thread blocks elsewhere (a full queue,
    an empty one), so the client answers server pings and keeps reading; the worker hands it
    one coroutine per batch.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
