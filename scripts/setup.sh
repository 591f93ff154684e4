#!/usr/bin/env bash
# Installs what building optillm-rs needs on a fresh Debian machine: a C/C++ toolchain,
# CMake (llama.cpp) and libclang with its headers (bindgen). Skips what is installed.
set -euo pipefail
need=()
for pkg in cmake g++ libclang-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
