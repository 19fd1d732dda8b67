#!/usr/bin/env bash
# Installs the system tools the test suite needs, when they are missing.
# Under CI=true a tool that cannot be installed is an error, never a skipped test.
set -euo pipefail

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing test tools: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
