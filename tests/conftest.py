"""Shared helpers: run the installed ``flowpipe`` command as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

BIN = Path(sys.executable).parent


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: no plugin directories unless a test sets them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWPIPE_")}
    env["FLOW_PIPE_PLUGIN_PATH"] = ""
    env.update(extra)
    return env


Run = Callable[..., subprocess.CompletedProcess[str]]


def unavailable(message: str) -> NoReturn:
    """A tool or server a test needs is missing: skip here, fail under ``CI=true`` (CI must
    run every test)."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)  # polling interval of a condition, not a fixed wait
        delay = min(delay * 2, 0.1)


@pytest.fixture
def flowpipe() -> Run:
    """``flowpipe(*args, env=..., timeout=...)`` runs the CLI and returns the finished process."""

    def run(
        *args: str | Path, command: str = "flowpipe", timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / command), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=tool_env(**env),
            check=False,
        )

    return run


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """``write(name, text)`` creates a file under the test's tmp dir and returns its path."""

    def create(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return create
