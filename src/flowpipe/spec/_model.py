"""The flow spec as pydantic models, one per protobuf message of ``flowpipe.v1``.

Attribute names are the proto field names; a flow file may also use the lowerCamel JSON names.
Unknown keys are errors, as in the original runtime. Only types and shapes are checked here;
rules that relate fields to each other live in :mod:`._check`.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from flowpipe.sdk._values import as_written

from ._enums import (
    AttributeLevel,
    CronConcurrencyPolicy,
    ExecutionMode,
    ImagePullPolicy,
    InMemorySchemaFormat,
    LogProcessor,
    OtlpTransport,
    QueueType,
    RestartPolicy,
    StreamingWorkloadKind,
    TraceHint,
    TraceProcessor,
)

__all__ = [
    "BatchConfig",
    "CpuSet",
    "Execution",
    "FlowSpec",
    "KubernetesCronOptions",
    "KubernetesOptions",
    "KubernetesSettings",
    "LoggingConfig",
    "MetricsConfig",
    "ObservabilityConfig",
    "QueueSchema",
    "QueueSpec",
    "Resources",
    "StageInput",
    "StageSpec",
    "TracingConfig",
]

DEFAULT_CAPACITY = 128  # what flowctl's normalisation gives a queue without a capacity


def _not_bool(value: object) -> object:
    # Lax pydantic reads true as 1; protobuf JSON rejects a bool for a number, and so do we.
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
# The proto's integer types, with their ranges (protobuf JSON refuses values out of range).
Int32 = Annotated[Int, Field(ge=-(2**31), le=2**31 - 1)]
Int64 = Annotated[Int, Field(ge=-(2**63), le=2**63 - 1)]
UInt = Annotated[Int, Field(ge=0, le=2**32 - 1)]  # uint32
UInt64 = Annotated[Int, Field(ge=0, le=2**64 - 1)]
Count = Annotated[Int, Field(le=2**32 - 1)]  # uint32, whose values < 1 the checks report with a fix


class _Message(BaseModel):
    """Base of every spec model: unknown keys rejected, proto and lowerCamel names accepted."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        coerce_numbers_to_str=True,  # `name: 123` and `env: {PORT: 8080}` read as strings
    )

    @model_validator(mode="before")
    @classmethod
    def _as_written(cls, data: Any) -> Any:
        """As in protobuf JSON, a field given as null (or left empty in YAML) keeps its
        default; a number in a text field is the text it was written as."""
        return as_written(cls, data)


class Execution(_Message):
    mode: ExecutionMode = ExecutionMode.EXECUTION_MODE_UNSPECIFIED


class QueueSchema(_Message):
    format: InMemorySchemaFormat = InMemorySchemaFormat.IN_MEMORY_SCHEMA_FORMAT_UNSPECIFIED
    schema_id: str = ""
    version: UInt | None = None
    registry_url: str | None = None


with warnings.catch_warnings():
    # `schema` is the proto field name; it shadows pydantic's deprecated BaseModel.schema().
    warnings.filterwarnings("ignore", 'Field name "schema"', UserWarning)

    class QueueSpec(_Message):
        name: str = ""
        capacity: Count = DEFAULT_CAPACITY
        schema: QueueSchema | None = None  # type: ignore[assignment]
        type: QueueType = QueueType.QUEUE_TYPE_UNSPECIFIED


class StageInput(_Message):
    """One named input of a stage that reads several queues (benchmark extension)."""

    queue: str
    table: str


class StageSpec(_Message):
    name: str = ""
    type: str = ""
    threads: Count = 1
    input_queue: str | None = None
    output_queue: str | None = None
    input_queues: list[StageInput] = []  # extension: several named inputs instead of input_queue
    config: dict[str, Any] = {}  # owned by the stage; validated by its own config model
    plugin: str | None = None
    realtime_priority: Count | None = None


class CpuSet(_Message):
    cpu: list[UInt] = []


class Resources(_Message):
    cpu_cores: UInt | None = None
    memory_mb: UInt | None = None
    profile: str | None = None


