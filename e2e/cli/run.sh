#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The `tessera` CLI end to end against `tessera dev`: create a volume and
# prove the iSCSI target serves it at the URL the CLI printed (libiscsi's
# iscsi-readcapacity16), list/show it, check status / node list / agrp list
# (3 nodes, one healthy 4+2 group), delete it (the target then refuses the
# login), bad input (unknown volume, bad size, unreachable endpoint, ...)
# exits non-zero with one clear line, and a volume survives a SIGINT restart
# of the cluster on the same state dir.
# TS_CLI_ENGINES=nodes runs `tessera dev --engines nodes` (the engine in node
# 1, the CLI's calls forwarded to it): ids are then <group key>.tv-..., the
# volumes are served on node 1's portal (127.0.1.1 at the same port), and a
# login to the dev's own portal is redirected there.
# Usage: run.sh TESSERA [WORKDIR]  (default a fresh /tmp/ts-cli-e2e.*, removed
# on success and kept on failure; short, because a unix socket path must fit
# in 108 bytes)
set -euo pipefail
BIN=$1
W=${2:-}
for t in iscsi-readcapacity16 iscsi-inq jq ss; do
	command -v "$t" >/dev/null || { echo "FAIL: $t missing (scripts/deps.sh installs it)"; exit 1; }
done
OWN_W=0
if [ -n "$W" ]; then mkdir -p "$W"; rm -rf "$W/state"; else W=$(mktemp -d /tmp/ts-cli-e2e.XXXXXX); OWN_W=1; fi
DEV_PID=
PASSED=0
cleanup() {
	if [ -n "$DEV_PID" ]; then kill -TERM "$DEV_PID" 2>/dev/null || true; wait "$DEV_PID" 2>/dev/null || true; fi
	if [ "$PASSED" = 1 ] && [ "$OWN_W" = 1 ]; then rm -rf "$W"; else echo "work dir: $W"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$W"/dev*.err; do [ -f "$f" ] && { echo "--- $f (tail)"; tail -20 "$f"; }; done; exit 1; }

PORT=
for p in $(shuf -i 20000-60000 -n 50); do
	if [ -z "$(ss -Htln "sport = :$p")" ]; then PORT=$p; break; fi
done
[ -n "$PORT" ] || fail "no free port"
PORTAL=127.0.0.1:$PORT
ENGINES=${TS_CLI_ENGINES:-controller}
case $ENGINES in
controller) ID_RE='^tv-[0-9a-f]{16}$' ID_TXT='tv-' SERVE=$PORTAL ;;
nodes) ID_RE='^[0-9a-f]{16}\.tv-[0-9a-f]{16}$' ID_TXT='[0-9a-f]\{16\}\.tv-' SERVE=127.0.1.1:$PORT ;;
*) echo "FAIL: TS_CLI_ENGINES=$ENGINES (controller or nodes)"; exit 1 ;;
esac

start_dev() { # $1: run number; sets DEV_PID and TESSERA_ENDPOINT
	"$BIN" dev --state-dir "$W/state" --disk-size 256Mi --portal "$PORTAL" --engines "$ENGINES" \
		>"$W/dev$1.out" 2>"$W/dev$1.err" &
	DEV_PID=$!
	for _ in $(seq 1 600); do
		grep -q '^ready ' "$W/dev$1.out" && break
		kill -0 "$DEV_PID" 2>/dev/null || fail "tessera dev exited before ready"
		sleep 0.2
	done
	grep -q "^ready csi=unix://$W/state/csi.sock portal=$PORTAL\$" "$W/dev$1.out" ||
		fail "ready line: $(cat "$W/dev$1.out")"
	export TESSERA_ENDPOINT=unix://$W/state/csi.sock
}
stop_dev() { # SIGINT must end it with status 0
	kill -INT "$DEV_PID"
	local rc=0
	wait "$DEV_PID" || rc=$?
	DEV_PID=
	[ "$rc" -eq 0 ] || fail "tessera dev exit status $rc after SIGINT"
}
# expect_fail STATUS PATTERN CMD...: exit status STATUS, one stderr line matching PATTERN.
expect_fail() {
	local want=$1 pat=$2 rc=0
	shift 2
	"$@" >"$W/x.out" 2>"$W/x.err" || rc=$?
	[ "$rc" -eq "$want" ] || fail "'$*' exit $rc, want $want (stderr: $(cat "$W/x.err"))"
	[ "$(wc -l <"$W/x.err")" -eq 1 ] || fail "'$*' stderr is not one line: $(cat "$W/x.err")"
	grep -Eq -- "$pat" "$W/x.err" || fail "'$*' stderr '$(cat "$W/x.err")' lacks /$pat/"
	[ ! -s "$W/x.out" ] || fail "'$*' wrote to stdout on failure"
	echo "ok: $* -> $rc: $(cat "$W/x.err")"
}
url_size() { # bytes the target reports for iSCSI URL $1
	iscsi-readcapacity16 "$1" | sed -n 's/^Total size:\([0-9]*\)$/\1/p'
}

