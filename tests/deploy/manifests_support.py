"""Flows covering every shape `flowpipe k8s render` produces, and a strict schema check."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import yaml

from flowpipe.deploy import Rendered, RenderOptions, render
from flowpipe.spec import parse_flow_text

# The oldest and the newest Kubernetes versions whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())

PIPELINE: dict[str, Any] = {
    "queues": [{"name": "q", "capacity": 64}],
    "stages": [
        {"name": "src", "type": "noop_source", "output_queue": "q", "config": {"max_messages": 3}},
        {"name": "out", "type": "stdout_sink", "input_queue": "q"},
    ],
}

FULL_SETTINGS: dict[str, Any] = {
    "labels": {"team": "data", "tier": "backend"},
    "env": {"ZETA": "last", "ALPHA": "first", "PORT": "8080"},
    "kubernetes": {
        "image": "registry.example/flowpipe-runtime:1.2.3",
        "image_pull_policy": "IMAGE_PULL_POLICY_ALWAYS",
        "cpu_pinning": {"src": {"cpu": [0]}},
        "resources": {"cpu_cores": 2, "memory_mb": 512, "profile": "small"},
    },
    "kubernetes_options": {
        "pod_labels": {"app": "orders", "flowpipe.io/flow-name": "hijack"},
        "pod_annotations": {"example.com/owner": "data-team", "flowpipe.io/flow-config-checksum": "x"},
        "service_account_name": "flowpipe-runtime",
        "image_pull_secrets": ["regcred", ""],
        "runtime_class_name": "gvisor",
    },
}

CRON: dict[str, Any] = {
    "schedule": "*/5 * * * *",
    "time_zone": "Europe/Berlin",
    "suspend": False,
    "starting_deadline_seconds": 120,
    "concurrency_policy": "CRON_CONCURRENCY_POLICY_FORBID",
    "successful_jobs_history_limit": 2,
    "failed_jobs_history_limit": 1,
}


def flow(name: str, mode: str | None, *, full: bool = False, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name}
    if mode is not None:
        data["execution"] = {"mode": mode}
    data.update(PIPELINE)
    if full:
        data.update(yaml.safe_load(yaml.safe_dump(FULL_SETTINGS)))  # a deep copy
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def _combinations() -> dict[str, dict[str, Any]]:
    cases: dict[str, dict[str, Any]] = {}
    for full in (False, True):
        suffix = "-full" if full else ""
        cases[f"deployment{suffix}"] = flow(f"stream{suffix}", "EXECUTION_MODE_STREAMING", full=full)
        cases[f"deployment-no-execution{suffix}"] = flow(f"plain{suffix}", None, full=full)
        cases[f"deployment-unspecified{suffix}"] = flow(
            f"unspec{suffix}", "EXECUTION_MODE_UNSPECIFIED", full=full
        )
        cases[f"daemonset{suffix}"] = flow(
            f"daemon{suffix}",
            "streaming",
            full=full,
            kubernetes_options={"streaming_workload_kind": "STREAMING_WORKLOAD_KIND_DAEMONSET"},
        )
        cases[f"job{suffix}"] = flow(f"batch{suffix}", "job", full=full)
        cases[f"job-on-failure{suffix}"] = flow(
            f"retry{suffix}", "job", full=full, kubernetes={"restart_policy": "RESTART_POLICY_ON_FAILURE"}
        )
        cases[f"cronjob{suffix}"] = flow(
            f"nightly{suffix}", "job", full=full, kubernetes_options={"cron": CRON}
        )
        cases[f"cronjob-minimal{suffix}"] = flow(
            f"hourly{suffix}", "job", full=full, kubernetes_options={"cron": {"schedule": "@hourly"}}
        )
    return cases


COMBINATIONS = _combinations()


def render_data(data: dict[str, Any], **options: Any) -> Rendered:
    parsed = parse_flow_text(yaml.safe_dump(data, sort_keys=False), f"{data.get('name', 'flow')}.yaml")
    spec = parsed.raise_for_problems()
    has_image = bool(data.get("kubernetes", {}).get("image"))
    options.setdefault("image", None if has_image else "flowpipe-runtime:latest")
    return render(spec, RenderOptions(**options))


def validate_strictly(manifest: dict[str, Any]) -> None:
    """Raises kubernetes_validate.ValidationError when ``manifest`` breaks a schema."""
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)
