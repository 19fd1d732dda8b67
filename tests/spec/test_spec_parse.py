"""Reading flow files: formats, defaults, structural errors located in the file, best-effort specs."""

import json
import textwrap
from pathlib import Path

import pytest

from flowpipe.sdk import FlowSpecError, Problem
from flowpipe.spec import ExecutionMode, ImagePullPolicy, ParsedFlow, parse_flow, parse_flow_text

# Shaped like the original's sample flows: no name, job mode, numbers in config.
SAMPLE_YAML = """\
execution:
  mode: EXECUTION_MODE_JOB
queues:
  - name: q1
    capacity: 128
  - name: q2
    capacity: 128
stages:
  - name: src
    type: noop_source
    threads: 1
    output_queue: q1
    config:
      max_messages: 20
      delay_ms: 0
  - name: transform
    type: noop_transform
    threads: 1
    input_queue: q1
    output_queue: q2
  - name: sink
    type: stdout_sink
    threads: 1
    input_queue: q2
"""

SAMPLE_JSON = json.dumps(
    {
        "execution": {"mode": "EXECUTION_MODE_JOB"},
        "queues": [{"name": "q1", "capacity": 128}, {"name": "q2", "capacity": 128}],
        "stages": [
            {
                "name": "src",
                "type": "noop_source",
                "threads": 1,
                "output_queue": "q1",
                "config": {"max_messages": 20, "delay_ms": 0},
            },
            {
                "name": "transform",
                "type": "noop_transform",
                "threads": 1,
                "input_queue": "q1",
                "output_queue": "q2",
            },
            {"name": "sink", "type": "stdout_sink", "threads": 1, "input_queue": "q2"},
        ],
    },
    indent=2,
)


def parse(text: str, filename: str = "flow.yaml") -> ParsedFlow:
    return parse_flow_text(textwrap.dedent(text), filename)


def located(parsed: ParsedFlow) -> list[tuple[int, int, str]]:
    return [(p.line, p.column, p.message) for p in parsed.problems]


def test_sample_flow_parses_clean() -> None:
    parsed = parse_flow_text(SAMPLE_YAML, "flows/noop.yaml")
    assert parsed.problems == [] and parsed.ok
    spec = parsed.raise_for_problems()
    assert spec.name == "noop"  # no name in the file: the file's stem
    assert spec.is_job
    assert [s.name for s in spec.stages] == ["src", "transform", "sink"]
    assert spec.stages[0].config == {"max_messages": 20, "delay_ms": 0}
    max_messages = spec.stages[0].config["max_messages"]
    assert isinstance(max_messages, int) and not isinstance(max_messages, bool)
    assert spec.stage_inputs(spec.stages[2]) == ["q2"]


def test_yaml_and_json_forms_give_equal_specs() -> None:
    from_yaml = parse_flow_text(SAMPLE_YAML, "noop.yaml")
    from_json = parse_flow_text(SAMPLE_JSON, "noop.json")
    assert from_json.problems == []
    assert from_yaml.spec == from_json.spec


def test_json_errors_are_located() -> None:
    text = SAMPLE_JSON.replace('"threads": 1', '"threads": "one"', 1)
    parsed = parse_flow_text(text, "noop.json")
    [(line, column, message)] = located(parsed)
    assert text.splitlines()[line - 1][column - 1 :].startswith('"one"')
    assert message == "stage 'src': threads: expected a whole number, got 'one'"


def test_parse_flow_reads_files(tmp_path: Path) -> None:
    (tmp_path / "noop.yml").write_text(SAMPLE_YAML)
    parsed = parse_flow(tmp_path / "noop.yml")
    assert parsed.ok and parsed.spec is not None and parsed.spec.name == "noop"
    assert parsed.path == tmp_path / "noop.yml"


def test_missing_file_is_one_problem(tmp_path: Path) -> None:
    parsed = parse_flow(tmp_path / "nope.yaml")
    assert parsed.spec is None
    assert [str(p) for p in parsed.problems] == [
        f"{tmp_path / 'nope.yaml'}: error: file not found (fix: check the path)"
    ]


def test_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    for name in ("dir.yaml", "latin1.yaml"):
        parsed = parse_flow(tmp_path / name)
        [problem] = parsed.problems
        assert parsed.spec is None and problem.message.startswith("cannot read the file: ")


