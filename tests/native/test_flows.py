"""Flows mixing native and Python stages, run with the ``flowpipe`` command."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Run

from flowpipe.cli._sdk import sdk

from .native_support import Plugins

REPO = Path(__file__).resolve().parents[2]
TRACE = bytes(range(1, 17)).hex()
SPAN = bytes(range(0xA0, 0xA8)).hex()

META_SOURCE = """\
from flowpipe import EndOfStream, Payload, PayloadMeta, Source, StageConfig


class MetaSourceConfig(StageConfig):
    count: int = 3


class MetaSource(Source[MetaSourceConfig]):
    \"\"\"Records "py-<i>" with metadata.\"\"\"

    def open(self):
        self.sent = 0

    def produce(self):
        if self.sent == self.config.count:
            raise EndOfStream
        self.sent += 1
        attrs = {"hops": 1, "drop_me": True, "pi": 3.5, "who": "py"}
        meta = PayloadMeta(trace_id=bytes(range(16)), flags=1, schema_id="py.v1", attrs=attrs)
        return Payload(b"py-%d" % (self.sent - 1), meta)
"""

META_SINK = """\
import json

from flowpipe import Sink, StageConfig


class MetaSinkConfig(StageConfig):
    path: str


class MetaSink(Sink[MetaSinkConfig]):
    \"\"\"Appends data and metadata as JSON lines.\"\"\"

    def consume(self, record):
        m = record.meta
        line = {"data": record.data.decode(), "trace": m.trace_id.hex(), "flags": m.flags,
                "schema": m.schema_id, "attrs": m.attrs}
        with open(self.config.path, "a") as out:
            out.write(json.dumps(line, sort_keys=True) + "\\n")
