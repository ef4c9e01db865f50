#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kill -9 of `tessera dev` under synchronous iSCSI writes loses nothing.
#
# A libiscsi writer (crash-writer) writes 4 KiB blocks, each WRITE(16)
# followed by SYNCHRONIZE CACHE(16), logging what was acknowledged; the
# harness SIGKILLs `tessera dev` at a random moment, restarts it on the same
# state (pool reassembly, thin-volume log replay, targets re-exported) and
# crash-verify reads every acknowledged block back over iSCSI. Several rounds
# on the same volume. Loopback only; no root needed.
# Usage: iscsi_crash.sh <tessera> <crash-writer> <crash-verify> [rounds]
# Last line: rounds=N acked=… lost=0|N
set -euo pipefail
T=$(readlink -f "$1") WR=$(readlink -f "$2") VE=$(readlink -f "$3")
ROUNDS=${4:-4}
W=$(mktemp -d /tmp/ts-iscsi-crash.XXXXXX)
PORT=$((30000 + RANDOM % 20000))
export TESSERA_ENDPOINT=unix://$W/state/csi.sock
DP="" WP=""
cleanup() {
  set +e
  [ -n "$WP" ] && kill -KILL "$WP" 2>/dev/null
  [ -n "$DP" ] && kill -KILL "$DP" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
start_dev() {
  : >"$W/dev.out"
  "$T" dev --state-dir "$W/state" --disk-size 128Mi --portal "127.0.0.1:$PORT" \
    >"$W/dev.out" 2>>"$W/dev.log" &
  DP=$!
  for _ in $(seq 300); do
    grep -q '^ready' "$W/dev.out" && return 0
    kill -0 "$DP" 2>/dev/null || { tail -20 "$W/dev.log"; echo "iscsi_crash: tessera dev died"; exit 1; }
    sleep 0.1
  done
  echo "iscsi_crash: tessera dev not ready"; exit 1
}
start_dev
URL=$("$T" volume create crashvol --size 16Mi -o json | sed -n 's/.*"iscsi_url": *"\([^"]*\)".*/\1/p')
[ -n "$URL" ] || { echo "iscsi_crash: no iscsi_url"; exit 1; }
lost=0
for r in $(seq "$ROUNDS"); do
  "$WR" "$URL" "$W/log" "$r" &
  WP=$!
  sleep "0.$((3 + RANDOM % 7))"
  kill -KILL "$DP"; wait "$DP" 2>/dev/null || true; DP=""
  kill -KILL "$WP" 2>/dev/null || true   # (libiscsi would keep reconnecting)
  wait "$WP" 2>/dev/null || true; WP=""
  start_dev
  if ! "$VE" "$URL" "$W/log"; then lost=1; tail -3 "$W/log"; fi
  echo "round $r: acknowledged so far $(grep -c '^A' "$W/log")"
  [ "$lost" -eq 0 ] || break
done
kill -INT "$DP"; wait "$DP"; DP=""
echo "rounds=$ROUNDS acked=$(grep -c '^A' "$W/log") lost=$lost"
[ "$lost" -eq 0 ]
