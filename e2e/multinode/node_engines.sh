#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Engines in the nodes, end to end with real processes: three `tessera node
# --state-dir` daemons on 127.0.0.22-24 (each an engine host) and `tessera
# controller --engines nodes --owner 1` (front portal 127.0.0.21), which
# creates the 4+2 group, hands it to node 1 at a new ownership epoch and
# serves CSI over the engine service (docs/scale-out.md).
#
#  1. a volume created with the CLI is served on node 1's portal
#     (iscsi_url), and a login at the controller's portal or at node 2 is
#     redirected there;
#  2. ts-faults-load writes versioned 4 KiB blocks for a while; meanwhile the
#     TCP bytes of every socket of each process are summed (ss -tinp): the
#     controller's must stay a tiny fraction of the load's (it carries no
#     volume data), node 1's must carry it;
#  3. node 1 is kill -9ed: the controller hands the group to node 2 at a
#     higher epoch (its node record lists it), and every acknowledged block
#     reads back through node 2's portal (the same IQN): lost=0;
#  4. node 1 restarts: it serves nothing, and a login at its portal is
#     redirected to node 2;
#  5. node 2 is paused (SIGSTOP): node 1 takes the group at a higher epoch;
#     node 2, resumed (SIGCONT), sees the newer epoch and releases it; every
#     acknowledged block reads back through the controller's portal (the
#     load tool follows the redirect).
#
# Usage: node_engines.sh <tessera> <ts-faults-load> (TS_KEEP_WORK=1 keeps the
# work dir). Last line: acked=N lost=L ctl_bytes=C node1_bytes=B epoch=E.
set -euo pipefail
T=$(readlink -f "$1") LD=$(readlink -f "$2")
for t in iscsi-readcapacity16 jq ss; do
	command -v "$t" >/dev/null || { echo "FAIL: $t missing (scripts/deps.sh installs it)"; exit 1; }
done
W=$(mktemp -d /tmp/ts-mneng.XXXXXX)
export TESSERA_CHAP_USER=tessera-nodes TESSERA_CHAP_SECRET=node-engines-test-secret
export TESSERA_ENDPOINT=unix://$W/ctl/csi.sock
CLUSTER=$(cat /proc/sys/kernel/random/uuid) GROUP=$(cat /proc/sys/kernel/random/uuid)
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
FRONT=127.0.0.21:$PORT
node_portal() { echo "127.0.0.2$(($1 + 1)):$PORT"; }

start_node() { # $1: node id 1-3, an engine host with its state dir
	mn_start_node "$1" "127.0.0.2$(($1 + 1))" --state-dir "$W/n$1" --io-timeout-ms 1500
}

# Sum of bytes_sent + bytes_received over the TCP sockets of pid $1 now.
tcp_bytes() {
	ss -tinpH 2>/dev/null | awk -v pid="pid=$1," '
		/users:/ { mine = index($0, pid) > 0; next }
		mine { for (i = 1; i <= NF; i++) if ($i ~ /^bytes_(sent|received):/) { split($i, a, ":"); s += a[2] } }
		END { print s + 0 }'
}

# wait_takeover NODE ABOVE: until node NODE lists the group at an epoch above
# ABOVE (30 s at most); prints that epoch (or the last one seen).
wait_takeover() {
	local e=0
	for _ in $(seq 1 300); do
		e=$(served_epoch "$1")
		[ "$e" -gt "$2" ] && break
		sleep 0.1
	done
	echo "$e"
}

# The epoch node $1's record lists the group at (0: not listed).
served_epoch() {
	jq -r --arg g "$GROUP" '[.served[]? | select(.uuid == $g) | .epoch] | max // 0' \
		"$W/registry/nodes/$1.json" 2>/dev/null || echo 0
}

for i in 1 2 3; do truncate -s 256M "$W/node$i.disk"; start_node "$i"; done
"$T" controller --registry "$W/registry" --group "$GROUP" --state-dir "$W/ctl" \
	--portal "$FRONT" --ec 4+2 --member-size 48Mi --io-timeout-ms 1500 \
	--engines nodes --owner 1 >"$W/ctl.out" 2>"$W/ctl.err" &
CP=$!
mn_wait_ready "$W/ctl.out" "$CP" controller
E1=$(served_epoch 1)
[ "$E1" -ge 2 ] || fail "node 1 does not list the group (epoch $E1)"
echo "ok: controller ready, node 1 serves the group at epoch $E1"

