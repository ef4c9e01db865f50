#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kill -9 of `tessera dev` under load loses no acknowledged write.
#
# Each round: attach a volume of `tessera dev` in user space (tessera-attach:
# libiscsi -> FUSE -> loop device, a separate process), write 4 KiB blocks
# with O_DIRECT|O_DSYNC (each write is acknowledged only after the target's
# FUA/SYNCHRONIZE CACHE path committed it) and log every acknowledged
# (block, version); SIGKILL `tessera dev` at a random moment and restart it on
# the same state (pool reassembly + volume log replay) while the writer rides
# through (the initiator reconnects and replays); stop the writer, re-attach
# and check every block holds its last acknowledged version (or the one in
# flight when the writer was stopped).
#
# Usage: crash.sh <tessera> <tessera-attach> [rounds]   (root: FUSE, loop)
#
# On 2026-11-24 this found a lost write: the target did not report POWER ON
# to the new sessions after its restart, so a SYNCHRONIZE CACHE replayed by
# libiscsi on the new instance succeeded while writes acknowledged by the old
# one (their map records not yet committed) were gone. Now every new I_T
# nexus starts with that unit attention and the attach fails the first flush
# after it, so the writer sees EIO instead of a false acknowledgement.
# Last line: rounds=N acked=… lost=0|N
set -euo pipefail
TESSERA=$(readlink -f "$1")
ATTACH=$(readlink -f "$2")
ROUNDS=${3:-3}
[ "$(id -u)" -eq 0 ] || { echo "crash: needs root"; exit 77; }
W=$(mktemp -d /tmp/ts-crash.XXXXXX)
DEV_BIN=$TESSERA DEV_DIR=$W DEV_PORT=$((30000 + RANDOM % 20000))
. "$(dirname "$0")/../lib/dev.sh"
ATT_PID=""
cleanup() {
  set +e
  [ -n "$ATT_PID" ] && kill -TERM "$ATT_PID" 2>/dev/null && wait "$ATT_PID" 2>/dev/null
  dev_kill KILL
  grep -o " $W/[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  if [ "${lost:-0}" = 0 ]; then rm -rf "$W"; else echo "crash: logs kept in $W"; fi
}
trap cleanup EXIT

attach() {
  : >"$W/att.out"
  "$ATTACH" -t 10 -m "$W" "$URL" >"$W/att.out" 2>>"$W/att.log" &
  ATT_PID=$!
  for _ in $(seq 200); do
    DEVICE=$(sed -n 's/^device=\([^ ]*\).*/\1/p' "$W/att.out")
    [ -n "$DEVICE" ] && return 0
    kill -0 "$ATT_PID" 2>/dev/null || { tail -5 "$W/att.log"; echo "crash: attach failed"; exit 1; }
    sleep 0.1
  done
  echo "crash: attach timed out"; exit 1
}

detach() {
  kill -TERM "$ATT_PID" 2>/dev/null || true
  wait "$ATT_PID" 2>/dev/null || true
  ATT_PID=""
}

dev_start
URL=$(dev_volume crashvol 16Mi)
: >"$W/acked"
total_acked=0 lost=0
for r in $(seq "$ROUNDS"); do
  attach
  # Writer: one O_DIRECT|O_DSYNC 4 KiB write at a time; log intent, then ack.
  python3 - "$DEVICE" "$W/acked" "$r" <<'PY' &
import mmap, os, random, struct, sys
dev, log, rnd = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(dev, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
buf = mmap.mmap(-1, 4096)
nblk = 4096  # 16 MiB
out = open(log, "a", buffering=1)
seq = 0
while True:
    b = random.randrange(nblk); seq += 1
    ver = rnd * 1_000_000 + seq
    buf.seek(0); buf.write(struct.pack("<QQ", b, ver) * 256)
    out.write(f"I {b} {ver}\n")
    try:
        os.pwrite(fd, buf, b * 4096)
    except OSError:
        sys.exit(0)
    out.write(f"A {b} {ver}\n")
PY
  WPID=$!
  sleep "$(python3 -c 'import random; print(round(random.uniform(0.5, 2.5), 2))')"
  dev_kill KILL
  echo "round $r: killed tessera dev after $(grep -c '^A' "$W/acked" || true) acks"
  dev_start
  sleep 1
  kill -KILL "$WPID" 2>/dev/null || true
  wait "$WPID" 2>/dev/null || true
  detach
  attach
  n=$(grep -c '^A' "$W/acked" || true)
  total_acked=$n
  # Verify: every block's last acked version, or its later in-flight one.
  if ! timeout 120 python3 - "$DEVICE" "$W/acked" <<'PY'
import os, struct, sys
dev, log = sys.argv[1], sys.argv[2]
acked, inflight = {}, {}
for line in open(log):
    k, b, v = line.split(); b = int(b); v = int(v)
    if k == "I": inflight[b] = v
    else:
        acked[b] = v
        if inflight.get(b) == v: del inflight[b]
fd = os.open(dev, os.O_RDONLY)
bad = 0
for b, v in acked.items():
    got = os.pread(fd, 16, b * 4096)
    gb, gv = struct.unpack("<QQ", got)
    ok = (gb == b and gv == v) or (gb == b and inflight.get(b) == gv)
    if not ok:
        bad += 1
        if bad < 5: print(f"block {b}: want version {v}, found block {gb} version {gv}")
    elif gv != v:
        # the in-flight write landed: it is now the block's content
        pass
print(f"checked {len(acked)} blocks, {bad} lost")
sys.exit(1 if bad else 0)
PY
  then lost=1; fi
  # In-flight writes that landed become the acknowledged state for the next round.
  timeout 120 python3 - "$DEVICE" "$W/acked" <<'PY'
import os, struct, sys
dev, log = sys.argv[1], sys.argv[2]
acked = {}
for line in open(log):
    k, b, v = line.split()
    if k == "A": acked[int(b)] = int(v)
fd = os.open(dev, os.O_RDONLY)
with open(log, "w") as out:
    for b in acked:
        gb, gv = struct.unpack("<QQ", os.pread(fd, 16, b * 4096))
        out.write(f"A {b} {gv}\n")
PY
  detach
  echo "round $r: acked so far $total_acked"
  [ "$lost" -eq 0 ] || break
done
echo "rounds=$ROUNDS acked=$total_acked lost=$lost"
[ "$lost" -eq 0 ]
