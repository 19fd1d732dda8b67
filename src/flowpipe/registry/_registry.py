"""One registration path for every kind of stage plugin.

Discovery (``_discovery``) turns each place a plugin can come from into :class:`Candidate`
entries; the registry keeps them by type name in precedence order and loads a candidate only
when its type is used, so a broken or heavy plugin costs nothing unless a flow names it.

Precedence, highest first (the first candidate of a type wins; the others are "shadowed"):

1. the stage's ``plugin:`` field;
2. plugin directories, in ``--plugin-path`` then ``FLOW_PIPE_PLUGIN_PATH`` order; within one
   directory ``stage_<type>.py`` wins over ``libstage_<type>.so``;
3. installed packages' ``flowpipe.stages`` entry points, other distributions before flowpipe's
   own built-ins.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..sdk import PluginError, Stage, StageConfig, StageKind

__all__ = ["Candidate", "StageInfo", "StageRegistry", "check_stage_class", "load_candidate"]

StageClass = type[Stage[StageConfig]]


@dataclass(frozen=True)
class Candidate:
    """A place that claims to provide a stage type; ``load`` imports it (or raises)."""

    type_name: str
    origin: str  # where it comes from, as shown to users
    load: Callable[[], StageClass]


@dataclass(frozen=True)
class StageInfo:
    """A loaded stage type."""

    type_name: str
    origin: str
    stage_class: StageClass
    shadowed: tuple[str, ...] = ()  # origins of lower-precedence providers of the same type

    @property
    def kind(self) -> StageKind:
        return self.stage_class.kind

    @property
    def config_model(self) -> type[StageConfig]:
        return self.stage_class.config_model

    @property
    def description(self) -> str:
        """The first paragraph of the stage class's docstring, on one line."""
        paragraph = inspect.cleandoc(self.stage_class.__doc__ or "").split("\n\n")[0]
        return " ".join(paragraph.split())


def check_stage_class(obj: object, origin: str) -> StageClass:
    """The object as a stage class, or a PluginError saying what is wrong with it."""
    if not (isinstance(obj, type) and issubclass(obj, Stage) and hasattr(obj, "kind")):
        raise PluginError(f"{origin}: {obj!r} is not a Source, Transform, Sink or SideEffect subclass")
    if not obj.implements_work():
        raise PluginError(
            f"{origin}: {obj.__qualname__} overrides neither {obj._record_method}() nor {obj._batch_method}()"
        )
    return obj


@dataclass
class StageRegistry:
    """Stage types by name, built from candidates given in precedence order."""

    plugin_dirs: list[Path] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)  # where discovery looked, for error messages
    _candidates: dict[str, list[Candidate]] = field(default_factory=dict)
    _loaded: dict[str, StageInfo] = field(default_factory=dict)

    def add(self, candidates: Iterable[Candidate]) -> None:
        """Register candidates; earlier registrations take precedence over later ones."""
        for candidate in candidates:
            self._candidates.setdefault(candidate.type_name, []).append(candidate)

    def type_names(self) -> list[str]:
        return sorted(self._candidates)

    def get(self, type_name: str) -> StageInfo:
        """The stage type, loading it on first use. Raises PluginError naming where it looked."""
        if type_name in self._loaded:
            return self._loaded[type_name]
        candidates = self._candidates.get(type_name)
        if not candidates:
            raise PluginError(self._unknown_message(type_name))
        info = load_candidate(candidates[0], shadowed=tuple(c.origin for c in candidates[1:]))
        self._loaded[type_name] = info
        return info

    def load_all(self) -> tuple[list[StageInfo], list[PluginError]]:
        """Every registered type, loaded; plugins that fail to load are returned as errors."""
        infos: list[StageInfo] = []
        errors: list[PluginError] = []
        for name in self.type_names():
            try:
                infos.append(self.get(name))
            except PluginError as error:
                errors.append(error)
        return infos, errors

    def _unknown_message(self, type_name: str) -> str:
        message = f"no plugin provides stage type '{type_name}'"
        near = difflib.get_close_matches(type_name, self._candidates, n=3)
        if near:
            message += "; did you mean " + " or ".join(f"'{n}'" for n in near) + "?"
        if self.searched:
            message += " Looked in: " + "; ".join(self.searched)
        return message


def load_candidate(candidate: Candidate, shadowed: tuple[str, ...] = ()) -> StageInfo:
    """Import the candidate's stage class; any failure becomes a PluginError naming its origin."""
    try:
        stage_class = check_stage_class(candidate.load(), candidate.origin)
    except PluginError:
        raise
    except Exception as error:  # a plugin's import may fail in any way; report, don't crash
        raise PluginError(f"{candidate.origin}: cannot load: {type(error).__name__}: {error}") from error
    return StageInfo(candidate.type_name, candidate.origin, stage_class, shadowed)
