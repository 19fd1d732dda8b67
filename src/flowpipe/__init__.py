"""flowpipe: a Python runtime for streaming and run-to-completion data flows.

This module is the public stage SDK; the rest of the package is the runtime behind it.
Test doubles for plugin authors live in :mod:`flowpipe.testing`.
"""

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


def __getattr__(name: str) -> str:
    # Looked up on demand: importing importlib.metadata costs start-up time of every run.
    if name == "__version__":
        from importlib.metadata import version

        return version("flow-pipe")
    raise AttributeError(f"module 'flowpipe' has no attribute {name!r}")


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
