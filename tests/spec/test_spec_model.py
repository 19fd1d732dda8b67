"""The spec models: proto and lowerCamel names, enum spellings, defaults and serialization."""

import pytest
from pydantic import ValidationError

from flowpipe.spec import (
    AttributeLevel,
    CronConcurrencyPolicy,
    ExecutionMode,
    FlowSpec,
    ImagePullPolicy,
    InMemorySchemaFormat,
    LogProcessor,
    OtlpTransport,
    QueueSpec,
    QueueType,
    RestartPolicy,
    StageSpec,
    StreamingWorkloadKind,
    TraceHint,
    TraceProcessor,
)


@pytest.mark.parametrize("value", ["EXECUTION_MODE_JOB", 2, "2", "job", "JOB", "Job", "execution-mode-job"])
def test_enum_accepts_proto_name_number_and_short_name(value: object) -> None:
    assert ExecutionMode.parse(value) is ExecutionMode.EXECUTION_MODE_JOB


@pytest.mark.parametrize(
    ("enum", "value", "member"),
    [
        (ImagePullPolicy, "IfNotPresent", ImagePullPolicy.IMAGE_PULL_POLICY_IF_NOT_PRESENT),
        (ImagePullPolicy, "if_not_present", ImagePullPolicy.IMAGE_PULL_POLICY_IF_NOT_PRESENT),
        (RestartPolicy, "OnFailure", RestartPolicy.RESTART_POLICY_ON_FAILURE),
        (StreamingWorkloadKind, "daemonset", StreamingWorkloadKind.STREAMING_WORKLOAD_KIND_DAEMONSET),
        (StreamingWorkloadKind, "DaemonSet", StreamingWorkloadKind.STREAMING_WORKLOAD_KIND_DAEMONSET),
        (CronConcurrencyPolicy, "Forbid", CronConcurrencyPolicy.CRON_CONCURRENCY_POLICY_FORBID),
        (OtlpTransport, "grpc", OtlpTransport.OTLP_TRANSPORT_GRPC),
        (OtlpTransport, "HTTP", OtlpTransport.OTLP_TRANSPORT_HTTP),
        (QueueType, "in_memory", QueueType.QUEUE_TYPE_IN_MEMORY),
        (InMemorySchemaFormat, "arrow", InMemorySchemaFormat.IN_MEMORY_SCHEMA_FORMAT_ARROW),
        (TraceHint, "always", TraceHint.TRACE_HINT_ALWAYS),
        (TraceProcessor, "batch", TraceProcessor.TRACE_PROCESSOR_BATCH),
        (AttributeLevel, "verbose", AttributeLevel.ATTRIBUTES_VERBOSE),
        (LogProcessor, "simple", LogProcessor.LOG_PROCESSOR_SIMPLE),
        (ExecutionMode, "unspecified", ExecutionMode.EXECUTION_MODE_UNSPECIFIED),
    ],
)
def test_enum_short_names(enum: type[ExecutionMode], value: str, member: ExecutionMode) -> None:
    assert enum.parse(value) is member


@pytest.mark.parametrize("value", ["batch", 7, True, [1], ""])
def test_unknown_enum_value_lists_the_valid_names(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        FlowSpec.model_validate({"execution": {"mode": value}})
    [error] = info.value.errors()
    assert error["loc"] == ("execution", "mode")
    assert "EXECUTION_MODE_STREAMING" in error["msg"] and "streaming, job" in error["msg"]


def test_short_name_strips_the_enum_prefix() -> None:
    assert ImagePullPolicy.IMAGE_PULL_POLICY_IF_NOT_PRESENT.short_name == "if_not_present"
    assert AttributeLevel.ATTRIBUTES_MINIMAL.short_name == "minimal"


def test_proto_and_lower_camel_names_give_the_same_spec() -> None:
    snake = StageSpec.model_validate({"input_queue": "a", "output_queue": "b", "realtime_priority": 5})
    camel = StageSpec.model_validate({"inputQueue": "a", "outputQueue": "b", "realtimePriority": 5})
    assert snake == camel
    assert snake.input_queue == "a" and snake.realtime_priority == 5


def test_defaults() -> None:
    spec = FlowSpec()
    assert spec.execution.mode is ExecutionMode.EXECUTION_MODE_UNSPECIFIED and not spec.is_job
    assert spec.observability is None and spec.kubernetes is None and spec.kubernetes_options is None
    assert StageSpec().threads == 1 and StageSpec().config == {}
    assert QueueSpec().capacity == 128 and QueueSpec().schema is None


def test_null_keeps_the_default_like_protobuf_json() -> None:
    stage = StageSpec.model_validate({"threads": None, "config": None, "inputQueue": None})
    assert stage.threads == 1 and stage.config == {} and stage.input_queue is None


def test_unknown_key_is_rejected_even_when_null() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        StageSpec.model_validate({"params": None})


def test_numbers_become_strings_in_string_fields_but_not_bools() -> None:
    spec = FlowSpec.model_validate({"name": 123, "env": {"PORT": 8080}, "labels": {"tier": 1.5}})
    assert spec.name == "123" and spec.env == {"PORT": "8080"} and spec.labels == {"tier": "1.5"}
    with pytest.raises(ValidationError):
        FlowSpec.model_validate({"env": {"DEBUG": True}})


def test_bool_is_not_a_number() -> None:
    with pytest.raises(ValidationError):
        StageSpec.model_validate({"threads": True})


def test_config_values_keep_their_types() -> None:
    stage = StageSpec.model_validate({"config": {"n": 20, "f": 0.5, "on": True, "s": "yes", "l": [1]}})
    assert stage.config == {"n": 20, "f": 0.5, "on": True, "s": "yes", "l": [1]}


def test_json_dump_uses_proto_names_and_round_trips() -> None:
    spec = FlowSpec.model_validate(
        {
            "name": "f",
            "execution": {"mode": "job"},
            "kubernetes": {"imagePullPolicy": "IfNotPresent", "cpuPinning": {"s": {"cpu": [0, 1]}}},
            "queues": [{"name": "q", "schema": {"schemaId": "s1", "format": 1}}],
        }
    )
    dumped = spec.model_dump(mode="json", exclude_defaults=True)
    assert dumped["execution"] == {"mode": "EXECUTION_MODE_JOB"}
    assert dumped["kubernetes"]["image_pull_policy"] == "IMAGE_PULL_POLICY_IF_NOT_PRESENT"
    assert dumped["queues"][0]["schema"] == {"format": "IN_MEMORY_SCHEMA_FORMAT_ARROW", "schema_id": "s1"}
    assert FlowSpec.model_validate(dumped) == spec


def test_json_schema_can_be_generated() -> None:
    schema = FlowSpec.model_json_schema()
    mode = schema["$defs"]["Execution"]["properties"]["mode"]
    assert {"EXECUTION_MODE_JOB", "job", 2} <= set(mode["enum"])


def test_stage_inputs_and_is_job() -> None:
    spec = FlowSpec.model_validate({"execution": {"mode": 2}})
    assert spec.is_job
    assert spec.stage_inputs(StageSpec(input_queue="a")) == ["a"]
    many = StageSpec.model_validate(
        {"input_queues": [{"queue": "a", "table": "t1"}, {"queue": "b", "table": "t2"}]}
    )
    assert spec.stage_inputs(many) == ["a", "b"]
    assert spec.stage_inputs(StageSpec()) == []


def test_specs_are_frozen() -> None:
    with pytest.raises(ValidationError):
        StageSpec().threads = 3  # type: ignore[misc]
