#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Where the volume engine runs, measured: the same 4+2 volume path with the
# engine in the controller (`tessera controller`, today's default) and in a
# node daemon (`tessera controller --engines nodes`, issue 13), with tgt on a
# plain file as the ceiling (no redundancy, no network hop), all in one run.
# Two clusters of three `tessera node` processes each (127.0.0.51-53 and
# .61-63, file disks under TS_BENCH_DIR) run side by side, each with its
# controller (127.0.0.50 / .60); ts-iscsi-load drives one volume of each and
# the tgt LUN in turn, 4 KiB random read and write at QD1 and QD32, the
# median of TS_BENCH_REPEAT alternating runs reported. During every run the
# CPU time (utime + stime, /proc/PID/stat) of the controller and of each node
# process is sampled, and the TCP bytes of their sockets (ss -tinp) before
# and after: what the controller carries, and who does the work.
#
# Usage (root: tgtd):  bench/cluster/engines.sh
# Environment: TS_BENCH_SECONDS (5), TS_BENCH_REPEAT (3), TS_BENCH_DIR (/dev/shm),
# TS_BENCH_BUILD (build-bench, a Release build made by the script).
# Last line: key=value per workload and path, and ratios node-engine/controller
# and each/tgt.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
# shellcheck source=e2e/lib/tgt.sh
. "$ROOT/e2e/lib/tgt.sh"