@pytest.mark.parametrize("read", [lambda p: parse_flow(p), lambda p: parse_flow_text(SAMPLE_YAML, str(p))])
def test_unknown_extension_names_the_accepted_ones(tmp_path: Path, read: object) -> None:
    path = tmp_path / "flow.toml"
    path.write_text(SAMPLE_YAML)
    parsed = read(path)  # type: ignore[operator]
    assert parsed.spec is None
    assert [str(p) for p in parsed.problems] == [
        f"{path}: error: unsupported flow file type '.toml' (fix: use a .yaml, .yml or .json file)"
    ]


def test_a_directory_is_not_a_flow_file(tmp_path: Path) -> None:
    parsed = parse_flow(tmp_path)
    assert [str(p) for p in parsed.problems] == [
        f"{tmp_path}: error: is a directory, not a flow file (fix: name a .yaml, .yml or .json file in it)"
    ]


def test_yaml_syntax_error_is_located() -> None:
    parsed = parse("""\
        name: f
        stages:
          - name: a
           type: x
        """)
    assert parsed.spec is None and not parsed.ok
    [problem] = parsed.problems
    assert (problem.file, problem.line, problem.column) == ("flow.yaml", 4, 4)
    assert problem.message.startswith("invalid YAML: ")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", ""])
def test_top_level_must_be_a_mapping(text: str) -> None:
    parsed = parse_flow_text(text, "flow.yaml")
    assert parsed.spec is None
    assert located(parsed) == [(1, 1, "a flow must be a mapping with keys such as stages and queues")]


def test_duplicate_keys_are_errors_at_the_second_key() -> None:
    parsed = parse("""\
        stages:
          - name: a
            type: noop_source
            type: stdout_sink
        """)
    assert located(parsed)[0] == (4, 5, "duplicate key 'type' (first given at line 3)")
    assert parsed.spec is not None and parsed.spec.stages[0].type == "noop_source"


def test_lower_camel_names_in_files() -> None:
    parsed = parse("""\
        queues: [{name: q}]
        stages:
          - {name: a, type: noop_source, outputQueue: q, realtimePriority: 10}
          - {name: b, type: stdout_sink, inputQueue: q}
        kubernetesOptions: {serviceAccountName: runner, imagePullSecrets: [s1]}
        """)
    assert parsed.problems == []
    assert parsed.spec is not None
    assert parsed.spec.stages[0].output_queue == "q" and parsed.spec.stages[0].realtime_priority == 10
    assert parsed.spec.kubernetes_options is not None
    assert parsed.spec.kubernetes_options.image_pull_secrets == ["s1"]


@pytest.mark.parametrize("mode", ["EXECUTION_MODE_JOB", "2", "job", "Job", "'2'"])
def test_enum_forms_in_files(mode: str) -> None:
    parsed = parse(f"execution: {{mode: {mode}}}\nstages: [{{name: a, type: t}}]\n")
    assert parsed.ok and parsed.spec is not None
    assert parsed.spec.execution.mode is ExecutionMode.EXECUTION_MODE_JOB


def test_friendly_kubernetes_spellings() -> None:
    parsed = parse("""\
        stages: [{name: a, type: t}]
        kubernetes: {image_pull_policy: IfNotPresent}
        kubernetes_options: {streaming_workload_kind: daemonset}
        observability: {transport: http, tracing: {processor: batch}}
        """)
    assert parsed.ok and parsed.spec is not None and parsed.spec.kubernetes is not None
    assert parsed.spec.kubernetes.image_pull_policy is ImagePullPolicy.IMAGE_PULL_POLICY_IF_NOT_PRESENT


def test_numbers_and_bools_keep_their_types_in_config() -> None:
    parsed = parse("""\
        stages:
          - name: a
            type: t
            config: {n: 200, ratio: 0.5, flag: true, word: yes, switch: on, quoted: "200", none: ~}
        """)
    assert parsed.spec is not None
    assert parsed.spec.stages[0].config == {
        "n": 200, "ratio": 0.5, "flag": True, "word": "yes", "switch": "on", "quoted": "200", "none": None,
    }  # fmt: skip


