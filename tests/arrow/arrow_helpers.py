"""Small generated data for the Arrow stage tests, and helpers that drive a stage directly."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, cast

import pyarrow as pa
import pytest

from flowpipe import Batch, EndOfStream, Stage, StageConfig, StageContext

ROWS = 5_000


def sample_table(rows: int = ROWS) -> pa.Table:
    """Every common column type, nulls included."""
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "small": pa.array([i % 100 for i in range(rows)], pa.int16()),
            "name": pa.array([None if i % 97 == 0 else f"name-{i}" for i in range(rows)], pa.string()),
            "price": pa.array([i * 0.25 for i in range(rows)], pa.float64()),
            "flag": pa.array([i % 3 == 0 for i in range(rows)], pa.bool_()),
            "day": pa.array(
                [dt.date(2024, 1, 1) + dt.timedelta(days=i % 365) for i in range(rows)], pa.date32()
            ),
            "at": pa.array([i * 1_000_000 for i in range(rows)], pa.timestamp("us")),
            "amount": pa.array([decimal.Decimal(i) / 100 for i in range(rows)], pa.decimal128(12, 2)),
            "group": pa.array([f"g{i % 4}" for i in range(rows)], pa.string()),
        }
    )


def make(
    stage_class: type[Stage[Any]],
    config: dict[str, Any],
    index: int = 0,
    workers: int = 1,
    shared: dict[str, Any] | None = None,
) -> Any:
    """An opened stage instance, as the runtime would build it for worker ``index`` (the
    workers of one stage get the same ``shared`` dict)."""
    context = StageContext(
        flow_name="test",
        stage_name="stage",
        stage_type="t",
        worker_index=index,
        worker_count=workers,
        shared=shared,
    )
    stage = stage_class(stage_class.config_model.model_validate(config), context)
    stage.open()
    return stage


def drain(stage_class: type[Stage[Any]], config: dict[str, Any], workers: int = 1) -> list[Any]:
    """Every record each of ``workers`` source instances emits, checking each batch's size."""
    records: list[Any] = []
    for index in range(workers):
        source = make(stage_class, config, index, workers)
        try:
            while True:
                batch: Batch = source.produce_batch(1024)
                assert batch.nbytes == sum(getattr(r, "nbytes", 0) or len(r) for r in batch.data)
                records.extend(batch.data)
        except EndOfStream:
            pass
        finally:
            source.close()
    return records


def ids(table: pa.Table) -> list[int]:
    """The sorted ``id`` column: every row read exactly once when it is ``range(rows)``."""
    return sorted(cast(list[int], table.column("id").to_pylist()))


def as_table(records: list[Any]) -> pa.Table:
    batches = [b for r in records for b in (r.to_batches() if isinstance(r, pa.Table) else [r])]
    return pa.Table.from_batches(batches)


def job(stages: str, queues: str = "[{name: a, capacity: 16}, {name: b, capacity: 16}]") -> str:
    """A job flow's YAML text around ``stages`` (YAML list items)."""
    return f"name: t\nexecution: {{mode: job}}\nqueues: {queues}\nstages:\n{stages}"


def preflight(stage_class: type[Stage[Any]], config: dict[str, Any]) -> str:
    """The problems ``flowpipe run`` would report for the config before starting, joined."""
    return "\n".join(stage_class.preflight(stage_class.config_model.model_validate(config)))


def config_error(stage_class: type[Stage[Any]], config: dict[str, Any]) -> str:
    """The validation error a config gets (it must get one)."""
    model: type[StageConfig] = stage_class.config_model
    with pytest.raises(ValueError) as error:
        model.model_validate(config)
    return str(error.value)
