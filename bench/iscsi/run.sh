#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# iSCSI target benchmark: tgt against Tessera's target, same run, same kind
# of backing (a file on tmpfs for both, by default), 4 KiB random read and
# random write at queue depth 1 and 32, measured with ts-iscsi-load (one
# libiscsi session, async, see bench/iscsi/iscsi_load.c).
#
# Usage (root, because of tgtd):  bench/iscsi/run.sh
# Environment:
#   TS_BENCH_SECONDS   seconds per measurement (default 5)
#   TS_BENCH_REPEAT    measurements per workload and target, alternating
#                      between the targets; the median is reported (default 3)
#   TS_BENCH_SIZE      LUN size (default 512M); the IO span is the whole LUN
#   TS_BENCH_DIR       where the backing files live (default /dev/shm)
#   TS_BENCH_BUILD     build directory (default build-bench, a Release build)
#   TESSERA_TARGET_CMD command line that serves FILE as LUN 1 of target IQN on
#                      127.0.0.1:PORT, with @PORT@ @IQN@ @FILE@ @SIZE@ as
#                      placeholders. Default: $TS_BENCH_BUILD/bin/tessera-target
#                      --portal 127.0.0.1:@PORT@ --lun @IQN@:@FILE@:@SIZE@ (its
#                      command line on 2026-11-24; check tessera-target --help)
#   TESSERA_LUN        LUN number Tessera's target serves the file as (default 0;
#                      tgt's is 1, as its LUN 0 is the controller)
#                      If that program is missing or does not listen on PORT
#                      within 10 s, Tessera's half is skipped and says why.
#
# Output: a table of IOPS per workload and target with the ratio
# Tessera/tgt; the last line is key=value (tgt_<wl>=IOPS tessera_<wl>=IOPS
# ratio_<wl>=X, NA where skipped).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
# shellcheck source=e2e/lib/tgt.sh
. "$ROOT/e2e/lib/tgt.sh"

SECONDS_PER=${TS_BENCH_SECONDS:-5}
REPEAT=${TS_BENCH_REPEAT:-3}
SIZE=${TS_BENCH_SIZE:-512M}
DIR=${TS_BENCH_DIR:-/dev/shm}
BUILD=${TS_BENCH_BUILD:-build-bench}
IQN_TGT=iqn.2026-11.io.tessera:bench-tgt
IQN_TS=iqn.2026-11.io.tessera:bench-tessera
WORKLOADS=("randread 1" "randread 32" "randwrite 1" "randwrite 32")

[ "$(id -u)" -eq 0 ] || { echo "bench/iscsi: needs root (tgtd)" >&2; exit 1; }

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target ts-iscsi-load >/dev/null
# (no grep -q on a pipe: with pipefail its early exit would fail the pipeline)
if cmake --build "$BUILD" --target help 2>/dev/null | grep '^tessera-target:' >/dev/null; then
	cmake --build "$BUILD" --target tessera-target >/dev/null
fi
LOAD=$ROOT/$BUILD/bin/ts-iscsi-load

