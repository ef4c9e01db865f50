#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs every Debian package Tessera builds, runs and tests with.
# Idempotent and quick when everything is already present.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config clang clang-tidy cppcheck valgrind
  libisal-dev libiscsi-dev libiscsi-bin
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler
  libcriterion-dev libjansson-dev liburing-dev libfuse3-dev fuse3
  libzstd-dev libssl-dev libcurl4-openssl-dev
  e2fsprogs xfsprogs util-linux tgt iproute2 procps
  libclang-rt-14-dev jq etcd-server debootstrap curl python3-yaml
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
