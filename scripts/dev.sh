#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The run command: installs what it needs, builds an optimised tree and runs
# the embedded default (`tessera dev`). Extra arguments go to `tessera dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build
exec ./build/bin/tessera dev "$@"
