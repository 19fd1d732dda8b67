"""Semantic rules: each bad input is reported once, at the right line and column, with a fix."""

import os
import textwrap

import pytest

from flowpipe.spec import ParsedFlow, parse_flow_text


def parse(text: str) -> ParsedFlow:
    return parse_flow_text(textwrap.dedent(text), "flow.yaml")


def located(parsed: ParsedFlow) -> list[tuple[int, int, str]]:
    return [(p.line, p.column, p.message) for p in parsed.problems]


@pytest.mark.parametrize(("stages", "where"), [("", (1, 1)), ("stages: []\n", (2, 9)), ("stages:\n", (2, 8))])
def test_a_flow_needs_a_stage(stages: str, where: tuple[int, int]) -> None:
    parsed = parse_flow_text("name: f\n" + stages, "flow.yaml")
    [problem] = parsed.problems
    assert (problem.line, problem.column) == where
    assert problem.message == "the flow has no stages"
    assert problem.hint == "add at least one stage under 'stages:'"


def test_empty_flow_name_is_an_error() -> None:
    parsed = parse("name: ''\nstages: [{name: a, type: t}]\n")
    assert located(parsed) == [(1, 7, "the flow name is empty")]


def test_stage_names_must_be_given_and_unique() -> None:
    parsed = parse("""\
        stages:
          - name: a
            type: t
          - type: t
          - name: a
            type: t
        """)
    assert located(parsed) == [
        (4, 5, "a stage has no name"),
        (5, 11, "stage name 'a' is already used at line 2"),
    ]
    assert parsed.problems[1].hint == "give every stage a unique name"


def test_queue_names_must_be_given_and_unique() -> None:
    parsed = parse("""\
        queues:
          - name: q
          - name: ""
          - name: q
        stages:
          - {name: a, type: t, output_queue: q}
          - {name: b, type: t, input_queue: q}
        """)
    assert located(parsed) == [
        (3, 11, "a queue has no name"),
        (4, 11, "queue name 'q' is already used at line 2"),
    ]


def test_stage_type_is_required() -> None:
    parsed = parse("stages:\n  - name: a\n")
    assert located(parsed) == [(2, 5, "stage 'a' has no type")]


@pytest.mark.parametrize("capacity", ["0", "-5"])
def test_capacity_must_be_positive(capacity: str) -> None:
    parsed = parse(f"""\
        queues:
          - name: q
            capacity: {capacity}
        stages: [{{name: a, type: t, output_queue: q}}, {{name: b, type: t, input_queue: q}}]
        """)
    [problem] = parsed.problems
    assert (problem.line, problem.column) == (3, 15)
    assert problem.message == f"queue 'q': capacity must be > 0, got {capacity}"
    assert problem.hint == "set a positive capacity, or remove it for 128"


def test_capacity_defaults_to_128() -> None:
    parsed = parse("""\
        queues: [{name: q}]
        stages: [{name: a, type: t, output_queue: q}, {name: b, type: t, input_queue: q}]
        """)
    assert parsed.ok and parsed.spec is not None and parsed.spec.queues[0].capacity == 128


@pytest.mark.parametrize("threads", ["0", "-1"])
def test_threads_must_be_at_least_one(threads: str) -> None:
    parsed = parse(f"""\
        stages:
          - name: upper
            type: t
            threads: {threads}
        """)
    assert [str(p) for p in parsed.problems] == [
        f"flow.yaml:4:14: error: stage 'upper': threads must be ≥ 1, got {threads} "
        "(fix: set threads to 1 or more, or remove it for 1)"
    ]


@pytest.mark.parametrize(("priority", "bad"), [("0", True), ("1", False), ("99", False), ("100", True)])
def test_realtime_priority_is_a_sched_fifo_priority(priority: str, bad: bool) -> None:
    parsed = parse(f"stages:\n  - name: a\n    type: t\n    realtime_priority: {priority}\n")
    expected = [(4, 24, f"stage 'a': realtime_priority must be between 1 and 99, got {priority}")]
    assert located(parsed) == (expected if bad else [])


def test_schema_needs_a_schema_id() -> None:
    parsed = parse("""\
        queues:
          - name: q
            schema: {format: arrow}
          - name: r
            schema: {schema_id: orders.v1}
        stages:
          - {name: a, type: t, output_queue: q}
          - {name: b, type: t, input_queue: q, output_queue: r}
          - {name: c, type: t, input_queue: r}
        """)
    assert located(parsed) == [(3, 13, "queue 'q': schema is given without a schema_id")]


def test_undeclared_queues_are_errors_with_suggestions() -> None:
    parsed = parse("""\
        queues: [{name: orders}]
        stages:
          - name: a
            type: t
            output_queue: order
          - name: b
            type: t
            input_queue: orders
            output_queue: elsewhere
        """)
    assert located(parsed) == [
        (1, 17, "queue 'orders' is read by stage 'b' but no stage writes to it"),
        (5, 19, "stage 'a': output_queue 'order' is not a declared queue"),
        (9, 19, "stage 'b': output_queue 'elsewhere' is not a declared queue"),
    ]
    assert [p.hint for p in parsed.problems[1:]] == [
        "did you mean 'orders'?",
        "declare it under 'queues:' with name: elsewhere",
    ]


def test_empty_queue_reference_is_an_error() -> None:
    parsed = parse("stages:\n  - name: a\n    type: t\n    input_queue: ''\n")
    assert located(parsed) == [(4, 18, "stage 'a': input_queue is empty")]


