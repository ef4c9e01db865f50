#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the unit suites under valgrind memcheck (a build without
# sanitizers in build-valgrind/). Fails on any leak or memory error.
# Usage: scripts/valgrind.sh [suite-name-regex]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
B=build-valgrind
cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTS_SANITIZE=OFF >/dev/null
cmake --build "$B" >/dev/null
# Every unit suite built under $B/unit runs, except these (measured under
# valgrind on this tree; say why when adding one):
#   csi_dataplane, csi_engine_dataplane  over 400 s under valgrind (a pool of EC members, iSCSI
#                  target and user-mode initiator per test); runs under ASan
#   csi_mount      forks mkfs/mount/umount; valgrind follows every child
#                  (--trace-children) and mkfs.xfs fails under it, so
#                  filesystem_xfs fails with no memory error in Tessera
#   attach_tgt     forks a tgtd iSCSI daemon and mounts FUSE; over 400 s
# An argument replaces this with "only suites whose name matches the regex"
# (e.g. scripts/valgrind.sh '^unit_(csi_mount)$').
EXCLUDE='^unit_(csi_dataplane|csi_engine_dataplane|csi_mount|attach_tgt)$'
FILTER=${1:-}
fail=0
for t in "$B"/unit/unit_*; do
  name=$(basename "$t")
  [[ -x $t && -f $t ]] || continue
  if [[ -n $FILTER ]]; then
    [[ $name =~ $FILTER ]] || continue
  else
    [[ $name =~ $EXCLUDE ]] && { echo "valgrind $name: skipped (excluded)"; continue; }
  fi
  log=$B/valgrind-$name.log
  if valgrind --quiet --trace-children=yes --leak-check=full --errors-for-leak-kinds=definite,indirect \
       --error-exitcode=99 --log-file="$log.%p" "$t" -j1 >/dev/null 2>&1; then
    status=ok
  else
    status=FAIL; fail=1
  fi
  # Criterion's runner process holds nanomsg state at exit; real errors show in any child log.
  if grep -l "ERROR SUMMARY: [1-9]\|definitely lost: [1-9]\|indirectly lost: [1-9]" "$log".* >/dev/null 2>&1; then
    status=FAIL; fail=1
  fi
  echo "valgrind $name: $status"
  rm -f "$log".*
done
exit $fail
