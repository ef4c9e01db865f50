# SPDX-License-Identifier: Apache-2.0
# The kubectl tests of e2e/run.sh (sourced by it). Each t_* function runs in a
# subshell with set -e; its output goes to $WORK/logs/test-<name>.log. Tests
# hand state on through the API server (PVC/PV objects), never via variables.
# Helpers available: k (kubectl, admin), csic (CSI client on the node socket),
# fail, say, wait_for, $WORK, $NS, $DRIVER, $HELM, $repo.
#
# Playing kubelet: kubelet stages a Filesystem volume at
#   <kubelet>/plugins/kubernetes.io/csi/<driver>/<sha256(handle)>/globalmount
# and publishes it at <kubelet>/pods/<pod uid>/volumes/kubernetes.io~csi/<pv>/mount;
# Block volumes at .../volumeDevices/staging/<pv> and .../volumeDevices/publish/<pv>/<pod uid>.
# The helpers below use the same layout under $WORK/kubelet, and pass the PV's
# volumeHandle, fsType and volumeAttributes exactly as kubelet does.

E2E_NS=e2e
KUBELET=$WORK/kubelet

pv_of() { k -n "$E2E_NS" get pvc "$1" -o jsonpath='{.spec.volumeName}'; }
handle_of() { k get pv "$1" -o jsonpath='{.spec.csi.volumeHandle}'; }
vctx_of() { # the PV's volumeAttributes as k=v,k=v
  k get pv "$1" -o go-template='{{range $k, $v := .spec.csi.volumeAttributes}}{{$k}}={{$v}},{{end}}' | sed 's/,$//'
}
staging_fs() { echo "$KUBELET/plugins/kubernetes.io/csi/$DRIVER/$(printf %s "$2" | sha256sum | cut -c1-64)/globalmount"; }
target_fs() { echo "$KUBELET/pods/$2/volumes/kubernetes.io~csi/$1/mount"; }
staging_blk() { echo "$KUBELET/plugins/kubernetes.io/csi/volumeDevices/staging/$1"; }
target_blk() { echo "$KUBELET/plugins/kubernetes.io/csi/volumeDevices/publish/$1/$2"; }

# node_up PVC POD_UID [block]: NodeStage + NodePublish like kubelet; prints the target.
node_up() {
  local pvc=$1 pod=$2 block=${3:-} pv h ctx st tg fs
  pv=$(pv_of "$pvc"); h=$(handle_of "$pv"); ctx=$(vctx_of "$pv")
  if [ -n "$block" ]; then
    st=$(staging_blk "$pv"); tg=$(target_blk "$pv" "$pod")
    mkdir -p "$st" "$(dirname "$tg")"
    csic stage -id "$h" -staging "$st" -block -ctx "$ctx" >&2
    csic publish -id "$h" -staging "$st" -target "$tg" -block -ctx "$ctx" >&2
  else
    fs=$(k get pv "$pv" -o jsonpath='{.spec.csi.fsType}')
    st=$(staging_fs "$pv" "$h"); tg=$(target_fs "$pv" "$pod")
    mkdir -p "$st" "$(dirname "$tg")"
    csic stage -id "$h" -staging "$st" -fs "${fs:-ext4}" -ctx "$ctx" >&2
    csic publish -id "$h" -staging "$st" -target "$tg" -fs "${fs:-ext4}" -ctx "$ctx" >&2
  fi
  echo "$tg"
}
# node_down PVC POD_UID [block]: NodeUnpublish + NodeUnstage.
node_down() {
  local pvc=$1 pod=$2 block=${3:-} pv h st tg
  pv=$(pv_of "$pvc"); h=$(handle_of "$pv")
  if [ -n "$block" ]; then st=$(staging_blk "$pv"); tg=$(target_blk "$pv" "$pod")
  else st=$(staging_fs "$pv" "$h"); tg=$(target_fs "$pv" "$pod"); fi
  csic unpublish -id "$h" -target "$tg" >&2
  unstage_retry "$h" "$st"
  if findmnt -rn "$tg" >/dev/null || findmnt -rn "$st" >/dev/null; then fail "still mounted after unpublish/unstage"; fi
}

