"""The runtime image, run with podman the way the README shows: flows mounted at /flows."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from .container_support import (
    EXAMPLE_IMAGE,
    REPO,
    ULIMITS,
    Images,
    Podman,
    cache_lock,
    free_port,
    readable_dir,
    serves_health,
    wait_for,
)

pytestmark = pytest.mark.slow

HELLO_LINES = [f"HELLO FROM FLOWPIPE #{i}" for i in range(5)]

SHOUT_PLUGIN = '''\
from flowpipe import Payload, StageConfig, Transform


class ShoutConfig(StageConfig):
    suffix: str = "!"


class Shout(Transform[ShoutConfig]):
    """Uppercases each record and appends a suffix."""

    def process(self, record: Payload) -> bytes:
        return record.data.upper() + self.config.suffix.encode()
'''

# A Python plugin from a mounted directory next to the image's native example plugin.
MIXED_FLOW = """\
name: mixed
execution: {mode: job}
queues: [{name: a}, {name: b}, {name: c}]
stages:
  - {name: src, type: noop_source, output_queue: a, config: {message: hi, max_messages: 3}}
  - {name: native, type: noop_stage, input_queue: a, output_queue: b}
  - {name: shout, type: shout, input_queue: b, output_queue: c, config: {suffix: "?!"}}
  - {name: out, type: stdout_sink, input_queue: c}
"""

STREAMING_FLOW = """\
name: ticker
execution: {mode: streaming}
queues: [{name: q}]
stages:
  - {name: src, type: noop_source, output_queue: q, config: {message: tick, delay_ms: 50}}
  - {name: out, type: stdout_sink, input_queue: q}
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """A flows directory, readable by the image's user, to mount at /flows."""
    directory = tmp_path / "flows"
    directory.mkdir()
    shutil.copy(REPO / "flows/hello.yaml", directory / "hello.yaml")
    for example in sorted(REPO.glob("examples/*/flows/*.yaml")):
        shutil.copy(example, directory / example.name)
    (directory / "mixed.yaml").write_text(MIXED_FLOW)
    (directory / "ticker.yaml").write_text(STREAMING_FLOW)
    (directory / "bad.yaml").write_text("name: bad\nstages:\n  - {name: s, type: no_such_stage}\n")
    return readable_dir(directory)


def mount(directory: Path, target: str = "/flows") -> list[str]:
    return ["-v", f"{directory}:{target}:ro"]


def test_job_flow_prints_its_output_and_exits_0(podman: Podman, images: Images, flows: Path) -> None:
    proc = podman.run_image(images.runtime, "/flows/hello.yaml", options=mount(flows))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == HELLO_LINES
    assert "job finished: 5 records" in proc.stderr


def test_invalid_flow_exits_2_with_the_problem(podman: Podman, images: Images, flows: Path) -> None:
    proc = podman.run_image(images.runtime, "/flows/bad.yaml", options=mount(flows))
    assert proc.returncode == 2
    assert "no_such_stage" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_runs_as_non_root(podman: Podman, images: Images) -> None:
    config = podman.inspect(images.runtime)["Config"]
    assert isinstance(config, dict)
    assert config["User"] == "10001:10001"
    proc = podman.run_image(images.runtime, options=["--entrypoint", "id"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("uid=10001(flowpipe) gid=10001(flowpipe)")


def test_image_settings(podman: Podman, images: Images) -> None:
    config = podman.inspect(images.runtime)["Config"]
    assert isinstance(config, dict)
    assert config["Entrypoint"] == ["/opt/flow-pipe/bin/flow_runtime"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["FLOW_PIPE_PLUGIN_PATH"] == "/opt/flow-pipe/plugins"
    assert env["FLOWPIPE_METRICS_ADDR"] == "0.0.0.0:9464"
    assert "9464/tcp" in config["ExposedPorts"]
    # flow_runtime is on PATH as well as at the original's path.
    proc = podman.run_image(images.runtime, "--version", options=["--entrypoint", "flow_runtime"])
    assert proc.returncode == 0, proc.stderr


def test_native_example_plugins_are_in_the_image(podman: Podman, images: Images, flows: Path) -> None:
    proc = podman.run_image(images.runtime, "/flows/noop_stage.yaml", options=mount(flows))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"hello from noop_stage #{i}" for i in range(5)]
    proc = podman.run_image(images.runtime, "/flows/split.yaml", options=mount(flows))  # C ABI plugin
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["red", "green", "blue #0", "red", "green", "blue #1"]


def test_plugin_dropped_into_a_mounted_directory_is_used(
    podman: Podman, images: Images, flows: Path, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "stage_shout.py").write_text(SHOUT_PLUGIN)
    readable_dir(plugins)
    options = [
        *mount(flows),
        *mount(plugins, "/plugins"),
        "-e",
        "FLOW_PIPE_PLUGIN_PATH=/plugins:/opt/flow-pipe/plugins",
    ]
    proc = podman.run_image(images.runtime, "/flows/mixed.yaml", options=options)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"HI #{i}?!" for i in range(3)]
    # The same directory given with --plugin-path, the image's own directory still searched.
    options = [*mount(flows), *mount(plugins, "/plugins")]
    proc = podman.run_image(images.runtime, "/flows/mixed.yaml", "--plugin-path", "/plugins", options=options)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"HI #{i}?!" for i in range(3)]


