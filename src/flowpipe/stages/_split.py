"""How the workers of a file source share its input: files, or byte ranges cut at line
boundaries, so that ``threads: N`` reads every record exactly once (flow-pipe read
everything N times)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

__all__ = ["input_files", "line_ranges", "lines_before", "open_range"]


def input_files(path: str, suffixes: tuple[str, ...] = ()) -> list[Path]:
    """``path`` itself, or the files under the directory ``path`` (recursively, in name order)
    whose names end with one of ``suffixes`` (any name when empty); hidden and
    ``_``-prefixed names are skipped, as Arrow datasets do."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {root}")
    if root.is_file():
        return [root]
    found = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and (not suffixes or p.name.lower().endswith(suffixes))
        and not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)
    )
    if not found:
        kinds = "/".join(suffixes) + " " if suffixes else ""
        raise FileNotFoundError(f"no {kinds}files under {root}")
    return found


def _line_start(handle: io.BufferedReader, offset: int, first: int) -> int:
    """The first line start at or after ``offset`` (``first`` is where the data begins)."""
    if offset <= first:
        return first
    handle.seek(offset - 1)
    return offset - 1 + len(handle.readline())


def line_ranges(path: Path, first: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` byte ranges covering the lines from ``first`` to the end of the file, cut at
    line boundaries: every line falls in exactly one range (some may be empty). Every worker
    computes the same cuts, so no coordination is needed."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        cuts = [_line_start(handle, first + (size - first) * i // parts, first) for i in range(parts)]
    return list(zip(cuts, [*cuts[1:], size], strict=True))


class _Range(io.RawIOBase):
    """Bytes ``[start, end)`` of a file as a readable raw stream."""

    def __init__(self, path: Path, start: int, end: int) -> None:
        super().__init__()
        self._file = path.open("rb", buffering=0)
        self._file.seek(start)
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)[: max(self._left, 0)]
        count = self._file.readinto(view) or 0
        self._left -= count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


def open_range(path: Path, start: int, end: int) -> io.BufferedReader:
    """A buffered stream over bytes ``[start, end)`` of ``path``."""
    return io.BufferedReader(_Range(path, start, end), 1 << 20)


def lines_before(path: Path, offset: int) -> int:
    """How many lines end before byte ``offset``; for error messages only (reads the prefix)."""
    count = 0
    with path.open("rb") as handle:
        while offset > 0 and (chunk := handle.read(min(offset, 1 << 22))):
            count += chunk.count(b"\n")
            offset -= len(chunk)
    return count
