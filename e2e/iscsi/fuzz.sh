#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Bounded libFuzzer run over the iSCSI target's PDU parsing, login negotiation
# and SCSI execution. Configures a separate clang build (build-fuzz/ by
# default), builds fuzz_iscsi_pdu and runs it for SECONDS (default 30).
# Longer run: e2e/iscsi/fuzz.sh 3600   (corpus kept in build-fuzz/iscsi-corpus)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${1:-30}
BUILD=${TS_FUZZ_BUILD:-$SRC/build-fuzz}
command -v clang >/dev/null || { echo "clang missing"; exit 1; }
CC=clang cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTS_FUZZ=ON >/dev/null
cmake --build "$BUILD" --target fuzz_iscsi_pdu -j2 >/dev/null
CORPUS="$BUILD/iscsi-corpus"
mkdir -p "$CORPUS" "$BUILD/iscsi-artifacts"
# seeds: a login request (mode byte 0x01) and a READ(10) in full-feature phase (mode 0x00)
python3 - "$CORPUS" <<'PY'
import struct, sys, os
d = sys.argv[1]
def pad(b): return b + b"\0" * (-len(b) % 4)
keys = b"InitiatorName=iqn.fuzz:i\0TargetName=iqn.2026-01.io.tessera:fuzz\0SessionType=Normal\0AuthMethod=CHAP,None\0"
bhs = bytearray(48); bhs[0] = 0x43; bhs[1] = 0x81; bhs[5:8] = len(keys).to_bytes(3, "big")
open(os.path.join(d, "seed-login"), "wb").write(b"\x01" + bytes(bhs) + pad(keys))
cmd = bytearray(48); cmd[0] = 0x01; cmd[1] = 0xc0; cmd[16:20] = (1).to_bytes(4, "big")
cmd[20:24] = (4096).to_bytes(4, "big"); cmd[32] = 0x28; cmd[39:41] = (8).to_bytes(2, "big")
wr = bytearray(cmd); wr[1] = 0xa0; wr[32] = 0x2a; wr[16:20] = (2).to_bytes(4, "big"); wr[24:28] = (1).to_bytes(4, "big")
wr[20:24] = (1024).to_bytes(4, "big"); wr[39:41] = (2).to_bytes(2, "big")
open(os.path.join(d, "seed-read"), "wb").write(b"\x00" + bytes(cmd) + bytes(wr))
PY
exec "$BUILD/bin/fuzz_iscsi_pdu" -max_total_time="$SECS" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
	-artifact_prefix="$BUILD/iscsi-artifacts/" -print_final_stats=1 "$CORPUS"
