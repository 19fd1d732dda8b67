"""The errors flowpipe raises, and what each means for the process's exit code::

    FlowpipeError                 base of everything below
     ├── FlowSpecError            the flow is invalid; every problem listed   (exit 2)
     ├── PluginError              a stage plugin could not be found or loaded (exit 2)
     └── StageFailed              a stage raised while the flow ran           (exit 1)

:class:`~flowpipe.EndOfStream` is not an error: a source raises it to say it is done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["FlowSpecError", "FlowpipeError", "PluginError", "Problem", "StageFailed"]


class FlowpipeError(Exception):
    """Base of flowpipe's errors."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a flow, located as precisely as known."""

    message: str
    file: str = ""
    line: int = 0  # 1-based; 0 when unknown
    column: int = 0  # 1-based; 0 when unknown
    hint: str = ""
    warning: bool = False

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line, self.column) if p)
        text = f"{where}: " if where else ""
        text += ("warning: " if self.warning else "error: ") + self.message
        return f"{text} (fix: {self.hint})" if self.hint else text


class FlowSpecError(FlowpipeError):
    """The flow is invalid. ``problems`` lists every error found, not only the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        # Once each: a YAML alias repeats a block, and its problems, at one place in the file.
        self.problems = list(dict.fromkeys(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class PluginError(FlowpipeError):
    """A stage plugin could not be found, loaded or configured."""


class StageFailed(FlowpipeError):
    """A stage raised while the flow ran; the flow was stopped."""

    def __init__(self, stage_name: str, stage_type: str, error: BaseException) -> None:
        self.stage_name = stage_name
        self.stage_type = stage_type
        self.error = error
        super().__init__(f"stage '{stage_name}' ({stage_type}) failed: {type(error).__name__}: {error}")
