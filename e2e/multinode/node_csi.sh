#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The CSI Node service inside `tessera node` (the chart's DaemonSet shape):
# three `tessera node --state-dir` daemons on 127.0.0.52-54, node 1 also with
# --csi-endpoint and --csi-node-id, and `tessera controller --engines nodes`
# (portal 127.0.0.51). node_csi_test.c then drives both sockets as the
# external-provisioner and kubelet would (see its header). Needs root.
#
# Usage: node_csi.sh <tessera> <node-csi-test> (TS_KEEP_WORK=1 keeps the work dir).
set -euo pipefail
T=$(readlink -f "$1") TEST=$(readlink -f "$2")
[ "$(id -u)" = 0 ] || { echo "DID NOT RUN: needs root (FUSE, loop devices, mounts)"; exit 77; }
for t in jq ss mkfs.ext4; do
	command -v "$t" >/dev/null || { echo "FAIL: $t missing (scripts/deps.sh installs it)"; exit 1; }
done
W=$(mktemp -d /tmp/ts-mncsi.XXXXXX)
export TESSERA_CHAP_USER=tessera-nodes TESSERA_CHAP_SECRET=node-csi-test-secret
CLUSTER=$(cat /proc/sys/kernel/random/uuid) GROUP=$(cat /proc/sys/kernel/random/uuid)
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

for i in 1 2 3; do
	truncate -s 192M "$W/node$i.disk"
	extra=()
	[ "$i" = 1 ] && extra=(--csi-endpoint "unix://$W/node1-csi.sock" --csi-node-id worker-a)
	mn_start_node "$i" "127.0.0.5$((i + 1))" --state-dir "$W/n$i" --io-timeout-ms 1500 "${extra[@]}"
done
grep -q "^node=1 ready csi=unix://$W/node1-csi.sock csi_node_id=worker-a" "$W/node1.out" ||
	fail "node 1 does not say it serves CSI: $(cat "$W/node1.out")"
"$T" controller --registry "$W/registry" --group "$GROUP" --state-dir "$W/ctl" \
	--portal "127.0.0.51:$PORT" --ec 4+2 --member-size 32Mi --io-timeout-ms 1500 \
	--engines nodes >"$W/ctl.out" 2>"$W/ctl.err" &
CP=$!
mn_wait_ready "$W/ctl.out" "$CP" controller
mkdir -p "$W/scratch"
TS_CTL_CSI=unix://$W/ctl/csi.sock TS_NODE_CSI=unix://$W/node1-csi.sock TS_NODE_NAME=worker-a \
	TS_WORK=$W/scratch "$TEST" -j1 --ascii || fail "node_csi_test failed"
# the node's CSI state is its own, under its state dir
[ -d "$W/n1/csi/node" ] || fail "no staging records under $W/n1/csi/node"
PASSED=1
echo "ok: node CSI service: block and mount volumes staged, published, re-staged, data intact"
