#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Many array groups, created as the pool needs capacity (docs/scale-out.md):
# `tessera dev --engines nodes --member-size 16Mi` on 3 and then on 6 nodes
# with the same disk per node (one 128 MiB file), volumes of half a group's
# pool created until the pool takes no more without thin overcommit.
#
#  1. each pool is made of several 4+2 groups, every one healthy, placed with
#     at most 2 members per node (the domain rule) and the members per node
#     even (max - min <= 1); the groups' engines are spread over the nodes
#     (every node serves some when there are at least as many groups);
#  2. the 6-node pool's usable capacity (the pools' data bytes over all
#     groups) is at least 1.9x the 3-node pool's (4+2 on 3 nodes puts two
#     members on each node, on 6 one: the same disks hold twice the groups);
#  3. on the 6-node pool, every volume is filled with checkable data
#     (ts-faults-load --fill: each 4 KiB block written once and read back):
#     at least 90 % of the usable capacity is written, nothing is lost, and
#     no write fails for want of space.
#
# Usage: many_groups.sh <tessera> <ts-faults-load>. Last line:
# usable3=B usable6=B ratio=R groups3=G groups6=G filled=B fill_pct=P lost=0
set -euo pipefail
T=$(readlink -f "$1") LD=$(readlink -f "$2")
command -v jq >/dev/null || { echo "FAIL: jq missing (scripts/deps.sh installs it)"; exit 1; }
W=$(mktemp -d /tmp/ts-mgroups.XXXXXX)
PORT=$((30000 + RANDOM % 20000))
DEV=""
export TESSERA_ENDPOINT=unix://$W/state/csi.sock
cleanup() {
	set +e
	[ -n "$DEV" ] && kill -KILL "$DEV" 2>/dev/null && wait "$DEV" 2>/dev/null
	[ -n "${TS_KEEP_WORK:-}" ] && { echo "work dir kept: $W"; return; }
	rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -30 "$W/dev.log" 2>/dev/null; exit 1; }

dev_up() { # $1: nodes
	rm -rf "$W/state"
	: >"$W/dev.out"
	"$T" dev --state-dir "$W/state" --engines nodes --nodes "$1" --disks 1 --disk-size 128Mi \
		--member-size 16Mi --portal "127.0.0.1:$PORT" >"$W/dev.out" 2>"$W/dev.log" &
	DEV=$!
	for _ in $(seq 600); do
		grep -q '^ready' "$W/dev.out" && return 0
		kill -0 "$DEV" 2>/dev/null || fail "tessera dev died"
		sleep 0.1
	done
	fail "tessera dev not ready"
}

dev_down() {
	kill -TERM "$DEV"
	wait "$DEV" || fail "tessera dev exited with $?"
	DEV=""
}

overcommits() { grep -c 'thin-provisioned beyond its size' "$W/dev.log" || true; }

# Volumes of SIZE until one no longer fits without overcommit (it is deleted
# again). Prints the number of volumes kept.
fill_pool() { # $1: prefix, $2: size in MiB
	local n=0 before
	for i in $(seq 1 64); do
		before=$(overcommits)
		"$T" volume create "$1$i" --size "$2Mi" >/dev/null || fail "volume create $1$i"
		if [ "$(overcommits)" -gt "$before" ]; then
			"$T" volume delete "$1$i" >/dev/null || fail "volume delete $1$i"
			echo "$n"
			return 0
		fi
		n=$i
	done
	fail "the pool took 64 volumes of $2 MiB without running out"
}

# Checks 1 on the status now; prints "usable groups".
check_pool() { # $1: nodes
	local st ngroups usable
	st=$("$T" -o json status) || fail "status"
	ngroups=$(jq '.array_groups | length' <<<"$st")
	usable=$(jq '.volume_pool.total_bytes' <<<"$st")
	[ "$ngroups" -ge 2 ] || fail "$1 nodes: $ngroups group(s), expected several"
	[ "$(jq '[.array_groups[] | select(.state != "healthy")] | length' <<<"$st")" = 0 ] ||
		fail "$1 nodes: a group is not healthy: $(jq -c '[.array_groups[].state]' <<<"$st")"
	# at most m = 2 members of a group on a node
	[ "$(jq '[.array_groups[] | [.members[].node] | group_by(.) | map(length) | max] | max' \
		<<<"$st")" -le 2 ] || fail "$1 nodes: a node holds more than 2 members of a group"
	local counts
	counts=$(jq -c --argjson n "$1" '[range(1; $n + 1) as $id |
		[.array_groups[].members[] | select(.node == $id)] | length]' <<<"$st")
	[ "$(jq 'max - min' <<<"$counts")" -le 1 ] || fail "$1 nodes: members per node uneven: $counts"
	local serving
	serving=$(jq '[.array_groups[].serving_node] | unique | length' <<<"$st")
	if [ "$ngroups" -ge "$1" ]; then
		[ "$serving" = "$1" ] || fail "$1 nodes, $ngroups groups: only $serving node(s) serve any"
	fi
	echo "$1 nodes: $ngroups groups, members per node $counts, $serving serving node(s)," \
		"usable $usable bytes" >&2
	echo "$usable $ngroups"
}

# The volume size: half a group's pool, in whole MiB.
half_group() {
	local t
	t=$("$T" -o json status | jq '.volume_pool.total_bytes / (.array_groups | length)')
	echo $((${t%.*} / 2 / 1048576))
}

dev_up 3
SZ=$(half_group)
[ "$SZ" -ge 4 ] || fail "a group's pool is only $((SZ * 2)) MiB"
fill_pool a "$SZ" >/dev/null
read -r U3 G3 < <(check_pool 3)
dev_down

dev_up 6
N6=$(fill_pool b "$SZ")
read -r U6 G6 < <(check_pool 6)
RATIO=$(awk -v a="$U6" -v b="$U3" 'BEGIN { printf "%.2f", a / b }')
awk -v r="$RATIO" 'BEGIN { exit !(r >= 1.9) }' ||
	fail "6 nodes offer ${RATIO}x the usable capacity of 3 (want ~2x)"

# 3. fill every volume of the 6-node pool
FILLED=0
for i in $(seq 1 "$N6"); do
	url=$("$T" -o json volume show "b$i" | jq -r .iscsi_url)
	res=$("$LD" --fill --qd 8 --interval-ms 0 --exit-on-error "$url" 2>>"$W/load.log" | tail -1) ||
		fail "filling b$i: $res"
	lost=$(sed -n 's/.*\blost=\([0-9]*\).*/\1/p' <<<"$res")
	acked=$(sed -n 's/.*\backed=\([0-9]*\).*/\1/p' <<<"$res")
	[ "$lost" = 0 ] || fail "b$i: $res"
	[ "$acked" = $((SZ * 256)) ] || fail "b$i: $acked of $((SZ * 256)) blocks acknowledged"
	FILLED=$((FILLED + acked * 4096))
done
PCT=$(awk -v f="$FILLED" -v u="$U6" 'BEGIN { printf "%.1f", 100 * f / u }')
awk -v p="$PCT" 'BEGIN { exit !(p >= 90) }' || fail "only $PCT % of the usable capacity written"
st=$("$T" -o json status)
[ "$(jq '[.array_groups[] | select(.state != "healthy")] | length' <<<"$st")" = 0 ] ||
	fail "a group is not healthy after the fill"
dev_down
echo "usable3=$U3 usable6=$U6 ratio=$RATIO groups3=$G3 groups6=$G6 filled=$FILLED fill_pct=$PCT lost=0"
