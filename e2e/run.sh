#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Tessera's Kubernetes e2e: a real control plane on this machine as processes
# (etcd, kube-apiserver, kube-controller-manager), the real CSI sidecars
# (csi-provisioner, csi-resizer, snapshot-controller, csi-snapshotter) talking
# to it through kubeconfigs, Tessera's CSI server, and kubectl tests.
#
# With the real node (E2E_PODS, on by default when kubelet is cached) kubelet +
# containerd run Pods on Tessera volumes (lib/pods-tests.sh). The node-stage-*
# tests also play kubelet's node-side part by hand, calling
# NodeStage/NodePublish/NodeExpand on Tessera's socket (e2e/tools/csic) with the
# PV's volume handle and volume attributes, then mount and check data.
#
# Usage: e2e/run.sh [--tessera PATH] [--keep] [--only REGEX]
#   --tessera PATH  the tessera binary (default: build/bin/tessera, built if missing)
#   --keep          leave the work dir (logs, certs, state) after the run
#   --only REGEX    run only tests whose name matches
#   --image         also build the container image (e2e/image/build.sh: debootstrap
#                   base, docker build, docker run tessera --version) as test `image`
# Environment: E2E_WORK (work dir), E2E_CACHE (binary cache, see lib/versions.sh),
#   E2E_PORT_BASE (default 32300: etcd +79/+80, apiserver +43, kcm +57),
#   E2E_CONTROLLER_CMD / E2E_NODE_CMD (the Tessera daemons; see docs/e2e.md),
#   E2E_SKIP_BUILD=1 (use the binary cache as it is, for development),
#   E2E_SNAPSHOTS=auto|on|off (auto: run the snapshot tests only when the
#   driver advertises CREATE_DELETE_SNAPSHOT).
#   E2E_PODS=auto|1|0 (issue 8): a real node, i.e. kube-scheduler, containerd,
#   kubelet and e2e/tools/registrar (lib/node.sh), and the Pod tests
#   (lib/pods-tests.sh); ports +48/+50 (kubelet), +59 (scheduler). auto (the
#   default): on when kubelet and kube-scheduler are in the binary cache, else
#   the Pod tests are reported as skipped; 1 builds them if missing; 0: off.
#   See docs/e2e.md "Real Pods".
# Needs root (loop devices, mounts), openssl, etcd (Debian etcd-server), Go and
# the Go module proxy the first time (binaries are cached afterwards).
# Exit status: 0 all run tests passed, 1 a failure, 2 setup failed.
# Last line: "e2e: N passed, N failed, N skipped".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/lib/versions.sh"

TESSERA=""
KEEP=0
ONLY=""
IMAGE=${E2E_IMAGE:-0}
while [ $# -gt 0 ]; do
  case $1 in
    --tessera) TESSERA=$(readlink -f "$2"); shift 2 ;;
    --keep) KEEP=1; shift ;;
    --only) ONLY=$2; shift 2 ;;
    --image) IMAGE=1; shift ;;
    *) echo "usage: $0 [--tessera PATH] [--keep] [--only REGEX] [--image]" >&2; exit 2 ;;
  esac
done

T_START=$SECONDS
log() { printf '[e2e %4ds] %s\n' "$((SECONDS - T_START))" "$*" >&2; }
setup_fail() { log "SETUP FAILED: $*"; exit 2; }

[ "$(id -u)" -eq 0 ] || setup_fail "needs root (loop devices, mounts)"
for t in openssl etcd go curl mkfs.ext4 losetup findmnt blockdev; do
  command -v "$t" >/dev/null || setup_fail "missing $t (scripts/deps.sh; etcd: apt-get install etcd-server)"
done

# ---- binaries ----------------------------------------------------------------
tb=$SECONDS
if [ "${E2E_SKIP_BUILD:-0}" = 1 ]; then
  log "E2E_SKIP_BUILD=1: using the cache as it is"
