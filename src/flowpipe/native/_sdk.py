"""Where the C/C++ stage SDK is installed: it ships inside this package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SdkPaths", "sdk_paths"]


@dataclass(frozen=True)
class SdkPaths:
    include_dir: Path  # holds flowpipe/stage.h, flowpipe/stage_abi.h, ...
    cmake_dir: Path  # holds flowpipeConfig.cmake: pass as -Dflowpipe_DIR=... or in CMAKE_PREFIX_PATH
    support_source: Path  # the C++ support code flowpipe::flowpipe_runtime compiles into plugins


def sdk_paths() -> SdkPaths:
    root = Path(__file__).resolve().parent
    return SdkPaths(
        include_dir=root / "include",
        cmake_dir=root / "cmake",
        support_source=root / "sdk" / "flowpipe_runtime.cc",
    )
