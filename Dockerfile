# flowpipe images. Works with podman (buildah) and docker.
#
#   podman build -t flowpipe-runtime:latest .              # the runtime (the default, last target)
#   podman build --target dev -t flowpipe-dev:latest .     # what a plugin repository builds FROM
#
# Targets:
#   dev      Python, flowpipe (`flowpipe sdk --cmake-dir`), the C/C++ stage SDK, a C++ compiler,
#            cmake and make: build `libstage_<type>.so` plugins with it.
#   runtime  flowpipe and the example plugins in /opt/flow-pipe/plugins; runs as uid 10001;
#            entry point flow_runtime (also /opt/flow-pipe/bin/flow_runtime); metrics and health
#            on port 9464. Flows are not baked in: mount them (`-v $PWD/flows:/flows`).
#
# Build arguments:
#   BASE_IMAGE      the runtime's base: Python >= 3.11 with the venv module (python:3.11-slim)
#   DEV_BASE_IMAGE  the dev image's base (default BASE_IMAGE); g++, cmake, make and the Python
#                   headers are installed with apt-get unless it has them already. Both bases must
#                   be the same distribution and Python minor version.
#   FLOWPIPE_EXTRAS flowpipe's optional dependencies to install, comma-separated (default
#                   "otel,messaging": OTLP export and the redis/nats/kafka stages; "" for none;
#                   add "arrow" for the Arrow and SQL stages)
#
# Offline builds: put wheels of everything flowpipe's build and install need into ./wheelhouse
# (made with the base image's Python, e.g. `pip wheel -w /wheelhouse setuptools pydantic ...` in
# a container of it) and no package index is used.
#
# Every stage takes its inputs by COPY, never RUN --mount, so that the layer cache of podman and
# docker alike notices a changed wheel.

ARG BASE_IMAGE=docker.io/library/python:3.11-slim
ARG DEV_BASE_IMAGE=${BASE_IMAGE}
ARG FLOWPIPE_EXTRAS=otel,messaging

# --- toolchain: Python venv, compiler, cmake ---------------------------------------------------
FROM ${DEV_BASE_IMAGE} AS toolchain
ENV VIRTUAL_ENV=/opt/flow-pipe/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    LANG=C.UTF-8
ENV PATH=${VIRTUAL_ENV}/bin:${PATH}
RUN set -eu; \
    need=""; \
    command -v g++ >/dev/null || need="$need g++"; \
    command -v cmake >/dev/null || need="$need cmake"; \
    command -v make >/dev/null || need="$need make"; \
    python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
      || need="$need python3-dev"; \
    if [ -n "$need" ]; then \
      apt-get update; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv "$VIRTUAL_ENV"

# --- wheels: flowpipe (with its C extension) in /own, every dependency in /deps -----------------
FROM toolchain AS wheels
ARG FLOWPIPE_EXTRAS
COPY . /src
RUN set -eu; \
    if [ -d /src/wheelhouse ]; then set -- --no-index --find-links /src/wheelhouse; else set --; fi; \
    pip wheel "$@" --wheel-dir /deps "/src${FLOWPIPE_EXTRAS:+[$FLOWPIPE_EXTRAS]}"; \
    mkdir /own; \
    mv /deps/flow_pipe-*.whl /own/

# --- dev: what a plugin repository builds FROM ---------------------------------------------------
# The dependencies are installed first, in a layer of their own, so that a change to flowpipe
# alone reinstalls flowpipe alone.
FROM toolchain AS dev-venv
COPY --from=wheels /deps /tmp/deps
RUN pip install --no-index /tmp/deps/*.whl
COPY --from=wheels /own /tmp/own
RUN pip install --no-index --no-deps /tmp/own/*.whl

FROM toolchain AS dev
COPY --from=dev-venv /opt/flow-pipe/venv /opt/flow-pipe/venv
RUN flowpipe --version
WORKDIR /build

# --- plugins: the native example plugins, built with the SDK -----------------------------------
# The SDK's files straight from the source tree (what `flowpipe sdk --cmake-dir` points into in
# the dev image), so that the plugins are rebuilt only when the SDK or the examples change.
FROM toolchain AS plugins
COPY src/flowpipe/native/include /opt/flowpipe-sdk/include
COPY src/flowpipe/native/cmake /opt/flowpipe-sdk/cmake
COPY src/flowpipe/native/sdk /opt/flowpipe-sdk/sdk
COPY examples /src/examples
RUN set -eu; \
    mkdir -p /opt/flow-pipe/plugins; \
    for project in /src/examples/*/CMakeLists.txt; do \
      [ -e "$project" ] || { echo "no example plugins to build"; break; }; \
      src="$(dirname "$project")"; out="/tmp/build/$(basename "$src")"; \
      cmake -S "$src" -B "$out" -DCMAKE_BUILD_TYPE=Release -Dflowpipe_DIR=/opt/flowpipe-sdk/cmake; \
      cmake --build "$out" --parallel; \
      find "$out" -maxdepth 2 -name 'libstage_*.so' -exec install -m 0644 -t /opt/flow-pipe/plugins {} +; \
    done; \
    ls -l /opt/flow-pipe/plugins

# --- runtime-venv: flowpipe installed on the runtime's base, without pip ----------------------
FROM ${BASE_IMAGE} AS runtime-venv
COPY --from=wheels /deps /tmp/deps
RUN python3 -m venv /opt/flow-pipe/venv \
 && /opt/flow-pipe/venv/bin/pip install --no-index --no-cache-dir --disable-pip-version-check /tmp/deps/*.whl
COPY --from=wheels /own /tmp/own
RUN /opt/flow-pipe/venv/bin/pip install --no-index --no-cache-dir --disable-pip-version-check --no-deps \
      /tmp/own/*.whl \
 && { /opt/flow-pipe/venv/bin/pip uninstall -y --disable-pip-version-check pip setuptools >/dev/null 2>&1 || true; }

# --- runtime ---------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
ENV VIRTUAL_ENV=/opt/flow-pipe/venv \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1
ENV PATH=${VIRTUAL_ENV}/bin:${PATH}
COPY --from=runtime-venv /opt/flow-pipe/venv /opt/flow-pipe/venv
COPY --from=plugins /opt/flow-pipe/plugins/ /opt/flow-pipe/plugins/
RUN set -eu; \
    mkdir -p /opt/flow-pipe/bin /flows; \
    ln -s "$VIRTUAL_ENV/bin/flow_runtime" /opt/flow-pipe/bin/flow_runtime; \
    echo 'flowpipe:x:10001:10001:flowpipe runtime:/nonexistent:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'flowpipe:x:10001:' >> /etc/group; \
    flow_runtime --version
ENV FLOW_PIPE_PLUGIN_PATH=/opt/flow-pipe/plugins \
    FLOWPIPE_METRICS_ADDR=0.0.0.0:9464
EXPOSE 9464
LABEL org.opencontainers.image.title="flowpipe runtime" \
      org.opencontainers.image.description="flowpipe: data-flow runtime compatible with flow-pipe flows and stage plugins" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /flows
USER 10001:10001
ENTRYPOINT ["/opt/flow-pipe/bin/flow_runtime"]
CMD []
