"""Podman, local base images and the flowpipe images, built once and cached by content hash.

Public registries are unreachable in CI, so the base images are made here: Debian bookworm with
mmdebstrap, imported with ``podman import``. flowpipe's dependencies are fetched once as wheels
(by the base image's own pip, so environment markers match its Python) into a wheelhouse, and
the image build itself runs without network. Everything is cached under
``~/.cache/flowpipe-tests`` (``FLOWPIPE_TEST_CACHE``) and in podman's image store, keyed by a
hash of its inputs: a fresh machine builds it all (a few minutes), later runs reuse it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from conftest import unavailable

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(
    os.environ.get("FLOWPIPE_TEST_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flowpipe-tests"
)
DEBIAN_MIRROR = os.environ.get("FLOWPIPE_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"  # Python 3.11, like the default python:3.11-slim base

# Below this machine's limits: runc may not raise them (root without CAP_SYS_RESOURCE).
ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"""

# Packages of the two base images: the runtime's (Python with venv; libstdc++ for C++ plugins)
# and the dev image's (plus the compilers, cmake and Python headers that the Dockerfile would
# otherwise install with apt-get).
BASE_PACKAGES = ("python3", "python3-venv", "libstdc++6")
DEV_PACKAGES = (*BASE_PACKAGES, "python3-dev", "g++", "cmake", "make")
MMDEBSTRAP_OPTIONS = (
    "--aptopt=APT::Install-Recommends false",
    "--dpkgopt=force-unsafe-io",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
)
MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")
IMPORT_CHANGES = (
    "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV=LANG=C.UTF-8",
)
RECIPE_VERSION = "1"  # bump to rebuild every cached base image

EXAMPLE_IMAGE = "localhost/flowpipe-test-stage-example"  # examples/stage-example/Dockerfile
BUILD_LABEL = "io.flowpipe.test-build=1"  # on every image and cached layer the tests build
BUILD_TIMEOUT = 1800.0
RUN_TIMEOUT = 120.0