"""


def flow(stages: str, name: str = "mixed") -> str:
    return (
        f"name: {name}\nexecution: {{mode: EXECUTION_MODE_JOB}}\n"
        "queues:\n  - {name: a, capacity: 64}\n  - {name: b, capacity: 64}\n"
        f"stages:\n{stages}"
    )


def test_native_source_python_transform_native_sink(
    plugins: Plugins, flowpipe: Run, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    out = tmp_path / "collected.tsv"
    spec = flow(
        "  - {name: src, type: counter_source, output_queue: a, config: {count: 200, with_meta: true}}\n"
        "  - {name: up, type: uppercase_transform, input_queue: a, output_queue: b}\n"
        f"  - {{name: sink, type: collect_sink, input_queue: b, config: {{path: '{out}'}}}}\n"
    )
    result = flowpipe("run", write("flow.yaml", spec), FLOW_PIPE_PLUGIN_PATH=plugins.plugin_path)
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 200
    even = "true" if 7 % 2 == 0 else "false"
    assert lines[7] == (
        f"RECORD-7\t{TRACE}\t{SPAN}\t1\tcounter.v1\t"
        f"even=bool:{even};index=int:7;origin=str:cpp;ratio=double:3.500000;"
    )


def test_python_source_native_transform_python_sink(
    plugins: Plugins, flowpipe: Run, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    write("plugins/stage_meta_source.py", META_SOURCE)
    write("plugins/stage_meta_sink.py", META_SINK)
    out = tmp_path / "seen.jsonl"
    spec = flow(
        "  - {name: src, type: meta_source, output_queue: a, config: {count: 3}}\n"
        "  - {name: edit, type: edit_transform, threads: 2, input_queue: a, output_queue: b}\n"
        f"  - {{name: sink, type: meta_sink, input_queue: b, config: {{path: '{out}'}}}}\n"
    )
    result = flowpipe(
        "run",
        write("flow.yaml", spec),
        FLOW_PIPE_PLUGIN_PATH=f"{tmp_path / 'plugins'}:{plugins.plugin_path}",
    )
    assert result.returncode == 0, result.stderr
    lines = sorted(out.read_text().splitlines())
    assert lines == [
        '{"attrs": {"hops": 2, "pi": 3.5, "seen_by": "cpp", "who": "py"}, "data": "py-'
        + str(i)
        + '!", "flags": 1, "schema": "py.v1", "trace": "000102030405060708090a0b0c0d0e0f"}'
        for i in range(3)
    ]


def test_two_native_workers(plugins: Plugins, flowpipe: Run, write: Callable[[str, str], Path]) -> None:
    spec = flow(
        "  - {name: src, type: noop_source, output_queue: a, config: {max_messages: 3000}}\n"
        "  - {name: crc, type: crc32_transform, threads: 2, input_queue: a, output_queue: b}\n"
        "  - {name: out, type: stdout_sink, input_queue: b}\n"
    )
    result = flowpipe("run", write("flow.yaml", spec), FLOW_PIPE_PLUGIN_PATH=plugins.plugin_path)
    assert result.returncode == 0, result.stderr
    expected = sorted(
        b"noop_source #%d crc32=%08x" % (i, zlib.crc32(b"noop_source #%d" % i)) for i in range(3000)
    )
    assert sorted(result.stdout.encode().splitlines()) == expected


def test_a_cpp_exception_stops_the_flow_with_exit_1(
    plugins: Plugins, flowpipe: Run, write: Callable[[str, str], Path]
) -> None:
    spec = flow(
        "  - {name: src, type: noop_source, output_queue: a, config: {max_messages: 100}}\n"
        "  - {name: editor, type: edit_transform, input_queue: a, output_queue: b, config: {fail_at: 3}}\n"
        "  - {name: out, type: stdout_sink, input_queue: b}\n"
    )
    result = flowpipe("run", write("flow.yaml", spec), FLOW_PIPE_PLUGIN_PATH=plugins.plugin_path)
    assert result.returncode == 1
    assert "stage 'editor'" in result.stderr
    assert "process: std::runtime_error: boom at record 3" in result.stderr


def test_the_example_flows(plugins: Plugins, flowpipe: Run) -> None:
    noop = flowpipe(
        "run",
        REPO / "examples/stage-example/flows/noop_stage.yaml",
        FLOW_PIPE_PLUGIN_PATH=plugins.plugin_path,
    )
    assert noop.returncode == 0, noop.stderr
    assert sorted(noop.stdout.splitlines()) == [f"hello from noop_stage #{i}" for i in range(5)]
    split = flowpipe(
        "run", REPO / "examples/c-stage/flows/split.yaml", FLOW_PIPE_PLUGIN_PATH=plugins.plugin_path
    )
    assert split.returncode == 0, split.stderr
    assert split.stdout.splitlines() == ["red", "green", "blue #0", "red", "green", "blue #1"]


def test_stages_lists_native_libraries_with_their_file(plugins: Plugins, flowpipe: Run) -> None:
    result = flowpipe("stages", FLOW_PIPE_PLUGIN_PATH=plugins.plugin_path)
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["noop_stage"] == ["transform", str(plugins.path("noop_stage"))]
    assert rows["counter_source"] == ["source", str(plugins.path("counter_source"))]
    assert "libstage_wrong_abi.so: built for stage ABI version 99" in result.stderr


def test_sdk_command_prints_the_locations() -> None:
    runner = CliRunner()
    cmake_dir = Path(runner.invoke(sdk, ["--cmake-dir"]).output.strip())
    include_dir = Path(runner.invoke(sdk, ["--include-dir"]).output.strip())
    assert (cmake_dir / "flowpipeConfig.cmake").is_file()
    assert (include_dir / "flowpipe" / "stage_abi.h").is_file()
    assert (include_dir / "flowpipe" / "stage.h").is_file()


@pytest.mark.parametrize("arrow_queue", [False, True])
def test_arrow_records_cross_to_a_native_stage_as_ipc_streams(plugins: Plugins, arrow_queue: bool) -> None:
    """Arrow records reach a native stage as IPC streams, and its IPC output stays bytes; a
    queue declaring the Arrow format opens those bytes into tables."""
    import pyarrow as pa

    from flowpipe import Payload
    from flowpipe.stages.arrow import from_ipc
    from flowpipe.testing import TestingSink, TestingSource, run_flow

    table = pa.table({"n": [1, 2, 3], "s": ["a", "b", "c"]})
    schema = ", schema: {schema_id: rows, format: IN_MEMORY_SCHEMA_FORMAT_ARROW}" if arrow_queue else ""
    out: list[Payload] = []
    result = run_flow(
        f"""
name: arrow-native
execution: {{mode: job}}
queues: [{{name: a, capacity: 8}}, {{name: b, capacity: 8{schema}}}]
stages:
  - {{name: src, type: src, output_queue: a}}
  - {{name: mid, type: noop_stage, plugin: {plugins.path("noop_stage")}, input_queue: a, output_queue: b}}
  - {{name: out, type: out, input_queue: b}}
""",
        stages={"src": TestingSource.of([table, table.to_batches()[0]]), "out": TestingSink.into(out)},
    )
    assert result.exit_code == 0, result.failure
    if arrow_queue:
        assert [type(p.data) for p in out] == [pa.Table, pa.Table]
        assert all(p.data.equals(table) for p in out)
    else:
        assert [from_ipc(p.data) for p in out] == [table, table]
