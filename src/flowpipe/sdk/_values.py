"""Values as a flow file wrote them: what flow-pipe's reading of YAML kept, and flowpipe's too.

flow-pipe turned every YAML scalar into a string before protobuf JSON read it, so ``007``,
``1.50`` or ``0x1F`` reached a text field as written. flowpipe keeps numbers as numbers, but
its YAML reader tags each with the text it was written as (:class:`WrittenInt`,
:class:`WrittenFloat`), and :func:`as_written` gives a text field that text, not the number's
own spelling. It also reads a field given as null as not given (protobuf JSON's rule), so that
it keeps its default. The flow's models and every stage's config run it before validating.
"""

from __future__ import annotations

import functools
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

__all__ = ["WrittenFloat", "WrittenInt", "as_written", "written"]


class WrittenInt(int):
    """An integer read from a flow file, with the ``text`` it was written as."""

    text: str


class WrittenFloat(float):
    """A float read from a flow file, with the ``text`` it was written as."""

    text: str


def written(value: int | float, text: str) -> WrittenInt | WrittenFloat:
    """``value`` tagged with the ``text`` it was written as."""
    number = WrittenInt(value) if isinstance(value, int) else WrittenFloat(value)
    number.text = text
    return number


def as_written(model: type[BaseModel], data: Any) -> Any:
    """``data`` for ``model`` (a mapping of its keys) without its null values, and with the
    numbers meant as text (a ``str`` field, a list or mapping of ``str``) as they were written."""
    if not isinstance(data, dict):
        return data
    kinds = _text_kinds(model)
    result = {}
    for key, value in data.items():
        if value is None and key in kinds:
            continue
        kind = kinds.get(key)
        if kind == "text":
            value = _text(value)
        elif kind == "list" and isinstance(value, list):
            value = [_text(item) for item in value]
        elif kind == "map" and isinstance(value, dict):
            value = {name: _text(item) for name, item in value.items()}
        result[key] = value
    return result


def _text(value: Any) -> Any:
    return value.text if isinstance(value, (WrittenInt, WrittenFloat)) else value


@functools.cache
def _text_kinds(model: type[BaseModel]) -> dict[str, str | None]:
    """Each spelling of each field (name and alias) -> "text", "list" or "map" when it holds
    text, else None."""
    kinds: dict[str, str | None] = {}
    for name, info in model.model_fields.items():
        kind = _kind(info.annotation)
        kinds[name] = kind
        if info.alias:
            kinds[info.alias] = kind
    return kinds


def _kind(annotation: Any) -> str | None:
    annotation = _bare(annotation)
    if annotation is str:
        return "text"
    args = [_bare(arg) for arg in get_args(annotation)]
    if get_origin(annotation) is list and args == [str]:
        return "list"
    if get_origin(annotation) is dict and args == [str, str]:
        return "map"
    return None


def _bare(annotation: Any) -> Any:
    """``X`` from ``X | None`` and ``Annotated[X, ...]``."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, types.UnionType):
            args = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation
