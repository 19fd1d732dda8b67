"""The flowpipe command as a user meets it: run, validate, stages, exit codes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import Run

REPO = Path(__file__).resolve().parents[2]
HELLO_LINES = [f"HELLO FROM FLOWPIPE #{i}" for i in range(5)]

BAD_FLOW = """\
name: bad
queues:
  - {name: a, capacity: 10}
  - {name: b, capacity: 10}
stages:
  - name: src
    type: noop_sorce
    output_queue: a
  - name: up
    type: uppercase_transform
    input_queue: a
    output_queue: b
    config: {verbose: perhaps, loud: true}
  - name: out
    type: stdout_sink
    input_queue: b
    output_queue: a
"""


def test_run_hello_prints_uppercased_lines_only_on_stdout(flowpipe: Run) -> None:
    proc = flowpipe("run", REPO / "flows/hello.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == HELLO_LINES
    assert "job finished: 5 records" in proc.stderr


def test_flow_runtime_is_the_original_binary_name(flowpipe: Run) -> None:
    proc = flowpipe(REPO / "flows/hello.yaml", command="flow_runtime")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == HELLO_LINES


def test_validate_accepts_good_flows(flowpipe: Run) -> None:
    proc = flowpipe("validate", REPO / "flows/hello.yaml")
    assert proc.returncode == 0
    assert "ok (3 stages, 2 queues)" in proc.stdout


def test_validate_reports_every_problem_at_once(flowpipe: Run, write: Callable[[str, str], Path]) -> None:
    path = write("bad.yaml", BAD_FLOW)
    proc = flowpipe("validate", path)
    assert proc.returncode == 2
    err = proc.stderr
    assert "Traceback" not in err
    lines = err.splitlines()
    # unknown type, with the near name suggested and where it looked
    assert any(f"{path}:7:11:" in line and "noop_sorce" in line and "'noop_source'" in line for line in lines)
    # a config value of the wrong type, and an unknown config key
    assert any("config.verbose" in line and "perhaps" in line for line in lines)
    assert any("config: unknown key 'loud' (fix: remove it; valid keys: verbose)" in line for line in lines)
    # a sink that writes to a queue
    assert any("'out' (stdout_sink) is a sink and has no output" in line for line in lines)


STAGE_CONFIG_FLOW = """\
name: bad
execution: {mode: job}
queues: [{name: q, capacity: 4}]
stages:
  - name: src
    type: csv_arrow_source
    output_queue: q
    config:
      path: in.csv
      output_type: OUTPUT_TYPE_TABLES
      read_options: {block_size: lots, skip_rows: -1, skip_row: 1}
      parse_options: {delimiter: "||"}
  - name: sink
    type: parquet_arrow_sink
    input_queue: q
    config: {row_group_size: 12.5, common: {compression: COMPRESSION_ZIP}}
