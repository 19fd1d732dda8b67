"""``flowpipe run --metrics-addr``: scrape a running flow's /metrics, /healthz and /readyz."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import Run, tool_env

from .support import PLUGINS, RunningFlow, get, value, wait_until

Start = Callable[..., RunningFlow]
Write = Callable[[str, str], Path]

COUNTED = """
name: counted
execution: {mode: streaming}
queues: [{name: raw, capacity: 64}, {name: done, capacity: 64}]
stages:
  - {name: gen, type: counted_source, output_queue: raw, config: {count: 1500}}
  - {name: pass, type: noop_transform, input_queue: raw, output_queue: done, threads: 2}
  - {name: out, type: stdout_sink, input_queue: done}
"""


def test_counts_equal_the_records_that_passed(start_flow: Start, write: Write) -> None:
    flow = start_flow(write("counted.yaml", COUNTED))
    stage = {"flow": "counted"}
    sink = {**stage, "stage": "out", "type": "stdout_sink"}
    metrics = wait_until(
        lambda: (m := flow.metrics()) and value(m, "flowpipe_stage_records_in_total", **sink) == 1500 and m,
        what="1500 records at the sink",
    )
    for name, queue in (("raw", "raw"), ("done", "done")):
        assert value(metrics, "flowpipe_queue_enqueue_count_total", **stage, queue=queue) == 1500, name
        assert value(metrics, "flowpipe_queue_dequeue_count_total", **stage, queue=queue) == 1500
        assert value(metrics, "flowpipe_queue_depth", **stage, queue=queue) == 0
        assert value(metrics, "flowpipe_queue_capacity", **stage, queue=queue) == 64
        assert value(metrics, "flowpipe_queue_dwell_ns_count", **stage, queue=queue) == 1500
        assert value(metrics, "flowpipe_queue_dwell_ns_bucket", **stage, queue=queue, le="+Inf") == 1500
    gen = {**stage, "stage": "gen", "type": "counted_source"}
    transform = {**stage, "stage": "pass", "type": "noop_transform"}
    assert value(metrics, "flowpipe_stage_records_out_total", **gen) == 1500
    assert value(metrics, "flowpipe_stage_process_count_total", **gen) == 1500
    assert value(metrics, "flowpipe_stage_records_in_total", **transform) == 1500
    assert value(metrics, "flowpipe_stage_records_out_total", **transform) == 1500
    assert value(metrics, "flowpipe_stage_process_count_total", **sink) == 1500
    assert value(metrics, "flowpipe_stage_workers", **transform) == 2
    assert value(metrics, "flowpipe_stage_errors_total", **transform) == 0
    assert value(metrics, "flowpipe_stage_records_dropped_total", **transform) == 0
    batches = value(metrics, "flowpipe_stage_batches_total", **sink)
    assert batches >= 1500 / 64 and value(metrics, "flowpipe_stage_latency_ns_count", **sink) == batches
    assert value(metrics, "flowpipe_stage_busy_ns_total", **sink) > 0
    assert value(metrics, "flowpipe_flow_state", flow="counted", state="running") == 1
    assert value(metrics, "flowpipe_flow_state", flow="counted", state="draining") == 0
    info = {"flow": "counted", "version": "0", "mode": "streaming"}
    assert [
        v for (n, labels), v in metrics.items() if n == "flowpipe_flow_info" and set(info.items()) <= labels
    ]
    assert value(metrics, "flowpipe_flow_uptime_seconds", flow="counted") > 0
    assert any(name == "process_resident_memory_bytes" for name, _ in metrics)
    assert flow.stop() == 0


def test_depth_and_blocked_time_move_under_a_slow_sink(start_flow: Start, write: Write) -> None:
    flow = start_flow(
        write(
            "slow.yaml",
            """
name: slow
execution: {mode: streaming}
queues: [{name: q, capacity: 50}]
stages:
  - {name: fast, type: noop_source, output_queue: q}
  - {name: slow, type: slow_sink, input_queue: q, config: {delay_ms: 20}}
""",
        )
    )
    labels = {"flow": "slow", "queue": "q"}

    def blocked() -> float:
        return value(flow.metrics(), "flowpipe_queue_blocked_ns_total", **labels)

    first = wait_until(blocked, what="producers blocked on the full queue")
    wait_until(lambda: blocked() > first, what="blocked time growing")
    # The sink takes a whole batch at a time: the queue is full but for the moment after a take.
    wait_until(lambda: value(flow.metrics(), "flowpipe_queue_depth", **labels) == 50, what="a full queue")
    assert value(flow.metrics(), "flowpipe_queue_enqueue_count_total", **labels) > 50
    assert flow.stop() == 0


def test_health_and_readiness_of_a_running_flow(start_flow: Start, write: Write) -> None:
    flow = start_flow(write("counted.yaml", COUNTED))
    wait_until(lambda: get(flow.url + "/readyz")[0] == 200, what="ready")
    code, body = get(flow.url + "/healthz")
    assert code == 200 and json.loads(body) == {"status": "ok", "flow": "counted", "state": "running"}
    assert json.loads(get(flow.url + "/readyz")[1])["status"] == "ready"
    assert get(flow.url + "/nothing")[0] == 404
    assert flow.stop() == 0


def test_a_busy_address_is_refused_before_anything_starts(
    start_flow: Start, write: Write, flowpipe: Run
) -> None:
    path = write("counted.yaml", COUNTED)
    running = start_flow(path)
    address = running.url.removeprefix("http://")
    done = flowpipe("run", path, "--plugin-path", PLUGINS, "--metrics-addr", address)
    assert done.returncode == 2
    assert f"cannot serve metrics on {address}" in done.stderr
    bad = flowpipe("run", path, "--plugin-path", PLUGINS, FLOWPIPE_METRICS_ADDR="nonsense")
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr
    assert running.stop() == 0


def test_a_run_without_observability_loads_none_of_it(write: Write) -> None:
    flow = write(
        "job.yaml",
        """
name: plain
execution: {mode: job}
queues: [{name: q, capacity: 8}]
stages:
  - {name: gen, type: noop_source, output_queue: q, config: {max_messages: 3}}
  - {name: out, type: stdout_sink, input_queue: q}
""",
    )
    probe = (
        "import sys\n"
        "from flowpipe.cli import main\n"
        f"sys.argv = ['flowpipe', 'run', {str(flow)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        "loaded = [m for m in ('prometheus_client', 'opentelemetry', 'http.server') if m in sys.modules]\n"
        "print(loaded, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=tool_env(), check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "[]"
