"""Small helpers for writing problem messages the same way everywhere."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable

__all__ = ["show", "suggest"]


def show(value: object) -> str:
    """A value as the user wrote it, short: ``'abc'``, ``true``, ``12``, ``a mapping``."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 40 else f"'{value[:37]}...'"
    return json.dumps(value, default=str)


def suggest(word: str, choices: Iterable[str], otherwise: str) -> str:
    """A hint naming the choice closest to a misspelt ``word``, else ``otherwise``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean '{close[0]}'?" if close else otherwise
