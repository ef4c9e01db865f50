#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# libiscsi's conformance suite (iscsi-test-cu -t ALL, with --dataloss) against
# a tessera-target (two loop threads) serving a 64 MiB RAM LUN on a free
# loopback port, with the multipath suite enabled.
# Fails unless every test passes. Usage: conformance.sh <tessera-target binary>
# TS_CONFORMANCE_BACKING=PATH:SIZE serves a file instead (e.g. one on
# /dev/shm, to cover the file provider's inline tmpfs paths).
set -euo pipefail
BIN=${1:?tessera-target path}
command -v iscsi-test-cu >/dev/null || { echo "iscsi-test-cu missing (apt-get install libiscsi-bin)"; exit 1; }
WORK=$(mktemp -d)
IQN=iqn.2026-01.io.tessera:conformance
TPID=
cleanup() {
	if [ -n "$TPID" ]; then kill "$TPID" 2>/dev/null || true; wait "$TPID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
"$BIN" --portal 127.0.0.1:0 --threads 2 --lun "$IQN:${TS_CONFORMANCE_BACKING:-ram:64M}" --port-file "$WORK/port" --pr-dir "$WORK" \
	>"$WORK/target.log" 2>&1 &
TPID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
[ -s "$WORK/port" ] || { echo "target did not start"; cat "$WORK/target.log"; exit 1; }
PORT=$(cat "$WORK/port")
set +e
URL="iscsi://127.0.0.1:$PORT/$IQN/0"
# the URL twice: the MultipathIO suite runs over two sessions instead of skipping
timeout 600 iscsi-test-cu --dataloss --test ALL "$URL" "$URL" >"$WORK/cu.log" 2>&1
RC=$?
set -e
grep -E "FAILED$|^    [0-9]+\. " "$WORK/cu.log" || true
SUMMARY=$(grep -E "^ +tests " "$WORK/cu.log" || true)
echo "$SUMMARY"
# "tests  <total> <ran> <passed> <failed> <inactive>"
read -r _ TOTAL RAN PASSED FAILED _ <<<"$SUMMARY" || true
if [ "$RC" -ne 0 ] || [ -z "${FAILED:-}" ] || [ "$FAILED" != 0 ] || [ "${PASSED:-0}" != "${TOTAL:-x}" ] ||
   [ "${TOTAL:-0}" -lt 200 ]; then
	echo "iscsi-test-cu: FAILED (rc=$RC)"
	tail -n 40 "$WORK/target.log"
	exit 1
fi
if ! kill -0 "$TPID" 2>/dev/null; then
	echo "target died during the run"; tail -n 40 "$WORK/target.log"; exit 1
fi
echo "iscsi_test_cu_passed=$PASSED iscsi_test_cu_total=$TOTAL"
