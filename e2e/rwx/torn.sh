#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Multi-initiator torn-write test (issue 17): `tessera dev` serves one volume
# on 10.97.8.254:3272; two "nodes" (network namespaces ts-ra, ts-rb on one
# private switch, e2e/lib/netns.sh: 10.97.8.1 and 10.97.8.2) run two ts-rwx-torn sessions each (4 sessions, 4 initiator names, 4 writer
# ids) on the same 64-block hot region: random overlapping 1..16-block
# writes with distinct stamped patterns and reads that check every range
# they read is wholly one write per block and consistent across blocks.
# Then `ts-rwx-torn --check` joins the four order logs and looks for a cycle
# (a tear no single read shows). Passes iff every session ends cleanly with
# torn=0 and the joint graph is acyclic.
#
# Usage: e2e/rwx/torn.sh TESSERA TS-RWX-TORN [IOS_PER_SESSION]
#   IOS_PER_SESSION  default 50000 (env RWX_IOS overrides): 4 x 50000 = 2*10^5 IOs
#                    in CI; RWX_IOS=250000 gives the 10^6 run (docs/rwx.md).
# Needs root (namespaces, veth); exit 77 otherwise. One run at a time (flock).
set -euo pipefail
BIN=$(readlink -f "$1")
TORN=$(readlink -f "$2")
IOS=${RWX_IOS:-${3:-50000}}
skip() { echo "e2e/rwx-torn DID NOT RUN: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces)"
for t in ip flock; do command -v $t >/dev/null || skip "$t missing"; done

exec 9>/tmp/tessera-rwx-e2e.lock
flock -w 600 9 || { echo "FAIL: another rwx e2e holds /tmp/tessera-rwx-e2e.lock"; exit 1; }

repo=$(cd "$(dirname "$0")/../.." && pwd)
SUBNET=10.97.8
W=$(mktemp -d /tmp/ts-rwx.XXXXXX)
DEV_BIN=$BIN DEV_DIR=$W DEV_PORT=3272 DEV_ADDR=$SUBNET.254
# shellcheck source=../lib/dev.sh
. "$repo/e2e/lib/dev.sh"
# shellcheck source=../lib/netns.sh
. "$repo/e2e/lib/netns.sh"
PASSED=0
cleanup() {
	set +e
	dev_kill KILL
	netns_down ts-r a b
	if [ "$PASSED" = 1 ]; then rm -rf "$W"; else echo "work dir: $W"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$W/dev.log" ] && { echo "--- dev.log (tail)"; tail -20 "$W/dev.log"; }; exit 1; }

netns_up ts-r $SUBNET a b
dev_start
URL=$(dev_volume rwx-torn 64Mi)
echo "ok: tessera dev on $DEV_ADDR:$DEV_PORT, volume $URL"

pids=()
w=0
for n in a b; do
	for k in 1 2; do
		w=$((w + 1))
		ip netns exec ts-r$n "$TORN" --writer $w --ios "$IOS" --qd 8 --hot 64 --max-blocks 16 \
			--seed $((w * 7919)) --initiator "iqn.2026-12.io.tessera:rwx-node-$n-$k" \
			--edges "$W/edges$w" "$URL" >"$W/torn$w.out" 2>&1 &
		pids+=($!)
	done
done
bad=0
for p in "${pids[@]}"; do wait "$p" || bad=1; done
total=0
for w in 1 2 3 4; do
	line=$(tail -1 "$W/torn$w.out")
	echo "session $w: $line"
	[[ $line == writer=$w\ * ]] || bad=1
	[[ $line == *" torn=0 "* ]] || bad=1
	[[ $line == *error=* ]] && bad=1
	n=$(sed -n 's/.* ios=\([0-9]*\) .*/\1/p' <<<"$line")
	total=$((total + ${n:-0}))
done
[ "$bad" = 0 ] || fail "a session failed or saw a torn read"
[ "$total" -ge $((4 * IOS)) ] || fail "only $total IOs completed"
check=$("$TORN" --check "$W"/edges1 "$W"/edges2 "$W"/edges3 "$W"/edges4) || fail "joint order graph: $check"
echo "check: $check"
edges=$(sed -n 's/.*edges=\([0-9]*\).*/\1/p' <<<"$check")
[ "${edges:-0}" -gt 1000 ] || fail "only ${edges:-0} order facts: the sessions did not overlap"
PASSED=1
echo "rwx-torn: sessions=4 nodes=2 ios=$total torn=0 cyclic=0"
