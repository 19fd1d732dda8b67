"""flowpipe: a Python runtime for streaming and run-to-completion data flows.

This module is the public stage SDK; the rest of the package is the runtime behind it.
Test doubles for plugin authors live in :mod:`flowpipe.testing`.
"""

from importlib.metadata import PackageNotFoundError, version

from .sdk import (
    Batch,
    BatchBuilder,
    EndOfStream,
    FlowpipeError,
    FlowSpecError,
    Payload,
    PayloadMeta,
    PluginError,
    Problem,
    SideEffect,
    Sink,
    Source,
    Stage,
    StageConfig,
    StageContext,
    StageFailed,
    StageKind,
    Transform,
)

try:
    __version__ = version("flow-pipe")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "Batch",
    "BatchBuilder",
    "EndOfStream",
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
    "__version__",
]
