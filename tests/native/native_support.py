"""Helpers of the native tests: building plugins with cmake, locating and loading them."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import unavailable

from flowpipe import Stage, StageContext
from flowpipe.native import load_stage_library

HERE = Path(__file__).resolve().parent


def require_toolchain() -> None:
    missing = [tool for tool in ("cmake", "cc", "c++") if shutil.which(tool) is None]
    if missing:
        unavailable(f"native tests need {', '.join(missing)} on PATH")


def cmake_build(source: Path, build: Path, *options: str) -> subprocess.CompletedProcess[str]:
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = subprocess.run(
        ["cmake", "-S", str(source), "-B", str(build), *generator, *options],
        capture_output=True,
        text=True,
        check=False,
    )
    if configure.returncode != 0:
        return configure
    return subprocess.run(
        ["cmake", "--build", str(build), "--parallel", str(os.cpu_count() or 2)],
        capture_output=True,
        text=True,
        check=False,
    )


@dataclass(frozen=True)
class Plugins:
    """Where the built libraries are."""

    build: Path

    def path(self, type_name: str) -> Path:
        found = sorted(self.build.rglob(f"libstage_{type_name}.so"))
        assert found, f"libstage_{type_name}.so was not built"
        return found[0]

    def dir(self, type_name: str) -> Path:
        return self.path(type_name).parent

    @property
    def plugin_path(self) -> str:
        """FLOW_PIPE_PLUGIN_PATH covering every built stage."""
        dirs = sorted({p.parent for p in self.build.rglob("libstage_*.so")})
        return os.pathsep.join(map(str, dirs))

    def load(self, type_name: str) -> type[Stage[Any]]:
        return load_stage_library(self.path(type_name), type_name)


def make_context(stage_type: str, stage_name: str = "", logger: logging.Logger | None = None) -> StageContext:
    return StageContext(
        flow_name="test", stage_name=stage_name or stage_type, stage_type=stage_type, logger=logger
    )
