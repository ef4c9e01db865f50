#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Controller failovers in the middle of CSI calls, on the real API server
# e2e/kube/run.sh starts: three `tessera node --kube-namespace` engine hosts
# and two `tessera controller --leader-lease` replicas (Lease duration 4 s).
# Each round ts-csi-retry makes a Block volume r<N> and its snapshot
# snap-r<N> through whichever replica answers, retrying as a sidecar does,
# while the active replica is killed (kill -9, even rounds) or paused
# (SIGSTOP, odd rounds; resumed it must exit with status 3) at a random
# moment of the calls; the killed or paused one is restarted as the
# passive. After every round, and at the end, the survivors must agree:
#   - every round's call finished (nothing lost), with the ids it returned;
#   - each name exists exactly once: one TesseraVolume per volume, the
#     active replica lists each volume id once, and the engines' snapshot
#     trees hold exactly ROUNDS volumes and ROUNDS snapshots (nothing made
#     twice, no orphan);
#   - each replica took over at least once.
# Usage (through run.sh): failover.sh <tessera> <ts-csi-retry> [ROUNDS]
# (default 6; ROUNDS=50 is the long run). Last line:
# rounds=N failovers=F kills=K pauses=P calls_cut=C lost=0 twice=0 max_takeover_s=S tries=T
# (calls_cut: rounds whose calls had to be retried on the other replica)
set -euo pipefail
T=$(readlink -f "$1") RETRY=$(readlink -f "$2") ROUNDS=${3:-6}
# shellcheck source=procs.sh
. "$(dirname "$0")/procs.sh" kfo
RANDOM=$((ROUNDS * 7919 + 1207))

start_ctl() { # $1: a or b (portal 127.0.0.91 or 127.0.0.92)
	kube_start_ctl "$1" "127.0.0.9$([ "$1" = a ] && echo 1 || echo 2):$PORT" --lease-duration-s 4 --member-size 16Mi
}
holder() { kc get lease tessera-controller -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
eps=(unix://"$W"/ctl-a/csi.sock unix://"$W"/ctl-b/csi.sock)

for i in 1 2 3; do
	truncate -s 256M "$W/node$i.disk"
	mn_start_node "$i" "127.0.0.10$i" --heartbeat-ms 1000 --state-dir "$W/n$i" --io-timeout-ms 1500
done
start_ctl a
mn_wait_ready "$W/ctl-a.out" "${CPID[a]}" "controller a" 90
start_ctl b

kills=0 pauses=0 maxt=0 tries=0 cut=0
declare -A TOOK=()
for ((r = 0; r < ROUNDS; r++)); do
	act=$(holder | sed 's/^ctl-//')
	[ "$act" = a ] || [ "$act" = b ] || fail "round $r: Lease holder '$(holder)'"
	pas=$([ "$act" = a ] && echo b || echo a)
	"$RETRY" "r$r" $((4 << 20)) 120 "${eps[@]}" >"$W/r$r.out" 2>"$W/r$r.err" &
	rp=$!
	sleep "0.$((RANDOM % 2))$((RANDOM % 10))" # 0-190 ms: most rounds cut a call
	t0=$SECONDS
	if ((r % 2 == 0)); then
		kill -KILL "${CPID[$act]}"; wait "${CPID[$act]}" 2>/dev/null || true
		kills=$((kills + 1))
	else
		kill -STOP "${CPID[$act]}"
		pauses=$((pauses + 1))
	fi
	# the passive takes the Lease over
	for _ in $(seq 1 300); do [ "$(holder)" = "ctl-$pas" ] && break; sleep 0.1; done
	[ "$(holder)" = "ctl-$pas" ] || fail "round $r: ctl-$pas did not take the Lease (holder '$(holder)')"
	took=$((SECONDS - t0)); ((took > maxt)) && maxt=$took
	TOOK[$pas]=1
	wait "$rp" || fail "round $r: the calls did not finish: $(cat "$W/r$r.err")"
	n=$(sed -n 's/.* tries=\([0-9]*\)$/\1/p' "$W/r$r.out")
	tries=$((tries + n))
	((n > 2)) && cut=$((cut + 1)) # a call was retried: the failover cut it
	if ((r % 2 == 1)); then
		kill -CONT "${CPID[$act]}"
		rc=0; wait "${CPID[$act]}" || rc=$?
		[ "$rc" = 3 ] || fail "round $r: ctl-$act resumed exited with $rc, not 3"
	fi
	start_ctl "$act" # back as the passive
	for _ in $(seq 1 100); do grep -q 'passive: Lease' "$W/ctl-$act.err" && break; sleep 0.1; done
	echo "ok: round $r: ctl-$act $([ $((r % 2)) = 0 ] && echo killed || echo paused), ctl-$pas active after ${took}s; $(cat "$W/r$r.out")"
done

# --- the survivors agree: every name once
export TESSERA_ENDPOINT=unix://$W/ctl-$(holder | sed 's/^ctl-//')/csi.sock
for ((r = 0; r < ROUNDS; r++)); do
	v=$(sed -n 's/^volume=\([^ ]*\) .*/\1/p' "$W/r$r.out") s=$(sed -n 's/.* snapshot=\([^ ]*\) .*/\1/p' "$W/r$r.out")
	[ -n "$v" ] && [ -n "$s" ] || fail "round $r: no ids: $(cat "$W/r$r.out")"
	echo "$v" >>"$W/vols"; echo "$s" >>"$W/snaps"
done
twice=$(( $(sort "$W/vols" | uniq -d | wc -l) + $(sort "$W/snaps" | uniq -d | wc -l) ))
[ "$twice" = 0 ] || fail "ids returned twice"
"$T" volume list -o json >"$W/list.json" || fail "volume list"
nv=$(jq '[.volumes[] | select(.name | test("^r[0-9]+$"))] | length' "$W/list.json")
[ "$nv" = "$ROUNDS" ] || fail "volume list has $nv volumes r<N>, expected $ROUNDS: $(jq -c '[.volumes[].name]' "$W/list.json")"
while read -r v; do
	[ "$(jq --arg v "$v" '[.volumes[] | select(.id == $v)] | length' "$W/list.json")" = 1 ] || fail "volume $v not listed once"
done <"$W/vols"
ntv=$(kc get tesseravolumes -o json | jq '[.items[].spec | select(.name | test("^r[0-9]+$"))] | length')
[ "$ntv" = "$ROUNDS" ] || fail "$ntv TesseraVolumes r<N>, expected $ROUNDS"
# the engines' own view (their snapshot trees): each volume and snapshot once, no orphan
"$T" volume tree -o json >"$W/tree.json" || fail "volume tree"
heads=$(jq '[.layers[] | select(.kind == "head")] | length' "$W/tree.json")
snaps=$(jq '[.layers[] | select(.kind == "snapshot")] | length' "$W/tree.json")
[ "$heads" = "$ROUNDS" ] && [ "$snaps" = "$ROUNDS" ] ||
	fail "the engines hold $heads volumes and $snaps snapshots, expected $ROUNDS each: $(jq -c '[.layers[] | {kind, name}]' "$W/tree.json")"
[ -n "${TOOK[a]:-}" ] && [ -n "${TOOK[b]:-}" ] || fail "not both replicas took over"
PASSED=1
echo "rounds=$ROUNDS failovers=$ROUNDS kills=$kills pauses=$pauses calls_cut=$cut lost=0 twice=0 max_takeover_s=$maxt tries=$tries"
