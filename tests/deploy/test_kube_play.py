"""A rendered Deployment run by `podman kube play`: the pod runs the flow from its ConfigMap."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .container_support import Images, Podman, free_port, serves_health, wait_for

pytestmark = pytest.mark.slow

FLOWPIPE = Path(sys.executable).parent / "flowpipe"

FLOW = """\
name: {name}
execution: {{mode: streaming}}
stages:
  - {{name: src, type: noop_source, output_queue: q, config: {{message: from a pod, delay_ms: 50}}}}
  - {{name: out, type: uppercase_transform, input_queue: q, output_queue: r}}
  - {{name: sink, type: stdout_sink, input_queue: r}}
queues:
  - {{name: q}}
  - {{name: r}}
env: {{GREETING: hello}}
"""


def for_podman(documents: list[dict[str, Any]], port: int) -> list[dict[str, Any]]:
    """What podman's kube play cannot take as rendered: with host networking it refuses container
    ports (it maps them), and the metrics port moves to a free loopback port."""
    for doc in documents:
        if doc["kind"] != "Deployment":
            continue
        container = doc["spec"]["template"]["spec"]["containers"][0]
        del container["ports"]
        for env in container["env"]:
            if env["name"] == "FLOWPIPE_METRICS_ADDR":
                env["value"] = f"127.0.0.1:{port}"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            container[probe]["httpGet"]["port"] = port
    return documents


def test_rendered_deployment_runs_the_flow_in_a_pod(podman: Podman, images: Images, tmp_path: Path) -> None:
    name = f"kube-play-{secrets.token_hex(3)}"
    flow = tmp_path / f"{name}.yaml"
    flow.write_text(FLOW.format(name=name))
    rendered = subprocess.run(
        [str(FLOWPIPE), "k8s", "render", str(flow), "--image", images.runtime, "--drain-timeout", "10"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    port = free_port()
    kube = tmp_path / "kube.yaml"
    kube.write_text(yaml.safe_dump_all(for_podman(list(yaml.safe_load_all(rendered.stdout)), port)))

    played = podman("kube", "play", "--network", "host", kube, timeout=180)
    try:
        assert played.returncode == 0, played.stdout + played.stderr
        pods = podman("pod", "ps", "--format", "{{.Name}}", check=True).stdout.split()
        pod = next(p for p in pods if p.startswith(f"{name}-runtime-pod"))  # "-pod-0" in podman 4.3
        listed = podman("ps", "-a", "--filter", f"pod={pod}", "--format", "{{.Names}}", check=True)
        container = next(n for n in listed.stdout.split() if n.endswith("-runtime"))

        wait_for(lambda: "FROM A POD #5" in podman("logs", container).stdout, 60, "the flow's output")
        inspected = podman(
            "inspect", container, "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}"
        )
        assert inspected.stdout.split() == ["10001:10001", "true"]
        env = podman("exec", container, "sh", "-c", "echo $GREETING $FLOWPIPE_DRAIN_TIMEOUT", check=True)
        assert env.stdout.split() == ["hello", "10"]
        # The probes' endpoints, as the kubelet would call them.
        wait_for(lambda: serves_health(port), 30, "/healthz, /readyz and /metrics")

        stopped = podman("pod", "stop", "-t", "20", pod, timeout=60)  # SIGTERM: drain, exit 0
        assert stopped.returncode == 0, stopped.stderr
        code = podman("inspect", container, "--format", "{{.State.ExitCode}}", check=True)
        assert code.stdout.strip() == "0", podman("logs", container).stderr
    finally:
        podman("kube", "down", kube, timeout=120)
        podman("volume", "rm", "-f", f"{name}-config")
    remaining = podman("pod", "ps", "--format", "{{.Name}}", check=True).stdout.split()
    assert not [p for p in remaining if p.startswith(name)]
