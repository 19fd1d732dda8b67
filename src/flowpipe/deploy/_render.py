"""Render one flow as the Kubernetes objects that run it.

The shapes follow the original flow-pipe controller (a ConfigMap ``<name>-config`` holding
``flow.yaml``, mounted at ``/config``; a Deployment or DaemonSet ``<name>-runtime``, a Job or a
CronJob; container ``runtime`` with args ``["/config/flow.yaml"]``), with its gaps closed:

- the spec's ``restart_policy`` is honoured where Kubernetes allows it (a streaming pod always
  restarts; a Job rejects ``Always``) instead of being silently ignored;
- memory gets a limit as well as a request, and pinned CPUs get a Guaranteed pod;
- health and readiness probes, the metrics port, and a grace period longer than the drain
  deadline, so that a rolling update or an eviction drains in-flight records;
- every object carries ``flowpipe.io/flow-name``, so ``kubectl apply --prune -l`` removes the
  workload of an old execution mode; a Job's name includes the config checksum, so a changed
  flow runs again instead of failing on the Job's immutable template.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..sdk import FlowpipeError
from ..spec import (
    CronConcurrencyPolicy,
    ExecutionMode,
    FlowSpec,
    ImagePullPolicy,
    KubernetesCronOptions,
    KubernetesOptions,
    KubernetesSettings,
    RestartPolicy,
    StreamingWorkloadKind,
)
from ._yaml import dump_flow, dump_manifests

__all__ = [
    "ANNOTATION_CHECKSUM",
    "ANNOTATION_PROFILE",
    "CONFIG_KEY",
    "CONFIG_MOUNT",
    "DEFAULT_DRAIN_TIMEOUT",
    "LABEL_FLOW_NAME",
    "METRICS_PORT",
    "RESERVED_ENV",
    "DeployError",
    "RenderOptions",
    "Rendered",
    "render",
]

LABEL_FLOW_NAME = "flowpipe.io/flow-name"
ANNOTATION_CHECKSUM = "flowpipe.io/flow-config-checksum"
ANNOTATION_PROFILE = "flowpipe.io/resource-profile"
RESERVED_PREFIX = "flowpipe.io/"  # labels and annotations under it are set by flowpipe only

CONFIG_KEY = "flow.yaml"
CONFIG_MOUNT = "/config"
CONFIG_VOLUME = "flow-config"
CONTAINER = "runtime"
METRICS_PORT = 9464
METRICS_PORT_NAME = "metrics"

ENV_METRICS_ADDR = "FLOWPIPE_METRICS_ADDR"
ENV_DRAIN_TIMEOUT = "FLOWPIPE_DRAIN_TIMEOUT"
RESERVED_ENV = frozenset({ENV_METRICS_ADDR, ENV_DRAIN_TIMEOUT})

DEFAULT_DRAIN_TIMEOUT = 30.0  # the runtime's own default (flowpipe run --drain-timeout)
GRACE_MARGIN_SECONDS = 15  # after the drain deadline: close the sinks and exit
EXIT_INVALID = 2  # the runtime's exit code for invalid input: retrying a Job cannot help

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

_PULL_POLICY = {
    ImagePullPolicy.IMAGE_PULL_POLICY_UNSPECIFIED: "IfNotPresent",
    ImagePullPolicy.IMAGE_PULL_POLICY_ALWAYS: "Always",
    ImagePullPolicy.IMAGE_PULL_POLICY_IF_NOT_PRESENT: "IfNotPresent",
    ImagePullPolicy.IMAGE_PULL_POLICY_NEVER: "Never",
}
_CONCURRENCY = {
    CronConcurrencyPolicy.CRON_CONCURRENCY_POLICY_ALLOW: "Allow",
    CronConcurrencyPolicy.CRON_CONCURRENCY_POLICY_FORBID: "Forbid",
    CronConcurrencyPolicy.CRON_CONCURRENCY_POLICY_REPLACE: "Replace",
}


class DeployError(FlowpipeError):
    """The flow cannot be rendered for Kubernetes as it is (the message says what to change)."""


@dataclass(frozen=True)
class RenderOptions:
    """What the command line adds to a flow's own ``kubernetes``/``kubernetes_options`` blocks."""

    image: str | None = None  # overrides kubernetes.image
    namespace: str | None = None  # metadata.namespace of every object; none: kubectl's choice
    name: str | None = None  # the flow's name, and the base of every object's name
    drain_timeout: float | None = None  # default: the flow's env FLOWPIPE_DRAIN_TIMEOUT, else 30 s


