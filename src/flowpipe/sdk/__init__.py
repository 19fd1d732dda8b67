"""The stage SDK: everything a stage plugin needs, re-exported by :mod:`flowpipe`."""

from ._errors import FlowpipeError, FlowSpecError, PluginError, Problem, StageFailed
from ._payload import Batch, BatchBuilder, Payload, PayloadMeta
from ._stage import (
    EndOfStream,
    FileScan,
    SideEffect,
    Sink,
    Source,
    Stage,
    StageConfig,
    StageContext,
    StageKind,
    Transform,
)

__all__ = [
    "Batch",
    "BatchBuilder",
    "EndOfStream",
    "FileScan",
    "FlowSpecError",
    "FlowpipeError",
    "Payload",
    "PayloadMeta",
    "PluginError",
    "Problem",
    "SideEffect",
    "Sink",
    "Source",
    "Stage",
    "StageConfig",
    "StageContext",
    "StageFailed",
    "StageKind",
    "Transform",
]
