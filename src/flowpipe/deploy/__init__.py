"""Deploying flows: the Kubernetes objects that run a flow in the flowpipe runtime image::

    rendered = render(spec, RenderOptions(image="registry.example/flowpipe-runtime:0.1.0"))
    print(rendered.to_yaml())  # ConfigMap + Deployment / DaemonSet / Job / CronJob

``flowpipe k8s render FLOW`` is the command-line form.
"""

from ._render import (
    ANNOTATION_CHECKSUM,
    CONFIG_KEY,
    CONFIG_MOUNT,
    LABEL_FLOW_NAME,
    METRICS_PORT,
    RESERVED_ENV,
    DeployError,
    Rendered,
    RenderOptions,
    render,
)
from ._yaml import dump_flow, dump_manifests

__all__ = [
    "ANNOTATION_CHECKSUM",
    "CONFIG_KEY",
    "CONFIG_MOUNT",
    "LABEL_FLOW_NAME",
    "METRICS_PORT",
    "RESERVED_ENV",
    "DeployError",
    "RenderOptions",
    "Rendered",
    "dump_flow",
    "dump_manifests",
    "render",
]
