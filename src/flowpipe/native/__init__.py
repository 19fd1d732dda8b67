"""Native stage plugins: C ABI libraries ``libstage_<type>.so`` loaded as ordinary stages,
and the C/C++ SDK (headers, CMake package) to build them. See docs/native-plugins.md."""

from ._loader import NativeConfig, NativeStageError, load_stage_library
from ._sdk import SdkPaths, sdk_paths

__all__ = ["NativeConfig", "NativeStageError", "SdkPaths", "load_stage_library", "sdk_paths"]
