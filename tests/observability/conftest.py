"""Fixtures: flows run in the background (stopped at the end) and a local OTLP receiver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .support import OtlpReceiver, RunningFlow


@pytest.fixture
def start_flow() -> Iterator[Callable[..., RunningFlow]]:
    started: list[RunningFlow] = []

    def start(flow: Path, *args: str, **env: str) -> RunningFlow:
        running = RunningFlow(flow, *args, **env)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
        running.close()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()