"""


def test_stage_config_problems_read_like_the_specs(flowpipe: Run, write: Callable[[str, str], Path]) -> None:
    # Every stage's config is reported as the flow's own keys are: the nested key, located,
    # what was expected and how to fix it, all at once and one line each.
    path = write("bad.yaml", STAGE_CONFIG_FLOW)
    proc = flowpipe("validate", path)
    assert proc.returncode == 2
    src, sink = (
        "error: stage 'src' (csv_arrow_source): config",
        "error: stage 'sink' (parquet_arrow_sink): config",
    )
    assert proc.stderr.splitlines() == [
        f"{path}:10:20: {src}.output_type: unknown value 'OUTPUT_TYPE_TABLES' (valid: OUTPUT_TYPE_TABLE,"
        " OUTPUT_TYPE_RECORD_BATCH) (fix: did you mean OUTPUT_TYPE_TABLE?)",
        f"{path}:11:34: {src}.read_options.block_size: expected a whole number, got 'lots'"
        " (fix: write a number such as 4)",
        f"{path}:11:51: {src}.read_options.skip_rows: must be ≥ 0, got -1 (fix: use 0 or more)",
        f"{path}:11:55: {src}.read_options: unknown key 'skip_row' (fix: did you mean 'skip_rows'?)",
        f"{path}:12:34: {src}.parse_options.delimiter: must be exactly one character, got '||'",
        f"{path}:16:13: {sink}: missing required key 'path' (fix: add path: ...)",
        f"{path}:16:30: {sink}.row_group_size: expected a whole number, got 12.5"
        " (fix: write a number without a fraction)",
        f"{path}:16:58: {sink}.common.compression: unknown value 'COMPRESSION_ZIP' (valid: COMPRESSION_AUTO,"
        " COMPRESSION_UNCOMPRESSED, COMPRESSION_SNAPPY, COMPRESSION_GZIP, COMPRESSION_BROTLI,"
        " COMPRESSION_ZSTD, COMPRESSION_LZ4, COMPRESSION_LZ4_FRAME, COMPRESSION_LZO, COMPRESSION_BZ2)"
        " (fix: did you mean"
        " COMPRESSION_GZIP?)",
    ]


# The head of a flow whose stages (YAML list items) follow.
ONE_QUEUE = "name: t\nqueues: [{name: q, capacity: 4}]\nstages:\n"


def test_stage_config_keys_may_be_lower_camel(flowpipe: Run, write: Callable[[str, str], Path]) -> None:
    # flow-pipe's plugins read their config with protobuf JSON, which takes the lowerCamel
    # names too; errors name what the file wrote, and a missing key by its proto name.
    path = write(
        "camel.yaml",
        ONE_QUEUE
        + "  - {name: s, type: noop_source, outputQueue: q, config: {maxMessages: 2, message: hi}}\n"
        "  - {name: o, type: stdout_sink, inputQueue: q}\n",
    )
    proc = flowpipe("run", path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["hi #0", "hi #1"]
    bad = write(
        "bad_camel.yaml",
        ONE_QUEUE + "  - {name: s, type: noop_source, output_queue: q,"
        " config: {maxMessages: 3, max_messages: 4, delayMs: x}}\n"
        "  - {name: k, type: kafka_source, output_queue: q, config: {brokers: 'b:1', topic: t}}\n"
        "  - {name: o, type: stdout_sink, input_queue: q}\n",
    )
    proc = flowpipe("validate", bad)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{bad}:4:76: error: stage 's' (noop_source): config: 'max_messages' is also given as 'maxMessages'"
        " (fix: keep one of them)",
        f"{bad}:4:102: error: stage 's' (noop_source): config.delayMs: expected a whole number, got 'x'"
        " (fix: write a number such as 4)",
        f"{bad}:5:60: error: stage 'k' (kafka_source): config: missing required key 'group_id'"
        " (fix: add group_id: ...)",
    ]


def test_stage_config_reads_values_as_flow_pipe_did(flowpipe: Run, write: Callable[[str, str], Path]) -> None:
    # A number in a text field is its text as written; null (or nothing) keeps the default.
    path = write(
        "values.yaml",
        ONE_QUEUE
        + "  - {name: s, type: noop_source, output_queue: q, config: {message: 1.50, max_messages: 1}}\n"
        "  - {name: z, type: noop_source, output_queue: q,"
        " config: {message: 007, max_messages: 1, delay_ms: }}\n"
        "  - {name: o, type: stdout_sink, input_queue: q, config: null}\n",
    )
    proc = flowpipe("run", path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["007 #0", "1.50 #0"]


def test_stdout_sink_ignores_a_config_with_a_warning(
    flowpipe: Run, write: Callable[[str, str], Path]
) -> None:
    # flow-pipe's stdout_sink took no config and ignored any: such flows keep running.
    path = write(
        "stdout.yaml",
        ONE_QUEUE + "  - {name: s, type: noop_source, output_queue: q, config: {max_messages: 1}}\n"
        "  - {name: o, type: stdout_sink, input_queue: q, config: {verbose: true, flush: 1}}\n",
    )
    proc = flowpipe("run", path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "noop_source #0\n"
    assert "stage 'o' (stdout_sink) takes no config; ignored: verbose, flush" in proc.stderr
    shown = flowpipe("stages", "show", "stdout_sink").stdout
    assert "config: None; any keys given are ignored, with a warning" in shown


def test_a_block_repeated_by_a_yaml_alias_reports_its_problem_once(
    flowpipe: Run, write: Callable[[str, str], Path]
) -> None:
    path = write(
        "alias.yaml",
        ONE_QUEUE + "  - &s {name: src, type: noop_source, output_queue: q, config: {max_mesages: 1}}\n"
        "  - *s\n"
        "  - {name: o, type: stdout_sink, input_queue: q}\n",
    )
    proc = flowpipe("validate", path)
    assert proc.returncode == 2
    assert [line.split(": error: ")[1] for line in proc.stderr.splitlines()] == [
        "stage name 'src' is already used at line 4 (fix: give every stage a unique name)",
        "stage 'src' (noop_source): config: unknown key 'max_mesages' (fix: did you mean 'max_messages'?)",
    ]


def test_run_of_an_invalid_flow_starts_nothing(flowpipe: Run, write: Callable[[str, str], Path]) -> None:
    path = write("bad.yaml", BAD_FLOW)
    proc = flowpipe("run", path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "nothing was started" in proc.stderr


def test_missing_flow_file_is_one_clear_line(flowpipe: Run, tmp_path: Path) -> None:
    proc = flowpipe("run", tmp_path / "nope.yaml")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "nope.yaml" in proc.stderr


def test_stage_failure_at_run_time_exits_1_naming_the_stage(
    flowpipe: Run, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    write(
        "plugins/stage_explode.py",
        "from flowpipe import Payload, StageConfig, Transform\n"
        "class Explode(Transform[StageConfig]):\n"
        "    def process(self, record: Payload) -> object:\n"
        "        raise RuntimeError('kaboom')\n",
    )
    flow = write(
        "f.yaml",
        (REPO / "flows/hello.yaml").read_text().replace("type: uppercase_transform", "type: explode"),
    )
    proc = flowpipe("run", flow, "--plugin-path", tmp_path / "plugins")
    assert proc.returncode == 1
    failures = [line for line in proc.stderr.splitlines() if "failed" in line]
    assert len(failures) == 1
    assert "stage 'upper' (explode) failed: RuntimeError: kaboom" in failures[0]
    assert "Traceback" not in proc.stderr


def test_stages_lists_builtins_with_kind_and_origin(flowpipe: Run) -> None:
    proc = flowpipe("stages")
    assert proc.returncode == 0
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[1:]}
    assert rows["noop_source"] == ["source", "built-in"]
    assert rows["noop_transform"] == ["transform", "built-in"]
    assert rows["uppercase_transform"] == ["transform", "built-in"]
    assert rows["stdout_sink"] == ["sink", "built-in"]


def test_stages_show_describes_config_fields(flowpipe: Run) -> None:
    proc = flowpipe("stages", "show", "noop_source")
    assert proc.returncode == 0
    out = proc.stdout
    assert out.startswith("noop_source (source)")
    assert "max_messages: int (default 0)" in out and "0 means no limit" in out
    assert "message: str (default 'noop_source')" in out
    # the docstring's whole first paragraph, on one line
    shown = flowpipe("stages", "show", "stdout_sink").stdout.splitlines()[1]
    assert shown.strip() == (
        "Writes each record and a newline to stdout (empty records are skipped), one write and one"
        " flush per batch."
    )
    # a nested block's fields indented under it, defaults as a flow file writes them
    lines = flowpipe("stages", "show", "parquet_arrow_sink").stdout.splitlines()
    common = lines.index("    common: CommonOptions — filesystem (local only) and compression")
    assert lines[common + 2].startswith("      compression: Compression (default 'COMPRESSION_AUTO') — ")
    assert any(line.startswith("    row_group_size: int | None (default null) > 0 — ") for line in lines)


def test_stages_show_unknown_type_exits_2_with_suggestion(flowpipe: Run) -> None:
    proc = flowpipe("stages", "show", "stdout_snk")
    assert proc.returncode == 2
    assert "'stdout_sink'" in proc.stderr