# unstage_retry HANDLE STAGING: NodeUnstageVolume; retried for up to 30 s while the
# driver answers that the device is busy, as kubelet retries it (seen once with the
# real node running: the unmounted filesystem stayed alive ~11 s; who held it is
# printed to help find out why).
unstage_retry() {
  local i err
  for i in $(seq 30); do
    err=$(csic unstage -id "$1" -staging "$2" 2>&1 >/dev/null) && return 0
    echo "$err" >&2
    case $err in *"resource busy"*) ;; *) return 1 ;; esac
    [ "$i" != 1 ] || busy_holders "$1" >&2
    sleep 1
  done
  return 1
}
busy_holders() { # HANDLE: mounts of its staged device, here and in other mount namespaces
  local dev mm p me
  dev=$(sed -n 's/.*"dev":"\([^"]*\)".*/\1/p' "$WORK/state/node/$1.json" 2>/dev/null)
  [ -b "$dev" ] || return 0
  mm=$((0x$(stat -c %t "$dev"))):$((0x$(stat -c %T "$dev")))
  me=$(readlink /proc/self/ns/mnt)
  echo "--- $dev ($mm) is busy; its mounts:"
  # (set -e and pipefail are on: a grep that finds nothing must not end the test)
  grep " $mm " /proc/self/mountinfo | awk '{print "  here: " $5}' || true
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" != "$me" ] || continue
    grep -q " $mm " "$p/mountinfo" 2>/dev/null || continue
    echo "  pid ${p#/proc/} ($(cat "$p/comm" 2>/dev/null)): $(grep " $mm " "$p/mountinfo" | awk '{print $5}' | head -3 | tr '\n' ' ')"
  done
  ls "/sys/block/${dev#/dev/}/holders" 2>/dev/null | sed 's/^/  holder: /' || true
}

make_pvc() { # name size mode [extra spec yaml]; env PVC_ACCESS (default ReadWriteOnce)
  k apply -f - <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $1, namespace: $E2E_NS}
spec:
  accessModes: [${PVC_ACCESS:-ReadWriteOnce}]
  storageClassName: tessera
  volumeMode: $3
  resources: {requests: {storage: $2}}
${4:-}
YAML
}
wait_bound() {
  k -n "$E2E_NS" wait --for=jsonpath='{.status.phase}'=Bound "pvc/$1" --timeout=120s ||
    { k -n "$E2E_NS" describe pvc "$1"; return 1; }
}
listed() { grep -q "\"id\":\"$1\"" <<<"$(csic list)"; }
listed_bytes() { csic list | grep -o "{\"capacityBytes\":[0-9]*,\"id\":\"$1\"}" | grep -o '[0-9]*' | head -1; }

# ---- tests ------------------------------------------------------------------------------------------
t_image() {
  local v
  "$repo/e2e/image/build.sh" tessera:dev >"$WORK/image.out"
  v=$(cat "$WORK/image.out")
  say "docker run --rm tessera:dev tessera --version: $v"
  [ "$v" = "$("$TESSERA" --version)" ] || fail "image says '$v', the binary under test says '$("$TESSERA" --version)'"
}

