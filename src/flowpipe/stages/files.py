"""``file_source`` and ``file_sink``: raw bytes from and to local files, optionally gzipped.

Beyond flow-pipe: ``line_mode`` (one record per line), a directory as the source path, work
split among ``threads`` (files, or byte ranges of one plain file in line mode), a
``separator`` after each record in the sink, and one file written across all batches (the
original reopened and truncated it for every record).
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

from pydantic import Field, field_validator

from flowpipe import Batch, EndOfStream, Sink, Source, StageConfig

from ._options import ProtoEnum, input_problems, local_path, output_file_problems
from ._split import input_files, line_ranges, open_range

__all__ = ["FileSink", "FileSource"]

_CHUNK = 1 << 20
_COMPRESSION = "COMPRESSION_NONE, COMPRESSION_GZIP or COMPRESSION_AUTO (gzip when the name ends in .gz)"


class FileCompression(ProtoEnum):
    __prefix__ = "compression_"
    UNSPECIFIED = "unspecified"  # the same as NONE
    NONE = "none"
    GZIP = "gzip"
    AUTO = "auto"  # gzip when the name ends in .gz

    def gzipped(self, path: Path) -> bool:
        return self is FileCompression.GZIP or (self is FileCompression.AUTO and path.suffix == ".gz")


class FileSourceConfig(StageConfig):
    path: str = Field(description="file to read, or a directory: every file under it, in name order")
    compression: FileCompression = Field(FileCompression.UNSPECIFIED, description=_COMPRESSION)
    max_bytes: int = Field(0, ge=0, description="read at most this many bytes of each file; 0 = all")
    line_mode: bool = Field(False, description="one record per line (without its line ending)")

    _path = field_validator("path")(local_path)


class FileSource(Source[FileSourceConfig]):
    """Reads files as bytes: one record per file, or one per line with line_mode."""

    @classmethod
    def preflight(cls, config: Any) -> list[str]:
        problems = input_problems(config.path)
        if problems:
            return problems
        try:  # an empty directory, known before start like a missing path
            input_files(config.path)
        except FileNotFoundError as error:
            return [f"config.path: {error}"]
        return []

    def open(self) -> None:
        config, context = self.config, self.context
        files = input_files(config.path)
        index, count = context.worker_index, context.worker_count
        self._units: list[tuple[Path, int, int]]  # file, byte range (end -1: to the end)
        if config.line_mode and len(files) == 1 and not config.max_bytes and not self._gzipped(files[0]):
            self._units = [(files[0], *line_ranges(files[0], 0, count)[index])]
        else:
            self._units = [(path, 0, -1) for path in files[index::count]]
        self._chunks = self._line_chunks() if config.line_mode else iter(())
        self._lines: list[bytes] = []
        self._taken = 0

    def _gzipped(self, path: Path) -> bool:
        return self.config.compression.gzipped(path)

    def _open(self, path: Path, start: int, end: int) -> IO[bytes]:
        if self._gzipped(path):
            return cast(IO[bytes], gzip.open(path, "rb"))
        return open_range(path, start, path.stat().st_size if end < 0 else end)

    def produce_batch(self, limit: int) -> Batch:
        if not self.config.line_mode:
            if not self._units:
                raise EndOfStream
            path, start, end = self._units.pop(0)
            with _naming(path), self._open(path, start, end) as stream:
                data = stream.read(self.config.max_bytes or -1)
            return Batch([data], nbytes=len(data))
        while self._taken >= len(self._lines):  # a chunk may hold no whole line: read on
            lines = next(self._chunks, None)
            if lines is None:
                raise EndOfStream
            self._lines, self._taken = lines, 0
        lines = self._lines[self._taken : self._taken + limit]
        self._taken += len(lines)
        return Batch(lines, nbytes=sum(map(len, lines)))

    def _line_chunks(self) -> Iterator[list[bytes]]:
        """The lines of every unit, a chunk's worth at a time (memory: a chunk, or the longest line)."""
        for path, start, end in self._units:
            budget = self.config.max_bytes or -1
            # The unfinished line, in pieces: joined once it ends, so a line spanning many
            # chunks is copied once, not once per chunk.
            rest: list[bytes] = []
            with _naming(path), self._open(path, start, end) as stream:
                while budget and (chunk := stream.read(_CHUNK if budget < 0 else min(_CHUNK, budget))):
                    budget -= len(chunk) if budget > 0 else 0
                    lines = chunk.split(b"\n")
                    if len(lines) == 1:
                        rest.append(chunk)
                        continue
                    if rest:
                        lines[0] = b"".join([*rest, lines[0]])
                    rest = [tail] if (tail := lines.pop()) else []
                    # The first line's \r may have come with the previous chunk.
                    yield _strip_cr(lines) if b"\r" in chunk or lines[0].endswith(b"\r") else lines
            if rest:
                yield _strip_cr([b"".join(rest)])


def _strip_cr(lines: list[bytes]) -> list[bytes]:
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """gzip's errors with the file's name, which they lack: a directory's bad file is found."""
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        if "Not a gzipped file" in str(error):
            hint = "not gzip data: set compression to COMPRESSION_NONE to read it as is"
        else:
            hint = "damaged gzip data: the file is truncated or corrupt"
        raise gzip.BadGzipFile(f"{path}: {hint} ({error})") from error  # one type for all three


class FileSinkConfig(StageConfig):
    path: str = Field(description="file to write (created or truncated, unless append)")
    append: bool = Field(False, description="append to the file instead of truncating it")
    compression: FileCompression = Field(FileCompression.UNSPECIFIED, description=_COMPRESSION)
    compression_level: int | None = Field(None, ge=1, le=9, description="gzip level, 1 (fast) to 9 (small)")
    separator: str = Field("", description="written after each record, e.g. '\\n'; none by default")

    _path = field_validator("path")(local_path)


class FileSink(Sink[FileSinkConfig]):
    """Writes each record's bytes (str as UTF-8, Arrow data as an Arrow IPC stream) to one file,
    across all batches."""

    @classmethod
    def preflight(cls, config: Any) -> list[str]:
        return output_file_problems(config.path)

    def open(self) -> None:
        if self.context.worker_count > 1:
            raise ValueError("file_sink writes one file: run it with threads: 1")
        config = self.config
        path = Path(config.path)
        mode = "ab" if config.append else "wb"
        self._gzip = config.compression.gzipped(path)
        # Opened here and closed in close(): one file across every batch.
        self._out: IO[bytes] = (
            cast(IO[bytes], gzip.open(path, mode, compresslevel=config.compression_level or 6))  # noqa: SIM115
            if self._gzip
            else path.open(mode)
        )
        self._separator = config.separator.encode()

    def consume_batch(self, batch: Batch) -> None:
        data: list[Any] = batch.data
        try:
            chunk = self._separator.join(data)
        except TypeError:  # str or other objects among the records
            chunk = self._separator.join(map(_to_bytes, data))
        self._out.write(chunk + self._separator if data else chunk)
        if not self._gzip:  # a gzip flush would end the deflate block and cost compression
            self._out.flush()

    def close(self) -> None:
        self._out.close()


def _to_bytes(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    if type(data).__module__.startswith("pyarrow"):
        from .arrow import ArrowData, to_ipc  # pyarrow is imported only when Arrow data shows up

        if isinstance(data, ArrowData):  # flow-pipe's Arrow payload: one self-contained IPC stream
            return to_ipc(data)
    raise TypeError(
        f"file_sink writes bytes, str or Arrow (Table, RecordBatch) records, got {type(data).__name__}:"
        " convert the records to one of these before the sink"
    )