WORK=$(mktemp -d "$DIR/ts-bench-iscsi.XXXXXX")
TS_PID=
cleanup() {
	set +e # everything below must run, whatever fails
	rm -rf "$WORK"  # first: the backing files are large and live in RAM
	tgt_stop
	if [ -n "$TS_PID" ]; then
		kill -TERM "$TS_PID" 2>/dev/null
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$TS_PID" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$TS_PID" 2>/dev/null
		TS_PID=
	fi
	wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM # runs the EXIT trap

# tgt serves the file as LUN 1 (LUN 0 is its controller), Tessera as TESSERA_LUN.
# Same bytes behind both targets: one file written once, copied.
truncate -s "$SIZE" "$WORK/tgt.img"
dd if=/dev/urandom of="$WORK/tgt.img" bs=1M count=$(($(stat -c %s "$WORK/tgt.img") >> 20)) \
	conv=notrunc status=none
cp "$WORK/tgt.img" "$WORK/tessera.img"

declare -A IOPS URL
one() { # name mode qd -> prints IOPS
	local line
	line=$("$LOAD" -m "$2" -q "$3" -t "$SECONDS_PER" "${URL[$1]}" | tail -1)
	echo "  $1 $line" >&2
	sed -n 's/.* iops=\([0-9]*\).*/\1/p' <<<"$line"
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "iscsi bench: ${SECONDS_PER}s x $REPEAT per workload and target, LUN $SIZE on" \
	"$(df --output=fstype "$DIR" | tail -1) ($DIR), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

tgt_start "$WORK/tgt"
tgt_target 1 "$IQN_TGT" "$WORK/tgt.img"
URL[tgt]=$(tgt_url "$IQN_TGT")
echo "tgt $(tgtd --version 2>/dev/null || true) on 127.0.0.1:$TGT_PORT"

TS_SKIP=
CMD_T=${TESSERA_TARGET_CMD:-"$ROOT/$BUILD/bin/tessera-target --portal 127.0.0.1:@PORT@ --lun @IQN@:@FILE@:@SIZE@"}
TS_BIN=${CMD_T%% *}
if [ ! -x "$TS_BIN" ]; then
	TS_SKIP="Tessera's target ($TS_BIN) is not built in this tree; set TESSERA_TARGET_CMD to measure it"
else
	port=
	for _ in 1 2 3 4 5 6 7 8; do
		p=$((20000 + RANDOM % 20000))
		if tgt_port_free "$p"; then port=$p; break; fi
	done
	cmd=${CMD_T//@PORT@/$port}
	cmd=${cmd//@IQN@/$IQN_TS}
	cmd=${cmd//@FILE@/$WORK/tessera.img}
	cmd=${cmd//@SIZE@/$SIZE}
	echo "tessera: $cmd"
	# shellcheck disable=SC2086
	$cmd >"$WORK/tessera.log" 2>&1 &
	TS_PID=$!
	for _ in $(seq 1 100); do
		tgt_port_free "$port" || break
		kill -0 "$TS_PID" 2>/dev/null || break
		sleep 0.1
	done
	if tgt_port_free "$port"; then
		TS_SKIP="Tessera's target did not listen on 127.0.0.1:$port within 10 s (log: $(tail -3 "$WORK/tessera.log" | tr '\n' ' '))"
	else
		URL[tessera]="iscsi://127.0.0.1:$port/$IQN_TS/${TESSERA_LUN:-0}"
	fi
fi
if [ -n "$TS_SKIP" ]; then echo "tessera: SKIPPED: $TS_SKIP"; fi

# Alternate the targets run by run, so drift in the machine's load (it is
# shared) hits both alike; report the median of REPEAT runs.
for wl in "${WORKLOADS[@]}"; do
	read -r mode qd <<<"$wl"
	declare -A runs=([tgt]="" [tessera]="")
	for _ in $(seq 1 "$REPEAT"); do
		for name in tgt tessera; do
			[ -n "${URL[$name]:-}" ] || continue
			runs[$name]+=" $(one "$name" "$mode" "$qd")"
		done
	done
	for name in tgt tessera; do
		[ -n "${runs[$name]// /}" ] && IOPS[$name,$mode,$qd]=$(median <<<"${runs[$name]}")
	done
	unset runs
done

printf '%-14s %12s %12s %8s\n' workload tgt_iops tessera_iops ratio
kv="seconds=$SECONDS_PER repeat=$REPEAT size=$SIZE"
for wl in "${WORKLOADS[@]}"; do
	read -r mode qd <<<"$wl"
	key=${mode}_qd$qd
	a=${IOPS[tgt,$mode,$qd]:-NA}
	b=${IOPS[tessera,$mode,$qd]:-NA}
	r=NA
	if [ "$a" != NA ] && [ "$b" != NA ] && [ "$a" -gt 0 ]; then
		r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')
	fi
	printf '%-14s %12s %12s %8s\n' "$mode qd$qd" "$a" "$b" "$r"
	kv+=" tgt_$key=$a tessera_$key=$b ratio_$key=$r"
done
if [ -n "$TS_SKIP" ]; then kv+=" tessera=skipped"; fi
echo "$kv"
