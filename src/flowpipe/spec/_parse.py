"""Read a flow file into a :class:`FlowSpec` and report every problem, located in the file.

Parsing never raises for bad content: a user fixing a flow wants all its problems at once,
and later checks (stage configs, wiring against plugin kinds) want a spec to work on even when
parts of it are broken. So stages and queues are validated one by one, each invalid one is left
out of the spec, and the semantic rules run on what could be read.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union, cast, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel, to_snake
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from flowpipe.sdk import FlowSpecError, Problem

from ._check import check
from ._model import FlowSpec, QueueSpec, StageSpec
from ._text import show, suggest
from ._yaml import Document, Loc, Mark, dotted, load

__all__ = ["ParsedFlow", "parse_flow", "parse_flow_text", "validation_problem"]

_SUFFIXES = (".yaml", ".yml", ".json")

_M = TypeVar("_M", bound=BaseModel)
_Rows = dict[str, list[int]]  # "stages"/"queues" -> file index of each item kept in a spec


class _Locator:
    """Finds where a spec path is in the file, whichever spelling (proto or lowerCamel) it used."""

    def __init__(self, filename: str, doc: Document | None) -> None:
        self.filename = filename
        self.doc = doc

    def mark(self, loc: Loc, *, at_key: bool = False) -> Mark:
        """Where ``loc`` starts; its nearest ancestor in the file when it is not there itself."""
        if self.doc is None:
            return 0, 0
        node, found = self.doc.data, cast(Loc, ())
        for part in loc:
            if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node, found = node[part], (*found, part)
            elif isinstance(node, dict) and (key := _spelling(node, part)) is not None:
                node, found = node[key], (*found, key)
            else:
                break
        if at_key and len(found) == len(loc) and found in self.doc.keys:
            return self.doc.keys[found]
        return self.doc.values.get(found, (0, 0))

    def problem(
        self, loc: Loc, message: str, hint: str = "", *, warning: bool = False, at_key: bool = False
    ) -> Problem:
        return Problem(message, self.filename, *self.mark(loc, at_key=at_key), hint, warning)


def _spelling(mapping: dict[str, object], part: str | int) -> str | None:
    """The key of ``mapping`` that ``part`` names, as a proto name or in lowerCamel."""
    if isinstance(part, str):
        for key in (part, to_camel(part), to_snake(part)):
            if key in mapping:
                return key
    return None


def _in_file(loc: Loc, rows: _Rows) -> Loc:
    """Turn an index into a spec's stages/queues into the index of that item in the file."""
    if len(loc) >= 2 and isinstance(loc[0], str) and isinstance(loc[1], int) and loc[0] in rows:
        file_rows = rows[loc[0]]
        if 0 <= loc[1] < len(file_rows):
            return (loc[0], file_rows[loc[1]], *loc[2:])
    return loc


