#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ts-faults-load against `tessera dev` on loopback (no root):
#  1. ride-through: the load runs while `tessera dev` is SIGKILLed and
#     restarted twice; it reconnects, re-issues what was not acknowledged,
#     and at SIGTERM verifies every block: lost=0, three sessions or more;
#  2. --verify on the same log finds nothing lost;
#  3. the checker catches a loss: a forged acknowledgement of a version the
#     block never got (its content is then older than "acked") gives lost=1
#     and exit 1, and a log with the wrong pattern seed makes every written
#     block corrupt.
# Usage: load_check.sh <tessera> <ts-faults-load>
set -euo pipefail
T=$(readlink -f "$1") LD=$(readlink -f "$2")
W=$(mktemp -d /tmp/ts-faults-load.XXXXXX)
DEV_BIN=$T DEV_DIR=$W DEV_PORT=$((30000 + RANDOM % 20000))
. "$(dirname "$0")/../lib/dev.sh"
LP=""
cleanup() {
  set +e
  [ -n "$LP" ] && kill -KILL "$LP" 2>/dev/null
  dev_kill KILL
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "load_check: $*"; tail -20 "$W/load.log" 2>/dev/null; exit 1; }
field() { sed -n "s/.*\\b$1=\\([0-9]*\\).*/\\1/p" <<<"$2"; }

dev_start
URL=$(dev_volume lc 16Mi)

# 1. ride through two kill -9 of the target
"$LD" --log "$W/wal" --seed 1 --interval-ms 500 "$URL" >"$W/load.out" 2>"$W/load.log" &
LP=$!
for k in 1 2; do
  sleep 1.$((RANDOM % 10))
  dev_kill KILL
  sleep 0.$((RANDOM % 10))
  dev_start
done
sleep 1.5
kill -TERM "$LP"
rc=0; wait "$LP" || rc=$?; LP=""
res=$(tail -1 "$W/load.out")
echo "ride-through: $res"
[ "$rc" -eq 0 ] && [ "$(field lost "$res")" = 0 ] || fail "ride-through lost writes (rc=$rc)"
[ "$(field sessions "$res")" -ge 3 ] || fail "expected a new session after each restart"
[ "$(field acked "$res")" -gt 0 ] || fail "nothing acknowledged"

# 2. a second reader agrees
res=$("$LD" --verify --interval-ms 0 --log "$W/wal" "$URL" 2>>"$W/load.log" | tail -1) ||
  fail "verify of an intact volume failed: $res"
echo "verify: $res"

# 3a. forge an acknowledgement the block never got
read -r _ b v < <(grep '^A ' "$W/wal" | tail -1)
cp "$W/wal" "$W/forged"
printf 'I %s %s\nA %s %s\n' "$b" $((v + 1000)) "$b" $((v + 1000)) >>"$W/forged"
rc=0; res=$("$LD" --verify --interval-ms 0 --log "$W/forged" "$URL" 2>>"$W/load.log" | tail -1) || rc=$?
echo "forged ack: $res"
[ "$rc" -eq 1 ] && [ "$(field lost "$res")" = 1 ] || fail "a block older than its acknowledgement went unnoticed"

# 3b. wrong pattern seed: every block ever written reads as corrupt
written=$(awk '$1 == "I" { s[$2] = 1 } END { print length(s) }' "$W/wal")
sed '1s/^S [0-9]* /S 12345 /' "$W/wal" >"$W/reseeded"
rc=0; res=$("$LD" --verify --interval-ms 0 --log "$W/reseeded" "$URL" 2>>"$W/load.log" | tail -1) || rc=$?
echo "wrong seed: $res (blocks written: $written)"
[ "$rc" -eq 1 ] && [ "$(field lost "$res")" = "$written" ] || fail "corrupt blocks went unnoticed"

dev_kill INT
echo "load_check: ok"
