"""Strict schema validation with the `kubernetes-validate` command, and the kustomize tree in deploy/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowpipe.deploy import RenderOptions, render
from flowpipe.spec import parse_flow

from .manifests_support import COMBINATIONS, K8S_VERSIONS, render_data, validate_strictly

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"


def test_kubernetes_validate_strict_accepts_every_rendered_combination(tmp_path: Path) -> None:
    """The command the issue names, on one file holding every combination."""
    stream = tmp_path / "all.yaml"
    stream.write_text("".join(render_data(data).to_yaml() for _, data in sorted(COMBINATIONS.items())))
    for version in K8S_VERSIONS:
        proc = subprocess.run(
            [str(KUBERNETES_VALIDATE), "--strict", "--quiet", "-k", version, str(stream)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list(yaml.safe_load_all(stream.read_text()))) == 2 * len(COMBINATIONS)


# -- deploy/: a kustomize base and an example overlay ------------------------------------------------


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """The part of `kustomize build` deploy/ uses: resources, namespace, labels, images."""
    kustomization = load_documents(directory / "kustomization.yaml")[0]
    assert kustomization["kind"] == "Kustomization"
    assert set(kustomization) <= {"apiVersion", "kind", "namespace", "labels", "resources", "images"}, (
        "deploy/ uses a kustomize feature this test does not model"
    )
    objects: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = directory / resource
        assert path.exists(), f"{directory / 'kustomization.yaml'}: {resource} does not exist"
        objects += kustomize_build(path) if path.is_dir() else load_documents(path)
    namespace = kustomization.get("namespace")
    for obj in objects:
        if namespace and obj["kind"] != "Namespace":
            obj["metadata"]["namespace"] = namespace
        for labels in kustomization.get("labels", []):
            obj["metadata"].setdefault("labels", {}).update(labels["pairs"])
        for image in kustomization.get("images", []):
            for container in _containers(obj):
                repository, _, tag = container["image"].rpartition(":")
                if repository == image["name"]:
                    container["image"] = f"{image.get('newName', repository)}:{image.get('newTag', tag)}"
    return objects


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    containers: list[dict[str, Any]] = spec.get("template", {}).get("spec", {}).get("containers", [])
    return containers


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_deploy_manifest_validates_strictly(path: Path) -> None:
    for doc in load_documents(path):
        if doc.get("kind") == "Kustomization":
            continue
        if "apiVersion" not in doc:  # a flow file
            assert parse_flow(path).ok, f"{path} is neither a manifest nor a valid flow"
            continue
        validate_strictly(doc)


@pytest.mark.parametrize("overlay", ["base", "overlays/example"])
def test_kustomizations_build_to_valid_consistent_objects(overlay: str) -> None:
    objects = kustomize_build(DEPLOY / overlay)
    for obj in objects:
        validate_strictly(obj)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    assert by_kind["Namespace"].keys() == {"flow-pipe"}
    assert all(
        obj["metadata"].get("namespace") == "flow-pipe" for obj in objects if obj["kind"] != "Namespace"
    )
    binding = by_kind["RoleBinding"]["flowpipe-operator"]
    assert binding["roleRef"]["name"] in by_kind["Role"]
    for subject in binding["subjects"]:
        assert subject["name"] in by_kind["ServiceAccount"]
        assert subject["namespace"] == "flow-pipe"
    for obj in objects:
        containers = _containers(obj)
        if containers:
            pod = obj["spec"]["template"]["spec"]
            assert pod.get("serviceAccountName", "default") in by_kind["ServiceAccount"]
            assert containers[0]["image"] == "registry.example.com/flowpipe/flowpipe-runtime:0.1.0"


def test_operator_role_covers_every_rendered_kind() -> None:
    """The original's Helm chart forgot cronjobs; every kind render produces must be allowed."""
    role = next(d for d in load_documents(DEPLOY / "base/rbac.yaml") if d["kind"] == "Role")
    allowed = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    manage = {"get", "list", "watch", "create", "update", "patch", "delete"}
    rendered_kinds = {m["kind"] for data in COMBINATIONS.values() for m in render_data(data).manifests}
    assert rendered_kinds == {"ConfigMap", "Deployment", "DaemonSet", "Job", "CronJob"}
    plural = {
        "ConfigMap": ("", "configmaps"),
        "Deployment": ("apps", "deployments"),
        "DaemonSet": ("apps", "daemonsets"),
        "Job": ("batch", "jobs"),
        "CronJob": ("batch", "cronjobs"),
    }
    for kind in rendered_kinds:
        assert manage <= allowed.get(plural[kind], set()), f"the operator Role cannot manage {kind}"
    assert manage <= allowed[("coordination.k8s.io", "leases")]
    assert {"get", "list", "watch"} <= allowed[("", "pods")]


def test_example_overlay_holds_the_current_rendering_of_its_flow() -> None:
    flow = DEPLOY / "overlays/example/flow.yaml"
    expected = render(parse_flow(flow).raise_for_problems(), RenderOptions()).to_yaml()
    assert (DEPLOY / "overlays/example/hello-stream.yaml").read_text() == expected, (
        "regenerate: flowpipe k8s render deploy/overlays/example/flow.yaml "
        "-o deploy/overlays/example/hello-stream.yaml"
    )