SECS=${TS_BENCH_SECONDS:-5} REPEAT=${TS_BENCH_REPEAT:-3} DIR=${TS_BENCH_DIR:-/dev/shm}
BUILD=${TS_BENCH_BUILD:-build-bench}
WORKLOADS=("randread 1" "randread 32" "randwrite 1" "randwrite 32")
[ "$(id -u)" -eq 0 ] || { echo "bench/cluster/engines: needs root (tgtd)" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench/cluster/engines: needs jq" >&2; exit 1; }

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target tessera ts-iscsi-load >/dev/null
T=$ROOT/$BUILD/bin/tessera LOAD=$ROOT/$BUILD/bin/ts-iscsi-load
W=$(mktemp -d "$DIR/ts-bench-eng.XXXXXX")
export TESSERA_CHAP_USER=tessera-bench TESSERA_CHAP_SECRET=engines-bench-secret
PIDS=()
cleanup() {
	set +e
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	wait 2>/dev/null
	tgt_stop
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=
for p in $(shuf -i 20000-30000 -n 50); do
	[ -z "$(ss -Htln "sport = :$p")" ] && { PORT=$p; break; }
done
[ -n "$PORT" ] || { echo "no free port" >&2; exit 1; }

declare -A CTL_PID NODE_PIDS URL
# cluster NAME NET ENGINES: three nodes on 127.0.0.NET1-3, the controller on NET0
cluster() {
	local name=$1 net=$2 eng=$3 cl grp i
	cl=$(cat /proc/sys/kernel/random/uuid) grp=$(cat /proc/sys/kernel/random/uuid)
	mkdir -p "$W/$name"
	NODE_PIDS[$name]=""
	for i in 1 2 3; do
		truncate -s 1G "$W/$name/d$i"
		"$T" node --id "$i" --cluster "$cl" --addr "127.0.0.$net$i" --port "$PORT" \
			--registry "$W/$name/reg" --disk "$W/$name/d$i" --heartbeat-ms 200 \
			--state-dir "$W/$name/n$i" >"$W/$name/node$i.out" 2>"$W/$name/node$i.log" &
		PIDS+=($!)
		NODE_PIDS[$name]+=" $!"
	done
	for i in 1 2 3; do
		for _ in $(seq 100); do grep -q ready "$W/$name/node$i.out" && break; sleep 0.1; done
	done
	"$T" controller --registry "$W/$name/reg" --group "$grp" --state-dir "$W/$name/ctl" \
		--portal "127.0.0.${net}0:$PORT" --ec 4+2 --member-size 256Mi --engines "$eng" \
		>"$W/$name/ctl.out" 2>"$W/$name/ctl.log" &
	PIDS+=($!)
	CTL_PID[$name]=$!
	for _ in $(seq 600); do grep -q '^ready' "$W/$name/ctl.out" && break; sleep 0.1; done
	grep -q '^ready' "$W/$name/ctl.out" || { echo "$name: controller not ready" >&2; tail -5 "$W/$name/ctl.log" >&2; exit 1; }
	URL[$name]=$("$T" --endpoint "unix://$W/$name/ctl/csi.sock" volume create bench --size 512Mi -o json | jq -r .iscsi_url)
	echo "$name: engines in the $eng, volume $(sed 's|/iqn.*||' <<<"${URL[$name]}")"
}

cputicks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
tcpbytes() {
	ss -tinpH 2>/dev/null | awk -v pid="pid=$1," '
		/users:/ { mine = index($0, pid) > 0; next }
		mine { for (i = 1; i <= NF; i++) if ($i ~ /^bytes_(sent|received):/) { split($i, a, ":"); s += a[2] } }
		END { print s + 0 }'
}

cluster ctl 5 controller
cluster node 6 nodes
truncate -s 512M "$W/tgt.img"
tgt_start "$W/tgt"
tgt_target 1 iqn.2026-12.io.tessera:bench-eng "$W/tgt.img"
URL[tgt]=$(tgt_url iqn.2026-12.io.tessera:bench-eng)
HZ=$(getconf CLK_TCK)
echo "engines bench: ${SECS}s x $REPEAT per workload and path, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A IOPS CPU
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# one NAME MODE QD: prints IOPS; records CPU seconds per process kind in CPUS_LAST
one() {
	local name=$1 c0=0 n0=0 c1 n1 line p
	if [ "$name" != tgt ]; then
		c0=$(cputicks "${CTL_PID[$name]}")
		for p in ${NODE_PIDS[$name]}; do n0=$((n0 + $(cputicks "$p"))); done
	fi
	line=$("$LOAD" -m "$2" -q "$3" -t "$SECS" "${URL[$name]}" | tail -1)
	if [ "$name" != tgt ]; then
		c1=$(cputicks "${CTL_PID[$name]}") n1=0
		for p in ${NODE_PIDS[$name]}; do n1=$((n1 + $(cputicks "$p"))); done
		echo "  $name $line ctl_cpu_s=$(awk -v t=$((c1 - c0)) -v h="$HZ" 'BEGIN{printf "%.2f", t/h}') nodes_cpu_s=$(awk -v t=$((n1 - n0)) -v h="$HZ" 'BEGIN{printf "%.2f", t/h}') ctl_tcp_bytes=$(tcpbytes "${CTL_PID[$name]}")" >&2
		# (a file: this runs in a command substitution, a subshell)
		echo "$name,$2,$3 $(awk -v a=$((c1 - c0)) -v b=$((n1 - n0)) 'BEGIN{ if (a + b) printf "%.0f", 100 * a / (a + b); else print 0 }')" >>"$W/cpu.txt"
	else
		echo "  $name $line" >&2
	fi
	sed -n 's/.* iops=\([0-9]*\).*/\1/p' <<<"$line"
}

# Reads of blocks never written come from the thin map alone: write every
# volume (and the tgt file) through first, 1 MiB random writes for 20 s.
for name in tgt ctl node; do
	"$LOAD" -m randwrite -b 1048576 -q 8 -t 20 "${URL[$name]}" >/dev/null
done
echo "preconditioned: 20 s of 1 MiB random writes on each"

for wl in "${WORKLOADS[@]}"; do
	read -r mode qd <<<"$wl"
	declare -A runs=([tgt]="" [ctl]="" [node]="")
	for _ in $(seq 1 "$REPEAT"); do
		for name in tgt ctl node; do runs[$name]+=" $(one "$name" "$mode" "$qd")"; done
	done
	for name in tgt ctl node; do IOPS[$name,$mode,$qd]=$(median <<<"${runs[$name]}"); done
	for name in ctl node; do
		CPU[$name,$mode,$qd]=$(grep "^$name,$mode,$qd " "$W/cpu.txt" | cut -d' ' -f2 | median)
	done
done

printf '\n%-14s %10s %16s %12s %14s %12s\n' workload tgt engine-in-ctl ctl-cpu% engine-in-node ctl-cpu%
last="seconds=$SECS repeat=$REPEAT"
for wl in "${WORKLOADS[@]}"; do
	read -r mode qd <<<"$wl"
	k="$mode,$qd" t=${IOPS[tgt,$k]} c=${IOPS[ctl,$k]} n=${IOPS[node,$k]}
	printf '%-14s %10s %16s %12s %14s %12s\n' "$mode-qd$qd" "$t" "$c" "${CPU[ctl,$k]:-}" "$n" "${CPU[node,$k]:-}"
	last+=" tgt_${mode}_qd$qd=$t ctl_${mode}_qd$qd=$c node_${mode}_qd$qd=$n"
	last+=" node_vs_ctl_${mode}_qd$qd=$(awk -v a="$n" -v b="$c" 'BEGIN{ if (b) printf "%.2f", a/b; else print "NA" }')"
	last+=" node_vs_tgt_${mode}_qd$qd=$(awk -v a="$n" -v b="$t" 'BEGIN{ if (b) printf "%.2f", a/b; else print "NA" }')"
done
echo "(ctl-cpu%: the controller process's share of the CPU time of controller + node processes during the runs)"
echo "$last"
