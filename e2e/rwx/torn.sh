#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Multi-initiator torn-write test (issue 17): `tessera dev` serves one volume;
# two "nodes" (network namespaces ts-rwxa, ts-rwxb, each on its own veth to
# the root namespace: 10.97.1.1 and 10.97.2.1, the portal at .254 of each)
# run two ts-rwx-torn sessions each (4 sessions, 4 initiator names, 4 writer
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
for t in ip jq ss flock; do command -v $t >/dev/null || skip "$t missing"; done

exec 9>/tmp/tessera-rwx-e2e.lock
flock -w 600 9 || { echo "FAIL: another rwx e2e holds /tmp/tessera-rwx-e2e.lock"; exit 1; }

W=$(mktemp -d /tmp/ts-rwx.XXXXXX)
DEV_PID=
PASSED=0
net_down() {
	for n in a b; do
		ip netns del ts-rwx$n 2>/dev/null || true
		ip link del ts-rwxh$n 2>/dev/null || true
	done
}
cleanup() {
	if [ -n "$DEV_PID" ]; then kill -TERM "$DEV_PID" 2>/dev/null || true; wait "$DEV_PID" 2>/dev/null || true; fi
	net_down
	if [ "$PASSED" = 1 ]; then rm -rf "$W"; else echo "work dir: $W"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$W/dev.err" ] && { echo "--- dev.err (tail)"; tail -20 "$W/dev.err"; }; exit 1; }

net_down
i=0
for n in a b; do
	i=$((i + 1))
	ip netns add ts-rwx$n
	ip -n ts-rwx$n link set lo up
	ip link add ts-rwxh$n type veth peer name ts-rwxv$n netns ts-rwx$n
	ip addr add 10.97.$i.254/24 dev ts-rwxh$n
	ip link set ts-rwxh$n up
	ip -n ts-rwx$n addr add 10.97.$i.1/24 dev ts-rwxv$n
	ip -n ts-rwx$n link set ts-rwxv$n up
done

PORT=
for p in $(shuf -i 20000-60000 -n 50); do
	if [ -z "$(ss -Htln "sport = :$p")" ]; then PORT=$p; break; fi
done
[ -n "$PORT" ] || fail "no free port"
"$BIN" dev --state-dir "$W/state" --disk-size 256Mi --portal "0.0.0.0:$PORT" >"$W/dev.out" 2>"$W/dev.err" &
DEV_PID=$!
for _ in $(seq 1 600); do
	grep -q '^ready ' "$W/dev.out" && break
	kill -0 "$DEV_PID" 2>/dev/null || fail "tessera dev exited before ready"
	sleep 0.2
done
grep -q '^ready ' "$W/dev.out" || fail "tessera dev not ready"
export TESSERA_ENDPOINT=unix://$W/state/csi.sock
URL=$("$BIN" volume create rwx-torn --size 64Mi -o json | jq -r .iscsi_url)
case $URL in iscsi://0.0.0.0:$PORT/*) ;; *) fail "unexpected volume URL $URL" ;; esac
echo "ok: tessera dev on port $PORT, volume $URL"

pids=()
w=0
i=0
for n in a b; do
	i=$((i + 1))
	u=${URL/0.0.0.0/10.97.$i.254}
	for k in 1 2; do
		w=$((w + 1))
		ip netns exec ts-rwx$n "$TORN" --writer $w --ios "$IOS" --qd 8 --hot 64 --max-blocks 16 \
			--seed $((w * 7919)) --initiator "iqn.2026-12.io.tessera:rwx-node-$n-$k" \
			--edges "$W/edges$w" "$u" >"$W/torn$w.out" 2>&1 &
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
