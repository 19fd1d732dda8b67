"""Builds the examples and the test plugins once per session, with cmake and the C/C++ compiler.

Without cmake or a compiler the native tests are skipped, except under CI=true, where they
fail: CI must have the toolchain.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import unavailable

from flowpipe import Stage
from flowpipe.native import sdk_paths

from .native_support import HERE, Plugins, cmake_build, make_context, require_toolchain


@pytest.fixture(scope="session")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Plugins:
    require_toolchain()
    build = tmp_path_factory.mktemp("native-build")
    result = cmake_build(HERE / "plugins", build, f"-Dflowpipe_DIR={sdk_paths().cmake_dir}")
    assert result.returncode == 0, f"building the test plugins failed:\n{result.stdout}\n{result.stderr}"
    return Plugins(build)


@pytest.fixture(scope="session")
def protobuf_plugins(tmp_path_factory: pytest.TempPathFactory) -> Plugins:
    """The stage configured through google::protobuf::Struct; skipped without protobuf."""
    require_toolchain()
    build = tmp_path_factory.mktemp("native-protobuf-build")
    # Found through CMAKE_PREFIX_PATH here, the other way find_package(flowpipe) works.
    result = cmake_build(HERE / "plugins_protobuf", build, f"-DCMAKE_PREFIX_PATH={sdk_paths().cmake_dir}")
    if result.returncode != 0 and "Could NOT find Protobuf" in result.stderr + result.stdout:
        unavailable("protobuf (libprotobuf-dev) is not installed: make test-deps installs it")
    assert result.returncode == 0, f"building the protobuf plugin failed:\n{result.stdout}\n{result.stderr}"
    return Plugins(build)


@pytest.fixture
def opened(plugins: Plugins) -> Iterator[Any]:
    """opened(type_name, config) -> an opened stage instance, closed after the test."""
    stages: list[Stage[Any]] = []

    def open_stage(type_name: str, config: dict[str, Any] | None = None, **context: Any) -> Any:
        cls = plugins.load(type_name)
        stage = cls(cls.config_model.model_validate(config or {}), make_context(type_name, **context))
        stage.open()
        stages.append(stage)
        return stage

    yield open_stage
    for stage in stages:
        stage.close()
