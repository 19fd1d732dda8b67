"""Read YAML (and JSON, which is YAML) into plain data plus the position of every piece.

PyYAML's constructors lose positions and follow YAML 1.1 (``yes``/``on`` are booleans,
``012`` is octal), so this module builds the data itself from ``compose()``'s node tree,
typing plain scalars by the YAML 1.2 core schema. Mapping keys are always strings (their
source text), as in JSON and protobuf, so every path is a tuple of ``str`` keys and ``int``
list indexes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from flowpipe.sdk import Problem
from flowpipe.sdk._values import written

__all__ = ["Document", "Loc", "Mark", "dotted", "load"]

Loc = tuple[str | int, ...]
Mark = tuple[int, int]  # 1-based line and column

_TAG = "tag:yaml.org,2002:"
_NULL, _BOOL, _INT, _FLOAT, _STR, _MERGE = (
    _TAG + t for t in ("null", "bool", "int", "float", "str", "merge")
)


class _CoreResolver(BaseResolver):
    """Types plain scalars by the YAML 1.2 core schema; everything else stays a string."""


# Registered without a first-character index so they are tried in this order (int before float).
for _tag, _pattern in (
    (_MERGE, r"<<"),
    (_NULL, r"~|null|Null|NULL|"),
    (_BOOL, r"(?i:true|false)"),
    (_INT, r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"),
    (
        _FLOAT,
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
    ),
):
    _CoreResolver.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern})$"), None)

try:
    from yaml._yaml import CParser as _Parser
except ImportError:  # PyYAML built without libyaml: the same node tree, only slower
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser, Composer):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)


class _Loader(_Parser, _CoreResolver):
    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        _CoreResolver.__init__(self)


@dataclass(slots=True)
class Document:
    """The data read from a file, and where each value and mapping key starts."""

    data: object
    values: dict[Loc, Mark] = field(default_factory=dict)
    keys: dict[Loc, Mark] = field(default_factory=dict)


# A character beyond U+FFFF escaped as a UTF-16 surrogate pair ("\ud83d\ude00"), as JSON writers
# do, which PyYAML refuses; not after an escaped backslash ("\\ud83d" is text).
_SURROGATE_PAIR = re.compile(
    r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE
)


def _pair_as_one(match: re.Match[str]) -> str:
    high, low = int(match[2], 16), int(match[3], 16)
    return f"{match[1]}\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08X}"


def load(text: str, filename: str) -> tuple[Document | None, list[Problem]]:
    """Read ``text``; the document is None when it is not well-formed YAML."""
    if "\\u" in text:
        text = _SURROGATE_PAIR.sub(_pair_as_one, text)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        started = f" started at line {e.context_mark.line + 1}" if e.context_mark else ""
        context = f" ({e.context}{started})" if e.problem and e.context else ""
        message = f"invalid {_language(filename)}: {e.problem or e.context}{context}"
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        return None, [Problem(message, filename, line, column, "fix the syntax at this point")]
    except yaml.YAMLError as e:  # ReaderError: a character YAML does not allow
        line, column = _position(text, getattr(e, "position", 0))
        message = f"invalid {_language(filename)}: " + str(e).splitlines()[0]
        return None, [Problem(message, filename, line, column, "remove or escape the character")]
    finally:
        loader.dispose()
    builder = _Builder(filename)
    if node is None:  # an empty file
        return Document(None, {(): (1, 1)}), []
    return Document(builder.build(node, ()), builder.values, builder.keys), builder.problems


def dotted(loc: Loc) -> str:
    """A path as a reader would write it: ``stages[2].config.verbose``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).removeprefix(".")


def _language(filename: str) -> str:
    return "JSON" if filename.lower().endswith(".json") else "YAML"


def _position(text: str, offset: int) -> Mark:
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)


def _mark(node: Node) -> Mark:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Turns a node tree into plain data, recording positions and problems on the way."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.values: dict[Loc, Mark] = {}
        self.keys: dict[Loc, Mark] = {}
        self.problems: list[Problem] = []
        self._open: set[int] = set()  # collections being built, to catch recursive aliases

    def _problem(self, node: Node, message: str, hint: str) -> None:
        self.problems.append(Problem(message, self.filename, *_mark(node), hint))

    def build(self, node: Node, loc: Loc) -> object:
        self.values[loc] = _mark(node)
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if id(node) in self._open:
            self._problem(node, "an alias refers to the collection that contains it", "remove the cycle")
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, MappingNode)
            return self._mapping(node, loc)
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: MappingNode, loc: Loc) -> dict[str, object]:
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self._problem(key_node, "a mapping key must be a plain value", "use a string as the key")
                continue
            if key_node.tag == _MERGE:
                self._problem(
                    key_node,
                    "YAML merge keys (<<) are not supported",
                    "write the keys out, or alias a whole value",
                )
                continue
            key = key_node.value
            if key in result:
                first_line = self.keys[(*loc, key)][0]
                self._problem(
                    key_node,
                    f"duplicate key '{key}' (first given at line {first_line})",
                    "remove one of them",
                )
                continue
            self.keys[(*loc, key)] = _mark(key_node)
            result[key] = self.build(value_node, (*loc, key))
        return result

    def _scalar(self, node: ScalarNode) -> object:
        text: str = node.value
        if node.tag in (_STR, _MERGE):  # `<<` is only special as a key
            return text
        if node.tag == _NULL:
            return None
        convert = _CONVERTERS.get(node.tag)
        if convert is None:
            self._problem(node, f"unsupported YAML tag '{node.tag}'", "remove the tag")
            return text
        try:
            value = convert(text)
        except ValueError:
            self._problem(node, f"'{text}' is not a valid {node.tag.removeprefix(_TAG)}", "fix the value")
            return text
        if isinstance(value, bool):
            return value
        # A number keeps its text, for a field that takes it as text (`name: 007`).
        return written(cast(int | float, value), text)


def _to_bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


def _to_int(text: str) -> int:
    base = {"0o": 8, "0x": 16}.get(text[:2].lower())
    return int(text, 10) if base is None else int(text[2:], base)


_SPECIAL_FLOATS = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}


def _to_float(text: str) -> float:
    special = _SPECIAL_FLOATS.get(text.lower())
    return float(text) if special is None else special


_CONVERTERS: dict[str, Callable[[str], object]] = {_BOOL: _to_bool, _INT: _to_int, _FLOAT: _to_float}