t_chart_apply() {
  say "helm lint"
  "$HELM" lint "$repo/charts/tessera" --strict
  say "helm template the chart and apply it server-side (strict field validation)"
  # With the real node: the node DaemonSet tolerates every taint, so a nodeSelector
  # no node matches keeps its Pod (image tessera:dev, not in our containerd; hostPath
  # dirs under /var/lib) off the e2e node.
  local off=()
  [ "${PODS:-0}" != 1 ] || off=(--set-string 'node.nodeSelector.tessera\.io/e2e-node-plugin=not-run')
  "$HELM" template tessera "$repo/charts/tessera" --namespace "$NS" --kube-version "$K8S_VERSION" --set image.tag=dev \
    "${off[@]}" >"$WORK/chart.yaml"
  k apply --server-side --field-manager e2e --validate=strict -f "$WORK/chart.yaml"
  say "every rendered object exists on the server"
  local n_rendered n_found
  n_rendered=$(grep -c '^kind:' "$WORK/chart.yaml")
  # `kubectl get -f` fails if any rendered object is missing on the server.
  k get -f "$WORK/chart.yaml" -o name | tee "$WORK/chart.objects"
  n_found=$(wc -l <"$WORK/chart.objects")
  [ "$n_found" -eq "$n_rendered" ] || fail "rendered $n_rendered objects, found $n_found"
  say "$n_found objects applied"
  [ "$(k get csidriver "$DRIVER" -o jsonpath='{.spec.attachRequired}')" = false ] || fail "CSIDriver attachRequired"
  [ "$(k get storageclass tessera -o jsonpath='{.parameters.ec}')" = "4+2" ] || fail "StorageClass ec"
  [ "$(k -n "$NS" get deploy tessera-controller -o jsonpath='{.spec.replicas}')" = 2 ] || fail "controller replicas"
  grep -qx true <<<"$(k -n "$NS" get daemonset tessera-node -o jsonpath='{.spec.template.spec.containers[0].securityContext.privileged}')" ||
    fail "node plugin not privileged"
  grep -qx "$DRIVER" <<<"$(k get volumesnapshotclass tessera -o jsonpath='{.driver}')" || fail "VolumeSnapshotClass driver"
  say "the Deployment and DaemonSet exist but get no pods here (expected: their image is not on the node, and a taint or nodeSelector keeps them off it)"
  k -n "$NS" get deploy,daemonset -o wide
  say "server-side validation is real: an unknown field is refused"
  if sed 's/^  attachRequired: false/  attachRequired: false\n  notAField: 1/' "$WORK/chart.yaml" |
      k apply --server-side --field-manager e2e --validate=strict -f - 2>"$WORK/validate.err"; then
    fail "an unknown field was accepted"
  fi
  grep -q notAField "$WORK/validate.err" || { cat "$WORK/validate.err"; fail "unexpected error"; }
  cat "$WORK/validate.err"
  k create namespace "$E2E_NS"
}

t_pvc_bound_fs() {
  make_pvc fs1 64Mi Filesystem
  wait_bound fs1
  local pv h
  pv=$(pv_of fs1); h=$(handle_of "$pv")
  say "PVC fs1 Bound to $pv, volume handle $h"
  k get pv "$pv" -o yaml
  [ "$(k get pv "$pv" -o jsonpath='{.spec.csi.driver}')" = "$DRIVER" ] || fail "PV driver"
  [ "$(k get pv "$pv" -o jsonpath='{.spec.capacity.storage}')" = 64Mi ] || fail "PV capacity"
  grep -q 'csi.tessera.io/ec=4+2' <<<"$(vctx_of "$pv")" || fail "the StorageClass ec did not reach the volume"
  listed "$h" || fail "$h not in Tessera's ListVolumes"
  [ "$(listed_bytes "$h")" = $((64 << 20)) ] || fail "Tessera volume size $(listed_bytes "$h")"
}

t_node_fs() {
  local tg sum
  tg=$(node_up fs1 pod-a)
  findmnt "$tg"
  head -c 1048576 /dev/urandom >"$tg/data.bin"
  sha256sum "$tg/data.bin" | cut -d' ' -f1 >"$WORK/fs1.sha"
  sync
  node_down fs1 pod-a
  say "restage on another pod's target: the data is still there"
  tg=$(node_up fs1 pod-b)
  sum=$(sha256sum "$tg/data.bin" | cut -d' ' -f1)
  [ "$sum" = "$(cat "$WORK/fs1.sha")" ] || fail "data changed: $sum"
  csic stats -id "$(handle_of "$(pv_of fs1)")" -path "$tg"
  say "left staged and published at pod-b for the expansion test"
}

t_pvc_bound_block() {
  make_pvc blk1 32Mi Block
  wait_bound blk1
  local pv; pv=$(pv_of blk1)
  [ "$(k get pv "$pv" -o jsonpath='{.spec.volumeMode}')" = Block ] || fail "PV volumeMode"
  listed "$(handle_of "$pv")" || fail "not in ListVolumes"
}

