"""Helpers: a ``flowpipe run`` in the background with its metrics address, waiting on
conditions (never on fixed sleeps), and a local OTLP/HTTP receiver."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from conftest import BIN, tool_env

PLUGINS = Path(__file__).parent / "plugins"
T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Polls ``check`` until it returns a true value, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        threading.Event().wait(0.02)  # a poll interval, not a wait for the outcome


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text as {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """A sample's value; NaN (equal to nothing) when the flow does not serve it (yet)."""
    return metrics.get((name, frozenset(labels.items())), float("nan"))


class RunningFlow:
    """``flowpipe run FLOW --metrics-addr 127.0.0.1:0`` in the background; ``url`` is the
    address the server logged."""

    def __init__(self, flow: Path, *args: str, **env: str) -> None:
        command = [str(BIN / "flowpipe"), "run", str(flow), "--plugin-path", str(PLUGINS)]
        command += ["--metrics-addr", "127.0.0.1:0", *args]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=tool_env(**env),
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        found = wait_until(lambda: self._address() or self.process.poll() is not None, what="metrics address")
        if found is True:
            raise AssertionError(f"flowpipe exited early:\n{self.stderr}")
        self.url = str(found)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def _address(self) -> str | None:
        for line in list(self.lines):
            if match := re.search(r"serving metrics on (http://\S+)/metrics", line):
                return match.group(1)
        return None

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        status, body = get(self.url + "/metrics")
        assert status == 200
        return samples(body)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.close(timeout)

    def close(self, timeout: float = 30) -> int:
        """Waits for the exit (killing the process if still running) and closes the pipe."""
        if self.process.poll() is None and self.process.returncode is None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        code = self.process.wait()
        self._reader.join(timeout)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code


class OtlpReceiver:
    """Accepts OTLP/HTTP export requests on 127.0.0.1 and keeps their bodies by path."""

    def __init__(self) -> None:
        self.requests: dict[str, list[bytes]] = {}
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.requests.setdefault(self.path, []).append(body)
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self, path: str) -> list[bytes]:
        with self.arrived:
            return list(self.requests.get(path, []))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
