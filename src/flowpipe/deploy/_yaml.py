"""YAML out: the manifests stream, and the flow file that goes into the ConfigMap.

Kubernetes reads manifests with YAML 1.1 rules, which PyYAML's safe dumper follows. The flow
file is read back by flowpipe's own reader, which types plain scalars by the YAML 1.2 core
schema; its dumper also knows the 1.2-only forms (``0o17``, ``1e3``), so a string that looks like
one is quoted and comes back as a string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

__all__ = ["dump_flow", "dump_manifests"]


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order given, multi-line text as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # never write &anchors: every manifest stands alone


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_str(value)


_Dumper.add_representer(str, _text)


class _FlowDumper(_Dumper):
    """Also quotes strings that a YAML 1.2 core reader would take for numbers."""


for _tag, _pattern in (
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"),
    (
        "float",
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
    ),
    ("bool", r"(?i:true|false)"),
    ("null", r"~|null|Null|NULL"),
):
    _FlowDumper.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(rf"^(?:{_pattern})$"), None)


def _dump(documents: Iterable[Any], dumper: type[yaml.SafeDumper]) -> str:
    return yaml.dump_all(
        documents,
        Dumper=dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=120,
        explicit_start=True,
    )


def dump_manifests(manifests: Iterable[Mapping[str, Any]]) -> str:
    """A ``---`` separated YAML stream, ready for ``kubectl apply -f -``."""
    return _dump(manifests, _Dumper)


def dump_flow(data: Mapping[str, Any]) -> str:
    """One flow file as YAML that flowpipe reads back to the same values."""
    return yaml.dump(
        data,
        Dumper=_FlowDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=120,
    )
