"""Stage plugins from every place they can come from, through one registration path."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import Run

SHOUT = """\
from flowpipe import Payload, StageConfig, Transform
from pydantic import Field

class ShoutConfig(StageConfig):
    suffix: str = Field("!", description="appended to each record")

class Shout(Transform[ShoutConfig]):
    \"\"\"Uppercases and appends a suffix.\"\"\"

    def process(self, record: Payload) -> bytes:
        return record.data.upper() + self.config.suffix.encode()
"""

FLOW = """\
name: plug
execution: {{mode: job}}
queues: [{{name: a, capacity: 8}}, {{name: b, capacity: 8}}]
stages:
  - {{name: src, type: noop_source, output_queue: a, config: {{message: hi, max_messages: 2}}}}
  - {{name: mid, type: {type}, input_queue: a, output_queue: b{extra}}}
  - {{name: out, type: stdout_sink, input_queue: b}}
"""


def test_python_file_in_a_plugin_directory(
    flowpipe: Run, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    write("plugins/stage_shout.py", SHOUT)
    flow = write("f.yaml", FLOW.format(type="shout", extra=", config: {suffix: '?'}"))
    proc = flowpipe("run", flow, FLOW_PIPE_PLUGIN_PATH=str(tmp_path / "plugins"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["HI #0?", "HI #1?"]
    listing = flowpipe("stages", "--plugin-path", tmp_path / "plugins")
    row = next(line for line in listing.stdout.splitlines() if line.startswith("shout "))
    assert row.split()[1:] == ["transform", str(tmp_path / "plugins/stage_shout.py")]


def test_plugin_field_with_a_path_relative_to_the_flow(
    flowpipe: Run, write: Callable[[str, str], Path]
) -> None:
    write("mine/shouting.py", SHOUT)
    flow = write("f.yaml", FLOW.format(type="anything", extra=", plugin: mine/shouting.py"))
    proc = flowpipe("run", flow)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["HI #0!", "HI #1!"]


def test_plugin_field_naming_the_types_default_file_is_the_type(
    flowpipe: Run, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    # flow-pipe flows often spell out the default: libstage_<type>.so is the type itself.
    write("plugins/stage_shout.py", SHOUT)
    flows = [
        FLOW.format(type="noop_transform", extra=", plugin: libstage_noop_transform.so"),
        FLOW.format(type="shout", extra=", plugin: libstage_shout.so"),
    ]
    outputs = [["hi #0", "hi #1"], ["HI #0!", "HI #1!"]]
    for text, expected in zip(flows, outputs, strict=True):
        proc = flowpipe("run", write("f.yaml", text), FLOW_PIPE_PLUGIN_PATH=str(tmp_path / "plugins"))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == expected


def test_plugin_field_with_module_and_class(
    flowpipe: Run, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    write("lib/shoutmod.py", SHOUT)
    flow = write("f.yaml", FLOW.format(type="shout", extra=", plugin: 'shoutmod:Shout'"))
    proc = flowpipe("run", flow, PYTHONPATH=str(tmp_path / "lib"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["HI #0!", "HI #1!"]


def test_entry_point_of_a_really_installed_package(
    flowpipe: Run, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    write("pkg/shoutpkg/__init__.py", SHOUT)
    write(
        "pkg/pyproject.toml",
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "shoutpkg"\nversion = "1.2.3"\n'
        '[project.entry-points."flowpipe.stages"]\nshout = "shoutpkg:Shout"\n',
    )
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(tmp_path / "pkg"),
        ],
        check=True,
        capture_output=True,
    )
    flow = write("f.yaml", FLOW.format(type="shout", extra=""))
    proc = flowpipe("run", flow, PYTHONPATH=str(target))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["HI #0!", "HI #1!"]
    shown = flowpipe("stages", "show", "shout", PYTHONPATH=str(target))
    assert "origin: package shoutpkg 1.2.3 (shoutpkg:Shout)" in shown.stdout
    assert "suffix: str (default '!')" in shown.stdout


def test_plugin_directory_shadows_a_builtin_and_says_so(
    flowpipe: Run, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    write("plugins/stage_uppercase_transform.py", SHOUT)
    shown = flowpipe("stages", "show", "uppercase_transform", FLOW_PIPE_PLUGIN_PATH=str(tmp_path / "plugins"))
    assert f"origin: {tmp_path / 'plugins/stage_uppercase_transform.py'}" in shown.stdout
    assert "shadows: built-in" in shown.stdout


def test_broken_plugin_file_is_a_clear_error(
    flowpipe: Run, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    write("plugins/stage_broken.py", "def oops(:\n")
    write("plugins/stage_twice.py", SHOUT + "\nclass Again(Shout):\n    pass\n")
    for name, words in (("broken", "SyntaxError"), ("twice", "expected exactly one stage class")):
        flow = write("f.yaml", FLOW.format(type=name, extra=""))
        proc = flowpipe("validate", flow, FLOW_PIPE_PLUGIN_PATH=str(tmp_path / "plugins"))
        assert proc.returncode == 2
        assert words in proc.stderr and f"stage_{name}.py" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_unknown_type_lists_where_it_looked(
    flowpipe: Run, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    flow = write("f.yaml", FLOW.format(type="nowhere", extra=""))
    proc = flowpipe("validate", flow, FLOW_PIPE_PLUGIN_PATH=str(tmp_path / "none"))
    assert proc.returncode == 2
    assert "no plugin provides stage type 'nowhere'" in proc.stderr
    assert f"{tmp_path / 'none'} (missing)" in proc.stderr
    assert "entry points 'flowpipe.stages'" in proc.stderr
