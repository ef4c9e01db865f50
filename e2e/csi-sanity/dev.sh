#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# csi-sanity against `tessera dev`: the data-plane backend (thin volumes on a
# 4+2 pool of file disks, served by Tessera's iSCSI target on a loopback
# port, attached through libiscsi -> FUSE -> loop), so the snapshot, clone
# and expansion groups run. One server, two suites (Filesystem, then Block),
# then SIGINT: the server must exit 0.
# Usage: dev.sh <tessera binary> <work dir>
# Prints one summary line per access type ("mount: Ran N of M Specs ...").
set -euo pipefail
TESSERA=$(readlink -f "$1")
WORK=$(readlink -f -m "$2")
. "$(dirname "$(readlink -f "$0")")/install.sh"

rm -rf "$WORK"
mkdir -p "$WORK"
SOCK=$WORK/csi.sock
LOG=$WORK/tessera.log
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TESSERA" dev --state-dir "$WORK/state" --disk-size 256Mi --portal "127.0.0.1:$PORT" \
  --csi-endpoint "unix://$SOCK" >"$WORK/ready" 2>"$LOG" &
PID=$!
cleanup() {
  kill -INT "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  # Anything a failed run left mounted or attached under WORK.
  { grep -o " $WORK/[^ ]*" /proc/self/mountinfo || true; } | sort -r |
    while read -r m; do umount -l "$m" || true; done
  losetup -nO NAME,BACK-FILE 2>/dev/null | while read -r dev back; do
    case "$back" in "$WORK"/*) losetup -d "$dev" || true ;; esac
  done
}
trap cleanup EXIT
for _ in $(seq 600); do
  grep -q '^ready csi=' "$WORK/ready" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.1
done
grep -q '^ready csi=' "$WORK/ready" || { echo "tessera dev did not start" >&2; tail -30 "$LOG"; exit 1; }

# csi-test v5.4.0's utils.Connect() waits with
# WaitForStateChange(ctx, conn.GetState()): when the connection is already
# READY by the time GetState() runs (a fast local server), it waits for a
# change that never comes and fails the spec with "Connection timed out"
# after a minute. A run whose only failures are that is rerun once (said so
# in the output); any other failure counts at once.
only_connect_race() {
  python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
fails = [f for tc in ET.parse(sys.argv[1]).iter("testcase") for f in tc.findall("failure")]
ok = fails and all("Connection timed out" in ((f.get("message") or "") + (f.text or "")) for f in fails)
sys.exit(0 if ok else 1)
PY
}

# VolumeAttributesClass parameters for the ModifyVolume specs (QoS keys, csi/qos.c).
printf 'iopsLimit: "1000"\nwriteBpsLimit: "64Mi"\n' >"$WORK/mutable.yaml"

run_suite() { # access type, output dir
  mkdir -p "$2"
  "$SANITY" --csi.endpoint "unix://$SOCK" \
    --csi.testvolumemutableparameters "$WORK/mutable.yaml" \
    --csi.stagingdir "$2/staging" --csi.mountdir "$2/mount" \
    --csi.testvolumesize $((16 << 20)) --csi.testvolumeexpandsize $((32 << 20)) \
    --csi.testvolumeaccesstype "$1" \
    --ginkgo.no-color --ginkgo.junit-report "$2/junit.xml" >"$2/sanity.out" 2>&1
}

rc=0
for ACCESS in mount block; do
  OUT=$WORK/$ACCESS
  set +e
  run_suite "$ACCESS" "$OUT"
  src=$?
  if [ $src -ne 0 ] && only_connect_race "$OUT/junit.xml"; then
    echo "$ACCESS: only csi-test's connect race failed (Connection timed out); rerunning once"
    mv "$OUT" "$OUT.race"
    run_suite "$ACCESS" "$OUT"
    src=$?
  fi
  set -e
  line=$(grep -E "^Ran [0-9]+ of [0-9]+ Specs" "$OUT/sanity.out" || true)
  res=$(grep -E "Passed \| [0-9]+ Failed" "$OUT/sanity.out" | tail -1 || true)
  echo "$ACCESS: $line — $res"
  python3 - "$OUT/junit.xml" >"$OUT/skipped.txt" <<'PY' || true
import sys, xml.etree.ElementTree as ET
for tc in ET.parse(sys.argv[1]).iter("testcase"):
    s = tc.find("skipped")
    if s is not None:
        print(f"{tc.get('name')}\t{(s.get('message') or '').strip()}")
PY
  echo "$ACCESS: skipped specs: $(wc -l <"$OUT/skipped.txt") (list in $OUT/skipped.txt)"
  # The data-plane backend serves group snapshots and ModifyVolume (issue 22):
  # their specs must run, never be skipped.
  if grep -E "GroupController|ModifyVolume|Modify volume|VolumeGroupSnapshots" "$OUT/skipped.txt"; then
    echo "$ACCESS: GroupController/ModifyVolume specs were skipped" >&2
    rc=1
  fi
  if [ $src -ne 0 ]; then
    [ -n "$line" ] || tail -40 "$OUT/sanity.out"
    grep -B2 -A25 "\[FAIL\]\|FAILED\]" "$OUT/sanity.out" | head -150
    rc=$src
  fi
done
[ $rc -eq 0 ] || tail -30 "$LOG"

# The server must stop cleanly on SIGINT.
kill -INT "$PID"
src=0
wait "$PID" || src=$?
trap - EXIT
cleanup
[ $src -eq 0 ] || { echo "tessera dev exited $src on SIGINT" >&2; tail -20 "$LOG"; exit 1; }
exit $rc
