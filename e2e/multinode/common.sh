# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# What the multi-process tests share (controller.sh, node_engines.sh). Source
# it after setting T (tessera), W (work dir), CLUSTER; it declares NP (node
# pids by id), CP (controller pid), WP (writer pid), PASSED, traps EXIT, and
# picks PORT: one port free on every address.
declare -A NP=()
CP="" WP="" PASSED=0
cleanup() {
	set +e
	[ -n "$WP" ] && kill -KILL "$WP" 2>/dev/null
	[ -n "$CP" ] && kill -TERM "$CP" 2>/dev/null
	for i in "${!NP[@]}"; do kill -TERM "${NP[$i]}" 2>/dev/null; done
	wait 2>/dev/null
	if [ "$PASSED" = 1 ] && [ -z "${TS_KEEP_WORK:-}" ]; then rm -rf "$W"; else echo "work dir: $W"; fi
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	for f in "$W"/ctl.err "$W"/node*.log; do [ -f "$f" ] && { echo "--- $f (tail)"; tail -15 "$f"; }; done
	exit 1
}
PORT=
for p in $(shuf -i 20000-30000 -n 50); do
	if [ -z "$(ss -Htln "sport = :$p")" ]; then PORT=$p; break; fi
done
[ -n "$PORT" ] || fail "no free port"

# mn_start_node ID ADDR [EXTRA ARGS...]: `tessera node` on ADDR:PORT with one
# disk file, until it prints ready.
mn_start_node() {
	local i=$1 addr=$2
	shift 2
	: >"$W/node$i.out"
	"$T" node --id "$i" --cluster "$CLUSTER" --addr "$addr" --port "$PORT" \
		--registry "$W/registry" --disk "$W/node$i.disk" --extent-size 1048576 \
		--heartbeat-ms 200 "$@" >"$W/node$i.out" 2>>"$W/node$i.log" &
	NP[$i]=$!
	for _ in $(seq 1 300); do
		grep -q "^node=$i ready" "$W/node$i.out" && return 0
		kill -0 "${NP[$i]}" 2>/dev/null || fail "node $i exited before ready"
		sleep 0.1
	done
	fail "node $i not ready"
}
