"""Stage plugin discovery: built-ins, entry points, plugin directories and native libraries."""

from ._discovery import (
    DEFAULT_PLUGIN_DIR,
    ENTRY_POINT_GROUP,
    PLUGIN_PATH_ENV,
    build_registry,
    plugin_dirs,
    resolve,
)
from ._registry import Candidate, StageInfo, StageRegistry, check_stage_class

__all__ = [
    "DEFAULT_PLUGIN_DIR",
    "ENTRY_POINT_GROUP",
    "PLUGIN_PATH_ENV",
    "Candidate",
    "StageInfo",
    "StageRegistry",
    "build_registry",
    "check_stage_class",
    "plugin_dirs",
    "resolve",
]