else
  "$here/lib/build.sh" all || setup_fail "building the Kubernetes/CSI binaries (e2e/lib/build.sh all)"
fi
if [ -z "$TESSERA" ]; then
  TESSERA=$repo/build/bin/tessera
  if [ ! -x "$TESSERA" ]; then
    log "building tessera in $repo/build"
    cmake -S "$repo" -B "$repo/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
      cmake --build "$repo/build" --target tessera >/dev/null || setup_fail "building tessera"
  fi
fi
[ -x "$TESSERA" ] || setup_fail "no tessera binary at $TESSERA"
# A real node (containerd, kubelet, kube-scheduler, the plugin registrar) and
# Pods that use Tessera volumes (issue 8); see docs/e2e.md. By default it runs
# when kubelet and kube-scheduler are cached (E2E_PODS=1 builds them above).
PODS_WHY=""
case ${E2E_PODS:-auto} in
  1|on|yes) PODS=1 ;;
  0|off|no) PODS=0 PODS_WHY="E2E_PODS=$E2E_PODS" ;;
  auto)
    PODS=1
    for t in kubelet kube-scheduler; do
      [ -x "$K8S_BIN/$t" ] || { PODS=0 PODS_WHY="no $t in the binary cache (E2E_PODS=1 builds it)"; }
    done ;;
  *) setup_fail "E2E_PODS must be auto, 1 or 0" ;;
esac
[ "$PODS" = 1 ] || log "no real node, Pod tests skipped: $PODS_WHY"
if [ "$PODS" = 1 ]; then
  . "$here/lib/node.sh"
fi
# Every artifact this run reads, checked by content (not by a marker).
if ! E2E_PODS=$PODS "$here/lib/build.sh" check; then
  [ "${E2E_SKIP_BUILD:-0}" = 1 ] && log "WARNING: E2E_SKIP_BUILD=1 with an incomplete cache (listed above)" ||
    setup_fail "the binary cache is incomplete (listed above; E2E_PODS=1 e2e/lib/build.sh all rebuilds it)"
fi
log "binaries ready in $((SECONDS - tb))s (cache $E2E_CACHE)"
KAPI=$K8S_BIN/kube-apiserver KCM=$K8S_BIN/kube-controller-manager KUBECTL=$K8S_BIN/kubectl
HELM=$HELM_BIN/helm

# ---- work dir and cleanup ------------------------------------------------------
WORK=${E2E_WORK:-$(mktemp -d /tmp/tessera-e2e.XXXXXX)}
mkdir -p "$WORK"/{pki,logs,kubelet,etcd}
WORK=$(readlink -f "$WORK")
PB=${E2E_PORT_BASE:-32300}
ETCD_PORT=$((PB + 79)) ETCD_PEER=$((PB + 80)) API_PORT=$((PB + 43)) KCM_PORT=$((PB + 57)) ISCSI_PORT=$((PB + 60))
NS=tessera
DRIVER=csi.tessera.io
SOCK=$WORK/csi.sock
PIDS=()

start() { # name cmd...   (logs in $WORK/logs/name.log)
  local name=$1; shift
  "$@" >"$WORK/logs/$name.log" 2>&1 &
  PIDS+=("$!:$name")
  log "started $name (pid $!)"
}

