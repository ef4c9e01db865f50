#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Kubernetes-native control plane with real processes, against the real
# kube-apiserver e2e/kube/run.sh starts (docs/kubernetes-store.md): three
# `tessera node --kube-namespace` daemons (engine hosts, registered in
# TesseraNode objects, heartbeating with Leases) and two `tessera controller
# --engines nodes --kube-namespace --leader-lease` replicas, a and b.
#
#  1. a holds the Lease and serves; b waits as the passive replica; a volume
#     created through a is a TesseraVolume object; a load writes versioned
#     blocks to it;
#  2. a is kill -9ed: b takes the Lease over once it expires, loads the CSI
#     records and serves: the volume is listed, a create of the same name
#     is refused naming a's volume id (the name -> id mapping survived the
#     replica), every acknowledged block reads back;
#  3. a restarts (passive); b is paused (SIGSTOP): a takes over, creates a
#     second volume; b, resumed, finds its renew deadline passed, refuses
#     CSI calls and exits with status 3 (it restarts as the passive one);
#  4. the node serving the group is kill -9ed: its Lease expires, the active
#     controller counts it down and hands the group to another node; every
#     acknowledged block reads back through the same IQN;
#  5. a stops (SIGTERM) and releases the Lease: b, started again, is active
#     at once, not after the Lease's duration.
#
# Usage (through run.sh): controllers.sh <tessera> <ts-faults-load>. Last line:
# takeover_kill_s=S takeover_pause_s=S takeover_release_s=S volumes=N acked=A lost=0
set -euo pipefail
T=$(readlink -f "$1") LD=$(readlink -f "$2")
# shellcheck source=procs.sh
. "$(dirname "$0")/procs.sh" kctl

start_node() { # $1: id; heartbeats are Lease writes: one a second
	mn_start_node "$1" "127.0.0.3$1" --heartbeat-ms 1000 --state-dir "$W/n$1" --io-timeout-ms 1500
}

start_ctl() { # $1: a or b (portal 127.0.0.41 or 127.0.0.42)
	kube_start_ctl "$1" "127.0.0.4$([ "$1" = a ] && echo 1 || echo 2):$PORT" --member-size 32Mi
}

# wait_ready X SECONDS: until controller X prints ready; prints the seconds it took.
wait_ready() {
	local t0=$SECONDS
	mn_wait_ready "$W/ctl-$1.out" "${CPID[$1]}" "controller $1" "$2" >&2
	echo $((SECONDS - t0))
}

wait_passive() { # $1: controller
	for _ in $(seq 1 100); do
		grep -q 'passive: Lease' "$W/ctl-$1.err" && return 0
		sleep 0.1
	done
	fail "controller $1 does not say it is passive"
}