def test_queue_usage() -> None:
    parsed = parse("""\
        queues:
          - name: written
          - name: read
          - name: spare
        stages:
          - {name: a, type: t, output_queue: written}
          - {name: b, type: t, input_queue: read}
        """)
    assert located(parsed) == [
        (2, 11, "queue 'written' is written by stage 'a' but no stage reads it"),
        (3, 11, "queue 'read' is read by stage 'b' but no stage writes to it"),
        (4, 11, "queue 'spare' is not used by any stage"),
    ]
    assert [p.warning for p in parsed.problems] == [False, False, True]
    assert "block" in parsed.problems[0].hint and "wait forever" in parsed.problems[1].hint


def test_a_queue_read_by_several_stages_is_a_warning() -> None:
    # Competing consumers, as in flow-pipe: each record goes to one reader (threads of one
    # stage are one reader).
    parsed = parse("""\
        queues: [{name: q}]
        stages:
          - {name: a, type: t, output_queue: q}
          - {name: b, type: t, input_queue: q, threads: 3}
          - {name: c, type: t, input_queues: [{queue: q, table: x}]}
        """)
    assert located(parsed) == [
        (1, 17, "queue 'q' is read by stage 'b', stage 'c': each record goes to one of them, not to each")
    ]
    assert parsed.problems[0].warning and parsed.ok


def test_input_queues_extension_counts_as_reading() -> None:
    parsed = parse("""\
        queues: [{name: q1}, {name: q2}]
        stages:
          - {name: a, type: t, output_queue: q1}
          - {name: b, type: t, output_queue: q2}
          - name: join
            type: datafusion_sql_transform
            input_queues: [{queue: q1, table: left}, {queue: q3, table: right}]
        """)
    assert located(parsed) == [
        (1, 29, "queue 'q2' is written by stage 'b' but no stage reads it"),
        (7, 54, "stage 'join': input_queues[1].queue 'q3' is not a declared queue"),
    ]


def test_input_queue_and_input_queues_are_exclusive() -> None:
    parsed = parse("""\
        queues: [{name: q}]
        stages:
          - {name: a, type: t, output_queue: q}
          - name: b
            type: t
            input_queue: q
            input_queues: [{queue: q, table: t}]
        """)
    assert located(parsed) == [(7, 19, "stage 'b' has both input_queue and input_queues")]


def test_input_queues_name_each_queue_and_table_once() -> None:
    # The same queue twice would split its records between two tables; the same table twice
    # would hide one input.
    parsed = parse("""\
        queues: [{name: a}, {name: b}]
        stages:
          - {name: s1, type: t, output_queue: a}
          - {name: s2, type: t, output_queue: b}
          - name: j
            type: t
            input_queues: [{queue: a, table: x}, {queue: a, table: y}, {queue: b, table: x}]
        """)
    assert located(parsed) == [
        (7, 50, "stage 'j': input_queues[1].queue 'a' is already an input of this stage"),
        (7, 82, "stage 'j': input_queues[2].table 'x' is already an input of this stage"),
    ]


def test_cpu_pinning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    parsed = parse("""\
        stages: [{name: src, type: t}]
        kubernetes:
          cpu_pinning:
            src: {cpu: [0, 3, 4, 0]}
            sorce: {cpu: []}
        """)
    # CPU 4 is not this machine's: the runtime's plan says so, not the spec (see tests/runtime).
    assert located(parsed) == [
        (4, 26, "cpu_pinning for 'src': CPU 0 is listed twice"),
        (5, 12, "cpu_pinning names stage 'sorce', which is not in the flow"),
        (5, 12, "cpu_pinning for 'sorce' lists no CPUs, so it is not pinned"),
    ]
    assert [p.hint for p in parsed.problems[:2]] == ["list each CPU once", "did you mean 'src'?"]
    assert [p.warning for p in parsed.problems] == [False, False, True]


def test_negative_cpu_id_is_a_type_error() -> None:
    parsed = parse("stages: [{name: src, type: t}]\nkubernetes: {cpu_pinning: {src: {cpu: [-1]}}}\n")
    assert located(parsed) == [(2, 40, "kubernetes.cpu_pinning.src.cpu[0]: must be ≥ 0, got -1")]


@pytest.mark.parametrize(("mode", "bad"), [("job", False), ("streaming", True), (None, True)])
def test_cron_needs_job_mode(mode: str | None, bad: bool) -> None:
    execution = f"execution: {{mode: {mode}}}\n" if mode else ""
    parsed = parse(
        "stages: [{name: a, type: t}]\n" + execution + "kubernetes_options:\n  cron: {schedule: '@daily'}\n"
    )
    line = 3 if mode is None else 4
    expected = [(line, 9, "cron options are set but the flow does not run as a job")]
    assert located(parsed) == (expected if bad else [])


def test_invalid_parts_do_not_cause_follow_on_problems() -> None:
    parsed = parse("""\
        execution: {mode: jb}
        queues: [{name: q}]
        stages:
          - {name: a, type: t, output_queue: q}
          - {name: [b], type: t, input_queue: q, config: 5}
          - {name: c, type: t, input_queue: [q]}
        kubernetes_options: {cron: {schedule: '@daily'}}
        kubernetes: {cpu_pinning: {b: {cpu: [0]}}}
        """)
    # No "no name", "unknown stage b", "unused queue" or "cron without job" on top of these.
    assert [(line, column) for line, column, _ in located(parsed)] == [(1, 19), (5, 12), (5, 50), (6, 37)]
