#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# csi-sanity against `tessera csi` (file backend) on a unix socket.
# Usage: run.sh <tessera binary> <work dir> [access type: mount|block]
# Installs csi-sanity (pinned) into <work dir>/../tools/bin unless it is
# already there or on GOBIN; needs Go (PATH or /usr/local/go/bin) and the Go
# module proxy the first time. Prints the summary line csi-sanity prints
# ("Ran N of M Specs ... X Passed | Y Failed | Z Pending | W Skipped").
set -euo pipefail
TESSERA=$(readlink -f "$1")
WORK=$(readlink -f -m "$2")
ACCESS=${3:-mount}
. "$(dirname "$(readlink -f "$0")")/install.sh"

rm -rf "$WORK"
mkdir -p "$WORK"
SOCK=$WORK/csi.sock
LOG=$WORK/tessera.log
"$TESSERA" csi --endpoint "unix://$SOCK" --state-dir "$WORK/state" --node-id sanity-node \
  --capacity 2Gi --default-size 16Mi --max-volumes 64 --path-prefix "$WORK" >"$WORK/ready" 2>"$LOG" &
PID=$!
cleanup() {
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  # Anything a failed run left mounted or attached under WORK.
  { grep -o " $WORK/[^ ]*" /proc/self/mountinfo || true; } | sort -r |
    while read -r m; do umount -l "$m" || true; done
  for f in "$WORK"/state/volumes/*.img; do
    [ -e "$f" ] || continue
    for l in $(losetup -nO NAME -j "$f" 2>/dev/null || true); do
      for r in $(losetup -nO NAME -j "$l" 2>/dev/null || true); do losetup -d "$r" || true; done
      losetup -d "$l" || true
    done
  done
}
trap cleanup EXIT
for _ in $(seq 100); do
  grep -q '^ready' "$WORK/ready" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.1
done
grep -q '^ready' "$WORK/ready" || { echo "server did not start" >&2; cat "$LOG"; exit 1; }

set +e
"$SANITY" --csi.endpoint "unix://$SOCK" \
  --csi.stagingdir "$WORK/staging" --csi.mountdir "$WORK/mount" \
  --csi.testvolumesize $((16 << 20)) --csi.testvolumeexpandsize $((32 << 20)) \
  --csi.testvolumeaccesstype "$ACCESS" \
  --ginkgo.no-color --ginkgo.junit-report "$WORK/junit.xml" >"$WORK/sanity.out" 2>&1
rc=$?
set -e
grep -E "^Ran [0-9]+ of [0-9]+ Specs|Passed \| [0-9]+ Failed" "$WORK/sanity.out" || tail -40 "$WORK/sanity.out"
# Skipped specs, with the reason csi-sanity gives, for docs/csi.md.
python3 - "$WORK/junit.xml" >"$WORK/skipped.txt" <<'PY' || true
import sys, xml.etree.ElementTree as ET
for tc in ET.parse(sys.argv[1]).iter("testcase"):
    s = tc.find("skipped")
    if s is not None:
        print(f"{tc.get('name')}\t{(s.get('message') or '').strip()}")
PY
echo "skipped specs: $(wc -l <"$WORK/skipped.txt") (list in $WORK/skipped.txt)"
if [ $rc -ne 0 ]; then
  grep -B2 -A25 "\[FAIL\]\|FAILED\]" "$WORK/sanity.out" | head -150
  tail -30 "$LOG"
fi
# The server must stop cleanly on SIGTERM.
kill -TERM "$PID"
src=0
wait "$PID" || src=$?
trap - EXIT
cleanup
[ $src -eq 0 ] || { echo "tessera csi exited $src on SIGTERM" >&2; exit 1; }
exit $rc