class KubernetesSettings(_Message):
    image: str | None = None
    image_pull_policy: ImagePullPolicy = ImagePullPolicy.IMAGE_PULL_POLICY_UNSPECIFIED
    restart_policy: RestartPolicy = RestartPolicy.RESTART_POLICY_UNSPECIFIED
    cpu_pinning: dict[str, CpuSet] = {}  # stage name -> CPUs its worker threads may run on
    resources: Resources | None = None


class KubernetesCronOptions(_Message):
    schedule: str = ""
    time_zone: str | None = None
    suspend: bool | None = None
    starting_deadline_seconds: Int64 | None = None
    concurrency_policy: CronConcurrencyPolicy = CronConcurrencyPolicy.CRON_CONCURRENCY_POLICY_UNSPECIFIED
    successful_jobs_history_limit: Int32 | None = None
    failed_jobs_history_limit: Int32 | None = None


class KubernetesOptions(_Message):
    pod_labels: dict[str, str] = {}
    pod_annotations: dict[str, str] = {}
    service_account_name: str | None = None
    image_pull_secrets: list[str] = []
    runtime_class_name: str | None = None
    streaming_workload_kind: StreamingWorkloadKind = StreamingWorkloadKind.STREAMING_WORKLOAD_KIND_UNSPECIFIED
    cron: KubernetesCronOptions | None = None


class BatchConfig(_Message):
    max_queue_size: UInt = 0
    max_export_batch_size: UInt = 0
    schedule_delay_ms: UInt = 0
    export_timeout_ms: UInt = 0


class TracingConfig(_Message):
    trace_hint: TraceHint = TraceHint.TRACE_HINT_UNSPECIFIED
    processor: TraceProcessor = TraceProcessor.TRACE_PROCESSOR_UNSPECIFIED
    batch: BatchConfig | None = None
    stage_spans_enabled: bool = False
    queue_spans_enabled: bool = False
    record_spans_enabled: bool = False
    attribute_level: AttributeLevel = AttributeLevel.ATTRIBUTES_UNSPECIFIED
    latency_budget_ms: UInt = 0


class MetricsConfig(_Message):
    stage_metrics_disabled: bool = False
    queue_metrics_disabled: bool = False
    flow_metrics_disabled: bool = False
    latency_histograms_disabled: bool = False
    counters_only: bool = False
    jemalloc_metrics_disabled: bool = False
    min_collection_interval_ms: UInt = 0
    collection_interval_ms: UInt = 0
    latency_budget_ms: UInt = 0


class LoggingConfig(_Message):
    processor: LogProcessor = LogProcessor.LOG_PROCESSOR_UNSPECIFIED
    batch: BatchConfig | None = None


class ObservabilityConfig(_Message):
    metrics_enabled: bool = False
    tracing_enabled: bool = False
    logs_enabled: bool = False
    otlp_endpoint: str = ""
    transport: OtlpTransport = OtlpTransport.OTLP_TRANSPORT_UNSPECIFIED
    tracing: TracingConfig | None = None
    metrics: MetricsConfig | None = None
    logging: LoggingConfig | None = None
    debug: bool = False


class FlowSpec(_Message):
    """A whole flow. Blocks whose absence changes what the runtime does are None when absent."""

    name: str = ""
    version: UInt64 = 0
    execution: Execution = Execution()
    stages: list[StageSpec] = []
    queues: list[QueueSpec] = []
    labels: dict[str, str] = {}
    observability: ObservabilityConfig | None = None
    kubernetes: KubernetesSettings | None = None
    kubernetes_options: KubernetesOptions | None = None
    env: dict[str, str] = {}

    @property
    def is_job(self) -> bool:
        """Run to completion (a Kubernetes Job) rather than stream until stopped."""
        return self.execution.mode == ExecutionMode.EXECUTION_MODE_JOB

    @staticmethod
    def stage_inputs(stage: StageSpec) -> list[str]:
        """The queues ``stage`` reads: its ``input_queue``, or the queues of its ``input_queues``."""
        if stage.input_queue is not None:
            return [stage.input_queue]
        return [named.queue for named in stage.input_queues]
