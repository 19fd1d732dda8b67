"""What a person sees: JSON logs, ``run --progress`` on a terminal, ``top`` and ``graph``."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from conftest import BIN, Run, tool_env, unavailable

from .support import PLUGINS, RunningFlow, value, wait_until
from .test_metrics_endpoint import COUNTED

Write = Callable[[str, str], Path]

VERBOSE = """
name: chatty
execution: {mode: job}
queues: [{name: a, capacity: 8}, {name: b, capacity: 8}]
stages:
  - {name: gen, type: noop_source, output_queue: a, config: {max_messages: 2}}
  - {name: talk, type: noop_transform, input_queue: a, output_queue: b, config: {verbose: true}}
  - {name: out, type: stdout_sink, input_queue: b}
"""


def test_json_logs_name_the_flow_and_the_stage(flowpipe: Run, write: Write) -> None:
    done = flowpipe("run", write("chatty.yaml", VERBOSE), FLOWPIPE_LOG_FORMAT="json")
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert {line["flow"] for line in lines} == {"chatty"}
    talk = [line for line in lines if line["stage"] == "talk"]
    assert len(talk) == 2 and talk[0]["message"] == "noop_transform: b'noop_source #0'"
    assert talk[0]["level"] == "info" and talk[0]["logger"] == "flowpipe.chatty.talk"
    runtime = [line for line in lines if line["stage"] is None]
    assert any(line["message"].startswith("job finished: 2 records") for line in runtime)


def test_console_logs_by_default(flowpipe: Run, write: Write) -> None:
    done = flowpipe("run", write("chatty.yaml", VERBOSE), "--log-level", "warning", "--progress")
    assert done.returncode == 0 and done.stderr == ""  # no view either: stderr is not a terminal


def test_progress_view_on_a_terminal(write: Write) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [BIN / "flowpipe", "run", write("counted.yaml", COUNTED), "--progress", "--plugin-path", PLUGINS],
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env=tool_env(COLUMNS="120"),
    )
    os.close(terminal)
    screen: list[str] = []

    def read() -> None:
        try:
            while chunk := os.read(controller, 4096):
                screen.append(chunk.decode(errors="replace"))
        except OSError:  # EIO: the terminal's last writer exited
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        every = re.compile(r"out +stdout_sink +1 +1,500 ")
        wait_until(lambda: every.search("".join(screen)), what="a frame with every record at the sink")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        reader.join(30)
    finally:
        os.close(controller)
    text = "".join(screen)
    assert "STAGE" in text and "REC/S" in text and "DEPTH" in text and "\x1b[" in text  # redrawn in place
    summary = text[text.index("flow counted: finished (exit 0)") :]
    assert "AVG REC/S" in summary
    assert [row.split()[:4] for row in summary.splitlines()[2:5]] == [
        ["gen", "counted_source", "0", "1,500"],
        ["pass", "noop_transform", "1,500", "1,500"],
        ["out", "stdout_sink", "1,500", "0"],
    ]


def test_top_reads_a_running_flow(
    start_flow: Callable[..., RunningFlow], write: Write, flowpipe: Run
) -> None:
    flow = start_flow(write("counted.yaml", COUNTED))
    sink = {"flow": "counted", "stage": "out", "type": "stdout_sink"}
    wait_until(
        lambda: value(flow.metrics(), "flowpipe_stage_records_in_total", **sink) == 1500, what="records"
    )
    once = flowpipe("top", flow.url.removeprefix("http://"), "--once")
    assert once.returncode == 0, once.stderr
    lines = once.stdout.splitlines()
    assert lines[0].startswith("flow counted: running, up ")
    assert lines[1].split() == ["STAGE", "TYPE", "WORKERS", "IN", "OUT", "REC/S", "ERRORS"]
    assert lines[3].split()[:5] == ["pass", "noop_transform", "2", "1,500", "1,500"]
    raw = next(line for line in lines if line.startswith("raw "))
    assert raw.split()[-4:-1] == ["0", "64", "1,500"]  # depth, capacity, enqueued; then blocked seconds

    # Watching: frames until the flow goes away, then a last word and exit 0.
    watching = subprocess.Popen(
        [str(BIN / "flowpipe"), "top", flow.url, "--interval", "0.1"],
        stdout=subprocess.PIPE,
        text=True,
        env=tool_env(),
    )
    assert watching.stdout is not None
    frames = 0
    for line in watching.stdout:
        frames += line.startswith("flow counted")
        if frames == 2:
            break
    assert flow.stop() == 0
    rest, _ = watching.communicate(timeout=30)
    assert watching.returncode == 0 and "no longer answers" in rest
    unreachable = flowpipe("top", flow.url, "--once")
    assert unreachable.returncode == 2 and "cannot read" in unreachable.stderr


FANS = """
name: fans
execution: {mode: job}
queues: [{name: in, capacity: 128}, {name: out, capacity: 32}]
stages:
  - {name: src, type: noop_source, output_queue: in}
  - {name: left, type: noop_transform, input_queue: in, output_queue: out, threads: 2}
  - {name: right, type: uppercase_transform, input_queue: in, output_queue: out}
  - {name: "say \\"hi\\"", type: stdout_sink, input_queue: out}
"""


def require_graphviz() -> str:
    dot = shutil.which("dot")
    if dot is None:
        unavailable("graphviz 'dot' is not installed (bash scripts/install-test-deps.sh)")
    return dot


def test_graph_as_mermaid_shows_fan_out_and_fan_in(flowpipe: Run, write: Write) -> None:
    done = flowpipe("graph", write("fans.yaml", FANS))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "flowchart LR",
        '  s0(["src<br/>noop_source"])',
        '  s1["left<br/>noop_transform, 2 threads"]',
        '  s2["right<br/>uppercase_transform"]',
        '  s3[("say #quot;hi#quot;<br/>stdout_sink")]',
        '  s0 -->|"in<br/>capacity 128"| s1',
        '  s0 -->|"in<br/>capacity 128"| s2',
        '  s1 -->|"out<br/>capacity 32"| s3',
        '  s2 -->|"out<br/>capacity 32"| s3',
    ]


def test_graph_as_dot_parses_with_graphviz(flowpipe: Run, write: Write) -> None:
    dot = require_graphviz()
    done = flowpipe("graph", write("fans.yaml", FANS), "--format", "dot")
    assert done.returncode == 0 and done.stdout.startswith('digraph "fans" {')
    assert done.stdout.count(" -> ") == 4
    drawn = subprocess.run([dot, "-Tplain"], input=done.stdout, capture_output=True, text=True, check=False)
    assert drawn.returncode == 0, drawn.stderr
    assert sum(line.startswith("edge ") for line in drawn.stdout.splitlines()) == 4


def test_graph_as_svg_and_png(flowpipe: Run, write: Write, tmp_path: Path) -> None:
    require_graphviz()
    flow = write("fans.yaml", FANS)
    svg = flowpipe("graph", flow, "--format", "svg")
    assert svg.returncode == 0, svg.stderr
    root = ET.fromstring(svg.stdout)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"src", "left", "right", 'say "hi"', "capacity 128"} <= texts
    png = flowpipe("graph", flow, "--format", "png", "-o", tmp_path / "fans.png")
    assert png.returncode == 0 and (tmp_path / "fans.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_graph_of_an_invalid_flow_lists_its_problems(flowpipe: Run, write: Write) -> None:
    done = flowpipe("graph", write("bad.yaml", "name: bad\nstages: [{name: a, typo: 1}]\n"))
    assert done.returncode == 2 and "typo" in done.stderr