cleanup() {
  local rc=$?
  set +e
  # pod-target-down's firewall rule, if that test did not remove it.
  declare -F portal_open >/dev/null && portal_open
  # The real node first (kubelet, then every container, sandbox netns and
  # mount), then anything else left mounted under WORK (a failed test). A
  # filesystem still staged on an attached volume writes its journal on its
  # last unmount, through Tessera's FUSE file and iSCSI session; if the volume
  # is gone (deleted while staged) that IO waits forever, and so would umount,
  # Tessera's exit and this shell's wait. So this runs in the background, and
  # the attaches' FUSE connections are aborted (the IO then fails) if it takes
  # more than 30 s.
  local conns upid n
  conns=$(awk -v p="$WORK/state/attach/" 'index($5, p) == 1 { split($3, a, ":"); print a[2] }' /proc/self/mountinfo)
  {
    [ "${PODS:-0}" = 1 ] && node_stop
    { grep -o " $WORK/[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount -l "$m"; done
  } &
  upid=$!
  for n in $(seq 300); do kill -0 "$upid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$upid" 2>/dev/null && [ -n "$conns" ]; then
    log "unmounting is stuck on an attached volume"; fuse_abort $conns; conns=""
  fi
  wait "$upid"
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    local pid=${PIDS[i]%%:*}
    kill -TERM "$pid" 2>/dev/null
  done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    local pid=${PIDS[i]%%:*}
    for n in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null && [ -n "$conns" ]; then fuse_abort $conns; conns=""; fi
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  for f in "$WORK"/state/volumes/*.img; do
    [ -e "$f" ] || continue
    for l in $(losetup -nO NAME -j "$f" 2>/dev/null); do
      for r in $(losetup -nO NAME -j "$l" 2>/dev/null); do losetup -d "$r"; done
      losetup -d "$l"
    done
  done
  if [ "$KEEP" = 1 ] || [ "$rc" -ne 0 ]; then
    log "work dir kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
# fuse_abort CONN...: abort FUSE connections (numbers in /sys/fs/fuse/connections).
fuse_abort() {
  local c d=/sys/fs/fuse/connections ours=0
  [ -d "$d" ] || return 0
  if ! mountpoint -q "$d"; then mount -t fusectl none "$d" && ours=1 || return 0; fi
  for c in "$@"; do
    [ -e "$d/$c/abort" ] && echo 1 >"$d/$c/abort" && log "aborted FUSE connection $c (an attach still in use at exit)"
  done
  [ "$ours" = 0 ] || umount "$d"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # timeout-seconds description command...
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { log "timed out after ${t}s waiting for $what"; return 1; }
    sleep 0.5
  done
}

# ---- PKI: a CA, the apiserver's serving cert, client certs, SA signing key ----
. "$here/lib/controlplane.sh"
pki=$WORK/pki
cert() { cp_cert "$pki" "$WORK/logs/openssl.log" "$@"; }
cp_pki "$pki" "$WORK/logs/openssl.log"
cert admin "/O=system:masters/CN=e2e-admin"
cert kcm "/CN=system:kube-controller-manager"
NODE_NAME=e2e-node
if [ "$PODS" = 1 ]; then
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  cert scheduler "/CN=system:kube-scheduler"
fi

SERVER=https://127.0.0.1:$API_PORT
kubeconfig() { # file user cert key | file user --token TOKEN
  local f=$1 user=$2; shift 2
  cp_kubeconfig "$f" "$SERVER" "$pki/ca.crt" "$user" "$@"
}
kubeconfig "$WORK/admin.kubeconfig" admin "$pki/admin.crt" "$pki/admin.key"
kubeconfig "$WORK/kcm.kubeconfig" kcm "$pki/kcm.crt" "$pki/kcm.key"
if [ "$PODS" = 1 ]; then
  kubeconfig "$WORK/kubelet.kubeconfig" kubelet "$pki/kubelet.crt" "$pki/kubelet.key"
  kubeconfig "$WORK/scheduler.kubeconfig" scheduler "$pki/scheduler.crt" "$pki/scheduler.key"
fi
export KUBECONFIG=$WORK/admin.kubeconfig
k() { "$KUBECTL" "$@"; }

# ---- control plane -------------------------------------------------------------------
cp_etcd_cmd e2e "$WORK/etcd" "$ETCD_PORT" "$ETCD_PEER"
start etcd "${CP_ETCD_CMD[@]}"
wait_for 30 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health" || setup_fail "etcd did not start (logs/etcd.log)"

AUTHZ=RBAC
KUBELET_CLIENT=()
if [ "$PODS" = 1 ]; then
  AUTHZ=Node,RBAC   # kubelet's node identity needs the Node authorizer
  # logs/exec: the API server dials kubelet at the node's InternalIP with a client cert.
  KUBELET_CLIENT=(--kubelet-preferred-address-types InternalIP
    --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key")
fi
cp_apiserver_cmd "$KAPI" "$pki" "$ETCD_PORT" "$API_PORT" "$AUTHZ" "${KUBELET_CLIENT[@]}"
start kube-apiserver "${CP_APISERVER_CMD[@]}"
wait_for 120 kube-apiserver k get --raw /readyz || setup_fail "kube-apiserver not ready (logs/kube-apiserver.log)"
log "kube-apiserver ready: $(k version -o json | sed -n 's/.*"gitVersion": "\([^"]*\)".*/\1/p' | tr '\n' ' ')"

start kube-controller-manager "$KCM" --kubeconfig "$WORK/kcm.kubeconfig" \
  --authentication-kubeconfig "$WORK/kcm.kubeconfig" --authorization-kubeconfig "$WORK/kcm.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --use-service-account-credentials=true --controllers '*' --v=1

# ---- the real node (E2E_PODS=1) --------------------------------------------------------
if [ "$PODS" = 1 ]; then
  tn=$SECONDS
  node_pkgs || setup_fail "installing $NODE_PKGS (logs/apt.log)"
  node_images "$E2E_CACHE/node-images" || setup_fail "building the local pause/busybox images"
  start kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig "$WORK/scheduler.kubeconfig" \
    --authentication-kubeconfig "$WORK/scheduler.kubeconfig" --authorization-kubeconfig "$WORK/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port $((PB + 59)) --leader-elect=false --v=1
  node_containerd_start || setup_fail "containerd (logs/containerd.log)"
  node_images_import "$E2E_CACHE/node-images" || setup_fail "importing the local images"
  NODE_KUBELET_PORT=$((PB + 50)) NODE_KUBELET_HEALTHZ_PORT=$((PB + 48)) node_kubelet_start "$WORK/kubelet.kubeconfig"
  wait_for 120 "node $NODE_NAME Ready" k wait --for condition=Ready --timeout=5s "node/$NODE_NAME" ||
    setup_fail "kubelet did not register a Ready node (logs/kubelet.log)"
  log "node $NODE_NAME Ready (kubelet $(k get node "$NODE_NAME" -o jsonpath='{.status.nodeInfo.kubeletVersion}'), runtime $(k get node "$NODE_NAME" -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}')) in $((SECONDS - tn))s"
fi

# ---- Tessera's daemons -----------------------------------------------------------------
# E2E_BACKEND=dev (default): `tessera dev` serves Controller + Node on one
# socket over the real data plane (3 simulated nodes, a 4+2 array group, thin
# volumes with snapshots, the iSCSI target, user-space attach on the node).
# E2E_BACKEND=file: `tessera csi` and its file backend. With separate
# data-plane daemons set E2E_CONTROLLER_CMD / E2E_NODE_CMD (and E2E_NODE_SOCK)
# instead; the tests only talk to the sockets.
NODE_ID=$NODE_NAME
case ${E2E_BACKEND:-dev} in
  dev) CTRL_DEFAULT="$TESSERA dev --state-dir $WORK/state --disk-size 512Mi --portal 127.0.0.1:$ISCSI_PORT --csi-endpoint unix://$SOCK --node-id $NODE_ID" ;;
  file) CTRL_DEFAULT="$TESSERA csi --endpoint unix://$SOCK --state-dir $WORK/state --node-id $NODE_ID --capacity 4Gi --default-size 64Mi --path-prefix $WORK/kubelet" ;;
  *) setup_fail "E2E_BACKEND must be dev or file" ;;