def test_yes_still_reads_as_true_for_bool_fields() -> None:
    parsed = parse("stages: [{name: a, type: t}]\nobservability: {metrics_enabled: yes}\n")
    assert parsed.spec is not None and parsed.spec.observability is not None
    assert parsed.spec.observability.metrics_enabled is True


def test_unknown_enum_value_is_located_with_a_suggestion() -> None:
    parsed = parse("""\
        execution:
          mode: jobb
        stages: [{name: a, type: t}]
        """)
    [problem] = parsed.problems
    assert (problem.line, problem.column) == (2, 9)
    assert problem.message.startswith(
        "execution.mode: unknown value 'jobb' (valid: EXECUTION_MODE_UNSPECIFIED,"
    )
    assert "streaming, job" in problem.message
    assert problem.hint == "did you mean 'job'?"


def test_queue_type_outside_the_proto_is_an_error() -> None:
    parsed = parse("""\
        queues:
          - name: q
            type: QUEUE_TYPE_MPMC
        stages: [{name: a, type: t, output_queue: q}, {name: b, type: t, input_queue: q}]
        """)
    [problem] = parsed.problems
    assert (problem.line, problem.column) == (3, 11)
    assert problem.message.startswith("queue 'q': type: unknown value 'QUEUE_TYPE_MPMC'")
    assert "QUEUE_TYPE_IN_MEMORY" in problem.message and "in_memory" in problem.message


def test_unknown_keys_point_at_the_key_and_suggest_a_name() -> None:
    parsed = parse("""\
        stagez: []
        stages:
          - name: a
            type: t
            treads: 2
        kubernetes:
          imagePullPolcy: Always
          resources: {cpu: 2}
        """)
    assert located(parsed) == [
        (1, 1, "unknown key 'stagez'"),
        (5, 5, "stage 'a': unknown key 'treads'"),
        (7, 3, "kubernetes: unknown key 'imagePullPolcy'"),
        (8, 15, "kubernetes.resources: unknown key 'cpu'"),
    ]
    assert [p.hint for p in parsed.problems] == [
        "did you mean 'stages'?",
        "did you mean 'threads'?",
        "did you mean 'imagePullPolicy'?",
        "remove it; valid keys: cpu_cores, memory_mb, profile",
    ]


def test_a_key_given_under_both_spellings_is_an_error() -> None:
    parsed = parse("""\
        stages:
          - name: a
            type: t
            input_queue: q
            inputQueue: q
        """)
    assert located(parsed)[0] == (4, 5, "stage 'a': 'input_queue' is also given as 'inputQueue'")


def test_wrong_types_are_located_at_the_value() -> None:
    parsed = parse("""\
        name: [a]
        stages:
          - name: a
            type: t
            threads: many
            config: 5
            input_queues: [{queue: q}]
        env: {DEBUG: true}
        """)
    assert located(parsed) == [
        (1, 7, "name: expected a string, got a list"),
        (5, 14, "stage 'a': threads: expected a whole number, got 'many'"),
        (6, 13, "stage 'a': config: expected a mapping, got 5"),
        (7, 20, "stage 'a': input_queues[0]: missing required key 'table'"),
        (8, 14, "env.DEBUG: expected a string, got true"),
    ]
    assert [p.hint for p in parsed.problems] == [
        "write a single text value",
        "write a number such as 4",
        "write 'key: value' lines indented under it",
        "add table: ...",
        "quote it to keep it as text: 'true'",
    ]


def test_numbers_out_of_their_proto_range_are_errors() -> None:
    parsed = parse("""\
        name: t
        version: -1
        queues: [{name: q, capacity: 4294967296, schema: {schema_id: s, version: 4294967296}}]
        stages:
          - {name: a, type: t, output_queue: q, threads: 4294967295}
          - {name: b, type: t, input_queue: q}
        kubernetes_options: {cron: {schedule: "* * * * *", failed_jobs_history_limit: 2147483648}}
        """)
    assert located(parsed) == [
        (2, 10, "version: must be ≥ 0, got -1"),
        (3, 30, "queue 'q': capacity: must be ≤ 4294967295, got 4294967296"),
        (3, 74, "queue 'q': schema.version: must be ≤ 4294967295, got 4294967296"),
        (7, 79, "kubernetes_options.cron.failed_jobs_history_limit: must be ≤ 2147483647, got 2147483648"),
    ]
    assert parsed.problems[1].hint == "use 4294967295 or less"


