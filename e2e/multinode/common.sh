# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# What the multi-process tests share (controller.sh, node_engines.sh,
# node_csi.sh, e2e/kube/controllers.sh). Source it after setting T (tessera),
# W (work dir), CLUSTER; it declares NP (node pids by id), CP (controller
# pid), WP (writer pid), PASSED, traps EXIT (a script with more processes
# redefines cleanup and calls mn_cleanup from it), and picks PORT: one port
# free on every address. MN_STORE: the store arguments of every node (default
# --registry $W/registry).
declare -A NP=()
CP="" WP="" PASSED=0
mn_cleanup() {
	set +e
	[ -n "$WP" ] && kill -KILL "$WP" 2>/dev/null
	[ -n "$CP" ] && kill -TERM "$CP" 2>/dev/null
	for i in "${!NP[@]}"; do kill -TERM "${NP[$i]}" 2>/dev/null; done
	wait 2>/dev/null
	if [ "$PASSED" = 1 ] && [ -z "${TS_KEEP_WORK:-}" ]; then rm -rf "$W"; else echo "work dir: $W"; fi
}
cleanup() { mn_cleanup; }
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	for f in "$W"/ctl*.err "$W"/node*.log; do [ -f "$f" ] && { echo "--- $f (tail)"; tail -15 "$f"; }; done
	exit 1
}
if [ -z "${MN_STORE+x}" ]; then MN_STORE=(--registry "$W/registry"); fi

# mn_wait_ready OUT PID WHAT [SECONDS]: until OUT has a line starting with
# "ready" (default 60 s); fails when PID exits first or time runs out.
mn_wait_ready() {
	local i
	for ((i = 0; i < ${4:-60} * 10; i++)); do
		grep -q '^ready' "$1" && return 0
		kill -0 "$2" 2>/dev/null || fail "$3 exited before ready"
		sleep 0.1
	done
	fail "$3 not ready within ${4:-60} s"
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
		"${MN_STORE[@]}" --disk "$W/node$i.disk" --extent-size 1048576 \
		--heartbeat-ms 200 "$@" >"$W/node$i.out" 2>>"$W/node$i.log" &
	NP[$i]=$!
	for _ in $(seq 1 300); do
		grep -q "^node=$i ready" "$W/node$i.out" && return 0
		kill -0 "${NP[$i]}" 2>/dev/null || fail "node $i exited before ready"
		sleep 0.1
	done
	fail "node $i not ready"
}
