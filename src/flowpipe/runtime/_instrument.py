"""Hooks for observing a flow run from the outside (metrics, tracing, progress views).

Every hook is optional; each docstring says on which thread and when the runtime calls it.
A stage author writes nothing for these: instruments wrap stages, not the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sdk import Stage, StageConfig

if TYPE_CHECKING:
    from ._flow import FlowRun
    from ._plan import StagePlan

__all__ = ["Instrument"]


class Instrument:
    """Base of instruments: override the hooks you need."""

    def flow_started(self, run: FlowRun) -> None:
        """On the thread that called ``run()``, right after every worker thread started."""

    def flow_ended(self, run: FlowRun, exit_code: int) -> None:
        """On the thread that called ``run()``, after every worker ended (or was abandoned)."""

    def wrap_stage(self, run: FlowRun, stage: StagePlan, instance: Stage[StageConfig]) -> Stage[StageConfig]:
        """On a worker thread, before ``open()``: return the instance, or a stage wrapping it."""
        return instance
