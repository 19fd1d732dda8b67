"""`flowpipe k8s render`: the objects, field by field, and every combination schema-valid."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import Run

from flowpipe.deploy import DeployError, RenderOptions, dump_flow, render
from flowpipe.spec import parse_flow_text

from .manifests_support import COMBINATIONS, flow, render_data, validate_strictly

REPO = Path(__file__).resolve().parents[2]


def workload(data: dict[str, Any], **options: Any) -> dict[str, Any]:
    return render_data(data, **options).manifests[1]


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: dict[str, Any] = spec["template"]["spec"]
    return result


def pod_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: dict[str, Any] = spec["template"]["metadata"]
    return result


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(manifest)["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


# -- every combination is valid -------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(COMBINATIONS))
def test_every_combination_validates_strictly(case: str) -> None:
    rendered = render_data(COMBINATIONS[case])
    assert [m["kind"] for m in rendered.manifests] == ["ConfigMap", rendered.kind]
    for manifest in rendered.manifests:
        validate_strictly(manifest)


def test_strict_validation_catches_an_unknown_field() -> None:
    """A control: the schemas reject what Kubernetes would reject."""
    manifest = workload(COMBINATIONS["deployment"])
    container(manifest)["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strictly(manifest)


# -- which workload -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "kind", "name"),
    [
        ("deployment", "Deployment", "stream-runtime"),
        ("deployment-no-execution", "Deployment", "plain-runtime"),
        ("deployment-unspecified", "Deployment", "unspec-runtime"),
        ("daemonset", "DaemonSet", "daemon-runtime"),
        ("cronjob", "CronJob", "nightly"),
    ],
)
def test_workload_kind_follows_the_execution_mode(case: str, kind: str, name: str) -> None:
    manifest = workload(COMBINATIONS[case])
    assert (manifest["kind"], manifest["metadata"]["name"]) == (kind, name)


def test_job_name_carries_the_config_checksum_so_a_changed_flow_runs_again() -> None:
    first = render_data(flow("batch", "job"))
    checksum = pod_metadata(first.manifests[1])["annotations"]["flowpipe.io/flow-config-checksum"]
    assert first.manifests[1]["kind"] == "Job"
    assert first.manifests[1]["metadata"]["name"] == f"batch-{checksum[:8]}"
    same = render_data(flow("batch", "job"))
    assert same.manifests == first.manifests  # deterministic
    changed = render_data(flow("batch", "job", queues=[{"name": "q", "capacity": 65}]))
    assert changed.manifests[1]["metadata"]["name"] != first.manifests[1]["metadata"]["name"]


def test_cron_options_map_to_the_cronjob() -> None:
    spec = workload(COMBINATIONS["cronjob"])["spec"]
    assert {k: v for k, v in spec.items() if k != "jobTemplate"} == {
        "schedule": "*/5 * * * *",
        "timeZone": "Europe/Berlin",
        "suspend": False,
        "startingDeadlineSeconds": 120,
        "successfulJobsHistoryLimit": 2,
        "failedJobsHistoryLimit": 1,
        "concurrencyPolicy": "Forbid",
    }
    assert spec["jobTemplate"]["metadata"]["labels"]["flowpipe.io/flow-name"] == "nightly"
    assert set(workload(COMBINATIONS["cronjob-minimal"])["spec"]) == {"schedule", "jobTemplate"}


def test_negative_cron_limits_are_errors() -> None:
    data = flow(
        "c", "job", kubernetes_options={"cron": {"schedule": "@daily", "failed_jobs_history_limit": -1}}
    )
    with pytest.raises(DeployError, match="failedJobsHistoryLimit must be ≥ 0"):
        render_data(data)


# -- the ConfigMap ------------------------------------------------------------------------------------

TRICKY_CONFIG = {
    "exp": "1e3",
    "octal": "0o17",
    "leading_zero": "012",
    "yes": "yes",
    "on": "on",
    "null_text": "null",
    "empty": "",
    "tilde": "~",
    "multi": "line one\nline two\n",
    "unicode": "grüße ✓",
    "int": 20,
    "float": 1.5,
    "bool": True,
    "nested": {"list": [1, "2", {"k": "v"}]},
}


def test_config_map_holds_the_flow_and_reads_back_identically() -> None:
    data = flow("tricky", "streaming", full=True)
    data["stages"].insert(
        1, {"name": "mid", "type": "noop_transform", "input_queue": "q", "output_queue": "q2", "config": {}}
    )
    data["stages"][2]["input_queue"] = "q2"
    data["queues"].append({"name": "q2", "schema": {"schema_id": "orders", "version": 2}})
    data["stages"][1]["config"] = TRICKY_CONFIG
    rendered = render_data(data)
    config_map = rendered.manifests[0]
    assert config_map["metadata"]["name"] == "tricky-config"
    assert list(config_map["data"]) == ["flow.yaml"]
    text = config_map["data"]["flow.yaml"]
    original = parse_flow_text(yaml.safe_dump(data, sort_keys=False), "tricky.yaml").raise_for_problems()
    assert parse_flow_text(text, "flow.yaml").raise_for_problems() == original
    # Kubernetes reads the manifest as YAML 1.1: the flow text survives that too.
    assert list(yaml.safe_load_all(rendered.to_yaml())) == rendered.manifests


def test_checksum_annotation_is_the_sha256_of_the_flow_file() -> None:
    rendered = render_data(flow("sum", "streaming"))
    text = rendered.manifests[0]["data"]["flow.yaml"]
    annotations = pod_metadata(rendered.manifests[1])["annotations"]
    assert annotations["flowpipe.io/flow-config-checksum"] == hashlib.sha256(text.encode()).hexdigest()
    changed = render_data(flow("sum", "streaming", env={"A": "b"}))
    assert (
        pod_metadata(changed.manifests[1])["annotations"]["flowpipe.io/flow-config-checksum"]
        != (annotations["flowpipe.io/flow-config-checksum"])
    )


def test_flow_file_keeps_its_name_even_without_one_in_the_source() -> None:
    """The pod reads /config/flow.yaml: a name taken from the file name would become 'flow'."""
    stages = [
        {"name": "src", "type": "noop_source", "output_queue": "q"},
        {"name": "out", "type": "stdout_sink", "input_queue": "q"},
    ]
    parsed = parse_flow_text(yaml.safe_dump({"stages": stages, "queues": [{"name": "q"}]}), "my-flow.yaml")
    rendered = render(parsed.raise_for_problems(), RenderOptions(image="i:1"))
    text = rendered.manifests[0]["data"]["flow.yaml"]
    assert parse_flow_text(text, "flow.yaml").raise_for_problems().name == "my-flow"


def test_dump_flow_quotes_yaml_12_lookalikes() -> None:
    text = dump_flow({"a": "1e3", "b": "0o17", "c": "0x1F", "d": ".inf", "e": "True", "f": "plain"})
    assert "f: plain" in text
    for key in "abcde":
        assert f"{key}: '" in text or f'{key}: "' in text, text


# -- the pod ------------------------------------------------------------------------------------------


def test_container_runs_the_mounted_flow_file() -> None:
    manifest = workload(COMBINATIONS["deployment"])
    c = container(manifest)
    assert c["name"] == "runtime"
    assert c["args"] == ["/config/flow.yaml"]
    assert "command" not in c  # the image's entry point: flow_runtime
    assert {"name": "flow-config", "mountPath": "/config", "readOnly": True} in c["volumeMounts"]
    assert {"name": "flow-config", "configMap": {"name": "stream-config"}} in pod_spec(manifest)["volumes"]


def test_image_flag_overrides_the_flow_and_one_is_required() -> None:
    full = COMBINATIONS["deployment-full"]
    assert container(workload(full))["image"] == "registry.example/flowpipe-runtime:1.2.3"
    assert container(workload(full, image="mine:2"))["image"] == "mine:2"
    with pytest.raises(DeployError, match="no container image"):
        render_data(flow("noimage", "streaming"), image=None)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (None, "IfNotPresent"),
        ("IMAGE_PULL_POLICY_ALWAYS", "Always"),
        ("if_not_present", "IfNotPresent"),
        ("Never", "Never"),
    ],
)
def test_image_pull_policy(policy: str | None, expected: str) -> None:
    kubernetes = {"image": "i:1"} | ({"image_pull_policy": policy} if policy else {})
    assert container(workload(flow("p", "streaming", kubernetes=kubernetes)))["imagePullPolicy"] == expected


@pytest.mark.parametrize(
    ("mode", "policy", "expected"),
    [
        ("job", None, "Never"),
        ("job", "RESTART_POLICY_NEVER", "Never"),
        ("job", "RESTART_POLICY_ON_FAILURE", "OnFailure"),
        ("streaming", None, "Always"),
        ("streaming", "RESTART_POLICY_ALWAYS", "Always"),
    ],
)
def test_restart_policy(mode: str, policy: str | None, expected: str) -> None:
    kubernetes = {"image": "i:1"} | ({"restart_policy": policy} if policy else {})
    manifest = workload(flow("r", mode, kubernetes=kubernetes))
    assert pod_spec(manifest)["restartPolicy"] == expected
    if manifest["kind"] == "Job":
        # Invalid input (exit 2) fails the Job at once instead of being retried, where Kubernetes
        # allows a pod failure policy (restartPolicy Never).
        rules = manifest["spec"].get("podFailurePolicy", {}).get("rules", [])
        assert (expected == "Never") == any(r["onExitCodes"]["values"] == [2] for r in rules)


def test_streaming_restart_policy_that_cannot_apply_is_a_warning() -> None:
    rendered = render_data(flow("r", "streaming", kubernetes={"image": "i:1", "restart_policy": "never"}))
    assert pod_spec(rendered.manifests[1])["restartPolicy"] == "Always"
    assert any("RESTART_POLICY_NEVER does not apply to a Deployment" in w for w in rendered.warnings)


def test_job_restart_policy_always_is_an_error() -> None:
    with pytest.raises(DeployError, match="not allowed for a job"):
        render_data(flow("r", "job", kubernetes={"image": "i:1", "restart_policy": "always"}))


def test_labels_and_annotations_with_reserved_keys_protected() -> None:
    rendered = render_data(COMBINATIONS["deployment-full"])
    manifest = rendered.manifests[1]
    for obj in rendered.manifests:
        assert obj["metadata"]["labels"]["flowpipe.io/flow-name"] == "stream-full"
        assert obj["metadata"]["labels"]["team"] == "data"  # the flow's labels
    assert manifest["spec"]["selector"] == {"matchLabels": {"flowpipe.io/flow-name": "stream-full"}}
    metadata = pod_metadata(manifest)
    assert metadata["labels"] == {"app": "orders", "flowpipe.io/flow-name": "stream-full"}
    annotations = metadata["annotations"]
    assert annotations["example.com/owner"] == "data-team"
    assert annotations["flowpipe.io/flow-config-checksum"] != "x"
    assert annotations["flowpipe.io/resource-profile"] == "small"
    assert annotations["prometheus.io/port"] == "9464"
    assert sum("is reserved for flowpipe" in w for w in rendered.warnings) == 2


def test_invalid_label_is_an_error() -> None:
    data = flow("l", "streaming", kubernetes_options={"pod_labels": {"app": "not valid!"}})
    with pytest.raises(DeployError, match="not a valid label value"):
        render_data(data)
    data = flow("l", "streaming", kubernetes_options={"pod_annotations": {"bad key!": "v"}})
    with pytest.raises(DeployError, match="not a valid Kubernetes key"):
        render_data(data)
    # The flow's own labels were free text in the original: a bad one is only left out.
    rendered = render_data(flow("l", "streaming", labels={"owner": "Jane Doe", "team": "data"}))
    assert rendered.manifests[0]["metadata"]["labels"]["team"] == "data"
    assert "owner" not in rendered.manifests[0]["metadata"]["labels"]
    assert any("'owner' is not a valid label value, so it was left out" in w for w in rendered.warnings)


def test_service_account_pull_secrets_runtime_class() -> None:
    pod = pod_spec(workload(COMBINATIONS["deployment-full"]))
    assert pod["serviceAccountName"] == "flowpipe-runtime"
    assert "automountServiceAccountToken" not in pod
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]  # empty names skipped
    assert pod["runtimeClassName"] == "gvisor"
    bare = pod_spec(workload(COMBINATIONS["deployment"]))
    assert bare["automountServiceAccountToken"] is False
    assert not {"serviceAccountName", "imagePullSecrets", "runtimeClassName"} & set(bare)


def test_resources_requests_and_limits() -> None:
    full = container(workload(COMBINATIONS["deployment-full"]))
    # memory_mb is MB (10^6 bytes); pinned CPUs make the pod Guaranteed (limits == requests).
    assert full["resources"] == {
        "requests": {"cpu": "2", "memory": "512M"},
        "limits": {"cpu": "2", "memory": "512M"},
    }
    unpinned = flow(
        "u", "streaming", kubernetes={"image": "i:1", "resources": {"cpu_cores": 1, "memory_mb": 64}}
    )
    assert container(workload(unpinned))["resources"] == {
        "requests": {"cpu": "1", "memory": "64M"},
        "limits": {"memory": "64M"},  # no CPU limit: it would throttle a busy flow
    }
    assert "resources" not in container(workload(COMBINATIONS["deployment"]))
    pinned_only = flow("p", "streaming", kubernetes={"image": "i:1", "cpu_pinning": {"src": {"cpu": [0]}}})
    assert any("not Guaranteed" in w for w in render_data(pinned_only).warnings)


def test_env_sorted_with_reserved_names_protected() -> None:
    data = flow("e", "streaming", env={"B": "2", "A": "1", "FLOWPIPE_METRICS_ADDR": "0.0.0.0:1"})
    rendered = render_data(data)
    env = container(rendered.manifests[1])["env"]
    assert env == [
        {"name": "FLOWPIPE_METRICS_ADDR", "value": "0.0.0.0:9464"},
        {"name": "FLOWPIPE_DRAIN_TIMEOUT", "value": "30"},
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
    ]
    assert any("FLOWPIPE_METRICS_ADDR is set by flowpipe" in w for w in rendered.warnings)


def test_probes_and_metrics_port() -> None:
    deployment = container(workload(COMBINATIONS["deployment"]))
    assert deployment["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}]
    assert deployment["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert deployment["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert deployment["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    job = container(workload(COMBINATIONS["job"]))
    assert job["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "readinessProbe" not in job  # a Job's readiness gates nothing


@pytest.mark.parametrize(("env", "option", "drain"), [(None, None, 30), ("12.5", None, 12.5), ("12", 90, 90)])
def test_grace_period_outlasts_the_drain_deadline(
    env: str | None, option: float | None, drain: float
) -> None:
    data = flow("g", "streaming", env={"FLOWPIPE_DRAIN_TIMEOUT": env} if env else {})
    manifest = workload(data, drain_timeout=option)
    grace = pod_spec(manifest)["terminationGracePeriodSeconds"]
    assert grace > drain
    values = {e["name"]: e["value"] for e in container(manifest)["env"]}
    assert float(values["FLOWPIPE_DRAIN_TIMEOUT"]) == drain


def test_bad_drain_timeout_in_env_is_an_error() -> None:
    with pytest.raises(DeployError, match="FLOWPIPE_DRAIN_TIMEOUT must be a number"):
        render_data(flow("g", "streaming", env={"FLOWPIPE_DRAIN_TIMEOUT": "soon"}))


def test_hardened_pod() -> None:
    manifest = workload(COMBINATIONS["deployment"])
    assert pod_spec(manifest)["securityContext"]["runAsNonRoot"] is True
    security = container(manifest)["securityContext"]
    assert security == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container(manifest)["volumeMounts"]
    data = flow("rt", "streaming")
    data["stages"][0]["realtime_priority"] = 10
    assert container(workload(data))["securityContext"]["capabilities"]["add"] == ["SYS_NICE"]


def test_namespace_and_name_options() -> None:
    rendered = render_data(flow("orig", "streaming"), namespace="flows", name="renamed")
    assert [m["metadata"]["namespace"] for m in rendered.manifests] == ["flows", "flows"]
    assert [m["metadata"]["name"] for m in rendered.manifests] == ["renamed-config", "renamed-runtime"]
    text = rendered.manifests[0]["data"]["flow.yaml"]
    assert parse_flow_text(text, "flow.yaml").raise_for_problems().name == "renamed"
    assert all("namespace" not in m["metadata"] for m in render_data(flow("x", None)).manifests)
    with pytest.raises(DeployError, match="not a valid namespace"):
        render_data(flow("x", None), namespace="Flows_1")


@pytest.mark.parametrize(
    ("name", "suggestion"), [("My_Flow", "my-flow"), ("simple.pipeline", "simple-pipeline")]
)
def test_flow_name_must_fit_kubernetes_names(name: str, suggestion: str) -> None:
    with pytest.raises(DeployError, match=f"--name {suggestion}"):
        render_data(flow(name, "streaming"))
    with pytest.raises(DeployError, match="at most 52 characters"):
        render_data(flow("j" * 53, "job"))
    render_data(flow("d" * 63, "streaming"))


# -- the command ----------------------------------------------------------------------------------


def test_render_command_prints_a_yaml_stream(flowpipe: Run) -> None:
    proc = flowpipe("k8s", "render", REPO / "flows/hello.yaml", "--image", "flowpipe-runtime:latest")
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Job"]
    assert proc.stdout.startswith("---\n")


def test_render_command_without_image_exits_2(flowpipe: Run) -> None:
    proc = flowpipe("k8s", "render", REPO / "flows/hello.yaml")
    assert proc.returncode == 2
    assert "no container image: pass --image" in proc.stderr
    assert proc.stdout == ""


def test_render_command_reports_flow_problems(flowpipe: Run, write: Callable[[str, str], Path]) -> None:
    path = write("bad.yaml", "name: bad\nstages:\n  - {name: s, type: x, threads: 0}\n")
    proc = flowpipe("k8s", "render", path, "--image", "i:1")
    assert proc.returncode == 2
    assert "threads must be ≥ 1" in proc.stderr


def test_render_command_options_and_output_file(
    flowpipe: Run, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    data = flow("pinned", "streaming", kubernetes={"image": "i:1", "cpu_pinning": {"src": {"cpu": [63]}}})
    path = write("pinned.yaml", yaml.safe_dump(data))
    out = tmp_path / "out.yaml"
    proc = flowpipe(
        "k8s", "render", path, "-n", "flows", "--name", "other", "--drain-timeout", "5", "-o", out
    )
    # CPU 63 is checked against the node the pod runs on, not this machine.
    assert proc.returncode == 0, proc.stderr
    assert "not Guaranteed" in proc.stderr
    docs = list(yaml.safe_load_all(out.read_text()))
    assert docs[1]["metadata"] == {
        "name": "other-runtime",
        "namespace": "flows",
        "labels": {"app.kubernetes.io/part-of": "flow-pipe", "flowpipe.io/flow-name": "other"},
    }
    assert pod_spec(docs[1])["terminationGracePeriodSeconds"] == 20