def require_tool(name: str) -> str:
    """The tool's path; skipped without it, except under CI=true, where that is a failure."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (make test-deps installs it)")
    return path


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:16]


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """One test session at a time builds a given cached artefact."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@dataclass
class Podman:
    """Runs podman with this machine's workable settings (see CONTAINERS_CONF)."""

    exe: str
    conf: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWPIPE_")}
        env["CONTAINERS_CONF"] = str(self.conf)
        return env

    def __call__(
        self, *args: str | Path, timeout: float = RUN_TIMEOUT, check: bool = False, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.exe, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def image_exists(self, ref: str) -> bool:
        return self("image", "exists", ref).returncode == 0

    def inspect(self, ref: str) -> dict[str, object]:
        data = json.loads(self("image", "inspect", ref, check=True).stdout)
        assert isinstance(data, list)
        result = data[0]
        assert isinstance(result, dict)
        return result

    def image_id(self, ref: str) -> str:
        return str(self.inspect(ref)["Id"])

    def build(self, context: Path, tag: str, *args: str, dockerfile: Path | None = None) -> None:
        """``podman build`` without network (every input is in the context or a base image)."""
        command = [
            "build",
            "--network=none",
            *ULIMITS,
            "--layers",
            "--force-rm",
            "--label",
            BUILD_LABEL,
            "-t",
            tag,
            *args,
        ]
        if dockerfile is not None:
            command += ["-f", str(dockerfile)]
        proc = self(*command, context, timeout=BUILD_TIMEOUT)
        if proc.returncode != 0:
            log = (proc.stdout + proc.stderr)[-12000:]
            raise AssertionError(f"podman build of {tag} failed ({proc.returncode}):\n{log}")

    def run_image(
        self, image: str, *args: str | Path, options: Sequence[str] = (), timeout: float = RUN_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """``podman run --rm`` without network unless ``options`` give one."""
        network = [] if any(o.startswith("--network") for o in options) else ["--network=none"]
        return self("run", "--rm", *ULIMITS, *network, *options, image, *args, timeout=timeout)

    def prune_builds_before(self, seconds_ago: float) -> None:
        """Remove the untagged layers that earlier test builds left and this one did not reuse."""
        self(
            "image",
            "prune",
            "-f",
            "--filter",
            f"label={BUILD_LABEL}",
            "--filter",
            f"until={seconds_ago:.0f}s",
        )

    def remove_old(self, repository: str, keep: str) -> None:
        """Drop older cached test images of ``repository`` (images in use stay)."""
        proc = self("images", "--format", "{{.Repository}}:{{.Tag}}", repository)
        for ref in proc.stdout.split():
            if ref != keep and ref.startswith(repository + ":"):
                self("rmi", ref)


def make_podman() -> Podman:
    exe = require_tool("podman")
    CACHE.mkdir(parents=True, exist_ok=True)
    conf = CACHE / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        tmp = conf.with_suffix(f".{os.getpid()}")
        tmp.write_text(CONTAINERS_CONF)
        tmp.replace(conf)
    return Podman(exe, conf)


# -- base images --------------------------------------------------------------------------------


def base_image(podman: Podman, kind: str, packages: Sequence[str]) -> str:
    """``localhost/flowpipe-test-<kind>-base:<hash>``: made with mmdebstrap unless cached."""
    options = list(MMDEBSTRAP_OPTIONS)
    if MERGED_USR_HOOK.is_dir():  # merged /usr without the usrmerge package (and its perl)
        options.append(f"--hook-dir={MERGED_USR_HOOK}")
    recipe = [RECIPE_VERSION, SUITE, "--variant=essential", ",".join(packages), *options, *IMPORT_CHANGES]
    tag = f"localhost/flowpipe-test-{kind}-base:{digest(*recipe)}"
    if podman.image_exists(tag):
        return tag
    mmdebstrap = require_tool("mmdebstrap")
    with cache_lock(f"{kind}-base"):
        if podman.image_exists(tag):  # built meanwhile by another session
            return tag
        with tempfile.TemporaryDirectory(dir=CACHE, prefix=f"{kind}-base-") as tmp:
            tarball = Path(tmp) / "rootfs.tar"
            proc = subprocess.run(
                [
                    mmdebstrap,
                    "--variant=essential",
                    f"--include={','.join(packages)}",
                    *options,
                    SUITE,
                    str(tarball),
                    DEBIAN_MIRROR,
                ],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
            assert proc.returncode == 0, f"mmdebstrap failed:\n{proc.stderr[-6000:]}"
            changes = [arg for change in IMPORT_CHANGES for arg in ("--change", change)]
            podman("import", *changes, tarball, tag, timeout=600, check=True)
    podman.remove_old(tag.rsplit(":", 1)[0], keep=tag)
    return tag


def base_images(podman: Podman) -> tuple[str, str]:
    """(runtime base, dev base); the two are made in parallel when neither is cached."""
    with contextlib.ExitStack() as stack:
        from concurrent.futures import ThreadPoolExecutor

        pool = stack.enter_context(ThreadPoolExecutor(2))
        runtime = pool.submit(base_image, podman, "runtime", BASE_PACKAGES)
        dev = pool.submit(base_image, podman, "dev", DEV_PACKAGES)
        return runtime.result(), dev.result()


# -- the wheelhouse ---------------------------------------------------------------------------


def dockerfile_default(name: str) -> str:
    """The default of ``ARG name=...`` in the root Dockerfile."""
    match = re.search(rf"^ARG {name}=(.*)$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert match, f"the Dockerfile has no default for {name}"
    return match.group(1).strip()


def requirements(extras: Sequence[str]) -> list[str]:
    """flowpipe's build requirements, dependencies and those of ``extras``, from pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    optional: dict[str, list[str]] = project["project"].get("optional-dependencies", {})
    name = project["project"]["name"]
    found: list[str] = [*project["build-system"]["requires"], "wheel", *project["project"]["dependencies"]]
    pending = list(extras)
    seen: set[str] = set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in optional.get(extra, []):
            own = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", requirement.replace(" ", ""))
            if own:
                pending.extend(own.group(1).split(","))
            else:
                found.append(requirement)
    return sorted(set(found))


def _host_ca_bundle() -> Path | None:
    for variable in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            return Path(value)
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    return default if default.is_file() else None


def wheelhouse(podman: Podman, base: str, extras: Sequence[str]) -> Path:
    """Wheels of everything flowpipe's build and install need, resolved by ``base``'s own pip.

    This is the one step with network (PyPI, through the host's network and CA bundle); the
    image build that uses the wheelhouse has none.
    """
    reqs = requirements(extras)
    key = digest(podman.image_id(base), *reqs)
    target = CACHE / f"wheelhouse-{key}"
    if (target / ".complete").exists():
        return target
    with cache_lock("wheelhouse"):
        if (target / ".complete").exists():
            return target
        tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix="wheelhouse-tmp-"))
        tmp.chmod(0o777)
        (tmp / "requirements.txt").write_text("\n".join(reqs) + "\n")
        options = ["--network=host", "-v", f"{tmp}:/wheelhouse"]
        env = ["-e", "PIP_DISABLE_PIP_VERSION_CHECK=1", "-e", "PIP_DEFAULT_TIMEOUT=120"]
        ca = _host_ca_bundle()
        if ca is not None:
            options += ["-v", f"{ca}:/run/host-ca.pem:ro"]
            env += ["-e", "PIP_CERT=/run/host-ca.pem"]
        for variable in (
            "PIP_INDEX_URL",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "NO_PROXY",
        ):
            value = os.environ.get(variable, "")
            if value and (variable == "NO_PROXY" or value.startswith("http")):  # not file:// indexes
                env += ["-e", f"{variable}={value}"]
        script = (
            "python3 -m venv /tmp/venv && "
            "/tmp/venv/bin/pip wheel -q -w /wheelhouse -r /wheelhouse/requirements.txt"
        )
        proc = podman.run_image(base, "sh", "-c", script, options=[*options, *env], timeout=900)
        assert proc.returncode == 0, f"downloading wheels failed:\n{proc.stdout}\n{proc.stderr[-6000:]}"
        (tmp / "requirements.txt").unlink()
        (tmp / ".complete").write_text("\n".join(reqs))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        for old in CACHE.glob("wheelhouse-*"):
            if old != target and old.is_dir() and not old.name.startswith("wheelhouse-tmp-"):
                shutil.rmtree(old, ignore_errors=True)
    return target


# -- the flowpipe images ----------------------------------------------------------------------

_SKIP_DIRS = {"__pycache__", "build", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_SKIP_SUFFIXES = (".so", ".pyc", ".pyo")


def _copy_tree(src: Path, dst: Path) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in _SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.is_dir() or path.name.endswith(_SKIP_SUFFIXES):
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def stage_context(destination: Path, wheels: Path) -> None:
    """The root Dockerfile's build context: a clean copy of the sources plus ``wheelhouse/``."""
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, destination / name)
    for licence in REPO.glob("LICEN[CS]E*"):
        shutil.copy2(licence, destination / licence.name)
    for tree in ("src", "examples"):
        if (REPO / tree).is_dir():
            _copy_tree(REPO / tree, destination / tree)
    shutil.copytree(wheels, destination / "wheelhouse", ignore=shutil.ignore_patterns(".complete"))


def context_digest(context: Path, *extra: str) -> str:
    parts: list[str | bytes] = [*extra]
    for path in sorted(context.rglob("*")):
        if path.is_file():
            parts += [str(path.relative_to(context)), path.read_bytes()]
    return digest(*parts)


@dataclass(frozen=True)
class Images:
    runtime: str
    dev: str
    base: str
    dev_base: str
    build_seconds: float  # 0 when both came from the cache
    sources: dict[str, str]  # path under flowpipe/ -> sha256 of each .py file built into them


def python_sources(package: Path) -> dict[str, str]:
    return {
        str(path.relative_to(package)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(package.rglob("*.py"))
    }


def flowpipe_images(podman: Podman, tmp: Path) -> Images:
    """The runtime and dev targets of the root Dockerfile, built from the test base images."""
    base, dev_base = base_images(podman)
    extras_arg = dockerfile_default("FLOWPIPE_EXTRAS")
    extras = [e for e in extras_arg.split(",") if e]
    wheels = wheelhouse(podman, base, extras)
    context = tmp / "context"
    context.mkdir()
    stage_context(context, wheels)
    args = [
        f"BASE_IMAGE={base}",
        f"DEV_BASE_IMAGE={dev_base}",
        f"FLOWPIPE_EXTRAS={extras_arg}",
    ]
    key = context_digest(context, podman.image_id(base), podman.image_id(dev_base), *args)
    runtime, dev = f"localhost/flowpipe-test-runtime:{key}", f"localhost/flowpipe-test-dev:{key}"
    started = time.monotonic()
    built = False
    with cache_lock("images"):
        build_args = [a for arg in args for a in ("--build-arg", arg)]
        if not podman.image_exists(runtime):
            podman.build(context, runtime, *build_args)
            built = True
        if not podman.image_exists(dev):
            podman.build(context, dev, "--target", "dev", *build_args)
            built = True
        if built:  # keep the disk from filling up with the layers of earlier sources
            podman.remove_old(EXAMPLE_IMAGE, keep=f"{EXAMPLE_IMAGE}:{key}")
            podman.remove_old("localhost/flowpipe-test-runtime", keep=runtime)
            podman.remove_old("localhost/flowpipe-test-dev", keep=dev)
            podman.prune_builds_before(time.monotonic() - started + 5)
    sources = python_sources(context / "src/flowpipe")
    return Images(runtime, dev, base, dev_base, time.monotonic() - started if built else 0.0, sources)


# -- waiting ---------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_status(url: str) -> int | None:
    """The HTTP status of a GET of ``url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def serves_health(port: int) -> bool:
    """The runtime's /healthz, /readyz and /metrics on ``port`` all answer 200."""
    return all(
        http_status(f"http://127.0.0.1:{port}{path}") == 200 for path in ("/healthz", "/readyz", "/metrics")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def readable_dir(path: Path) -> Path:
    """Make ``path`` (and what is in it) readable by the image's non-root user."""
    path.chmod(0o755)
    for child in path.rglob("*"):
        child.chmod(0o755 if child.is_dir() else 0o644)
    return path