def test_streaming_flow_serves_health_and_drains_on_stop(podman: Podman, images: Images, flows: Path) -> None:
    port = free_port()
    name = f"flowpipe-test-ticker-{port}"
    started = podman(
        "run",
        "-d",
        "--name",
        name,
        *ULIMITS,
        "--network=host",  # the metrics port on the host's loopback only
        "-e",
        f"FLOWPIPE_METRICS_ADDR=127.0.0.1:{port}",
        *mount(flows),
        images.runtime,
        "/flows/ticker.yaml",
    )
    assert started.returncode == 0, started.stderr
    try:
        wait_for(lambda: "tick #3" in podman("logs", name).stdout, 60, "the flow's output")
        wait_for(lambda: serves_health(port), 30, "/healthz, /readyz and /metrics")
        stopped = podman("stop", "-t", "30", name)  # SIGTERM: the flow drains and exits 0
        assert stopped.returncode == 0, stopped.stderr
        state = podman("inspect", name, "--format", "{{.State.ExitCode}}", check=True)
        assert state.stdout.strip() == "0", podman("logs", name).stderr
    finally:
        podman("rm", "-f", name)


INSTALLED_SOURCES = """\
import hashlib, json, pathlib, flowpipe
root = pathlib.Path(flowpipe.__file__).parent
print(json.dumps({str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                  for p in sorted(root.rglob("*.py"))}))
"""


@pytest.mark.parametrize("target", ["runtime", "dev"])
def test_images_hold_the_current_sources(podman: Podman, images: Images, target: str) -> None:
    """No stale layer from the build cache: the installed package is the one just staged."""
    image = images.runtime if target == "runtime" else images.dev
    proc = podman.run_image(image, "-c", INSTALLED_SOURCES, options=["--entrypoint", "python3"])
    assert proc.returncode == 0, proc.stderr
    installed = json.loads(proc.stdout)
    assert "cli/_main.py" in installed
    assert {path: images.sources.get(path) for path in installed} == installed


def test_image_is_small(podman: Podman, images: Images) -> None:
    size = int(str(podman.inspect(images.runtime)["Size"]))
    base = int(str(podman.inspect(images.base)["Size"]))
    added = (size - base) / 1e6
    print(f"\nruntime image {size / 1e6:.0f} MB: base {base / 1e6:.0f} MB + flowpipe {added:.0f} MB")
    # flowpipe, its dependencies with the otel and messaging extras, and the example plugins.
    assert added < 110, f"the runtime image adds {added:.0f} MB to its base"
    proc = podman.run_image(images.runtime, "-c", "import pip", options=["--entrypoint", "python3"])
    assert proc.returncode != 0, "pip should not be left in the runtime image"


def test_plugin_repository_builds_on_the_dev_image(podman: Podman, images: Images, flows: Path) -> None:
    """The seed's pattern: examples/stage-example/Dockerfile builds FROM the dev image and
    copies its .so into the runtime image."""
    proc = podman.run_image(images.dev, "sdk", "--cmake-dir", options=["--entrypoint", "flowpipe"])
    assert proc.returncode == 0, (
        f"`flowpipe sdk --cmake-dir`, which plugin builds call, fails:\n{proc.stderr}"
    )
    assert proc.stdout.strip().endswith("/flowpipe/native/cmake")
    example = REPO / "examples/stage-example"
    tag = f"{EXAMPLE_IMAGE}:{images.runtime.rsplit(':', 1)[1]}"
    with cache_lock("images"):
        if not podman.image_exists(tag):
            podman.build(
                example,
                tag,
                "--build-arg",
                f"FLOWPIPE_DEV_IMAGE={images.dev}",
                "--build-arg",
                f"FLOWPIPE_RUNTIME_IMAGE={images.runtime}",
            )
    proc = podman.run_image(tag, "/flows/noop_stage.yaml", options=mount(flows))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"hello from noop_stage #{i}" for i in range(5)]


def test_readme_run_commands_work_with_podman(podman: Podman, images: Images) -> None:
    """The README's `docker run` lines, with podman and the image under test."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Run in a container") :]
    commands = [
        " ".join(part.strip().rstrip("\\") for part in block.splitlines())
        for block in re.findall(r"^(docker run .*?(?<!\\))$", section, re.MULTILINE | re.DOTALL)
    ]
    runs = [c for c in commands if "flows/hello.yaml" in c]
    assert runs, "the README shows no `docker run ... /flows/hello.yaml` command"
    for command in runs:
        argv = shlex.split(command.replace("$(pwd)", str(REPO)))
        argv = [images.runtime if a == "flowpipe-runtime:latest" else a for a in argv]
        assert argv[:2] == ["docker", "run"]
        proc = subprocess.run(
            [podman.exe, "run", "--network=none", *argv[2:]],
            capture_output=True,
            text=True,
            timeout=120,
            env=podman.env,
            cwd=REPO,
            check=False,
        )
        assert proc.returncode == 0, f"{command}\n{proc.stderr}"
        assert proc.stdout.splitlines() == HELLO_LINES, command
