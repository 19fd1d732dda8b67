"""Streaming shutdown through real signals, on a real ``flowpipe run`` process."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from conftest import BIN, tool_env

STREAMING = """\
name: stream
execution: {{mode: EXECUTION_MODE_STREAMING}}
queues: [{{name: a, capacity: 64}}, {{name: b, capacity: 64}}]
stages:
  - {{name: source, type: noop_source, output_queue: a, config: {{message: rec}}}}
  - {{name: slow, type: {transform}, input_queue: a, output_queue: b{config}}}
  - {{name: sink, type: stdout_sink, input_queue: b}}
"""

# A transform that really blocks (noop_transform's delay wakes up on stop).
STUCK_PLUGIN = """\
import time
from flowpipe import Batch, StageConfig, Transform

class Stuck(Transform[StageConfig]):
    def process_batch(self, batch: Batch) -> Batch:
        print("stuck", flush=True)
        time.sleep(120)
        return batch
"""


def start(path: Path, *args: str, plugin_dir: Path | None = None) -> subprocess.Popen[str]:
    env = tool_env(FLOW_PIPE_PLUGIN_PATH=str(plugin_dir or ""))
    return subprocess.Popen(
        [str(BIN / "flowpipe"), "run", str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_sigterm_drains_every_produced_record_to_the_sink(write: Callable[[str, str], Path]) -> None:
    flow = write("f.yaml", STREAMING.format(transform="noop_transform", config=", config: {delay_ms: 1}"))
    with start(flow) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = [proc.stdout.readline() for _ in range(200)]
        proc.send_signal(signal.SIGTERM)
        # Read through the same buffered pipe objects (communicate() would skip their buffers).
        rest, err = proc.stdout.read(), proc.stderr.read()
    lines = [*first, *rest.splitlines(keepends=True)]
    assert proc.returncode == 0, err
    produced = int(re.search(r"stage 'source': 0 in, (\d+) out", err).group(1))  # type: ignore[union-attr]
    # Every record the source produced reached stdout, in order, none lost in the queues.
    assert [line.rstrip("\n") for line in lines] == [f"rec #{i}" for i in range(produced)]
    assert produced > 200
    assert "SIGTERM: stopping sources" in err and "stopped and drained" in err


def test_second_signal_exits_at_once_with_130(write: Callable[[str, str], Path], tmp_path: Path) -> None:
    write("plugins/stage_stuck.py", STUCK_PLUGIN)
    flow = write("f.yaml", STREAMING.format(transform="stuck", config=""))
    with start(flow, plugin_dir=tmp_path / "plugins") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == "stuck\n"
        proc.send_signal(signal.SIGTERM)
        for line in proc.stderr:  # wait until the first signal was handled
            if "stopping sources" in line:
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130


def test_drain_deadline_abandons_and_exits_1(write: Callable[[str, str], Path], tmp_path: Path) -> None:
    write("plugins/stage_stuck.py", STUCK_PLUGIN)
    flow = write("f.yaml", STREAMING.format(transform="stuck", config=""))
    with start(flow, "--drain-timeout", "0.5", plugin_dir=tmp_path / "plugins") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == "stuck\n"
        proc.send_signal(signal.SIGTERM)
        err = proc.stderr.read()
        proc.wait(timeout=60)
    assert proc.returncode == 1
    assert "drain deadline of 0.5 s passed" in err


def test_streaming_flow_whose_sources_end_exits_0_and_says_so(write: Callable[[str, str], Path]) -> None:
    flow = write(
        "f.yaml",
        STREAMING.format(transform="noop_transform", config="").replace(
            "config: {message: rec}", "config: {message: rec, max_messages: 10}"
        ),
    )
    proc = subprocess.run(
        [str(BIN / "flowpipe"), "run", str(flow)], capture_output=True, text=True, timeout=60, env=tool_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"rec #{i}" for i in range(10)]
    assert "every source ended by itself" in proc.stderr
