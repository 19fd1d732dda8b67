"""A queue declaring ``schema.format: IN_MEMORY_SCHEMA_FORMAT_ARROW`` carries only Arrow data."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pyarrow as pa
import pytest
from arrow_helpers import job, sample_table

from flowpipe import Payload
from flowpipe.registry import build_registry
from flowpipe.runtime import plan_flow
from flowpipe.spec import parse_flow_text
from flowpipe.stages.arrow import to_ipc
from flowpipe.testing import FlowResult, TestingSink, TestingSource, run_flow

ARROW_QUEUE = "[{name: a, capacity: 16, schema: {schema_id: rows, format: IN_MEMORY_SCHEMA_FORMAT_ARROW}}]"
PASS_THROUGH = """
  - {name: src, type: src, output_queue: a}
  - {name: out, type: out, input_queue: a}
"""


def run(records: list[Any], out: list[Payload]) -> FlowResult:
    return run_flow(
        job(PASS_THROUGH, queues=ARROW_QUEUE),
        stages={"src": TestingSource.of(records), "out": TestingSink.into(out)},
    )


def test_arrow_objects_pass_and_ipc_bytes_arrive_as_tables() -> None:
    table = sample_table(300)
    batch = table.to_batches()[0]
    out: list[Payload] = []
    result = run([batch, to_ipc(table)], out)
    assert result.exit_code == 0, result.failure
    first, second = (payload.data for payload in out)
    assert first is batch  # not copied
    assert isinstance(second, pa.Table) and second.equals(table)


@pytest.mark.parametrize(
    ("record", "complaint"),
    [
        ("a line of text", "a record is a str: emit pyarrow RecordBatch or Table objects, or Arrow IPC"),
        (b"not arrow", "a record of 9 bytes is not an Arrow IPC stream"),
    ],
)
def test_other_records_fail_the_stage_that_put_them(record: Any, complaint: str) -> None:
    out: list[Payload] = []
    result = run([sample_table(10), record], out)
    assert result.exit_code == 1 and result.failure is not None
    assert result.failure.stage_name == "src"
    message = str(result.failure)
    assert "queue 'a' carries Arrow data (schema.format: IN_MEMORY_SCHEMA_FORMAT_ARROW)" in message
    assert complaint in message


def test_unchecked_formats_are_a_warning() -> None:
    text = job(PASS_THROUGH, queues="[{name: a, schema: {schema_id: rows, format: JSON}}]")
    plan = plan_flow(
        parse_flow_text(text, "f.yaml"),
        build_registry([], {"src": TestingSource, "out": TestingSink}),
    )
    assert [(p.line, p.message) for p in plan.warnings] == [
        (3, "queue 'a': records are not checked against schema.format IN_MEMORY_SCHEMA_FORMAT_JSON")
    ]


def test_an_arrow_queue_without_pyarrow_is_refused_before_start() -> None:
    code = f"""
import sys
sys.modules["pyarrow"] = None
from flowpipe.registry import build_registry
from flowpipe.runtime import plan_flow
from flowpipe.sdk import FlowSpecError
from flowpipe.spec import parse_flow_text
from flowpipe.testing import TestingSink, TestingSource
try:
    plan_flow(parse_flow_text({job(PASS_THROUGH, queues=ARROW_QUEUE)!r}, "f.yaml"),
              build_registry([], {{"src": TestingSource, "out": TestingSink}}))
except FlowSpecError as error:
    print(*error.problems, sep="\\n")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    column = job(PASS_THROUGH, queues=ARROW_QUEUE).splitlines()[2].index("IN_MEMORY") + 1
    assert done.stdout.strip() == (
        f"f.yaml:3:{column}: error: queue 'a': schema.format IN_MEMORY_SCHEMA_FORMAT_ARROW needs a library"
        " not installed (fix: pip install 'flow-pipe[arrow]')"
    )
