#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# CPU cost per IO of each party in the iSCSI benchmark: the target (tgt or
# Tessera's) and the load generator (ts-iscsi-load), from their utime+stime
# (/proc/PID/stat for the target, time(1) for the client) divided by the IOs
# done. Less sensitive to the machine's load than IOPS: on a shared 2-core
# machine IOPS follow whatever CPU the scheduler hands out, CPU per IO is what
# each party asks for. Same set-up as run.sh (tmpfs files filled with random
# bytes, one libiscsi session, 4 KiB random IO over the whole LUN).
#
# Usage (root, for tgtd):  bench/iscsi/cpu.sh
# Environment: TS_BENCH_SECONDS (5), TS_BENCH_SIZE (512M), TS_BENCH_DIR
# (/dev/shm), TS_BENCH_BUILD (build-bench, built by run.sh or here),
# TS_BENCH_QD (32), TS_BENCH_MODES ("randread randwrite"), TS_BENCH_NOBUILD=1
# (use the binaries in TS_BENCH_BUILD as they are, e.g. an older build).
# Output: one line per target and mode; last line key=value
# (<target>_<mode>_iops, <target>_<mode>_server_us, <target>_<mode>_client_us).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
# shellcheck source=e2e/lib/tgt.sh
. "$ROOT/e2e/lib/tgt.sh"

SECS=${TS_BENCH_SECONDS:-5}
SIZE=${TS_BENCH_SIZE:-512M}
DIR=${TS_BENCH_DIR:-/dev/shm}
BUILD=${TS_BENCH_BUILD:-build-bench}
QD=${TS_BENCH_QD:-32}
MODES=${TS_BENCH_MODES:-randread randwrite}
IQN_TGT=iqn.2026-11.io.tessera:cpu-tgt
IQN_TS=iqn.2026-11.io.tessera:cpu-tessera

[ "$(id -u)" -eq 0 ] || { echo "bench/iscsi: needs root (tgtd)" >&2; exit 1; }
if [ -z "${TS_BENCH_NOBUILD:-}" ]; then
	cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$BUILD" --target ts-iscsi-load tessera-target >/dev/null
fi
LOAD=$ROOT/$BUILD/bin/ts-iscsi-load

WORK=$(mktemp -d "$DIR/ts-bench-cpu.XXXXXX")
TS_PID=
cleanup() {
	set +e
	rm -rf "$WORK"
	tgt_stop
	if [ -n "$TS_PID" ]; then kill -TERM "$TS_PID" 2>/dev/null; wait "$TS_PID" 2>/dev/null; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

truncate -s "$SIZE" "$WORK/tgt.img"
dd if=/dev/urandom of="$WORK/tgt.img" bs=1M count=$(($(stat -c %s "$WORK/tgt.img") >> 20)) \
	conv=notrunc status=none
cp "$WORK/tgt.img" "$WORK/tessera.img"

tgt_start "$WORK/tgt" >/dev/null
tgt_target 1 "$IQN_TGT" "$WORK/tgt.img"
"$ROOT/$BUILD/bin/tessera-target" --portal 127.0.0.1:0 --port-file "$WORK/port" \
	--lun "$IQN_TS:$WORK/tessera.img:$SIZE" >"$WORK/tessera.log" 2>&1 &
TS_PID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
[ -s "$WORK/port" ] || { echo "tessera-target did not start: $(tail -3 "$WORK/tessera.log")" >&2; exit 1; }

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
echo "iscsi cpu per IO: ${SECS}s per run, QD$QD, LUN $SIZE on $(df --output=fstype "$DIR" | tail -1)," \
	"$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
kv="seconds=$SECS qd=$QD size=$SIZE"
for mode in $MODES; do
	for name in tgt tessera; do
		if [ "$name" = tgt ]; then
			url=$(tgt_url "$IQN_TGT"); pid=$TGT_PID
		else
			url="iscsi://127.0.0.1:$(cat "$WORK/port")/$IQN_TS/0"; pid=$TS_PID
		fi
		s0=$(ticks "$pid")
		out=$(/usr/bin/time -f "%U %S" -o "$WORK/time" "$LOAD" -m "$mode" -q "$QD" -t "$SECS" "$url" | tail -1)
		s1=$(ticks "$pid")
		read -r u s <"$WORK/time"
		ios=$(sed -n 's/.* ios=\([0-9]*\).*/\1/p' <<<"$out")
		iops=$(sed -n 's/.* iops=\([0-9]*\).*/\1/p' <<<"$out")
		line=$(awk -v ios="$ios" -v t=$((s1 - s0)) -v hz="$hz" -v u="$u" -v s="$s" \
			'BEGIN { printf "%.1f %.1f", t * 1e6 / hz / ios, (u + s) * 1e6 / ios }')
		read -r srv cli <<<"$line"
		printf '%-8s %-9s iops=%-7s server_us_per_io=%-6s client_us_per_io=%s\n' \
			"$name" "$mode" "$iops" "$srv" "$cli"
		kv+=" ${name}_${mode}_iops=$iops ${name}_${mode}_server_us=$srv ${name}_${mode}_client_us=$cli"
	done
done
echo "$kv"
