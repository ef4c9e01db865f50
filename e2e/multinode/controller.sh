#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `tessera controller` end to end: three `tessera node` processes on
# 127.0.0.12-14 and the controller (portal 127.0.0.11) serving a 4+2 group
# across them, all driven through the CLI and plain iSCSI initiators.
#
#  1. the controller, started before the nodes, waits for them and creates
#     the group from the registered nodes; the CLI
#     creates a 64 MiB volume and iscsi-readcapacity16 sees its size at the
#     iscsi_url it printed;
#  2. ts-faults-load --exit-on-error writes random 4 KiB blocks (WRITE(16) +
#     SYNCHRONIZE CACHE(16) each, attempts and acknowledgements logged)
#     through the whole test;
#  3. node 2 is kill -9ed: `agrp list -o json` must say degraded with 4 live
#     members, and acknowledged writes must keep coming (the writer stops at
#     its first failed command, so a live writer means no IO failed);
#     the group must also count degraded stripes and replicated bytes;
#  4. node 2 restarts: the maintenance loop must bring the group back to
#     healthy with 6 live members while the writer runs, with no degraded
#     stripe and no replicated byte left and at least one heal done;
#  5. ts-faults-load --verify reads every block back: each holds its last
#     acknowledged version or a later attempted one (lost=0);
#  6. the controller is stopped with SIGTERM (exit 0) and restarted on the
#     same state dir and registry: same volume id and iscsi_url, every block
#     verified again;
#  7. node 3 is kill -9ed and every block verified once more: decoding
#     without node 3 needs node 2's resynced fragments.
#
# Usage: controller.sh <tessera> <ts-faults-load>  (TS_KEEP_WORK=1 keeps
# the work dir and its logs on success)
# Last line: acked=N lost=0|1 states=<states seen>; exit 0 iff all held.
set -euo pipefail
T=$(readlink -f "$1") LD=$(readlink -f "$2")
for t in iscsi-readcapacity16 jq ss; do
	command -v "$t" >/dev/null || { echo "FAIL: $t missing (scripts/deps.sh installs it)"; exit 1; }
done
W=$(mktemp -d /tmp/ts-mnctl.XXXXXX) # short: the socket path must fit in 108 bytes
export TESSERA_CHAP_USER=tessera-nodes TESSERA_CHAP_SECRET=controller-test-secret
export TESSERA_ENDPOINT=unix://$W/ctl/csi.sock
CLUSTER=$(cat /proc/sys/kernel/random/uuid) GROUP=$(cat /proc/sys/kernel/random/uuid)
STATES=""
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
PORTAL=127.0.0.11:$PORT

start_node() { mn_start_node "$1" "127.0.0.1$(($1 + 1))"; } # $1: node id 1-3
kill_node() { # $1: id, $2: signal
	kill "-$2" "${NP[$1]}"
	wait "${NP[$1]}" 2>/dev/null || true
	unset "NP[$1]"
}
spawn_ctl() { # $1: run number
	: >"$W/ctl$1.out"
	"$T" controller --registry "$W/registry" --group "$GROUP" --state-dir "$W/ctl" \
		--portal "$PORTAL" --csi-endpoint "$TESSERA_ENDPOINT" --ec 4+2 --member-size 48Mi \
		--io-timeout-ms 1000 >"$W/ctl$1.out" 2>>"$W/ctl.err" &
	CP=$!
}
wait_ctl() { # $1: run number
	for _ in $(seq 1 600); do
		grep -q '^ready ' "$W/ctl$1.out" && break
		kill -0 "$CP" 2>/dev/null || fail "tessera controller exited before ready"
		sleep 0.1
	done
	grep -q "^ready csi=$TESSERA_ENDPOINT portal=$PORTAL\$" "$W/ctl$1.out" ||
		fail "ready line: $(cat "$W/ctl$1.out")"
}
start_ctl() { spawn_ctl "$1"; wait_ctl "$1"; }
stop_ctl() { # SIGTERM must end it with status 0
	local rc=0
	kill -TERM "$CP"
	wait "$CP" || rc=$?
	CP=""
	[ "$rc" -eq 0 ] || fail "tessera controller exit status $rc after SIGTERM"
}
group() { # the first array group's JSON
	"$T" agrp list -o json | jq -c '.array_groups[0]'
}
# wait_state STATE LIVE SECONDS: poll agrp list until state and live members match
wait_state() {
	local g="" s
	for _ in $(seq 1 $(($3 * 5))); do
		g=$(group) || fail "agrp list failed"
		s=$(jq -r .state <<<"$g")
		case " $STATES " in *" $s "*) ;; *) STATES="$STATES $s" ;; esac
		[ "$s" = "$1" ] && [ "$(jq -r .live_members <<<"$g")" = "$2" ] && return 0
		sleep 0.2
	done
	fail "group not $1 with $2 live members after $3 s: $g"
}
acked() { grep -c '^A' "$W/log" || true; }
writer_alive() { kill -0 "$WP" 2>/dev/null || fail "the writer stopped (an IO failed): $(tail -2 "$W/writer.err")"; }
verify() { "$LD" --verify --interval-ms 0 --log "$W/log" "$URL" 2>>"$W/writer.err" || fail "verify $1"; }

