"""file_source and file_sink: whole files and lines, gzip, splitting, one output file."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from arrow_helpers import config_error, drain, make, preflight

from flowpipe import Batch
from flowpipe.stages.files import FileSink, FileSource


def test_whole_files_one_record_each_split_by_file(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{i}.txt").write_bytes(b"x" * (i + 1))
    with gzip.open(tmp_path / "z.gz", "wb") as handle:
        handle.write(b"compressed")
    records = drain(FileSource, {"path": str(tmp_path), "compression": "COMPRESSION_AUTO"}, workers=2)
    assert sorted(records) == sorted([b"x" * (i + 1) for i in range(5)] + [b"compressed"])


def test_max_bytes_truncates(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    assert drain(FileSource, {"path": str(tmp_path / "f"), "max_bytes": 4}) == [b"0123"]


@pytest.mark.parametrize("workers", [1, 3])
def test_line_mode_reads_each_line_once(tmp_path: Path, workers: int) -> None:
    lines = [f"line {i}".encode() * (i % 7) for i in range(20_000)]
    (tmp_path / "f").write_bytes(b"\n".join(lines) + b"\n")
    records = drain(FileSource, {"path": str(tmp_path / "f"), "line_mode": True}, workers)
    assert sorted(records) == sorted(lines)


def test_line_mode_gzip_crlf_and_last_line_without_newline(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "f.gz", "wb") as handle:
        handle.write(b"a\r\nb\n\nc")
    config = {"path": str(tmp_path / "f.gz"), "line_mode": True, "compression": "GZIP"}
    assert drain(FileSource, config) == [b"a", b"b", b"", b"c"]


def test_sink_writes_one_file_with_separator_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    for append in (False, True):
        sink = make(FileSink, {"path": str(path), "separator": "\n", "append": append})
        sink.consume_batch(Batch([b"a", "b"]))
        sink.consume_batch(Batch([b"c"]))
        sink.close()
    assert path.read_bytes() == b"a\nb\nc\na\nb\nc\n"


def test_gzip_sink_round_trips_through_the_source(tmp_path: Path) -> None:
    path = tmp_path / "out.gz"
    sink = make(FileSink, {"path": str(path), "compression": "COMPRESSION_AUTO", "compression_level": 9})
    sink.consume_batch(Batch([b"x" * 1000, b"y"]))
    sink.close()
    assert drain(FileSource, {"path": str(path), "compression": "AUTO"}) == [b"x" * 1000 + b"y"]


def test_sink_rejects_non_bytes_and_threads(tmp_path: Path) -> None:
    sink = make(FileSink, {"path": str(tmp_path / "o")})
    with pytest.raises(TypeError, match="file_sink writes bytes or str records, got int"):
        sink.consume_batch(Batch([1]))
    sink.close()
    with pytest.raises(ValueError, match="threads: 1"):
        make(FileSink, {"path": str(tmp_path / "o")}, 0, 2)


def test_bad_file_configs_fail_validation(tmp_path: Path) -> None:
    assert "no such file or directory" in preflight(FileSource, {"path": str(tmp_path / "nope")})
    assert "does not exist" in preflight(FileSink, {"path": str(tmp_path / "a" / "b")})
    assert "less than or equal to 9" in config_error(
        FileSink, {"path": str(tmp_path / "o"), "compression_level": 10}
    )