# --- 1. the volume is on node 1; the front portal and node 2 redirect there
vol=$("$T" volume create ne --size 32Mi -o json) || fail "volume create"
URL=$(jq -r .iscsi_url <<<"$vol")
[[ $URL == iscsi://$(node_portal 1)/* ]] || fail "iscsi_url $URL is not on node 1"
for via in "$FRONT" "$(node_portal 2)"; do
	# a portal learns the route at its next read of the node records (<= 0.5 s)
	for _ in $(seq 1 15); do
		sz=$(iscsi-readcapacity16 "${URL/$(node_portal 1)/$via}" 2>/dev/null | sed -n 's/^Total size:\([0-9]*\)$/\1/p' || true)
		[ "$sz" = $((32 << 20)) ] && break
		sleep 0.2
	done
	[ "$sz" = $((32 << 20)) ] || fail "login via $via: size '$sz'"
done
echo "ok: $URL, logins at $FRONT and $(node_portal 2) redirected to node 1"
# the group's state is the serving engine's (its Report), the tree too
"$T" agrp list -o json | jq -e '.array_groups[0] | .state == "healthy" and .live_members == 6' \
	>/dev/null || fail "agrp list: $("$T" agrp list -o json)"
"$T" agrp list -o json | jq -e --argjson e "$E1" '.array_groups[0] | .serving_node == 1 and .epoch == $e' \
	>/dev/null || fail "agrp list does not say node 1 serves at epoch $E1: $("$T" agrp list -o json)"
grep -q "n1 (epoch $E1)\$" <<<"$("$T" agrp list)" || fail "agrp list table: $("$T" agrp list)"
"$T" volume tree -o json | jq -e '[.layers[] | select(.kind == "head")] | length == 1' >/dev/null ||
	fail "volume tree: $("$T" volume tree -o json 2>&1)"
"$T" volume tree ne >/dev/null || fail "volume tree ne: $("$T" volume tree ne 2>&1)"
echo "ok: agrp list (healthy, 6/6) and volume tree come from node 1's engine"

# --- 2. load; bytes per process while its sockets are open
"$LD" -l "$W/load.wal" -s 5 -q 4 -d 6 -t 3000 "$URL" >"$W/load.out" 2>"$W/load.log" &
WP=$!
sleep 5
CB=$(tcp_bytes "$CP") N1=$(tcp_bytes "${NP[1]}") N2=$(tcp_bytes "${NP[2]}") LB=$(tcp_bytes "$WP")
wait "$WP" || fail "load failed: $(tail -3 "$W/load.log")"
res=$(tail -1 "$W/load.out")
echo "ok: load $res"
echo "ok: TCP bytes over open sockets: controller=$CB node1=$N1 node2=$N2 load=$LB"
ACKED=$(sed -n 's/^acked=\([0-9]*\).*/\1/p' <<<"$res")
[ "${ACKED:-0}" -gt 0 ] || fail "no write acknowledged"
[ "$LB" -gt 0 ] && [ "$N1" -gt "$LB" ] || fail "node 1 did not carry the load's bytes"
[ "$CB" -lt $((LB / 20)) ] || fail "the controller moved $CB bytes against the load's $LB"

# --- 3. the serving node dies: the group moves to node 2 at a higher epoch
kill -KILL "${NP[1]}"; wait "${NP[1]}" 2>/dev/null || true; unset 'NP[1]'
E2=$(wait_takeover 2 "$E1")
[ "$E2" -gt "$E1" ] || fail "node 2 did not take the group over (epoch $E2)"
echo "ok: node 1 killed; node 2 serves at epoch $E2"
URL2=${URL/$(node_portal 1)/$(node_portal 2)}
ver=$("$LD" -V -i 0 -T 60000 -l "$W/load.wal" "$URL2" 2>>"$W/verify.log" | tail -1)
echo "ok: verify through node 2: $ver"
LOST=$(sed -n 's/.* lost=\([0-9]*\).*/\1/p' <<<"$ver")
[ "${LOST:-x}" = 0 ] || fail "lost blocks after failover: $ver"
"$T" volume list -o json | jq -e '.volumes | length == 1' >/dev/null || fail "volume list after failover"

# --- 4. node 1 back: it serves nothing and redirects to node 2
start_node 1
sleep 1
[ "$(served_epoch 1)" = 0 ] || fail "node 1 lists the group again"
# node 2's engine rejoins node 1's members and heals
for _ in $(seq 1 120); do
	"$T" agrp list -o json 2>/dev/null | jq -e '.array_groups[0] | .state == "healthy" and .live_members == 6' \
		>/dev/null && break
	sleep 0.5
done
"$T" agrp list -o json | jq -e '.array_groups[0] | .state == "healthy" and .live_members == 6' \
	>/dev/null || fail "not healthy after node 1 came back: $("$T" agrp list -o json)"
sz=$(iscsi-readcapacity16 "$URL" | sed -n 's/^Total size:\([0-9]*\)$/\1/p')
[ "$sz" = $((32 << 20)) ] || fail "login at node 1 after its restart: size '$sz'"
echo "ok: node 1 restarted, its portal redirects to node 2"

# --- 5. the serving node pauses (SIGSTOP): node 1 takes over; node 2, resumed,
# finds a newer epoch and releases the group; nothing acknowledged is lost
kill -STOP "${NP[2]}"
E3=$(wait_takeover 1 "$E2")
[ "$E3" -gt "$E2" ] || { kill -CONT "${NP[2]}"; fail "node 1 did not take over from the paused node 2"; }
kill -CONT "${NP[2]}"
for _ in $(seq 1 100); do
	[ "$(served_epoch 2)" = 0 ] && break
	sleep 0.1
done
[ "$(served_epoch 2)" = 0 ] || fail "node 2, resumed, still lists the group"
grep -q "a newer owner took group" "$W/node2.log" || fail "node 2 did not log that it lost the group"
ver=$("$LD" -V -i 0 -T 60000 -l "$W/load.wal" "${URL/$(node_portal 1)/$FRONT}" 2>>"$W/verify.log" | tail -1)
LOST=$(sed -n 's/.* lost=\([0-9]*\).*/\1/p' <<<"$ver")
[ "${LOST:-x}" = 0 ] || fail "lost blocks after the pause: $ver"
echo "ok: node 2 paused; node 1 serves at epoch $E3; node 2 resumed and released the group; verify via $FRONT: $ver"
E2=$E3
PASSED=1
echo "acked=$ACKED lost=$LOST ctl_bytes=$CB node1_bytes=$N1 epoch=$E2"
