"""flowpipe: a Python runtime for streaming and run-to-completion data flows.

This module is the public stage SDK (defined in :mod:`flowpipe.sdk`); the rest of the package
is the runtime behind it. Test doubles for plugin authors live in :mod:`flowpipe.testing`.
"""

from . import sdk as _sdk
from .sdk import *  # noqa: F403 - the SDK's __all__ is this package's public surface

__all__ = [*_sdk.__all__, "__version__"]  # noqa: F405 - __version__ comes from __getattr__


def __getattr__(name: str) -> str:
    # Looked up on demand: importing importlib.metadata costs start-up time of every run.
    if name == "__version__":
        from importlib.metadata import version

        return version("flow-pipe")
    raise AttributeError(f"module 'flowpipe' has no attribute {name!r}")
