"""Stages' output schemas, asked before start: each stage sees what its inputs will carry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from flowpipe import EndOfStream, FlowSpecError, Source, StageConfig, Transform
from flowpipe.testing import TestingSink, run_flow


class SchemaConfig(StageConfig):
    schema_name: str = ""


class Declaring(Source[SchemaConfig]):
    """Emits nothing; declares the schema its config names."""

    def produce_batch(self, limit: int) -> Any:
        raise EndOfStream

    @classmethod
    def output_schema(cls, config: SchemaConfig, inputs: Mapping[str, Any]) -> Any:
        if config.schema_name == "raise":
            raise TypeError("a bug in the plugin")
        return config.schema_name or None


class Recording(Transform[SchemaConfig]):
    """Passes records on; records the inputs it was asked about, refuses schema 'bad'."""

    named_inputs: ClassVar[bool] = True
    asked: ClassVar[list[dict[str, Any]]] = []

    def process(self, payload: Any) -> Any:
        return payload

    @classmethod
    def output_schema(cls, config: SchemaConfig, inputs: Mapping[str, Any]) -> Any:
        cls.asked.append(dict(inputs))
        if "bad" in inputs.values():
            raise ValueError("config.schema_name: cannot read schema 'bad'")
        return config.schema_name or None


def run(stages: str) -> None:
    Recording.asked.clear()
    queues = "[" + ", ".join(f"{{name: {q}, capacity: 4}}" for q in "abcd") + "]"
    run_flow(
        f"name: t\nexecution: {{mode: job}}\nqueues: {queues}\nstages:\n{stages}",
        stages={"declaring": Declaring, "recording": Recording, "out": TestingSink.into([])},
    )


def test_schemas_flow_downstream_and_several_producers_must_agree() -> None:
    run(
        """
  - {name: s1, type: declaring, output_queue: a, config: {schema_name: rows}}
  - {name: s2, type: declaring, output_queue: a, config: {schema_name: rows}}
  - {name: s3, type: declaring, output_queue: b, config: {schema_name: other}}
  - {name: s4, type: declaring, output_queue: b, config: {schema_name: rows}}
  - name: t
    type: recording
    input_queues: [{queue: a, table: agreed}, {queue: b, table: mixed}]
    output_queue: c
    config: {schema_name: joined}
  - {name: u, type: recording, input_queue: c, output_queue: d}
  - {name: out, type: out, input_queue: d}
"""
    )
    assert Recording.asked == [{"agreed": "rows", "mixed": None}, {"c": "joined"}]


def test_refusals_are_invalid_flows_located_at_the_key_and_plugin_bugs_do_not_crash() -> None:
    with pytest.raises(FlowSpecError) as caught:
        run(
            """
  - {name: s1, type: declaring, output_queue: a, config: {schema_name: bad}}
  - {name: s2, type: declaring, output_queue: b, config: {schema_name: raise}}
  - name: t
    type: recording
    input_queues: [{queue: a, table: x}, {queue: b, table: y}]
    output_queue: c
    config: {schema_name: joined}
  - {name: out, type: out, input_queue: c}
"""
        )
    assert [str(p) for p in caught.value.problems if not p.warning] == [
        "flow.yaml:7:5: error: stage 's2' (declaring): TypeError: a bug in the plugin",
        "flow.yaml:12:27: error: stage 't' (recording): config.schema_name: cannot read schema 'bad'",
    ]