use() { export TESSERA_ENDPOINT=unix://$W/ctl-$1/csi.sock; }
holder() { kc get lease tessera-controller -o jsonpath='{.spec.holderIdentity}'; }

verify() { # $1: url, $2: what
	local ver lost
	ver=$("$LD" -V -i 0 -T 60000 -l "$W/load.wal" "$1" 2>>"$W/verify.log" | tail -1)
	lost=$(sed -n 's/.* lost=\([0-9]*\).*/\1/p' <<<"$ver")
	[ "${lost:-x}" = 0 ] || fail "$2: $ver"
	echo "ok: $2: $ver"
}

for i in 1 2 3; do truncate -s 192M "$W/node$i.disk"; start_node "$i"; done
[ "$(kc get tesseranodes -o name | wc -l)" = 3 ] || fail "TesseraNode objects: $(kc get tesseranodes -o name)"

# --- 1. a active, b passive; a volume and a load
start_ctl a
wait_ready a 60 >/dev/null
start_ctl b
wait_passive b
[ "$(holder)" = ctl-a ] || fail "Lease holder '$(holder)', expected ctl-a"
grep -q '^ready' "$W/ctl-b.out" && fail "b is ready while a holds the Lease"
use a
vol=$("$T" volume create kv1 --size 24Mi -o json) || fail "volume create through a"
ID=$(jq -r .id <<<"$vol") URL=$(jq -r .iscsi_url <<<"$vol")
[ "$(kc get tesseravolumes -o json | jq --arg id "$ID" '[.items[] | select(.spec.id == $id and .spec.name == "kv1")] | length')" = 1 ] ||
	fail "no TesseraVolume for $ID: $(kc get tesseravolumes -o json | jq -c '[.items[].spec]')"
"$LD" -l "$W/load.wal" -s 7 -q 4 -d 5 -t 3000 "$URL" >"$W/load.out" 2>"$W/load.log" || fail "load: $(tail -3 "$W/load.log")"
ACKED=$(sed -n 's/^acked=\([0-9]*\).*/\1/p' "$W/load.out" | tail -1)
[ "${ACKED:-0}" -gt 0 ] || fail "no write acknowledged"
echo "ok: a active, b passive; $ID at $URL, $ACKED writes acknowledged"

# --- 2. a killed: b takes over
kill -KILL "${CPID[a]}"; wait "${CPID[a]}" 2>/dev/null || true; unset 'CPID[a]'
TK=$(wait_ready b 40)
[ "$(holder)" = ctl-b ] || fail "Lease holder '$(holder)' after the takeover"
use b
"$T" volume list -o json | jq -e --arg id "$ID" '[.volumes[] | select(.id == $id)] | length == 1' >/dev/null ||
	fail "b does not list $ID: $("$T" volume list -o json)"
# the name is b's too: the CLI's create (the admin service, which refuses an existing name)
# names the volume a created
if "$T" volume create kv1 --size 24Mi -o json >/dev/null 2>"$W/cli.err"; then
	fail "re-create kv1 through b made a second volume"
fi
grep -q "volume 'kv1' already exists (id $ID)" "$W/cli.err" || fail "re-create kv1 through b: $(cat "$W/cli.err")"
verify "$URL" "after a's kill, through b's records"
echo "ok: a killed; b active after ${TK}s"

# --- 3. a back (passive); b paused: a takes over; b resumed exits with 3
start_ctl a
wait_passive a
kill -STOP "${CPID[b]}"
TP=$(wait_ready a 40)
use a
"$T" volume create kv2 --size 8Mi >/dev/null || fail "volume create kv2 through a"
kill -CONT "${CPID[b]}"
rc=0
for _ in $(seq 1 150); do kill -0 "${CPID[b]}" 2>/dev/null || break; sleep 0.1; done
wait "${CPID[b]}" || rc=$?
unset 'CPID[b]'
[ "$rc" = 3 ] || fail "b resumed: exit status $rc, expected 3"
grep -q 'no longer the active controller' "$W/ctl-b.err" || fail "b did not say why it exited"
[ "$(kc get tesseravolumes -o name | wc -l)" = 2 ] || fail "TesseraVolumes: $(kc get tesseravolumes -o name)"
echo "ok: b paused; a active after ${TP}s; b resumed and exited with status 3"

# --- 4. the serving node dies: its Lease expires, the group moves
S1=$("$T" agrp list -o json | jq -r '.array_groups[0].serving_node')
[ -n "${NP[$S1]:-}" ] || fail "serving node '$S1'"
kill -KILL "${NP[$S1]}"; wait "${NP[$S1]}" 2>/dev/null || true; unset "NP[$S1]"
S2=$S1
for _ in $(seq 1 400); do
	S2=$("$T" agrp list -o json 2>/dev/null | jq -r '.array_groups[0].serving_node // 0') || S2=0
	[ "$S2" != "$S1" ] && [ "$S2" != 0 ] && break
	sleep 0.1
done
[ "$S2" != "$S1" ] && [ "$S2" != 0 ] || fail "the group is still served by node $S1 (or nobody)"
verify "${URL/127.0.0.3$S1:/127.0.0.3$S2:}" "node $S1 killed, group on node $S2"

# --- 5. graceful stop releases the Lease: b is active at once
kill -TERM "${CPID[a]}"; wait "${CPID[a]}" || fail "a exited with $? on SIGTERM"; unset 'CPID[a]'
[ -z "$(holder)" ] || fail "a did not release the Lease (holder '$(holder)')"
start_ctl b
TR=$(wait_ready b 20)
[ "$TR" -le 5 ] || fail "b took ${TR}s after a released the Lease"
use b
N=$("$T" volume list -o json | jq '.volumes | length')
[ "$N" = 2 ] || fail "b lists $N volumes"
PASSED=1
echo "takeover_kill_s=$TK takeover_pause_s=$TP takeover_release_s=$TR volumes=$N acked=$ACKED lost=0"