t_node_block() {
  local tg
  tg=$(node_up blk1 pod-a block)
  [ -b "$tg" ] || fail "$tg is not a block device"
  [ "$(blockdev --getsize64 "$tg")" = $((32 << 20)) ] || fail "device size $(blockdev --getsize64 "$tg")"
  head -c 4194304 /dev/urandom >"$WORK/blk1.pat"
  dd if="$WORK/blk1.pat" of="$tg" bs=1M oflag=direct conv=fsync status=none
  node_down blk1 pod-a block
  tg=$(node_up blk1 pod-b block)
  cmp <(dd if="$tg" bs=1M count=4 iflag=direct status=none) "$WORK/blk1.pat" || fail "block data differs after restage"
  node_down blk1 pod-b block
}

t_pvc_expand() {
  local pv h tg before after err
  pv=$(pv_of fs1); h=$(handle_of "$pv"); tg=$(target_fs "$pv" pod-b)
  findmnt "$tg" >/dev/null || fail "fs1 not published (node-stage-publish-filesystem failed?)"
  before=$(df -B1 --output=size "$tg" | tail -1)
  k -n "$E2E_NS" patch pvc fs1 -p '{"spec":{"resources":{"requests":{"storage":"128Mi"}}}}'
  say "csi-resizer: ControllerExpandVolume, PV grows"
  k wait --for=jsonpath='{.spec.capacity.storage}'=128Mi "pv/$pv" --timeout=120s ||
    { k -n "$E2E_NS" describe pvc fs1; fail "PV did not grow"; }
  [ "$(listed_bytes "$h")" = $((128 << 20)) ] || fail "Tessera volume size $(listed_bytes "$h")"
  k -n "$E2E_NS" get pvc fs1 -o jsonpath='{.status.conditions}'; echo
  say "kubelet's part: NodeExpandVolume on the published volume"
  if ! csic expand -id "$h" -path "$tg" -staging "$(staging_fs "$pv" "$h")" -bytes $((128 << 20)) 2>"$WORK/expand.err"; then
    err=$(cat "$WORK/expand.err"); echo "$err"
    case $err in
      *FailedPrecondition*CAP_SYS_RESOURCE*|*FailedPrecondition*)
        say "online growth refused (no CAP_SYS_RESOURCE here); restage grows it offline"
        node_down fs1 pod-b; tg=$(node_up fs1 pod-b) ;;
      *) fail "NodeExpandVolume: $err" ;;
    esac
  fi
  after=$(df -B1 --output=size "$tg" | tail -1)
  say "filesystem size $before -> $after bytes"
  [ "$after" -gt $((before + (48 << 20))) ] || fail "filesystem did not grow ($before -> $after)"
  [ "$(sha256sum "$tg/data.bin" | cut -d' ' -f1)" = "$(cat "$WORK/fs1.sha")" ] || fail "data changed by expansion"
  node_down fs1 pod-b
}

t_snapshot_ready() {
  local tg
  make_pvc snap-src 64Mi Filesystem
  wait_bound snap-src
  tg=$(node_up snap-src pod-s)
  head -c 1048576 /dev/urandom >"$tg/data.bin"
  sha256sum "$tg/data.bin" | cut -d' ' -f1 >"$WORK/snap.sha"
  sync
  node_down snap-src pod-s
  k apply -f - <<YAML
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: snap1, namespace: $E2E_NS}
spec:
  volumeSnapshotClassName: tessera
  source: {persistentVolumeClaimName: snap-src}
YAML
  k -n "$E2E_NS" wait --for=jsonpath='{.status.readyToUse}'=true volumesnapshot/snap1 --timeout=120s ||
    { k -n "$E2E_NS" describe volumesnapshot snap1; fail "snapshot not ready"; }
  say "overwrite the source after the snapshot: the restore must hold the old data"
  tg=$(node_up snap-src pod-s)
  head -c 1048576 /dev/zero >"$tg/data.bin"; sync
  node_down snap-src pod-s
}

t_pvc_from_snapshot() {
  local tg
  make_pvc restore1 64Mi Filesystem "  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: snap1}"
  wait_bound restore1
  tg=$(node_up restore1 pod-r)
  [ "$(sha256sum "$tg/data.bin" | cut -d' ' -f1)" = "$(cat "$WORK/snap.sha")" ] || fail "restored data differs from the snapshot's"
  node_down restore1 pod-r
}