for i in 1 2 3; do truncate -s 256M "$W/node$i.disk"; done

# 1. group + volume; the controller starts first and waits for the nodes
spawn_ctl 1
sleep 1
kill -0 "$CP" 2>/dev/null || fail "tessera controller did not wait for the nodes"
grep -q "waiting for nodes to create the group: live=0 need=3" "$W/ctl.err" ||
	fail "no 'waiting for nodes' line"
for i in 1 2 3; do start_node "$i"; done
echo "nodes up on 127.0.0.12-14:$PORT"
wait_ctl 1
wait_state healthy 6 10
g=$(group)
[ "$(jq -r '.k, .m, .uuid' <<<"$g" | tr '\n' ' ')" = "4 2 $GROUP " ] || fail "group: $g"
[ "$(jq -r '[.members[].node] | sort | join(",")' <<<"$g")" = "1,1,2,2,3,3" ] || fail "placement: $g"
[ "$("$T" node list -o json | jq -r '[.nodes[] | select(.state == "up") | .id] | join(",")')" = "1,2,3" ] ||
	fail "node list: $("$T" node list)"
V=$("$T" volume create v1 --size 64Mi -o json) || fail "volume create"
URL=$(jq -r .iscsi_url <<<"$V") ID=$(jq -r .id <<<"$V")
case "$URL" in "iscsi://$PORTAL/iqn."*) ;; *) fail "iscsi_url: $V" ;; esac
iscsi-readcapacity16 "$URL" >"$W/cap.txt" 2>&1 || fail "readcapacity: $(cat "$W/cap.txt")"
grep -q "Total size:67108864" "$W/cap.txt" || fail "capacity: $(cat "$W/cap.txt")"
echo "volume $ID at $URL"

# 2. writer (16 MiB of the volume; stops at its first failed command)
"$LD" --exit-on-error --blocks 4096 --seed 1 --interval-ms 0 --log "$W/log" "$URL" \
	>/dev/null 2>>"$W/writer.err" &
WP=$!
sleep 2
writer_alive
[ "$(acked)" -gt 0 ] || fail "no write acknowledged"

# 3. node 2 dies
kill_node 2 KILL
echo "kill -9 node 2 (acked so far $(acked))"
wait_state degraded 4 20
a0=$(acked)
sleep 3
writer_alive
a1=$(acked)
[ "$a1" -gt "$a0" ] || fail "IO stalled while node 2 was down ($a0 -> $a1)"
"$T" status >"$W/status.txt" || fail "status"
grep -q "^group ${GROUP:0:8}:  degraded, " "$W/status.txt" || fail "status: $(cat "$W/status.txt")"
grep -Eq "^$GROUP +4\+2 +degraded +4/6 " <("$T" agrp list) || fail "agrp list: $("$T" agrp list)"
g=$(group)
# writes made during the outage: stripes out of date on node 2, and replicated on the live nodes
jq -e '.degraded_stripes > 0 and .replicated_bytes > 0 and .heals == 0' <<<"$g" >/dev/null ||
	fail "degraded group's counters: $g"
echo "degraded: acked while down $((a1 - a0)), $(jq -r .degraded_stripes <<<"$g") degraded stripes," \
	"$(jq -r .replicated_bytes <<<"$g") bytes replicated"

# 4. node 2 returns
start_node 2
wait_state healthy 6 60
writer_alive
# healed: nothing out of date, the journal verified against EC and reclaimed
g=$(group)
jq -e '.degraded_stripes == 0 and .replicated_bytes == 0 and .heals >= 1 and
	.heal_done_bytes == .heal_total_bytes' <<<"$g" >/dev/null || fail "healed group's counters: $g"
echo "healthy again (states seen:$STATES), acked $(acked)"
sleep 1

# 5. verify
kill -KILL "$WP"; wait "$WP" 2>/dev/null || true; WP=""
verify "after rejoin"

# 6. controller restart: same volume, same IQN, same data
stop_ctl
start_ctl 2
wait_state healthy 6 20
V2=$("$T" volume show v1 -o json) || fail "volume show after restart"
[ "$(jq -r .iscsi_url <<<"$V2")" = "$URL" ] && [ "$(jq -r .id <<<"$V2")" = "$ID" ] ||
	fail "volume after restart: $V2 (was $V)"
verify "after controller restart"

# 7. without node 3: reads decode from node 2's resynced fragments
kill_node 3 KILL
verify "without node 3"
wait_state degraded 4 20
stop_ctl
PASSED=1
echo "acked=$(acked) lost=0 states=${STATES# }"