start_dev 1
echo "ok: tessera dev ready on $TESSERA_ENDPOINT portal $PORTAL"

# --- create, and the target serves it at the URL the CLI printed
"$BIN" volume create e2e-a --size 48Mi -o json >"$W/a.json" || fail "volume create"
jq -e . "$W/a.json" >/dev/null || fail "create -o json is not JSON"
A_ID=$(jq -r .id "$W/a.json")
A_URL=$(jq -r .iscsi_url "$W/a.json")
[[ $A_ID =~ $ID_RE ]] || fail "id '$A_ID' (want /$ID_RE/)"
[[ $A_URL =~ ^iscsi://$SERVE/iqn\.[^/]+/0$ ]] || fail "iscsi_url '$A_URL'"
[ "$(jq -r .size_bytes "$W/a.json")" = $((48 << 20)) ] || fail "size_bytes $(jq .size_bytes "$W/a.json")"
[ "$(jq -r '.name + " " + .ec' "$W/a.json")" = "e2e-a 4+2" ] || fail "name/ec in $(cat "$W/a.json")"
[ "$(url_size "$A_URL")" = $((48 << 20)) ] || fail "target capacity $(url_size "$A_URL")"
grep -q 'Peripheral Device Type:DIRECT_ACCESS' <<<"$(iscsi-inq "$A_URL")" || fail "iscsi-inq"
echo "ok: created $A_ID, served at $A_URL with 48 MiB"
if [ "$ENGINES" = nodes ]; then
	FRONT_URL=${A_URL/$SERVE/$PORTAL}
	[ "$(url_size "$FRONT_URL")" = $((48 << 20)) ] || fail "via the dev's portal (redirect): $(url_size "$FRONT_URL")"
	NODE2_URL=${A_URL/$SERVE/127.0.1.2:$PORT}
	[ "$(url_size "$NODE2_URL")" = $((48 << 20)) ] || fail "via node 2's portal (redirect): $(url_size "$NODE2_URL")"
	echo "ok: logins at $PORTAL and at node 2 are redirected to node 1"
fi

"$BIN" volume create e2e-keep --size 16Mi >"$W/keep.txt" || fail "create e2e-keep"
grep -q "^created volume 'e2e-keep' ($ID_TXT" "$W/keep.txt" || fail "create table output: $(cat "$W/keep.txt")"
K_ID=$(sed -n 's/^id: *//p' "$W/keep.txt")
K_URL=$(sed -n 's/^iscsi_url: *//p' "$W/keep.txt")
[ -n "$K_ID" ] && [ -n "$K_URL" ] || fail "create table lacks id/iscsi_url: $(cat "$W/keep.txt")"

# --- list and show
"$BIN" volume list >"$W/list.txt"
head -1 "$W/list.txt" | grep -Eq '^NAME +ID +SIZE +EC +ISCSI URL$' || fail "list header: $(head -1 "$W/list.txt")"
grep -Eq "^e2e-a +$A_ID +48Mi +4\+2 +$A_URL\$" "$W/list.txt" || fail "list row: $(cat "$W/list.txt")"
[ "$(grep -c . "$W/list.txt")" -eq 3 ] || fail "list has $(grep -c . "$W/list.txt") lines"
"$BIN" volume list -o json | jq -e --arg id "$A_ID" --arg u "$A_URL" \
	'.volumes | length == 2 and any(.id == $id and .iscsi_url == $u)' >/dev/null || fail "list -o json"
"$BIN" volume show e2e-a -o json | jq -e --arg id "$A_ID" '.id == $id' >/dev/null || fail "show by name"
"$BIN" volume show "$A_ID" >"$W/show.txt" || fail "show by id"
grep -q '^name: *e2e-a$' "$W/show.txt" && grep -q "^iscsi_url: *$A_URL\$" "$W/show.txt" &&
	grep -q '^size: *48Mi (50331648 bytes)$' "$W/show.txt" || fail "show: $(cat "$W/show.txt")"
echo "ok: list and show"

# --- cluster: 3 nodes up, one healthy 4+2 group with 6 live members
"$BIN" status -o json >"$W/status.json" || fail "status"
jq -e '(.nodes | length == 3 and all(.state == "up" and .disks == 2 and .free_extents <= .extents))
	and (.array_groups | length == 1)
	and (.array_groups[0] | .k == 4 and .m == 2 and .state == "healthy" and .live_members == 6
	     and (.members | length == 6 and all(.live)) and ([.members[].node] | unique == [1,2,3]))
	and (.volume_pool | .total_bytes > 0 and .used_bytes + .free_bytes == .total_bytes and .volumes == 2)' \
	"$W/status.json" >/dev/null || fail "status -o json: $(cat "$W/status.json")"
"$BIN" status >"$W/status.txt"
grep -q '^nodes: *3 (3 up)$' "$W/status.txt" && grep -q '^array groups: *1 (1 healthy)$' "$W/status.txt" ||
	fail "status: $(cat "$W/status.txt")"
"$BIN" node list >"$W/nodes.txt"
[ "$(grep -Ec '^[123] +up +2 ' "$W/nodes.txt")" -eq 3 ] || fail "node list: $(cat "$W/nodes.txt")"
"$BIN" node list -o json | jq -e '.nodes | length == 3' >/dev/null || fail "node list -o json"
"$BIN" agrp list >"$W/agrp.txt"
grep -Eq '^[0-9a-f-]{36} +4\+2 +healthy +6/6 ' "$W/agrp.txt" || fail "agrp list: $(cat "$W/agrp.txt")"
"$BIN" array-group list -o json | jq -e '.array_groups[0].state == "healthy"' >/dev/null || fail "array-group list"
echo "ok: status, node list, agrp list"

# --- bad input: non-zero exit, one clear line on stderr
expect_fail 1 "volume 'no-such-vol' not found" "$BIN" volume show no-such-vol
expect_fail 1 "volume 'no-such-vol' not found" "$BIN" volume delete no-such-vol
expect_fail 2 "bad size '12Q'" "$BIN" volume create e2e-bad --size 12Q
expect_fail 2 "bad size '0'" "$BIN" volume create e2e-bad --size 0
expect_fail 2 "--size is required" "$BIN" volume create e2e-bad
expect_fail 1 "OUT_OF_RANGE" "$BIN" volume create e2e-bad --size 100Ti
expect_fail 1 "already exists" "$BIN" volume create e2e-a --size 1Mi
expect_fail 1 "erasure code 3\+1 is not available" "$BIN" volume create e2e-bad --size 1Mi --ec 3+1
expect_fail 1 "INVALID_ARGUMENT" "$BIN" volume create 'a/../b' --size 1Mi
expect_fail 2 "unknown command 'frobnicate'" "$BIN" frobnicate
expect_fail 1 "cannot reach the cluster at unix://$W/nothing.sock" "$BIN" --endpoint "unix://$W/nothing.sock" volume list
TESSERA_ENDPOINT=unix://$W/nothing.sock expect_fail 1 "cannot reach the cluster" "$BIN" status
"$BIN" volume list -o json | jq -e '.volumes | length == 2' >/dev/null || fail "bad input changed the volumes"

# --- delete: gone from the list, and the target refuses the login
"$BIN" volume delete e2e-a >"$W/del.txt" || fail "delete"
grep -q "^deleted volume 'e2e-a' ($A_ID)\$" "$W/del.txt" || fail "delete output: $(cat "$W/del.txt")"
! grep -q e2e-a <<<"$("$BIN" volume list)" || fail "e2e-a still listed"
expect_fail 1 "volume 'e2e-a' not found" "$BIN" volume show e2e-a
if iscsi-inq "$A_URL" >"$W/inq.out" 2>&1; then fail "target still serves $A_URL"; fi
grep -qi 'login failed\|not found' "$W/inq.out" || fail "iscsi-inq after delete: $(cat "$W/inq.out")"
echo "ok: deleted; login refused: $(grep -i 'login failed' "$W/inq.out" | head -1)"

# --- restart on the same state dir: e2e-keep is still listed and served
stop_dev
echo "ok: SIGINT -> exit 0"
start_dev 2
"$BIN" volume list -o json >"$W/list2.json"
jq -e --arg id "$K_ID" --arg u "$K_URL" \
	'.volumes | length == 1 and .[0].id == $id and .[0].name == "e2e-keep" and .[0].iscsi_url == $u' \
	"$W/list2.json" >/dev/null || fail "after restart: $(cat "$W/list2.json")"
[ "$(url_size "$K_URL")" = $((16 << 20)) ] || fail "after restart the target serves $(url_size "$K_URL") bytes"
"$BIN" volume delete e2e-keep >/dev/null || fail "delete after restart"
stop_dev
echo "ok: restart keeps e2e-keep ($K_ID) listed and served"
PASSED=1
echo "PASS"
