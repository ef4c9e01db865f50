#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Low-priority work delegated to the passive controller replica, with real
# processes on the real API server e2e/kube/run.sh starts (docs/
# kubernetes-store.md, "Tasks"): three `tessera node --kube-namespace` engine
# hosts (which leave their groups' heal to the control plane) and two
# `tessera controller --leader-lease` replicas a (active) and b (passive).
#
#  1. a volume and a load; a node that does not serve the group is killed
#     while the load writes (the writes are also replicated: a heal comes
#     due) and restarted; while a serves a burst of CreateVolume calls, a
#     heal task is posted, claimed and finished by b (owner ctl-b), shown by
#     `tessera task ls`, and the group is healthy again;
#  2. b is killed; the same outage again: the active replica a, with no
#     passive, runs the new heal task (owner ctl-a);
#  3. every acknowledged write reads back (lost=0), and no engine healed on
#     its own (the control plane was there all along).
# Usage (through run.sh): delegation.sh <tessera> <ts-faults-load>. Last line:
# heal_tasks=2 passive_ran=1 active_ran=1 burst=N acked=A lost=0
set -euo pipefail
T=$(readlink -f "$1") LD=$(readlink -f "$2")
# shellcheck source=procs.sh
. "$(dirname "$0")/procs.sh" kdel

start_node() { mn_start_node "$1" "127.0.0.11$1" --heartbeat-ms 1000 --state-dir "$W/n$1" --io-timeout-ms 1500; }
start_ctl() { # $1: a or b (portal 127.0.0.121 or 127.0.0.122)
	kube_start_ctl "$1" "127.0.0.12$([ "$1" = a ] && echo 1 || echo 2):$PORT" --lease-duration-s 4 --member-size 32Mi
}
tasks_json() { "$T" task ls --kube-namespace "$NS" --kubeconfig "$K" -o json; }
# wait_heal_done OWNER: until a heal task other than those in $SEEN is Done; prints its name
wait_heal_done() {
	local name=""
	for _ in $(seq 1 900); do
		name=$(tasks_json | jq -r --arg seen "$SEEN" '[.tasks[] | select(.kind == "heal" and .phase == "Done" and ((.name as $n | $seen | split(" ") | index($n)) == null))][0].name // empty')
		[ -n "$name" ] && { echo "$name"; return 0; }
		sleep 0.1
	done
	fail "no heal task finished: $(tasks_json | jq -c .)"
}
outage() { # $1: node id: killed while the load writes, then restarted
	"$LD" -l "$W/load.wal" -s "$RANDOM" -q 4 -d 4 -t 3000 "$URL" >>"$W/load.out" 2>>"$W/load.log" &
	local lp=$!
	sleep 1
	kill -KILL "${NP[$1]}"; wait "${NP[$1]}" 2>/dev/null || true; unset "NP[$1]"
	wait "$lp" || fail "load: $(tail -3 "$W/load.log")"
	start_node "$1"
}

for i in 1 2 3; do truncate -s 192M "$W/node$i.disk"; start_node "$i"; done
start_ctl a
mn_wait_ready "$W/ctl-a.out" "${CPID[a]}" "controller a" 90
start_ctl b
for _ in $(seq 1 100); do grep -q 'passive: Lease' "$W/ctl-b.err" && break; sleep 0.1; done
export TESSERA_ENDPOINT=unix://$W/ctl-a/csi.sock
vol=$("$T" volume create kd1 --size 24Mi -o json) || fail "volume create"
URL=$(jq -r .iscsi_url <<<"$vol")
S=$("$T" agrp list -o json | jq -r '.array_groups[0].serving_node')
X=$(( S % 3 + 1 )) # a node that does not serve the group
SEEN=""

# --- 1. the passive replica runs the heal
outage "$X"
burst=0
for j in 1 2 3 4; do "$T" volume create "burst-$j" --size 8Mi >/dev/null 2>>"$W/burst.err" & done
for _ in 1 2 3 4; do wait -n && burst=$((burst + 1)) || true; done
[ "$burst" = 4 ] || fail "the burst of creates: $burst of 4: $(cat "$W/burst.err")"
H1=$(wait_heal_done)
OWNER1=$(tasks_json | jq -r --arg n "$H1" '.tasks[] | select(.name == $n) | .owner')
[ "$OWNER1" = ctl-b ] || fail "heal task $H1 ran on '$OWNER1', not on the passive ctl-b"
"$T" task ls --kube-namespace "$NS" --kubeconfig "$K" | grep -E "^$H1 +heal .* low +Done +ctl-b " >/dev/null ||
	fail "task ls: $("$T" task ls --kube-namespace "$NS" --kubeconfig "$K")"
for _ in $(seq 1 100); do
	[ "$("$T" agrp list -o json | jq -r '.array_groups[0].state')" = healthy ] && break; sleep 0.1
done
[ "$("$T" agrp list -o json | jq -r '.array_groups[0].state')" = healthy ] || fail "group not healthy after $H1"
echo "ok: node $X out and back; $H1 run by the passive ctl-b while a served $burst creates"
SEEN=$H1

# --- 2. no passive: the active runs it
kill -KILL "${CPID[b]}"; wait "${CPID[b]}" 2>/dev/null || true; unset 'CPID[b]'
outage "$X"
H2=$(wait_heal_done)
OWNER2=$(tasks_json | jq -r --arg n "$H2" '.tasks[] | select(.name == $n) | .owner')
[ "$OWNER2" = ctl-a ] || fail "heal task $H2 ran on '$OWNER2', not on the active ctl-a"
echo "ok: passive gone; $H2 run by the active ctl-a"

# --- 3. nothing lost, nobody healed alone
ver=$("$LD" -V -i 0 -T 60000 -l "$W/load.wal" "$URL" 2>>"$W/verify.log" | tail -1)
[ "$(sed -n 's/.* lost=\([0-9]*\).*/\1/p' <<<"$ver")" = 0 ] || fail "verify: $ver"
! grep -q "healing on its own" "$W"/node*.log || fail "an engine healed without the control plane"
ACKED=$(awk -F'[= ]' '/^acked=/ {s += $2} END {print s + 0}' "$W/load.out")
PASSED=1
echo "heal_tasks=2 passive_ran=1 active_ran=1 burst=$burst acked=$ACKED lost=0"