@dataclass
class ParsedFlow:
    """A flow file as read: the best-effort spec and every problem found, in file order."""

    path: Path
    spec: FlowSpec | None  # None only if the file could not be read as YAML/JSON at all
    problems: list[Problem]
    _locator: _Locator = field(repr=False, compare=False)
    _rows: _Rows = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when there are no errors; warnings are allowed."""
        return all(p.warning for p in self.problems)

    def problem(
        self, loc: Loc, message: str, hint: str = "", *, warning: bool = False, at_key: bool = False
    ) -> Problem:
        """A problem located at ``loc`` in the file, e.g. ``("stages", 2, "config", "verbose")``.

        Indexes under ``stages``/``queues`` count items of ``spec.stages``/``spec.queues``. Falls
        back to the nearest ancestor found in the file; ``at_key`` points at a mapping key instead
        of its value. The problem is returned, not added to :attr:`problems`.
        """
        return self._locator.problem(_in_file(loc, self._rows), message, hint, warning=warning, at_key=at_key)

    def raise_for_problems(self) -> FlowSpec:
        """The spec, or :class:`FlowSpecError` listing every problem if any is an error."""
        if self.spec is None or not self.ok:
            raise FlowSpecError(self.problems)
        return self.spec


def parse_flow(path: str | os.PathLike[str]) -> ParsedFlow:
    """Read and validate a ``.yaml``/``.yml``/``.json`` flow file. Never raises for bad content."""
    path = Path(path)
    locator = _Locator(str(path), None)
    if path.suffix.lower() not in _SUFFIXES:
        return ParsedFlow(path, None, [_unsupported(path)], locator)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ParsedFlow(path, None, [locator.problem((), "file not found", "check the path")], locator)
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return ParsedFlow(path, None, [locator.problem((), f"cannot read the file: {reason}")], locator)
    return parse_flow_text(text, str(path))


def parse_flow_text(text: str, filename: str) -> ParsedFlow:
    """Like :func:`parse_flow`, from a string; ``filename`` picks YAML or JSON and is named in messages."""
    path = Path(filename)
    if path.suffix.lower() not in _SUFFIXES:
        return ParsedFlow(path, None, [_unsupported(path)], _Locator(filename, None))
    doc, problems = load(text, filename)
    locator = _Locator(filename, doc)
    if doc is None:
        return ParsedFlow(path, None, problems, locator)
    if not isinstance(doc.data, dict):
        problems.append(
            locator.problem(
                (), "a flow must be a mapping with keys such as stages and queues", "see docs/flow-spec.md"
            )
        )
        return ParsedFlow(path, None, problems, locator)
    spec, rows = _Validation(locator, problems).run(doc.data, path.stem)
    problems.sort(key=lambda p: (p.line, p.column))
    return ParsedFlow(path, spec, problems, locator, rows)


def _unsupported(path: Path) -> Problem:
    if path.is_dir():
        return Problem(
            "is a directory, not a flow file", str(path), hint="name a .yaml, .yml or .json file in it"
        )
    return Problem(
        f"unsupported flow file type '{path.suffix}'", str(path), hint="use a .yaml, .yml or .json file"
    )


class _Validation:
    """Validates one flow document, adding every problem to ``problems``."""

    def __init__(self, locator: _Locator, problems: list[Problem]) -> None:
        self.locator = locator
        self.problems = problems
        self.broken: set[Loc] = set()  # paths in the file whose values were invalid and left out

    def run(self, data: dict[str, Any], stem: str) -> tuple[FlowSpec, _Rows]:
        """The spec of valid parts, and where its stages and queues are in the file."""
        top = dict(data)
        if top.get("name") is None:
            top["name"] = stem  # the original's sample flows have no name
        stages = self._items(StageSpec, "stages", "stage", top.pop("stages", None))
        queues = self._items(QueueSpec, "queues", "queue", top.pop("queues", None))
        flow = self._validate(FlowSpec, top, (), "")[0] or FlowSpec(name=stem)

        # The semantic rules also see the stages and queues that validated only in part (without
        # their invalid keys), so that e.g. a stage with a bad config does not make its queues look
        # unused. Findings about values already reported as invalid are dropped.
        shadow = flow.model_copy(
            update={"stages": [s for _, s, _ in stages], "queues": [q for _, q, _ in queues]}
        )
        shadow_rows = {"stages": [i for i, _, _ in stages], "queues": [i for i, _, _ in queues]}
        unreadable = frozenset(tuple(part for part in loc if isinstance(part, str)) for loc in self.broken)
        for finding in check(
            shadow, lambda loc: self.locator.mark(_in_file(loc, shadow_rows))[0], unreadable
        ):
            loc = _in_file(finding.loc, shadow_rows)
            if not any(loc[: len(bad)] == bad for bad in self.broken):
                self.problems.append(
                    self.locator.problem(loc, finding.message, finding.hint, warning=finding.warning)
                )

        spec = flow.model_copy(
            update={"stages": [s for _, s, ok in stages if ok], "queues": [q for _, q, ok in queues if ok]}
        )
        rows = {"stages": [i for i, _, ok in stages if ok], "queues": [i for i, _, ok in queues if ok]}
        return spec, rows

    def _items(self, model: type[_M], key: str, kind: str, data: object) -> list[tuple[int, _M, bool]]:
        """Each item that could be read at least in part: (file index, model, fully valid)."""
        if data is None:
            return []
        if not isinstance(data, list):
            self.broken.add((key,))
            self.problems.append(
                self.locator.problem(
                    (key,),
                    f"{key} must be a list, got {show(data)}",
                    f"write one '- name: ...' item per {kind}",
                )
            )
            return []
        items = []
        for i, item in enumerate(data):
            name = item.get("name") if isinstance(item, dict) else None
            named = isinstance(name, str | int | float) and not isinstance(name, bool) and name != ""
            label = f"{kind} '{name}'" if named else f"{key}[{i}]"
            instance, ok = self._validate(model, item, (key, i), label)
            if instance is not None:
                items.append((i, instance, ok))
        return items

    def _validate(self, model: type[_M], data: object, loc: Loc, label: str) -> tuple[_M | None, bool]:
        """Validate ``data``; on errors report them, then retry without the keys at fault.

        Returns the instance (None if nothing could be read) and whether it is fully valid.
        """
        try:
            return model.model_validate(data), True
        except ValidationError as e:
            errors = e.errors()
        for error in errors:
            self.problems.append(self._problem(error, model, loc, label))
        if isinstance(data, dict):
            at_fault = {error["loc"][0] for error in errors if error["loc"]}
            try:
                salvaged = model.model_validate({k: v for k, v in data.items() if k not in at_fault})
            except ValidationError:  # a required key was at fault
                pass
            else:
                self.broken.update((*loc, to_snake(str(key))) for key in at_fault)
                return salvaged, False
        self.broken.add(loc)
        return None, False

    def _problem(self, error: ErrorDetails, model: type[BaseModel], base: Loc, label: str) -> Problem:
        return validation_problem(error, model, base, label, self.locator.problem)


def validation_problem(
    error: ErrorDetails,
    model: type[BaseModel],
    base: Loc,
    label: str,
    locate: Callable[..., Problem],
    within: Loc = (),
) -> Problem:
    """Say in the user's terms what pydantic found wrong validating ``model``, located in the
    file: ``base`` is where the model's data sits, ``within`` the path to it that the message
    names (``("config",)`` for a stage's config), ``locate`` a ``problem(loc, message, hint,
    at_key=)`` method. The flow's own models and every stage's config are reported this way."""
    loc: Loc = (*within, *error["loc"])
    kind = error["type"]
    where, at_key = loc, False
    if kind in ("extra_forbidden", "missing"):
        where, at_key = loc[:-1], kind == "extra_forbidden"
        key, found = str(loc[-1]), _model_at(model, where[len(within) :])
        fields = found.model_fields if found is not None else {}
        if kind == "missing":  # pydantic names it by its alias (lowerCamel): say the proto name
            key = _field_named(fields, key) or key
            what, hint = f"missing required key '{key}'", f"add {key}: ..."
        elif key in fields and fields[key].alias not in (None, key):  # both spellings; the alias wins
            what, hint = f"'{key}' is also given as '{fields[key].alias}'", "keep one of them"
        else:
            valid = f"remove it; valid keys: {', '.join(fields)}" if fields else "remove it"
            spellings = [*fields, *(info.alias for info in fields.values() if info.alias)]
            what, hint = f"unknown key '{key}'", suggest(key, spellings, valid)
    else:
        what, hint = _describe(error)
    prefix = ": ".join(part for part in (label, dotted(where)) if part)
    message = f"{prefix}: {what}" if prefix else what
    return locate((*base, *loc), message, hint, at_key=at_key)


# pydantic error type -> (what was expected, how to fix it)
_EXPECTED = {
    "int_type": ("a whole number", "write a number such as 4"),
    "int_parsing": ("a whole number", "write a number such as 4"),
    "int_from_float": ("a whole number", "write a number without a fraction"),
    "bool_type": ("true or false", "write true or false"),
    "bool_parsing": ("true or false", "write true or false"),
    "dict_type": ("a mapping", "write 'key: value' lines indented under it"),
    "model_type": ("a mapping", "write 'key: value' lines indented under it"),
    "list_type": ("a list", "write one '- item' line per entry, or [a, b]"),
    "string_type": ("a string", "write a single text value"),
}


def _describe(error: ErrorDetails) -> tuple[str, str]:
    kind, value, ctx = error["type"], error["input"], error.get("ctx", {})
    if kind == "proto_enum":
        return error["msg"], str(ctx["hint"])
    if kind == "greater_than_equal":
        return f"must be ≥ {ctx['ge']}, got {show(value)}", f"use {ctx['ge']} or more"
    if kind == "less_than_equal":
        return f"must be ≤ {ctx['le']}, got {show(value)}", f"use {ctx['le']} or less"
    if kind in _EXPECTED:
        expected, hint = _EXPECTED[kind]
        if kind == "string_type" and isinstance(value, bool):
            hint = f"quote it to keep it as text: '{show(value)}'"
        return f"expected {expected}, got {show(value)}", hint
    if kind in ("value_error", "assertion_error"):  # a validator's own words say what is wrong
        return error["msg"].split(", ", 1)[-1], ""
    if value is None and kind == "conflict":  # a rule between keys, with no one value at fault
        return error["msg"], ""
    return f"{error['msg']}, got {show(value)}", ""


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model found at ``loc`` inside ``model`` (None if it is not a model)."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            name = _field_named(annotation.model_fields, str(part))
            if name is None:
                return None
            annotation = annotation.model_fields[name].annotation
        else:  # a list index or a dict key: step into the item type
            args = get_args(annotation)
            annotation = args[-1] if args else None
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _field_named(fields: dict[str, FieldInfo], key: str) -> str | None:
    """The field that ``key`` names, by its name or its alias."""
    if key in fields:
        return key
    return next((name for name, info in fields.items() if info.alias == key), None)


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation
