"""Where stage plugins come from, each turned into registry candidates.

- installed packages: entry points of the group ``flowpipe.stages`` (flowpipe's built-ins too);
- plugin directories (``FLOW_PIPE_PLUGIN_PATH``, default ``/opt/flow-pipe/plugins``) holding
  ``stage_<type>.py`` files and native ``libstage_<type>.so`` libraries;
- a stage's ``plugin:`` field: a file path or ``package.module:Class``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from ..sdk import PluginError, Stage
from ._registry import Candidate, StageClass, StageInfo, StageRegistry, check_stage_class, load_candidate

__all__ = [
    "DEFAULT_PLUGIN_DIR",
    "ENTRY_POINT_GROUP",
    "PLUGIN_PATH_ENV",
    "build_registry",
    "plugin_dirs",
    "resolve",
]

ENTRY_POINT_GROUP = "flowpipe.stages"
PLUGIN_PATH_ENV = "FLOW_PIPE_PLUGIN_PATH"
DEFAULT_PLUGIN_DIR = "/opt/flow-pipe/plugins"
_OWN_DISTRIBUTION = "flow-pipe"


def plugin_dirs(extra: Sequence[str | os.PathLike[str]] = ()) -> list[Path]:
    """``extra`` (from ``--plugin-path``) then ``FLOW_PIPE_PLUGIN_PATH`` (or its default)."""
    env = os.environ.get(PLUGIN_PATH_ENV)
    configured = env.split(os.pathsep) if env is not None else [DEFAULT_PLUGIN_DIR]
    dirs: list[Path] = []
    for entry in [*(os.fspath(e) for e in extra), *configured]:
        for part in entry.split(os.pathsep):
            if part and Path(part) not in dirs:
                dirs.append(Path(part))
    return dirs


def build_registry(
    extra_dirs: Sequence[str | os.PathLike[str]] = (),
    stages: Mapping[str, StageClass] | None = None,
) -> StageRegistry:
    """A registry of every stage type that can be found, in precedence order.

    ``stages`` (type name → class) come first: the embedding program's own stage types.
    """
    dirs = plugin_dirs(extra_dirs)
    registry = StageRegistry(plugin_dirs=dirs)
    if stages:
        registry.add(
            Candidate(name, f"given: {cls.__qualname__}", partial(_given, cls))
            for name, cls in stages.items()
        )
    shown = ", ".join(str(d) + ("" if d.is_dir() else " (missing)") for d in dirs) or "none"
    registry.searched.append(f"plugin directories: {shown}")
    registry.add(_directory_candidates(dirs))
    registry.searched.append(f"entry points '{ENTRY_POINT_GROUP}' of installed packages")
    registry.add(_entry_point_candidates())
    return registry


def resolve(registry: StageRegistry, type_name: str, plugin: str | None, base_dir: Path) -> StageInfo:
    """The stage type a flow's stage names: its ``plugin:`` when given, else by ``type``.

    ``plugin`` is ``package.module:Class``, an absolute path, a path relative to the flow
    file's directory (when it contains ``/``), or a bare file name looked up in the plugin
    directories and then beside the flow file; ``libstage_<type>.so`` means the type.
    """
    # flow-pipe's default file for the type (libstage_<type>.so) is the type itself: its
    # built-in, or that file in a plugin directory, as the registry finds it.
    if not plugin or plugin == f"libstage_{type_name}.so":
        return registry.get(type_name)
    return load_candidate(_plugin_field_candidate(plugin, type_name, base_dir, registry.plugin_dirs))


# Plugin files by name pattern; within one directory the earlier pattern wins.
def _native_loader(path: Path, type_name: str) -> StageClass:
    from ..native import load_stage_library  # imported only when a native plugin is used

    return load_stage_library(path, type_name)


def _python_file_loader(path: Path, type_name: str) -> StageClass:
    # Unique per file within this process; hashlib would cost start-up time.
    module_name = f"flowpipe_plugin_{type_name}_{hash(str(path)) & 0xFFFFFFFF:x}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: not a loadable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return _stage_class_in(module, str(path))


_FILE_PATTERNS: list[tuple[str, str, Callable[[Path, str], StageClass]]] = [
    ("stage_", ".py", _python_file_loader),
    ("libstage_", ".so", _native_loader),
]


def _stage_class_in(module: ModuleType, origin: str) -> StageClass:
    """The module's ``STAGE`` attribute, else the one concrete stage class it defines."""
    if hasattr(module, "STAGE"):
        return check_stage_class(module.STAGE, origin)
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Stage)
        and obj.__module__ == module.__name__
        and hasattr(obj, "kind")
    ]
    if len(found) != 1:
        names = ", ".join(c.__qualname__ for c in found) or "none"
        raise PluginError(
            f"{origin}: expected exactly one stage class, found {names} (fix: set STAGE = YourStage)"
        )
    return check_stage_class(found[0], origin)


def _directory_candidates(dirs: Sequence[Path]) -> Iterator[Candidate]:
    for directory in dirs:
        if not directory.is_dir():
            continue
        for prefix, suffix, loader in _FILE_PATTERNS:
            for path in sorted(directory.glob(f"{prefix}*{suffix}")):
                type_name = path.name[len(prefix) : -len(suffix)]
                yield Candidate(type_name, str(path), partial(loader, path, type_name))


def _entry_point_candidates() -> list[Candidate]:
    candidates: list[tuple[bool, str, Candidate]] = []
    # Reading a distribution's name parses its metadata file: once per distribution, not per entry point.
    names: dict[int, tuple[str, str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        if dist is not None and id(dist) not in names:
            names[id(dist)] = (dist.name, dist.version)
        name, version = names[id(dist)] if dist is not None else ("", "")
        builtin = name == _OWN_DISTRIBUTION
        if builtin:
            origin = "built-in"
        elif name:
            origin = f"package {name} {version} ({ep.value})"
        else:
            origin = f"entry point {ep.value}"
        candidates.append((builtin, origin, Candidate(ep.name, origin, partial(_load_entry_point, ep.value))))
    candidates.sort(key=lambda c: (c[0], c[1]))  # third-party before built-in, then by name
    return [c for _, _, c in candidates]


def _given(cls: StageClass) -> StageClass:
    return cls


def _load_entry_point(value: str) -> StageClass:
    return check_stage_class(_import_object(value), value)


def _import_object(value: str) -> object:
    module_name, _, attr = value.partition(":")
    obj: object = importlib.import_module(module_name.strip())
    for part in attr.strip().split("."):
        obj = getattr(obj, part)
    return obj


def _plugin_field_candidate(plugin: str, type_name: str, base_dir: Path, dirs: Sequence[Path]) -> Candidate:
    origin = f"plugin: {plugin}"
    if ":" in plugin and "/" not in plugin and not plugin.endswith((".py", ".so")):
        return Candidate(type_name, origin, partial(_load_entry_point, plugin))
    path = _find_plugin_file(plugin, base_dir, dirs)
    for _prefix, suffix, loader in _FILE_PATTERNS:
        if path.name.endswith(suffix) or f"{suffix}." in path.name:
            return Candidate(type_name, str(path), partial(loader, path, type_name))
    raise PluginError(f"{origin}: expected a .py or .so file, or package.module:Class")


def _find_plugin_file(plugin: str, base_dir: Path, dirs: Sequence[Path]) -> Path:
    given = Path(plugin)
    if given.is_absolute():
        places = [given]
    elif "/" in plugin:
        places = [base_dir / given]
    else:
        places = [d / given for d in dirs] + [base_dir / given]
    for place in places:
        if place.is_file():
            return place
    raise PluginError(
        f"plugin file '{plugin}' not found; looked at: {', '.join(map(str, places))}"
        " (fix: give an absolute path, a path relative to the flow file, or a file in --plugin-path)"
    )