esac
CTRL_CMD=${E2E_CONTROLLER_CMD:-$CTRL_DEFAULT}
start tessera-controller $CTRL_CMD
TESSERA_IDX=$((${#PIDS[@]} - 1))
NODE_SOCK=${E2E_NODE_SOCK:-$SOCK}
if [ -n "${E2E_NODE_CMD:-}" ]; then start tessera-node $E2E_NODE_CMD; fi
wait_for 30 "tessera socket" test -S "$SOCK" || setup_fail "tessera did not start (logs/tessera-controller.log)"
wait_for 30 "tessera node socket" test -S "$NODE_SOCK" || setup_fail "tessera node did not start"
csic() { "$CSIC" -endpoint "unix://$NODE_SOCK" "$@"; }
CAPS=$("$CSIC" -endpoint "unix://$SOCK" caps) || setup_fail "CSI capabilities"
log "driver capabilities: $CAPS"
case ${E2E_SNAPSHOTS:-auto} in
  on) SNAPSHOTS=1 ;;
  off) SNAPSHOTS=0 ;;
  *) if echo "$CAPS" | grep -q CREATE_DELETE_SNAPSHOT; then SNAPSHOTS=1; else SNAPSHOTS=0; fi ;;
esac
# Group snapshots and ModifyVolume (issue 22): run when the driver advertises them.
GROUPSNAP=0 MODIFY=0
if [ "$SNAPSHOTS" = 1 ] && echo "$CAPS" | grep -q GROUP_CONTROLLER_SERVICE; then GROUPSNAP=1; fi
if echo "$CAPS" | grep -q MODIFY_VOLUME; then MODIFY=1; fi

