#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kill -9 of `tessera dev` under synchronous iSCSI writes loses nothing.
#
# A libiscsi load (ts-faults-load, e2e/faults/tools) writes 4 KiB blocks,
# each WRITE(16) followed by SYNCHRONIZE CACHE(16), logging every attempt
# before it is sent and every acknowledgement; the harness SIGKILLs `tessera
# dev` at a random moment (and the load with it), restarts it on the same
# state (pool reassembly, thin-volume log replay, targets re-exported) and
# `ts-faults-load --verify` reads every block back over iSCSI: each must hold
# its last acknowledged version or a later attempted one. Several rounds on
# the same volume and log. Loopback only; no root needed.
# Usage: iscsi_crash.sh <tessera> <ts-faults-load> [rounds]
# Last line: rounds=N acked=… lost=0|N
set -euo pipefail
T=$(readlink -f "$1") LD=$(readlink -f "$2")
ROUNDS=${3:-4}
W=$(mktemp -d /tmp/ts-iscsi-crash.XXXXXX)
DEV_BIN=$T DEV_DIR=$W DEV_PORT=$((30000 + RANDOM % 20000))
. "$(dirname "$0")/../lib/dev.sh"
WP=""
cleanup() {
  set +e
  [ -n "$WP" ] && kill -KILL "$WP" 2>/dev/null
  dev_kill KILL
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
dev_start
URL=$(dev_volume crashvol 16Mi)
lost=0
for r in $(seq "$ROUNDS"); do
  "$LD" --blocks 4096 --seed "$r" --interval-ms 0 --log "$W/log" "$URL" 2>>"$W/load.log" &
  WP=$!
  sleep "0.$((3 + RANDOM % 7))"
  dev_kill KILL
  kill -KILL "$WP" 2>/dev/null || true   # (it would reconnect and go on)
  wait "$WP" 2>/dev/null || true; WP=""
  dev_start
  if ! "$LD" --verify --interval-ms 0 --log "$W/log" "$URL" 2>>"$W/load.log"; then
    lost=1; tail -5 "$W/load.log"
  fi
  echo "round $r: acknowledged so far $(grep -c '^A' "$W/log")"
  [ "$lost" -eq 0 ] || break
done
dev_kill INT
echo "rounds=$ROUNDS acked=$(grep -c '^A' "$W/log") lost=$lost"
[ "$lost" -eq 0 ]