t_snapshot_delete() {
  local vsc
  vsc=$(k -n "$E2E_NS" get volumesnapshot snap1 -o jsonpath='{.status.boundVolumeSnapshotContentName}')
  k -n "$E2E_NS" delete volumesnapshot snap1 --timeout=120s
  k wait --for=delete "volumesnapshotcontent/$vsc" --timeout=120s
}

t_pvc_delete() {
  local pvcs pvc pv h
  pvcs=$(k -n "$E2E_NS" get pvc -o jsonpath='{.items[*].metadata.name}')
  [ -n "$pvcs" ] || fail "no PVCs left to delete"
  for pvc in $pvcs; do
    pv=$(pv_of "$pvc"); h=$(handle_of "$pv")
    echo "$pvc $pv $h" >>"$WORK/deleted"
  done
  k -n "$E2E_NS" delete pvc --all --timeout=120s
  while read -r pvc pv h; do
    k wait --for=delete "pv/$pv" --timeout=120s
    ! listed "$h" || fail "$h still in Tessera's ListVolumes after deleting $pvc"
    if [ -d "$WORK/state" ]; then
      [ ! -e "$WORK/state/meta/$h.json" ] || fail "$h still has a record in the state dir"
      [ ! -e "$WORK/state/volumes/$h.img" ] || fail "$h still has an image in the state dir"
    fi
    if [ "${E2E_BACKEND:-dev}" = dev ] && [ -z "${E2E_CONTROLLER_CMD:-}" ]; then
      # The data plane's own view: no layer of the thin pool belongs to it any more.
      "$TESSERA" --endpoint "unix://$SOCK" -o json volume tree >"$WORK/tree.json" ||
        fail "tessera volume tree failed"
      jq -e --arg h "$h" '[.layers[] | select(.volume_id == $h)] | length == 0' \
        "$WORK/tree.json" >/dev/null || fail "$h still has layers in the data plane"
    fi
    say "$pvc: PV $pv and volume $h gone"
  done <"$WORK/deleted"
}

t_sidecars_healthy() {
  local p bad=0
  for p in "${PIDS[@]}"; do
    kill -0 "${p%%:*}" 2>/dev/null || { echo "${p#*:} exited"; bad=1; }
  done
  say "least-privilege RBAC: no 'forbidden' in the sidecars' logs"
  for s in csi-provisioner csi-resizer csi-snapshotter; do
    [ -f "$WORK/logs/$s.log" ] || continue
    if grep -i 'forbidden' "$WORK/logs/$s.log" | head -5; then echo "$s hit RBAC denials"; bad=1; fi
  done
  say "leader-election leases held in namespace $NS"
  k -n "$NS" get lease
  [ "$(k -n "$NS" get lease -o name | wc -l)" -ge 2 ] || { echo "missing leases"; bad=1; }
  [ "$bad" = 0 ]
}

# ---- group snapshots and VolumeAttributesClass (issue 22) -------------------------------------------
# block_fill PVC POD FILE: write FILE (a pattern) at the start of the Block PVC, as POD.
block_fill() {
  local tg
  tg=$(node_up "$1" "$2" block)
  dd if="$3" of="$tg" bs=1M oflag=direct conv=fsync status=none
  node_down "$1" "$2" block
}
# block_check PVC POD FILE: the start of the Block PVC holds FILE.
block_check() {
  local tg n
  n=$(($(stat -c %s "$3") >> 20))
  tg=$(node_up "$1" "$2" block)
  cmp <(dd if="$tg" bs=1M count="$n" iflag=direct status=none) "$3" || { node_down "$1" "$2" block; return 1; }
  node_down "$1" "$2" block
}