def test_stages_must_be_a_list() -> None:
    parsed = parse("stages:\n  a: {type: t}\n")
    assert located(parsed) == [(2, 3, "stages must be a list, got a mapping")]


def test_all_problems_are_reported_sorted_by_line() -> None:
    parsed = parse("""\
        queues:
          - name: q1
            capacity: 0
        stages:
          - name: a
            type: noop_source
            threads: 0
            output_queue: q1
            colour: red
          - name: b
            type: stdout_sink
            input_queue: q1
            realtime_priority: 100
        execution: {mode: sometimes}
        """)
    assert [(line, column) for line, column, _ in located(parsed)] == [
        (3, 15),
        (7, 14),
        (9, 5),
        (13, 24),
        (14, 19),
    ]
    assert not parsed.ok
    with pytest.raises(FlowSpecError) as info:
        parsed.raise_for_problems()
    assert info.value.problems == parsed.problems
    assert str(info.value).count("\n") == 4


def test_invalid_stages_are_left_out_of_the_best_effort_spec() -> None:
    parsed = parse("""\
        queues: [{name: q}, {name: r, capacity: lots}, {name: s}]
        stages:
          - name: a
            type: noop_source
            output_queue: q
          - name: b
            type: t
            input_queue: q
            config: [1]
          - name: c
            type: stdout_sink
            input_queue: q
        """)
    spec = parsed.spec
    assert spec is not None
    assert [s.name for s in spec.stages] == ["a", "c"]
    assert [q.name for q in spec.queues] == ["q", "s"]
    # Indexes given to problem() count items of spec.stages, located in the file all the same.
    assert (parsed.problem(("stages", 1, "input_queue"), "x").line) == 12
    assert (parsed.problem(("queues", 1), "x").column) == 48


def test_problem_locates_keys_values_and_falls_back_to_ancestors() -> None:
    parsed = parse("""\
        stages:
          - name: a
            type: t
            config:
              verbose: true
        """)
    assert parsed.problem(("stages", 0, "config", "verbose"), "m") == Problem("m", "flow.yaml", 5, 16)
    assert parsed.problem(("stages", 0, "config", "verbose"), "m", "h", at_key=True) == Problem(
        "m", "flow.yaml", 5, 7, "h"
    )
    assert parsed.problem(("stages", 0, "config", "missing", 3), "m").line == 5  # the config mapping
    assert parsed.problem(("stages", 0, "inputQueue"), "m", warning=True) == Problem(
        "m", "flow.yaml", 2, 5, warning=True
    )
    assert parsed.problem(("nowhere",), "m").line == 1


def test_problem_without_a_document_has_no_position() -> None:
    parsed = parse_flow_text("a: [", "flow.yaml")
    assert parsed.problem(("stages",), "m") == Problem("m", "flow.yaml")


def test_warnings_alone_keep_the_flow_ok() -> None:
    parsed = parse("""\
        queues: [{name: spare}]
        stages: [{name: a, type: t}]
        """)
    assert [p.warning for p in parsed.problems] == [True]
    assert parsed.ok and parsed.raise_for_problems() is parsed.spec


def test_numbers_meant_as_text_are_read_as_written() -> None:
    # flow-pipe turned every scalar into its text: `007` named queue "007", not "7".
    parsed = parse_flow_text(
        "name: 0123\nqueues: [{name: 007}]\nenv: {APP_VERSION: 1.10}\nlabels: {build: 0x1F}\n"
        "stages:\n  - {name: 1e3, type: t, output_queue: 007, input_queues: [{queue: 007, table: 1.50}]}\n",
        "f.yaml",
    )
    spec = parsed.raise_for_problems()
    assert (spec.name, spec.queues[0].name, spec.env, spec.labels) == (
        "0123", "007", {"APP_VERSION": "1.10"}, {"build": "0x1F"}
    )  # fmt: skip
    stage = spec.stages[0]
    assert (stage.name, stage.output_queue, stage.input_queues[0].table) == ("1e3", "007", "1.50")
