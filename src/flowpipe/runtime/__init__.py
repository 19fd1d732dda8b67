"""The runtime: plan a validated flow, then run its stages on bounded queues of batches."""

from ._flow import DEFAULT_BATCH_SIZE, DEFAULT_DRAIN_TIMEOUT, EXIT_FAILED, EXIT_FORCED, EXIT_OK, FlowRun
from ._instrument import Instrument
from ._plan import FlowPlan, StagePlan, plan_flow
from ._queue import DEFAULT_MAX_BYTES, BatchQueue, InputReader
from ._stats import Histogram, StageStats, WorkerStats

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_MAX_BYTES",
    "EXIT_FAILED",
    "EXIT_FORCED",
    "EXIT_OK",
    "BatchQueue",
    "FlowPlan",
    "FlowRun",
    "Histogram",
    "InputReader",
    "Instrument",
    "StagePlan",
    "StageStats",
    "WorkerStats",
    "plan_flow",
]
