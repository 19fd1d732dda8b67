"""Flow files: read them, validate them, and point at every problem by file, line and column::

    parsed = parse_flow("flows/noop.yaml")
    spec = parsed.raise_for_problems()  # FlowSpecError lists every problem

The models mirror the protobuf messages of the original ``flowpipe.v1`` package, field for field.
"""

from ._enums import (
    AttributeLevel,
    CronConcurrencyPolicy,
    ExecutionMode,
    ImagePullPolicy,
    InMemorySchemaFormat,
    LogProcessor,
    OtlpTransport,
    ProtoEnum,
    QueueType,
    RestartPolicy,
    StreamingWorkloadKind,
    TraceHint,
    TraceProcessor,
)
from ._model import (
    BatchConfig,
    CpuSet,
    Execution,
    FlowSpec,
    KubernetesCronOptions,
    KubernetesOptions,
    KubernetesSettings,
    LoggingConfig,
    MetricsConfig,
    ObservabilityConfig,
    QueueSchema,
    QueueSpec,
    Resources,
    StageInput,
    StageSpec,
    TracingConfig,
)
from ._parse import ParsedFlow, parse_flow, parse_flow_text, validation_problem

__all__ = [
    "AttributeLevel",
    "BatchConfig",
    "CpuSet",
    "CronConcurrencyPolicy",
    "Execution",
    "ExecutionMode",
    "FlowSpec",
    "ImagePullPolicy",
    "InMemorySchemaFormat",
    "KubernetesCronOptions",
    "KubernetesOptions",
    "KubernetesSettings",
    "LogProcessor",
    "LoggingConfig",
    "MetricsConfig",
    "ObservabilityConfig",
    "OtlpTransport",
    "ParsedFlow",
    "ProtoEnum",
    "QueueSchema",
    "QueueSpec",
    "QueueType",
    "Resources",
    "RestartPolicy",
    "StageInput",
    "StageSpec",
    "StreamingWorkloadKind",
    "TraceHint",
    "TraceProcessor",
    "TracingConfig",
    "parse_flow",
    "parse_flow_text",
    "validation_problem",
]
