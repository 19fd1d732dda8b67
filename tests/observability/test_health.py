"""/healthz and /readyz through a run's life: starting, running, draining, failed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from flowpipe import Batch, Sink, StageConfig, Transform
from flowpipe.observability._policy import MetricGroups
from flowpipe.observability._server import MetricsEndpoint
from flowpipe.registry import build_registry
from flowpipe.runtime import FlowRun, plan_flow
from flowpipe.spec import parse_flow_text
from flowpipe.testing import TestingSource

from .support import get, wait_until

FLOW = """
name: health
execution: {mode: job}
queues: [{name: a, capacity: 16}, {name: b, capacity: 16}]
stages:
  - {name: src, type: numbers, output_queue: a}
  - {name: mid, type: middle, input_queue: a, output_queue: b}
  - {name: out, type: gated_sink, input_queue: b}
"""


class Gates:
    """Events a test opens to let the stages below go on."""

    open = threading.Event()  # GatedSink.open() returns
    consume = threading.Event()  # GatedSink.consume_batch() returns
    consuming = threading.Event()  # set when a batch reached GatedSink
    close = threading.Event()  # GatedSink.close() returns


class GatedSink(Sink[StageConfig]):
    def open(self) -> None:
        Gates.open.wait(30)

    def consume_batch(self, batch: Batch) -> None:
        Gates.consuming.set()
        Gates.consume.wait(30)

    def close(self) -> None:
        Gates.close.wait(30)


class Failing(Transform[StageConfig]):
    def process_batch(self, batch: Batch) -> Batch:
        raise ValueError("bad record")


class Passing(Transform[StageConfig]):
    def process_batch(self, batch: Batch) -> Batch:
        return batch


@pytest.fixture(autouse=True)
def closed_gates() -> Iterator[None]:
    for gate in (Gates.open, Gates.consume, Gates.consuming, Gates.close):
        gate.clear()
    yield
    for gate in (Gates.open, Gates.consume, Gates.close):
        gate.set()  # nothing stays blocked after a failed test


class Running:
    def __init__(self, middle: type[Transform[Any]]) -> None:
        stages = {"numbers": TestingSource.of([b"1", b"2", b"3"]), "middle": middle, "gated_sink": GatedSink}
        plan = plan_flow(parse_flow_text(FLOW, "flow.yaml"), build_registry((), stages))
        self.endpoint = MetricsEndpoint("127.0.0.1:0", plan.name, MetricGroups())
        self.run = FlowRun(plan, instruments=[self.endpoint])
        self.codes: list[int] = []
        self.thread = threading.Thread(target=lambda: self.codes.append(self.run.run()))
        self.thread.start()

    def check(self, path: str) -> tuple[int, dict[str, Any]]:
        code, body = get(self.endpoint.url + path)
        return code, json.loads(body)

    def exit_code(self) -> int:
        self.thread.join(30)
        return self.codes[0]


def test_not_ready_until_every_stage_opened_then_ready() -> None:
    running = Running(Passing)
    # Every stage but the gated sink opens in its own time.
    code, body = wait_until(
        lambda: (r := running.check("/readyz")) and r[1].get("waiting_for") == ["out"] and r,
        what="only the sink still opening",
    )
    assert code == 503 and body["status"] == "not ready" and body["state"] == "starting"
    assert running.check("/healthz") == (200, {"status": "ok", "flow": "health", "state": "starting"})
    Gates.open.set()
    assert wait_until(lambda: running.check("/readyz")[0] == 200, what="ready")
    Gates.consume.set()
    Gates.close.set()
    assert running.exit_code() == 0


def test_not_ready_while_draining() -> None:
    running = Running(Passing)
    Gates.open.set()
    assert Gates.consuming.wait(30)
    running.run.request_stop("test")
    code, body = running.check("/readyz")
    assert code == 503 and body == {"status": "not ready", "flow": "health", "state": "draining"}
    assert running.check("/healthz")[0] == 200  # draining is healthy
    Gates.consume.set()
    Gates.close.set()
    assert running.exit_code() == 0


def test_unhealthy_once_a_stage_failed_naming_it() -> None:
    running = Running(Failing)
    Gates.open.set()  # the sink then waits in close(): the process is still up to answer
    _, body = wait_until(lambda: (r := running.check("/healthz")) and r[0] == 503 and r, what="unhealthy")
    assert body == {
        "status": "failed",
        "flow": "health",
        "state": "failed",
        "stage": "mid",
        "type": "middle",
        "error": "stage 'mid' (middle) failed: ValueError: bad record",
    }
    ready_code, ready = running.check("/readyz")
    assert ready_code == 503 and ready["stage"] == "mid" and ready["state"] == "failed"
    metrics = get(running.endpoint.url + "/metrics")[1]
    assert 'flowpipe_stage_errors_total{flow="health",stage="mid",type="middle"} 1.0' in metrics
    Gates.close.set()
    assert running.exit_code() == 1