@dataclass(frozen=True)
class Rendered:
    """The objects, in apply order (the ConfigMap first), and what the user should know."""

    manifests: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    kind: str = ""  # of the workload: Deployment, DaemonSet, Job or CronJob

    def to_yaml(self) -> str:
        return dump_manifests(self.manifests)


def render(spec: FlowSpec, options: RenderOptions | None = None) -> Rendered:
    """The ConfigMap holding ``spec`` and the workload that runs it. Raises :class:`DeployError`."""
    return _Renderer(spec, options or RenderOptions()).render()


class _Renderer:
    def __init__(self, spec: FlowSpec, options: RenderOptions) -> None:
        self.options = options
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self.name = options.name or spec.name
        self.spec = spec if self.name == spec.name else spec.model_copy(update={"name": self.name})
        self.settings = spec.kubernetes or KubernetesSettings()
        self.k8s = spec.kubernetes_options or KubernetesOptions()

    def render(self) -> Rendered:
        kind = self._kind()
        self._check_name(kind)
        image = self._image()
        flow_text = dump_flow(self.spec.model_dump(mode="json", exclude_defaults=True))
        checksum = hashlib.sha256(flow_text.encode()).hexdigest()
        labels = self._object_labels()
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self._metadata(f"{self.name}-config", labels),
            "data": {CONFIG_KEY: flow_text},
        }
        template = self._pod_template(kind, image, checksum)
        workload = self._workload(kind, template, labels, checksum)
        if self.errors:
            raise DeployError("; ".join(self.errors))
        return Rendered([config_map, workload], self.warnings, kind)

    # -- what and who ---------------------------------------------------------------------------

    def _kind(self) -> str:
        if self.spec.execution.mode == ExecutionMode.EXECUTION_MODE_JOB:
            cron = self.k8s.cron
            return "CronJob" if cron is not None and cron.schedule.strip() else "Job"
        if self.k8s.streaming_workload_kind == StreamingWorkloadKind.STREAMING_WORKLOAD_KIND_DAEMONSET:
            return "DaemonSet"
        return "Deployment"

    def _check_name(self, kind: str) -> None:
        # Object names are DNS labels. A Job's pods carry its name in a label (63 characters at
        # most) and the Job name has a checksum suffix; a CronJob's Jobs get an 11-character suffix.
        limit = 52 if kind in ("Job", "CronJob") else 63
        name = self.name
        namespace = self.options.namespace
        if namespace is not None and not (len(namespace) <= 63 and _DNS_LABEL.fullmatch(namespace)):
            raise DeployError(
                f"'{namespace}' is not a valid namespace (fix: lower-case letters, digits and '-', "
                "at most 63 characters)"
            )
        if len(name) <= limit and _DNS_LABEL.fullmatch(name):
            return
        suggestion = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:limit].strip("-") or "my-flow"
        raise DeployError(
            f"the flow name '{name}' cannot name Kubernetes objects: use lower-case letters, digits "
            f"and '-', starting and ending with a letter or digit, at most {limit} characters for a "
            f"{kind} (fix: pass --name {suggestion}, or change the flow's name)"
        )

    def _image(self) -> str:
        image = (self.options.image or self.settings.image or "").strip()
        if not image:
            raise DeployError(
                "no container image: pass --image IMAGE or set kubernetes.image in the flow "
                "(a flowpipe runtime image, e.g. one built with `make image`)"
            )
        return image

    # -- metadata ---------------------------------------------------------------------------------

    def _metadata(self, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name}
        if self.options.namespace:
            metadata["namespace"] = self.options.namespace
        metadata["labels"] = dict(labels)
        return metadata

    def _object_labels(self) -> dict[str, str]:
        """The flow's ``labels`` (stored only by the original) plus the flow name, on every object.

        Those labels were free-form text, so one that Kubernetes would reject is left out with a
        warning rather than failing the flow.
        """
        labels = self._user_map(self.spec.labels, "labels", labels=True, lenient=True)
        return {**labels, "app.kubernetes.io/part-of": "flow-pipe", LABEL_FLOW_NAME: self.name}

    def _user_map(
        self, values: Mapping[str, str], where: str, *, labels: bool, lenient: bool = False
    ) -> dict[str, str]:
        """``values`` without the reserved keys (a warning each); a malformed key or value is an
        error, or with ``lenient`` a warning."""
        kept: dict[str, str] = {}
        for key, value in sorted(values.items()):
            problem = ""
            if key.startswith(RESERVED_PREFIX):
                self.warnings.append(f"{where}: '{key}' is reserved for flowpipe and was left out")
                continue
            if not _valid_key(key):
                problem = (
                    f"{where}: '{key}' is not a valid Kubernetes key (fix: [prefix/]name, the name at "
                    "most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
                )
            elif labels and value and not (len(value) <= 63 and _LABEL_NAME.fullmatch(value)):
                problem = (
                    f"{where}: the value of '{key}' is not a valid label value (fix: at most 63 letters, "
                    "digits, '-', '_' or '.', starting and ending with a letter or digit)"
                )
            if not problem:
                kept[key] = value
            elif lenient:
                self.warnings.append(problem.replace(" (fix:", ", so it was left out (fix:", 1))
            else:
                self.errors.append(problem)
        return kept

    # -- the pod ----------------------------------------------------------------------------------

    def _pod_template(self, kind: str, image: str, checksum: str) -> dict[str, Any]:
        labels = {
            **self._user_map(self.k8s.pod_labels, "pod_labels", labels=True),
            LABEL_FLOW_NAME: self.name,
        }
        annotations = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(METRICS_PORT),
            "prometheus.io/path": "/metrics",
            **self._user_map(self.k8s.pod_annotations, "pod_annotations", labels=False),
            ANNOTATION_CHECKSUM: checksum,
        }
        resources = self.settings.resources
        if resources is not None and resources.profile:
            annotations[ANNOTATION_PROFILE] = resources.profile

        drain = self._drain_timeout()
        pod: dict[str, Any] = {}
        if self.k8s.service_account_name:
            pod["serviceAccountName"] = self.k8s.service_account_name
        else:
            pod["automountServiceAccountToken"] = False  # the runtime never calls the API server
        secrets = [{"name": name} for name in self.k8s.image_pull_secrets if name.strip()]
        if secrets:
            pod["imagePullSecrets"] = secrets
        if self.k8s.runtime_class_name:
            pod["runtimeClassName"] = self.k8s.runtime_class_name
        pod["restartPolicy"] = self._restart_policy(kind)
        pod["terminationGracePeriodSeconds"] = math.ceil(drain) + GRACE_MARGIN_SECONDS
        pod["enableServiceLinks"] = False
        pod["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        pod["containers"] = [self._container(kind, image, drain)]
        pod["volumes"] = [
            {"name": CONFIG_VOLUME, "configMap": {"name": f"{self.name}-config"}},
            {"name": "tmp", "emptyDir": {}},
        ]
        return {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}

    def _container(self, kind: str, image: str, drain: float) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": CONTAINER,
            "image": image,
            "imagePullPolicy": _PULL_POLICY[self.settings.image_pull_policy],
            "args": [f"{CONFIG_MOUNT}/{CONFIG_KEY}"],
            "env": self._env(drain),
            "ports": [{"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"}],
        }
        resources = self._resources()
        if resources:
            container["resources"] = resources
        container["startupProbe"] = _probe("/healthz", period=2, failures=30)
        container["livenessProbe"] = _probe("/healthz", period=10, failures=3)
        if kind in ("Deployment", "DaemonSet"):  # a Job's readiness gates nothing
            container["readinessProbe"] = _probe("/readyz", period=5, failures=3)
        container["volumeMounts"] = [
            {"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ]
        capabilities: dict[str, list[str]] = {"drop": ["ALL"]}
        if any(stage.realtime_priority is not None for stage in self.spec.stages):
            capabilities["add"] = ["SYS_NICE"]  # SCHED_FIFO for stages with realtime_priority
        container["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": capabilities,
        }
        return container

    def _env(self, drain: float) -> list[dict[str, str]]:
        env = [
            {"name": ENV_METRICS_ADDR, "value": f"0.0.0.0:{METRICS_PORT}"},  # the probes' port
            {"name": ENV_DRAIN_TIMEOUT, "value": _seconds(drain)},  # what the grace period allows for
        ]
        for name, value in sorted(self.spec.env.items()):
            if name in RESERVED_ENV:
                if name != ENV_DRAIN_TIMEOUT:  # that one sets the drain deadline: see _drain_timeout
                    self.warnings.append(f"env: {name} is set by flowpipe (probes and ports depend on it)")
                continue
            env.append({"name": name, "value": value})
        return env

    def _drain_timeout(self) -> float:
        if self.options.drain_timeout is not None:
            return self.options.drain_timeout
        text = self.spec.env.get(ENV_DRAIN_TIMEOUT)
        if text is None:
            return DEFAULT_DRAIN_TIMEOUT
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not math.isfinite(value) or value < 0:
            raise DeployError(
                f"env: {ENV_DRAIN_TIMEOUT} must be a number of seconds, got '{text}' "
                "(fix: write e.g. '30', or pass --drain-timeout)"
            )
        return value

    def _restart_policy(self, kind: str) -> str:
        policy = self.settings.restart_policy
        if kind in ("Deployment", "DaemonSet"):
            if policy in (RestartPolicy.RESTART_POLICY_ON_FAILURE, RestartPolicy.RESTART_POLICY_NEVER):
                self.warnings.append(
                    f"kubernetes.restart_policy {policy.name} does not apply to a {kind}, whose pods "
                    "always restart; run the flow with execution.mode: job to run it once"
                )
            return "Always"
        if policy == RestartPolicy.RESTART_POLICY_ALWAYS:
            raise DeployError(
                "kubernetes.restart_policy RESTART_POLICY_ALWAYS is not allowed for a job flow "
                "(fix: use RESTART_POLICY_ON_FAILURE or RESTART_POLICY_NEVER, or remove it for Never)"
            )
        return "OnFailure" if policy == RestartPolicy.RESTART_POLICY_ON_FAILURE else "Never"

    def _resources(self) -> dict[str, dict[str, str]]:
        resources = self.settings.resources
        cpu = resources.cpu_cores if resources is not None else None
        memory_mb = resources.memory_mb if resources is not None else None
        requests: dict[str, str] = {}
        if cpu:
            requests["cpu"] = str(cpu)
        if memory_mb:
            requests["memory"] = f"{memory_mb}M"  # MB: 10^6 bytes, as the original
        limits: dict[str, str] = {}
        if memory_mb:
            limits["memory"] = requests["memory"]  # memory is not compressible: no overcommit
        pinned = any(cpus.cpu for cpus in self.settings.cpu_pinning.values())
        if pinned:
            if cpu and memory_mb:
                limits["cpu"] = requests["cpu"]  # Guaranteed QoS: the static CPU manager's condition
            else:
                self.warnings.append(
                    "kubernetes.cpu_pinning: without both resources.cpu_cores and resources.memory_mb "
                    "the pod is not Guaranteed, so the kubelet gives it no exclusive CPUs to pin to"
                )
        # No CPU limit otherwise: a limit throttles a busy flow even when the node is idle.
        return {key: value for key, value in (("requests", requests), ("limits", limits)) if value}

    # -- the workload -----------------------------------------------------------------------------

    def _workload(
        self, kind: str, template: dict[str, Any], labels: Mapping[str, str], checksum: str
    ) -> dict[str, Any]:
        selector = {"matchLabels": {LABEL_FLOW_NAME: self.name}}
        if kind == "Deployment":
            spec: dict[str, Any] = {"replicas": 1, "selector": selector, "template": template}
            return _object("apps/v1", kind, self._metadata(f"{self.name}-runtime", labels), spec)
        if kind == "DaemonSet":
            spec = {"selector": selector, "template": template}
            return _object("apps/v1", kind, self._metadata(f"{self.name}-runtime", labels), spec)
        job = self._job_spec(template)
        if kind == "Job":
            return _object("batch/v1", kind, self._metadata(f"{self.name}-{checksum[:8]}", labels), job)
        cron = self.k8s.cron
        assert cron is not None
        spec = {"schedule": cron.schedule.strip(), **self._cron_fields(cron)}
        spec["jobTemplate"] = {"metadata": {"labels": dict(labels)}, "spec": job}
        return _object("batch/v1", kind, self._metadata(self.name, labels), spec)

    def _job_spec(self, template: dict[str, Any]) -> dict[str, Any]:
        job: dict[str, Any] = {}
        if template["spec"]["restartPolicy"] == "Never":
            # Invalid input (exit 2) fails the same way on every retry: fail the Job at once.
            job["podFailurePolicy"] = {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [EXIT_INVALID],
                        },
                        "onPodConditions": [],  # required by the API schema up to Kubernetes 1.28
                    }
                ]
            }
        job["template"] = template
        return job

    def _cron_fields(self, cron: KubernetesCronOptions) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if cron.time_zone:
            fields["timeZone"] = cron.time_zone
        if cron.suspend is not None:
            fields["suspend"] = cron.suspend
        for key, value in (
            ("startingDeadlineSeconds", cron.starting_deadline_seconds),
            ("successfulJobsHistoryLimit", cron.successful_jobs_history_limit),
            ("failedJobsHistoryLimit", cron.failed_jobs_history_limit),
        ):
            if value is not None:
                if value < 0:
                    self.errors.append(f"kubernetes_options.cron: {key} must be ≥ 0, got {value}")
                fields[key] = value
        if cron.concurrency_policy in _CONCURRENCY:
            fields["concurrencyPolicy"] = _CONCURRENCY[cron.concurrency_policy]
        return fields


def _object(api_version: str, kind: str, metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec}


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": METRICS_PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _valid_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and not (len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return len(name) <= 63 and bool(_LABEL_NAME.fullmatch(name))