t_group_snapshot() {
  local p snap pvc members vgsc gid
  for p in gs-a gs-b; do make_pvc "$p" 32Mi Block; done
  for p in gs-a gs-b; do
    wait_bound "$p"
    k -n "$E2E_NS" label pvc "$p" tessera-e2e-group=g1 >/dev/null
    head -c 2097152 /dev/urandom >"$WORK/$p.pat"
    block_fill "$p" pod-g "$WORK/$p.pat"
  done
  say "VolumeGroupSnapshot over the PVCs labelled tessera-e2e-group=g1"
  k apply -f - <<YAML
apiVersion: groupsnapshot.storage.k8s.io/v1
kind: VolumeGroupSnapshot
metadata: {name: vgs1, namespace: $E2E_NS}
spec:
  volumeGroupSnapshotClassName: tessera
  source: {selector: {matchLabels: {tessera-e2e-group: g1}}}
YAML
  k -n "$E2E_NS" wait --for=jsonpath='{.status.readyToUse}'=true volumegroupsnapshot/vgs1 --timeout=120s ||
    { k -n "$E2E_NS" describe volumegroupsnapshot vgs1; fail "group snapshot not ready"; }
  vgsc=$(k -n "$E2E_NS" get volumegroupsnapshot vgs1 -o jsonpath='{.status.boundVolumeGroupSnapshotContentName}')
  gid=$(k get volumegroupsnapshotcontent "$vgsc" -o jsonpath='{.status.volumeGroupSnapshotHandle}')
  case $gid in gs-*) ;; *) fail "group snapshot handle '$gid' is not Tessera's" ;; esac
  say "group $gid; overwrite the sources after the cut: the restores must hold the old data"
  head -c 2097152 /dev/zero >"$WORK/zero.pat"
  for p in gs-a gs-b; do block_fill "$p" pod-g "$WORK/zero.pat"; done
  members=$(k -n "$E2E_NS" get volumesnapshot -o json | jq -r '.items[]
    | select(any(.metadata.ownerReferences[]?; .kind == "VolumeGroupSnapshot" and .name == "vgs1"))
    | "\(.metadata.name) \(.spec.source.persistentVolumeClaimName)"')
  echo "$members"
  [ "$(echo "$members" | grep -c .)" = 2 ] || fail "want 2 member VolumeSnapshots, got: $members"
  while read -r snap pvc; do
    k -n "$E2E_NS" wait --for=jsonpath='{.status.readyToUse}'=true "volumesnapshot/$snap" --timeout=120s
    make_pvc "r-$pvc" 32Mi Block "  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: $snap}"
    wait_bound "r-$pvc"
    block_check "r-$pvc" pod-gr "$WORK/$pvc.pat" || fail "r-$pvc (from $snap) does not hold $pvc's data at the cut"
    say "r-$pvc holds $pvc's data at the cut"
  done <<<"$members"
  say "the members are deleted with their group (layers the restores need stay, hidden)"
  local handles h id
  handles=$(k get volumesnapshotcontent -o json | jq -r --arg g "$gid" \
    '.items[] | select(.status.volumeGroupSnapshotHandle == $g) | .status.snapshotHandle')
  [ "$(echo "$handles" | grep -c '^ts-')" = 2 ] || fail "member snapshot handles: $handles"
  k -n "$E2E_NS" delete volumegroupsnapshot vgs1 --timeout=120s
  k wait --for=delete "volumegroupsnapshotcontent/$vgsc" --timeout=120s
  "$TESSERA" --endpoint "unix://$SOCK" -o json volume tree >"$WORK/gtree.json"
  for h in $handles; do
    id=$((16#${h#ts-}))
    jq -e --argjson id "$id" '[.layers[] | select(.id == $id and .kind == "snapshot")] | length == 0' \
      "$WORK/gtree.json" >/dev/null || fail "member snapshot $h is still a visible snapshot"
  done
}

t_vac_modify() {
  local h pv tg dev0 dev1 q
  k apply -f - <<YAML
apiVersion: storage.k8s.io/v1
kind: VolumeAttributesClass
metadata: {name: tessera-slow}
driverName: $DRIVER
parameters: {iopsLimit: "20", burstMs: "100", writeBpsLimit: "8Mi"}
---
apiVersion: storage.k8s.io/v1
kind: VolumeAttributesClass
metadata: {name: tessera-fast}
driverName: $DRIVER
parameters: {iopsLimit: "5000", writeBpsLimit: "0", iopsReservation: "100"}
YAML
  make_pvc qos1 32Mi Block "  volumeAttributesClassName: tessera-slow"
  wait_bound qos1
  pv=$(pv_of qos1); h=$(handle_of "$pv")
  k -n "$E2E_NS" wait --for=jsonpath='{.status.currentVolumeAttributesClassName}'=tessera-slow pvc/qos1 --timeout=60s
  q=$("$TESSERA" --endpoint "unix://$SOCK" -o json volume show "$h" | jq -c .qos)
  say "created with tessera-slow: $q"
  [ "$(echo "$q" | jq '.iopsLimit')" = 20 ] && [ "$(echo "$q" | jq '.writeBpsLimit')" = $((8 << 20)) ] ||
    fail "the class's limits did not reach the engine: $q"
  tg=$(node_up qos1 pod-q block)
  dev0=$(sed -n 's/.*"dev":"\([^"]*\)".*/\1/p' "$WORK/state/node/$h.json")
  head -c 262144 /dev/urandom >"$WORK/qos1.pat"
  dd if="$WORK/qos1.pat" of="$tg" bs=4k oflag=direct conv=fsync status=none
  say "64 writes against a 2-IO bucket at 20 IOPS: the engine delayed IOs"
  q=$("$TESSERA" --endpoint "unix://$SOCK" -o json volume show "$h" | jq -c .qos)
  echo "$q"
  [ "$(echo "$q" | jq '.stats.delayed')" -gt 0 ] || fail "no IO was delayed under iopsLimit=20: $q"
  say "change the class on the bound, staged PVC"
  k -n "$E2E_NS" patch pvc qos1 -p '{"spec":{"volumeAttributesClassName":"tessera-fast"}}'
  k -n "$E2E_NS" wait --for=jsonpath='{.status.currentVolumeAttributesClassName}'=tessera-fast pvc/qos1 --timeout=120s ||
    { k -n "$E2E_NS" describe pvc qos1; fail "ModifyVolume did not complete"; }
  q=$("$TESSERA" --endpoint "unix://$SOCK" -o json volume show "$h" | jq -c .qos)
  say "now: $q"
  [ "$(echo "$q" | jq '.iopsLimit')" = 5000 ] && [ "$(echo "$q" | jq '.iopsReservation')" = 100 ] &&
    [ "$(echo "$q" | jq 'has("writeBpsLimit")')" = false ] || fail "the new class did not reach the engine: $q"
  say "the volume stayed attached: same device, data intact, IO flows"
  dev1=$(sed -n 's/.*"dev":"\([^"]*\)".*/\1/p' "$WORK/state/node/$h.json")
  [ -n "$dev0" ] && [ "$dev0" = "$dev1" ] && [ -b "$tg" ] || fail "restaged: $dev0 -> $dev1"
  cmp <(dd if="$tg" bs=256k count=1 iflag=direct status=none) "$WORK/qos1.pat" || fail "data differs"
  dd if="$WORK/qos1.pat" of="$tg" bs=1M seek=1 oflag=direct conv=fsync status=none
  node_down qos1 pod-q block
  say "an unknown key in a class is refused with a clear reason"
  k apply -f - <<YAML
apiVersion: storage.k8s.io/v1
kind: VolumeAttributesClass
metadata: {name: tessera-bad}
driverName: $DRIVER
parameters: {noSuchKey: "1"}
YAML
  k -n "$E2E_NS" patch pvc qos1 -p '{"spec":{"volumeAttributesClassName":"tessera-bad"}}'
  local i
  for i in $(seq 60); do
    k -n "$E2E_NS" get events --field-selector involvedObject.name=qos1 -o jsonpath='{.items[*].message}' |
      grep -q 'unknown key' && break
    sleep 1
  done
  [ "$i" -lt 60 ] || { k -n "$E2E_NS" describe pvc qos1; fail "no event names the unknown key"; }
  [ "$(k -n "$E2E_NS" get pvc qos1 -o jsonpath='{.status.currentVolumeAttributesClassName}')" = tessera-fast ] ||
    fail "the refused class was recorded as current"
  k -n "$E2E_NS" patch pvc qos1 -p '{"spec":{"volumeAttributesClassName":"tessera-fast"}}'
}