# ---- the chart, applied with server-side validation -----------------------------------------
wait_for 60 "namespace default" k get ns default || setup_fail "namespaces not served"
k create namespace "$NS" >/dev/null
for crd in "$SIDECAR_BIN"/crds/*.yaml; do k apply --server-side -f "$crd" >/dev/null; done
wait_for 60 "snapshot CRDs established" k wait --for condition=established --timeout=5s \
  crd/volumesnapshotclasses.snapshot.storage.k8s.io crd/volumesnapshots.snapshot.storage.k8s.io \
  crd/volumesnapshotcontents.snapshot.storage.k8s.io \
  crd/volumegroupsnapshotclasses.groupsnapshot.storage.k8s.io \
  crd/volumegroupsnapshots.groupsnapshot.storage.k8s.io \
  crd/volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io || setup_fail "snapshot CRDs"

# ---- kubelet's registration of the node plugin ------------------------------------------------
if [ "$PODS" = 1 ]; then
  # The real thing: the registrar's socket in plugins_registry; kubelet calls
  # NodeGetInfo and writes the CSINode entry and the Node's topology labels.
  start registrar "$REGISTRAR" -driver "$DRIVER" -csi-endpoint "$NODE_SOCK" -reg-dir "$NODE_KUBELET_DIR/plugins_registry"
  wait_for 60 "CSINode $NODE_NAME lists $DRIVER" sh -c \
    "'$KUBECTL' get csinode '$NODE_NAME' -o jsonpath='{.spec.drivers[*].name}' | grep -qw '$DRIVER'" ||
    setup_fail "kubelet did not register $DRIVER (logs/registrar.log, logs/kubelet.log)"
  log "kubelet registered $DRIVER on $NODE_NAME: $(k get csinode "$NODE_NAME" -o jsonpath='{.spec.drivers[0].topologyKeys}')"
else
# What kubelet does when node-driver-registrar registers the plugin: NodeGetInfo,
# then the Node's topology labels and the CSINode entry. The provisioner's
# topology support (on by default) needs them to place volumes.
INFO=$(csic info) || setup_fail "NodeGetInfo"
CSI_NODE=$(echo "$INFO" | sed -n 's/.*"nodeId":"\([^"]*\)".*/\1/p')
TOPO=$(echo "$INFO" | sed -n 's/.*"topology":{\([^}]*\)}.*/\1/p' | tr ',' '\n')
{
  echo "apiVersion: v1"
  echo "kind: Node"
  echo "metadata:"
  echo "  name: $CSI_NODE"
  echo "  labels:"
  echo "    kubernetes.io/hostname: $CSI_NODE"
  echo "$TOPO" | sed -n 's/^"\([^"]*\)":"\([^"]*\)"$/    \1: "\2"/p'
  echo "---"
  echo "apiVersion: storage.k8s.io/v1"
  echo "kind: CSINode"
  echo "metadata: {name: $CSI_NODE}"
  echo "spec:"
  echo "  drivers:"
  echo "    - name: $DRIVER"
  echo "      nodeID: $CSI_NODE"
  echo "      topologyKeys: [$(echo "$TOPO" | sed -n 's/^"\([^"]*\)":.*/\1/p' | paste -sd, -)]"
} >"$WORK/node.yaml"
k apply --server-side -f "$WORK/node.yaml" >/dev/null || setup_fail "registering Node/CSINode $CSI_NODE"
log "node $CSI_NODE registered (Node labels + CSINode, as kubelet would)"
fi

# ---- test bookkeeping ---------------------------------------------------------------------
PASSED=0 FAILED=0 SKIPPED=0
RESULTS=()
run_test() { # name function
  local name=$1 fn=$2
  if [ -n "$ONLY" ] && ! [[ $name =~ $ONLY ]]; then return 0; fi
  log "RUN  $name"
  local t0=$SECONDS
  # Not inside `if`: bash ignores set -e in a tested command, even in a subshell.
  local rc
  set +e
  ( set -e; $fn ) >"$WORK/logs/test-$name.log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    PASSED=$((PASSED + 1)); RESULTS+=("PASS $name ($((SECONDS - t0))s)")
    log "PASS $name ($((SECONDS - t0))s)"
  else
    FAILED=$((FAILED + 1)); RESULTS+=("FAIL $name ($((SECONDS - t0))s)")
    log "FAIL $name ($((SECONDS - t0))s); its log:"
    sed 's/^/    /' "$WORK/logs/test-$name.log" >&2
  fi
}
skip_test() { # name reason
  if [ -n "$ONLY" ] && ! [[ $1 =~ $ONLY ]]; then return 0; fi
  SKIPPED=$((SKIPPED + 1)); RESULTS+=("SKIP $1 ($2)")
  log "SKIP $1: $2"
}
fail() { echo "FAIL: $*"; return 1; }
say() { echo "--- $*"; }

. "$here/lib/tests.sh"

if [ "$IMAGE" = 1 ]; then run_test image t_image; fi
run_test chart-apply t_chart_apply

# The sidecars run as the chart's ServiceAccount (a TokenRequest token), so
# they exercise the chart's RBAC for real.
TOKEN=$(k -n "$NS" create token tessera-controller --duration 2h) || setup_fail "token for tessera-controller (chart not applied?)"
kubeconfig "$WORK/controller.kubeconfig" tessera-controller --token "$TOKEN"
SIDE=$SIDECAR_BIN
LE=(--leader-election --leader-election-namespace "$NS")
start csi-provisioner "$SIDE/csi-provisioner" --kubeconfig "$WORK/controller.kubeconfig" \
  --csi-address "$SOCK" "${LE[@]}" --extra-create-metadata --timeout 60s --v 3
start csi-resizer "$SIDE/csi-resizer" --kubeconfig "$WORK/controller.kubeconfig" \
  --csi-address "$SOCK" "${LE[@]}" --handle-volume-inuse-error=false --timeout 60s --v 3
if [ -x "$SIDE/snapshot-controller" ]; then
  start snapshot-controller "$SIDE/snapshot-controller" --kubeconfig "$WORK/admin.kubeconfig" --leader-election=false --v 3
else
  log "WARNING: no snapshot-controller binary (E2E_SKIP_BUILD=1 with a partial cache)"
fi
if [ "$SNAPSHOTS" = 1 ]; then
  start csi-snapshotter "$SIDE/csi-snapshotter" --kubeconfig "$WORK/controller.kubeconfig" \
    --csi-address "$SOCK" "${LE[@]}" --timeout 60s --v 3
fi

run_test pvc-bound-filesystem t_pvc_bound_fs
run_test node-stage-publish-filesystem t_node_fs
run_test pvc-bound-block t_pvc_bound_block
run_test node-stage-publish-block t_node_block
run_test pvc-expand t_pvc_expand
if [ "$PODS" = 1 ]; then
  . "$here/lib/pods-tests.sh"
  run_test pod-filesystem t_pod_fs
  run_test pod-block t_pod_block
  if [ "${E2E_BACKEND:-dev}" = dev ]; then
    run_test pod-rwx-block t_pod_rwx_block
  else
    skip_test pod-rwx-block "needs the data-plane backend (the file backend refuses multi-node writers)"
  fi
  run_test pod-failed-mount t_pod_failed_mount
  if [ "${E2E_BACKEND:-dev}" != dev ] || [ -n "${E2E_CONTROLLER_CMD:-}" ]; then
    skip_test pod-target-down "needs the tessera dev backend (volumes behind an iSCSI portal)"
  elif ! command -v iptables >/dev/null; then
    skip_test pod-target-down "no iptables to close the portal"
  else
    run_test pod-target-down t_pod_target_down
  fi
  if [ "$SNAPSHOTS" = 1 ]; then run_test pod-snapshot-restore t_pod_snapshot_restore; fi
  run_test pod-no-leftovers t_pod_no_leftovers
else
  for t in pod-filesystem pod-block pod-rwx-block pod-failed-mount pod-target-down pod-snapshot-restore pod-no-leftovers; do
    skip_test "$t" "$PODS_WHY"
  done
fi
if [ "$SNAPSHOTS" = 1 ]; then
  run_test snapshot-ready t_snapshot_ready
  run_test pvc-from-snapshot t_pvc_from_snapshot
  run_test snapshot-delete t_snapshot_delete
else
  why="driver does not advertise CREATE_DELETE_SNAPSHOT"
  [ "${E2E_SNAPSHOTS:-auto}" = off ] && why="E2E_SNAPSHOTS=off"
  skip_test snapshot-ready "$why"
  skip_test pvc-from-snapshot "$why"
  skip_test snapshot-delete "$why"
fi
if [ "$GROUPSNAP" = 1 ]; then run_test group-snapshot t_group_snapshot
else skip_test group-snapshot "driver does not advertise GROUP_CONTROLLER_SERVICE (or snapshots)"; fi
if [ "$MODIFY" = 1 ]; then run_test vac-modify t_vac_modify
else skip_test vac-modify "driver does not advertise MODIFY_VOLUME"; fi
run_test pvc-delete t_pvc_delete
run_test sidecars-healthy t_sidecars_healthy

# Tessera stops gracefully on SIGTERM: exit 0, no sanitizer report (the ctest
# entry runs the ASan/UBSan build). In run.sh itself: only this shell can wait.
if [ -z "$ONLY" ] || [[ tessera-graceful-stop =~ $ONLY ]]; then
  tpid=${PIDS[$TESSERA_IDX]%%:*}
  kill -TERM "$tpid"
  set +e; wait "$tpid"; trc=$?; set -e
  if [ "$trc" -eq 0 ] && ! grep -qE 'Sanitizer|runtime error' "$WORK/logs/tessera-controller.log"; then
    PASSED=$((PASSED + 1)); RESULTS+=("PASS tessera-graceful-stop"); log "PASS tessera-graceful-stop"
  else
    FAILED=$((FAILED + 1)); RESULTS+=("FAIL tessera-graceful-stop (exit $trc)"); log "FAIL tessera-graceful-stop (exit $trc)"
    tail -30 "$WORK/logs/tessera-controller.log" >&2
  fi
fi

log "summary (total $((SECONDS - T_START))s):"
for r in "${RESULTS[@]}"; do log "  $r"; done
echo "e2e: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ] || exit 1
