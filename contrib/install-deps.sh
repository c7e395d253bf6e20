#!/usr/bin/env bash
# Installs what gitward needs from Debian 12 packages, only when missing.
#   install-deps.sh build   compiler, CMake and the libraries
#   install-deps.sh test    the above plus cmocka, clang (fuzzing), python3
set -euo pipefail
what=${1:-build}
pkgs=(build-essential cmake pkg-config git ca-certificates
      libgit2-dev libyaml-dev libjansson-dev libssl-dev libcurl4-openssl-dev
      libmicrohttpd-dev libsystemd-dev python3)
if [[ $what == test ]]; then
  pkgs+=(libcmocka-dev clang clang-format python3-yaml python3-jsonschema podman runc busybox-static curl tar
        qemu-system-x86)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
