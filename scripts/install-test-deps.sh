#!/usr/bin/env bash
# Installs the system tools the test suite needs, when they are missing.
# Under CI=true a tool that cannot be installed is an error, never a skipped test.
set -euo pipefail

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v protoc >/dev/null || need+=(protobuf-compiler libprotobuf-dev)  # tests/native: configure(Struct)
command -v dot >/dev/null || need+=(graphviz)  # flowpipe graph --format svg|png
command -v redis-server >/dev/null || need+=(redis-server)  # tests/messaging; nats-server and Tansu: PyPI, dev extra
command -v podman >/dev/null || need+=(podman)  # tests/deploy: build and run the runtime image
command -v runc >/dev/null || need+=(runc)
command -v catatonit >/dev/null || need+=(catatonit)  # the pause process of podman kube play
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)  # tests/deploy: the local Debian base images

if [ ${#need[@]} -gt 0 ]; then
  echo "installing test tools: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# podman asks runc for its default open-files/process limits, which it may not raise without
# CAP_SYS_RESOURCE (root in an unprivileged sandbox): there, cap them below this host's limits.
containers_conf=/etc/containers/containers.conf.d/50-flowpipe-ulimits.conf
cap_eff=$(awk '/^CapEff/ {print $2}' /proc/self/status)
if command -v podman >/dev/null && [ ! -e "$containers_conf" ] && (( (16#$cap_eff >> 24 & 1) == 0 )); then
  echo "podman: default ulimits in $containers_conf (no CAP_SYS_RESOURCE here)"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo mkdir -p "$(dirname "$containers_conf")"
  printf '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n' | $sudo tee "$containers_conf" >/dev/null
fi
