#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# tessera-attach end to end: attach a tgt LUN, write a byte pattern to the
# loop device, SIGTERM, check nothing is left behind, attach again and read
# the pattern back through the FUSE file. Usage: attach_cli.sh TESSERA_ATTACH
set -euo pipefail
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=e2e/lib/tgt.sh
. "$HERE/../lib/tgt.sh"
if [ "$(id -u)" -ne 0 ] || ! command -v tgtd >/dev/null || [ ! -e /dev/fuse ]; then
	echo "SKIP: needs root, tgtd and /dev/fuse"; exit 77
fi
W=$(mktemp -d /tmp/ts-attach-e2e.XXXXXX)
APID=
cleanup() {
	if [ -n "$APID" ]; then kill -TERM "$APID" 2>/dev/null || true; wait "$APID" 2>/dev/null || true; fi
	tgt_stop
	rm -rf "$W"
}
trap cleanup EXIT
IQN=iqn.2026-11.io.tessera:attach-e2e
truncate -s 32M "$W/lun.img"
tgt_start "$W/tgt"
tgt_target 1 "$IQN" "$W/lun.img"
tgt_chap 1 carol carol-secret-99

attach() { # starts tessera-attach, sets APID DEV FILE
	rm -f "$W/out" # not truncated by the redirection below: that happens in the child, later
	"$BIN" -u carol -p carol-secret-99 -m "$W/mnt" "$(tgt_url "$IQN")" >"$W/out" 2>"$W/err" &
	APID=$!
	for _ in $(seq 1 100); do
		grep -q '^device=' "$W/out" && break
		kill -0 "$APID" 2>/dev/null || { cat "$W/err" >&2; echo "FAIL: tessera-attach exited"; exit 1; }
		sleep 0.1
	done
	DEV=$(sed -n 's/^device=\([^ ]*\).*/\1/p' "$W/out")
	FILE=$(sed -n 's/.* file=\([^ ]*\).*/\1/p' "$W/out")
	[ -b "$DEV" ] && [ -f "$FILE" ] || { echo "FAIL: no device in: $(cat "$W/out")"; exit 1; }
}
detach() {
	kill -TERM "$APID"
	wait "$APID" || { cat "$W/err" >&2; echo "FAIL: tessera-attach exit status"; exit 1; }
	APID=
	grep -q '^detached$' "$W/out" || { echo "FAIL: no 'detached' line"; exit 1; }
	# Another test may already have taken the same loop device: only our file counts.
	bf="/sys/block/${DEV#/dev/}/loop/backing_file"
	if [ -e "$bf" ] && [ "$(cat "$bf" 2>/dev/null)" = "$FILE" ]; then echo "FAIL: $DEV still bound"; exit 1; fi
	! grep -q " $(dirname "$FILE") " /proc/self/mountinfo || { echo "FAIL: FUSE still mounted"; exit 1; }
	[ ! -e "$(dirname "$FILE")" ] || { echo "FAIL: mount dir left"; exit 1; }
}

head -c 3000000 /dev/urandom >"$W/pattern"
attach
[ "$(cat "/sys/block/${DEV#/dev/}/size")" -eq $((32 * 2048)) ] || { echo "FAIL: device size"; exit 1; }
dd if="$W/pattern" of="$DEV" bs=4096 seek=3 oflag=direct conv=fsync status=none
detach
cmp -n 3000000 -i 0:12288 "$W/pattern" "$W/lun.img" || { echo "FAIL: target's backing file differs"; exit 1; }
attach
dd if="$FILE" bs=65536 skip=12288 count=3000000 iflag=skip_bytes,count_bytes status=none | cmp - "$W/pattern" ||
	{ echo "FAIL: read back through the FUSE file differs"; exit 1; }
detach
echo "PASS"
