"""Every way a native plugin can be wrong is one clear line, and exit 2 from the CLI."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Run

from flowpipe import PluginError, StageKind
from flowpipe.native import load_stage_library
from flowpipe.registry import build_registry, resolve

from .native_support import Plugins

BAD = {
    "no_entry": "not a flowpipe stage library: it does not export flowpipe_stage_entry",
    "original_only": (
        "exports flowpipe_create_stage but not flowpipe_stage_entry: it was built against flow-pipe's own"
        " runtime (fix: rebuild it with find_package(flowpipe) and link flowpipe::flowpipe_runtime)"
    ),
    "wrong_abi": (
        "built for stage ABI version 99, but this flowpipe implements version 1"
        " (fix: rebuild it against this flowpipe's SDK, see `flowpipe sdk --cmake-dir`)"
    ),
    "needs_dep": (
        "cannot load: libflowpipe_test_dep.so: cannot open shared object file: No such file or directory"
    ),
}

FLOW = """\
name: bad-plugin
execution: {{mode: EXECUTION_MODE_JOB}}
queues:
  - {{name: a, capacity: 8}}
  - {{name: b, capacity: 8}}
stages:
  - {{name: src, type: noop_source, output_queue: a, config: {{max_messages: 3}}}}
  - name: native
    type: {type}
    plugin: {plugin}
    input_queue: a
    output_queue: b
    config: {config}
  - {{name: out, type: stdout_sink, input_queue: b}}
"""


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"^.*/libstage_gone\.so: no such file$"):
        load_stage_library(tmp_path / "libstage_gone.so", "gone")


@pytest.mark.parametrize("type_name", sorted(BAD))
def test_a_refused_library(plugins: Plugins, type_name: str) -> None:
    path = plugins.path(type_name)
    with pytest.raises(PluginError) as caught:
        load_stage_library(path, type_name)
    assert str(caught.value) == f"{path}: {BAD[type_name]}"


@pytest.mark.parametrize("type_name", ["no_entry", "wrong_abi", "needs_dep"])
def test_validate_exits_2_naming_the_problem(
    plugins: Plugins, flowpipe: Run, write: Callable[[str, str], Path], type_name: str
) -> None:
    flow = write("flow.yaml", FLOW.format(type=type_name, plugin=plugins.path(type_name), config="{}"))
    result = flowpipe("validate", flow)
    assert result.returncode == 2
    assert BAD[type_name] in result.stderr
    assert "Traceback" not in result.stderr


def test_a_config_the_stage_rejects_fails_validation(
    plugins: Plugins, flowpipe: Run, write: Callable[[str, str], Path]
) -> None:
    path = plugins.path("crc32_transform")
    flow = write("flow.yaml", FLOW.format(type="crc32_transform", plugin=path, config="{rounds: 0}"))
    for command in ("validate", "run"):
        result = flowpipe(command, flow)
        assert result.returncode == 2, result.stderr
        assert "config.rounds must be an integer from 1 to 1000000, got 0" in result.stderr
        assert result.stdout == "" or command == "validate"


def test_python_file_wins_over_library_in_one_directory(plugins: Plugins, tmp_path: Path) -> None:
    shutil.copy(plugins.path("noop_stage"), tmp_path / "libstage_dup.so")
    (tmp_path / "stage_dup.py").write_text(
        "from flowpipe import Transform\n\n\n"
        "class Dup(Transform):\n"
        "    def process(self, record):\n"
        "        return record.data\n"
    )
    registry = build_registry([tmp_path])
    info = registry.get("dup")
    assert info.origin == str(tmp_path / "stage_dup.py")
    assert info.shadowed == (str(tmp_path / "libstage_dup.so"),)
    chosen = resolve(registry, "dup", str(tmp_path / "libstage_dup.so"), tmp_path)  # plugin: picks it
    assert chosen.kind is StageKind.TRANSFORM and chosen.stage_class.__doc__ == (
        "Native transform from libstage_dup.so (it calls itself 'noop_stage')."
    )
