"""Test doubles for stage authors: run a flow in-process with stage types of your own.

::

    out: list[Payload] = []
    result = run_flow(FLOW_YAML, stages={
        "numbers": TestingSource.of([b"1", b"2"]),
        "collect": TestingSink.into(out),
        "my_transform": MyTransform,
    })
    assert result.exit_code == 0 and [p.data for p in out] == [b"1", b"2"]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .registry import build_registry
from .runtime import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BYTES, FlowRun, plan_flow
from .sdk import Batch, EndOfStream, FlowSpecError, Payload, Sink, Source, Stage, StageConfig, StageFailed
from .spec import parse_flow, parse_flow_text

__all__ = ["FlowResult", "TestingSink", "TestingSource", "run_flow"]


class TestingSource(Source[StageConfig]):
    """Emits the records given to :meth:`of` (data or :class:`Payload`), then ends.

    With ``threads: N`` the records are dealt out among the N workers. The sentinel
    :attr:`FAIL` among the records makes the source raise there, to test failure handling.
    """

    __test__ = False
    FAIL: ClassVar[object] = object()
    records: ClassVar[Sequence[Any]] = ()
    schema: ClassVar[Any] = None

    @classmethod
    def of(cls, records: Iterable[Any], schema: Any = None) -> type[TestingSource]:
        """``schema``: what the source declares before start (its ``output_schema``)."""
        return type("TestingSource", (cls,), {"records": list(records), "schema": schema})

    @classmethod
    def output_schema(cls, config: Any, inputs: Mapping[str, Any]) -> Any:
        return cls.schema

    def open(self) -> None:
        context = self.context
        self._records: Iterator[Any] = iter(self.records[context.worker_index :: context.worker_count])

    def produce(self) -> Any:
        record = next(self._records, EndOfStream)
        if record is EndOfStream:
            raise EndOfStream
        if record is TestingSource.FAIL:
            raise RuntimeError("TestingSource.FAIL reached")
        return record


class TestingSink(Sink[StageConfig]):
    """Appends every record it consumes, as a :class:`Payload`, to the list given to :meth:`into`."""

    __test__ = False
    output: ClassVar[list[Payload]]

    @classmethod
    def into(cls, output: list[Payload]) -> type[TestingSink]:
        return type("TestingSink", (cls,), {"output": output})

    def consume_batch(self, batch: Batch) -> None:
        self.output.extend(batch.payloads())  # one C-level call: safe with several workers


@dataclass(frozen=True)
class FlowResult:
    exit_code: int
    failure: StageFailed | None
    records_in: dict[str, int]  # by stage name
    records_out: dict[str, int]


def run_flow(
    flow: str | os.PathLike[str],
    *,
    stages: Mapping[str, type[Stage[Any]]] | None = None,
    plugin_path: Sequence[str | os.PathLike[str]] = (),
    batch_size: int = DEFAULT_BATCH_SIZE,
    drain_timeout: float = 30.0,
    queue_max_bytes: int = DEFAULT_MAX_BYTES,
    fuse: bool = True,
) -> FlowResult:
    """Validate and run a flow to its end on this thread.

    ``flow`` is YAML text (a ``str``) or the path of a flow file (a ``Path``). ``stages`` adds
    stage types by name, ahead of every installed one. Raises :class:`FlowSpecError` when the
    flow is invalid or a stage's preflight check fails (a server down, a port taken), exactly
    as ``flowpipe run`` would report it. ``fuse=False`` is ``flowpipe run --no-fuse``.
    """
    parsed = parse_flow_text(flow, "flow.yaml") if isinstance(flow, str) else parse_flow(Path(flow))
    if parsed.spec is None:
        raise FlowSpecError(parsed.problems)
    plan = plan_flow(parsed, build_registry(plugin_path, stages), preflight=True, fuse=fuse)
    run = FlowRun(plan, batch_size=batch_size, drain_timeout=drain_timeout, queue_max_bytes=queue_max_bytes)
    code = run.run()
    return FlowResult(
        exit_code=code,
        failure=run.failure,
        records_in={s.plan.name: s.records_in for s in run.stats},
        records_out={s.plan.name: s.records_out for s in run.stats},
    )
