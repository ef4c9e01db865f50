#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The test command: installs what it needs, builds with ASan/UBSan and runs
# every test tier registered with ctest (unit suites, conformance, fault and
# e2e subsets). Usage: scripts/test.sh [extra ctest args, e.g. -L unit]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
BUILD=${TS_TEST_BUILD:-build-test}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTS_SANITIZE=ON >/dev/null
cmake --build "$BUILD"
# The README's first command (scripts/dev.sh) builds RelWithDebInfo; optimised
# builds warn where the Debug build does not (-Werror: format truncation), so
# that build must compile too.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build >/dev/null
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$BUILD"
ctest --output-on-failure -j"$(nproc)" "$@"
