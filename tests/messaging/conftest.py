"""Session-scoped servers (and per-test ones for tests that restart them); see messaging_support."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .messaging_support import CRASH_REPORTS, Server, make_kafka, make_nats, make_redis, write_plugins


def _session_server(make: Callable[[Path], Server], factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = make(factory.mktemp("server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _session_server(make_redis, tmp_path_factory)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _session_server(make_nats, tmp_path_factory)


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _session_server(make_kafka, tmp_path_factory)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, for tests that stop or restart it."""
    server = make_redis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[Server]:
    server = make_nats(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A plugin directory with ``append_sink`` (config: path)."""
    return write_plugins(tmp_path / "plugins")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CRASH_REPORTS:
        terminalreporter.section("at-least-once after SIGKILL")
        for line in CRASH_REPORTS:
            terminalreporter.write_line(line)
