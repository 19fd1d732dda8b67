"""Session fixtures: podman, and the flowpipe images built from the root Dockerfile (cached).

Without podman or mmdebstrap the container tests are skipped, except under CI=true, where
they fail: CI must build and run the image.
"""

from __future__ import annotations

import time

import pytest

from .container_support import Images, Podman, flowpipe_images, make_podman


@pytest.fixture(scope="session")
def podman() -> Podman:
    return make_podman()


@pytest.fixture(scope="session")
def images(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Images:
    started = time.monotonic()
    built = flowpipe_images(podman, tmp_path_factory.mktemp("image-build"))
    print(f"\nflowpipe images ready in {time.monotonic() - started:.0f} s: {built.runtime}, {built.dev}")
    return built
