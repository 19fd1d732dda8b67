"""file_source and file_sink: whole files and lines, gzip, splitting, one output file."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pa_pq
import pytest
from arrow_helpers import config_error, drain, make, preflight, sample_table
from conftest import Run

from flowpipe import Batch
from flowpipe.stages.files import _CHUNK, FileSink, FileSource

FLOW = """\
name: t
execution: {{mode: job}}
queues: [{{name: a, capacity: 16}}]
stages:
  - {{name: src, type: {source}, output_queue: a}}
  - {{name: out, type: file_sink, input_queue: a, config: {{path: {out}}}}}
"""


GZIPPED = gzip.compress(bytes(range(256)) * 100)
CORRUPT = GZIPPED[:20] + b"\xff" * 10 + GZIPPED[30:]  # deflate data damaged after the header


def read_ipc_streams(data: bytes) -> list[pa.Table]:
    """The tables of consecutive Arrow IPC streams."""
    reader, tables = pa.BufferReader(data), []
    while reader.tell() < len(data):
        tables.append(pa.ipc.open_stream(reader).read_all())
    return tables


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


@pytest.mark.parametrize("workers", [1, 2])
def test_line_mode_reads_lines_without_newline_and_longer_than_a_chunk(tmp_path: Path, workers: int) -> None:
    # Chunks holding no line end (a last line without newline, a line longer than a chunk)
    # used to end the stream.
    files = {
        "a.txt": b"single line no newline",
        "b.txt": b"x\ny\n",
        "c.txt": b"s\n" + b"L" * (2 * _CHUNK + 5) + b"\nt\n" + b"M" * (_CHUNK + 1),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    expected = sorted(line for data in files.values() for line in data.split(b"\n") if line)
    assert sorted(drain(FileSource, {"path": str(tmp_path), "line_mode": True}, workers)) == expected
    for name, data in files.items():  # one plain file: split in byte ranges among the workers
        config = {"path": str(tmp_path / name), "line_mode": True}
        assert sorted(drain(FileSource, config, workers)) == sorted(filter(None, data.split(b"\n")))


@pytest.mark.parametrize("cr_at", [_CHUNK - 2, _CHUNK - 1, _CHUNK])
def test_line_mode_strips_crlf_wherever_the_chunk_boundary_falls(tmp_path: Path, cr_at: int) -> None:
    # cr_at = _CHUNK - 1: the \r ends one chunk, the \n starts the next (and is the file's end).
    data = b"z\n" + b"a" * (cr_at - 2) + b"\r\n"
    (tmp_path / "f").write_bytes(data)
    (tmp_path / "g").write_bytes(data + b"b\r\nc")
    assert drain(FileSource, {"path": str(tmp_path / "f"), "line_mode": True}) == [b"z", b"a" * (cr_at - 2)]
    lines = drain(FileSource, {"path": str(tmp_path / "g"), "line_mode": True})
    assert lines == [b"z", b"a" * (cr_at - 2), b"b", b"c"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"no", "not gzip data: set compression to COMPRESSION_NONE to read it as is (Not a gzipped file"),
        (gzip.compress(b"x" * 1000)[:-12], "damaged gzip data: the file is truncated or corrupt (Compressed"),
        (CORRUPT, "damaged gzip data: the file is truncated or corrupt (Error -3 while decompressing"),
    ],
    ids=["not-gzip", "truncated", "corrupt"],
)
@pytest.mark.parametrize("line_mode", [False, True])
def test_gzip_errors_name_the_file(tmp_path: Path, data: bytes, message: str, line_mode: bool) -> None:
    (tmp_path / "a.gz").write_bytes(gzip.compress(b"fine"))
    (tmp_path / "b.gz").write_bytes(data)
    config = {"path": str(tmp_path), "compression": "AUTO", "line_mode": line_mode}
    with pytest.raises(gzip.BadGzipFile, match="^" + re.escape(f"{tmp_path / 'b.gz'}: {message}")):
        drain(FileSource, config)


def test_bad_gzip_fails_the_run_in_one_line_naming_stage_and_file(flowpipe: Run, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.gz").write_bytes(b"no")
    flow = tmp_path / "f.yaml"
    source = f"file_source, config: {{path: {tmp_path / 'in'}, compression: AUTO}}"
    flow.write_text(FLOW.format(source=source, out=tmp_path / "out"))
    done = flowpipe("run", flow)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"stage 'src' (file_source) failed: BadGzipFile: {tmp_path / 'in' / 'x.gz'}: not gzip data" in (
        done.stderr
    )


def test_sink_writes_arrow_records_as_ipc_streams(tmp_path: Path) -> None:
    table = sample_table(100)
    sink = make(FileSink, {"path": str(tmp_path / "o")})
    sink.consume_batch(Batch([table, table.to_batches()[0].slice(0, 10)]))
    sink.consume_batch(Batch([table.slice(50)]))
    sink.close()
    assert read_ipc_streams((tmp_path / "o").read_bytes()) == [table, table.slice(0, 10), table.slice(50)]


def test_parquet_to_file_sink_flow_writes_an_ipc_stream(flowpipe: Run, tmp_path: Path) -> None:
    table = sample_table(1000)
    pa_pq.write_table(table, tmp_path / "in.parquet")
    flow = tmp_path / "f.yaml"
    source = f"parquet_arrow_source, config: {{path: {tmp_path / 'in.parquet'}}}"
    flow.write_text(FLOW.format(source=source, out=tmp_path / "out.arrows"))
    done = flowpipe("run", flow)
    assert done.returncode == 0, done.stderr
    assert pa.concat_tables(read_ipc_streams((tmp_path / "out.arrows").read_bytes())).equals(table)


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
    with pytest.raises(
        TypeError, match=r"file_sink writes bytes, str or Arrow \(Table, RecordBatch\) records, got int"
    ):
        sink.consume_batch(Batch([1]))
    with pytest.raises(TypeError, match="got ChunkedArray"):
        sink.consume_batch(Batch([pa.chunked_array([[1]])]))
    sink.close()
    with pytest.raises(ValueError, match="threads: 1"):
        make(FileSink, {"path": str(tmp_path / "o")}, 0, 2)


def test_bad_file_configs_fail_validation(tmp_path: Path) -> None:
    assert "no such file or directory" in preflight(FileSource, {"path": str(tmp_path / "nope")})
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    (tmp_path / "empty" / ".hidden" / "f").write_bytes(b"skipped, as hidden names are")
    empty = preflight(FileSource, {"path": str(tmp_path / "empty")})
    assert empty == f"config.path: no files under {tmp_path / 'empty'}"
    assert "does not exist" in preflight(FileSink, {"path": str(tmp_path / "a" / "b")})
    assert "less than or equal to 9" in config_error(
        FileSink, {"path": str(tmp_path / "o"), "compression_level": 10}
    )
