# SPDX-License-Identifier: Apache-2.0
# Real-Pod tests of e2e/run.sh (issue 8; sourced only when the real node runs). Pods run
# on the e2e's own kubelet + containerd with the local busybox image; the volume
# reaches them through kubelet's CSI calls to Tessera, not through the harness.
# Same conventions as lib/tests.sh (subshell, set -e, k, fail, say, $E2E_NS).

# pod_apply NAME PVC MODE(Filesystem|Block) SCRIPT: one busybox container with the PVC
# at /data (Filesystem) or /dev/xvda (Block), running SCRIPT then sleeping.
pod_apply() {
  local name=$1 pvc=$2 mode=$3 script=$4 vol
  if [ "$mode" = Block ]; then
    vol="volumeDevices: [{name: v, devicePath: /dev/xvda}]"
  else
    vol="volumeMounts: [{name: v, mountPath: /data}]"
  fi
  k apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: $E2E_NS}
spec:
  nodeName: $NODE_NAME
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  tolerations: [{key: tessera.io/e2e-pods, operator: Exists, effect: NoSchedule}]
  containers:
  - name: c
    image: $NODE_TEST_IMAGE
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "$script; echo exit=\$?; echo DONE; sleep 3600"]
    $vol
  volumes:
  - name: v
    persistentVolumeClaim: {claimName: $pvc}
YAML
}
pod_running() { # NAME: Running within 120 s, else its events
  k -n "$E2E_NS" wait --for=jsonpath='{.status.phase}'=Running "pod/$1" --timeout=120s ||
    { k -n "$E2E_NS" describe pod "$1"; return 1; }
}
pod_done() { # NAME: the script printed DONE (bounded)
  local i
  for i in $(seq 60); do
    grep -q '^DONE$' <<<"$(k -n "$E2E_NS" logs "$1" 2>/dev/null)" && return 0
    sleep 1
  done
  k -n "$E2E_NS" logs "$1"; k -n "$E2E_NS" describe pod "$1"; return 1
}
pod_delete() { # NAME: gone, and kubelet unmounted the volume
  k -n "$E2E_NS" delete pod "$1" --wait=true --timeout=120s
}

# still_staged PVC: kubelet has not unstaged the PVC's volume yet (Tessera's
# staging record <state>/node/<handle>.json, or a mount at kubelet's staging path).
still_staged() {
  local pv h sha
  pv=$(pv_of "$1"); h=$(handle_of "$pv")
  sha=$(printf %s "$h" | sha256sum | cut -c1-64)
  [ -e "$WORK/state/node/$h.json" ] ||
    grep -qF -e "/$sha/globalmount " -e "/volumeDevices/staging/$pv " /proc/self/mountinfo
}
# pvc_delete PVC...: once kubelet has unstaged their volumes, delete the PVCs.
# Kubernetes lets a PVC go as soon as no Pod object uses it, while kubelet may
# still be about to call NodeUnstageVolume; deleting it then would delete the
# volume (and its iSCSI target) under a filesystem still mounted on the node.
pvc_delete() {
  local pvc i
  for pvc in "$@"; do
    for i in $(seq 120); do still_staged "$pvc" || break; sleep 0.5; done
    ! still_staged "$pvc" || fail "kubelet did not unstage the volume of $pvc within 60 s of its Pods' deletion"
  done
  k -n "$E2E_NS" delete pvc "$@" --wait=true --timeout=120s
}

pods_gone_on_exit() { # delete the test's Pods even when it fails (the PVC is left to pvc-delete)
  trap "k -n '$E2E_NS' delete pod $* --ignore-not-found --grace-period=1 --wait=true --timeout=60s >/dev/null 2>&1" EXIT
}

t_pod_fs() {
  local pv
  pods_gone_on_exit writer reader
  make_pvc podfs 64Mi Filesystem
  wait_bound podfs
  pv=$(pv_of podfs)
  pod_apply writer podfs Filesystem "echo tessera-pod-data > /data/f && sync && cat /data/f"
  pod_running writer
  pod_done writer
  grep -qx tessera-pod-data <<<"$(k -n "$E2E_NS" logs writer)" ||
    fail "writer did not write; its log: $(k -n "$E2E_NS" logs writer 2>&1 | tail -5 | tr '\n' '|'); dmesg: $(dmesg 2>/dev/null | grep -iE 'ext4|xfs|loop|I/O error' | tail -3 | tr '\n' '|')"
  grep -q "$pv" <<<"$(findmnt -rn)" || fail "no mount of $pv on the host while the Pod runs"
  pod_delete writer
  ! grep -q "/pods/.*$pv/mount" <<<"$(findmnt -rn)" || fail "Pod volume of $pv still mounted after the Pod was deleted"
  pod_apply reader podfs Filesystem "cat /data/f"
  pod_running reader
  pod_done reader
  grep -qx tessera-pod-data <<<"$(k -n "$E2E_NS" logs reader)" ||
    fail "reader did not read the writer's data; its log: $(k -n "$E2E_NS" logs reader 2>&1 | tail -5 | tr '\n' '|'); dmesg: $(dmesg 2>/dev/null | grep -iE 'ext4|xfs|loop|I/O error' | tail -3 | tr '\n' '|')"
  pod_delete reader
  pvc_delete podfs
}

t_pod_block() {
  make_pvc podblk 64Mi Block
  wait_bound podblk
  pods_gone_on_exit bwriter breader
  pod_apply bwriter podblk Block "printf 'tessera-block-data\\\\n' > /dev/xvda && sync && head -c 19 /dev/xvda"
  pod_running bwriter
  pod_done bwriter
  grep -qx tessera-block-data <<<"$(k -n "$E2E_NS" logs bwriter)" || fail "bwriter did not write the device"
  pod_delete bwriter
  pod_apply breader podblk Block "head -c 19 /dev/xvda"
  pod_running breader
  pod_done breader
  grep -qx tessera-block-data <<<"$(k -n "$E2E_NS" logs breader)" || fail "breader did not read the bwriter's data"
  pod_delete breader
  pvc_delete podblk
}

# Two Pods at once on one ReadWriteMany Block PVC (MULTI_NODE_MULTI_WRITER), each
# writing its own 4 KiB block and reading the other's. One kubelet here, so both
# Pods are on one node; two nodes need the multi-kubelet cluster (issue 15).
rwx_script() { # MINE THEIRS BLOCK_MINE BLOCK_THEIRS
  echo "printf '$1\\\\n' | dd of=/dev/xvda bs=4096 seek=$3 conv=notrunc 2>/dev/null && sync; i=0; v=; while [ \$i -lt 60 ]; do v=\$(dd if=/dev/xvda bs=4096 skip=$4 count=1 2>/dev/null | head -c ${#2}); case \$v in $2) break;; esac; sleep 1; i=\$((i+1)); done; echo got=\$v"
}
t_pod_rwx_block() {
  PVC_ACCESS=ReadWriteMany make_pvc podrwx 64Mi Block
  wait_bound podrwx
  [ "$(k -n "$E2E_NS" get pvc podrwx -o jsonpath='{.status.accessModes[0]}')" = ReadWriteMany ] ||
    fail "podrwx is not bound ReadWriteMany"
  pods_gone_on_exit rwxa rwxb
  pod_apply rwxa podrwx Block "$(rwx_script rwx-from-a rwx-from-b 0 256)"
  pod_apply rwxb podrwx Block "$(rwx_script rwx-from-b rwx-from-a 256 0)"
  pod_running rwxa
  pod_running rwxb
  pod_done rwxa
  pod_done rwxb
  grep -qx got=rwx-from-b <<<"$(k -n "$E2E_NS" logs rwxa)" || fail "rwxa did not read rwxb's block: $(k -n "$E2E_NS" logs rwxa)"
  grep -qx got=rwx-from-a <<<"$(k -n "$E2E_NS" logs rwxb)" || fail "rwxb did not read rwxa's block: $(k -n "$E2E_NS" logs rwxb)"
  pod_delete rwxa
  pod_delete rwxb
  pvc_delete podrwx
}

# A Pod on a PVC restored from a VolumeSnapshot sees the snapshot's data, not what
# the source held afterwards.
t_pod_snapshot_restore() {
  pods_gone_on_exit swriter soverwrite sreader
  make_pvc podsnap-src 64Mi Filesystem
  wait_bound podsnap-src
  pod_apply swriter podsnap-src Filesystem "echo before-snapshot > /data/f && sync"
  pod_running swriter; pod_done swriter; pod_delete swriter
  k apply -f - <<YAML
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: podsnap, namespace: $E2E_NS}
spec:
  volumeSnapshotClassName: tessera
  source: {persistentVolumeClaimName: podsnap-src}
YAML
  k -n "$E2E_NS" wait --for=jsonpath='{.status.readyToUse}'=true volumesnapshot/podsnap --timeout=120s ||
    { k -n "$E2E_NS" describe volumesnapshot podsnap; fail "snapshot not ready"; }
  pod_apply soverwrite podsnap-src Filesystem "echo after-snapshot > /data/f && sync"
  pod_running soverwrite; pod_done soverwrite; pod_delete soverwrite
  make_pvc podsnap-restore 64Mi Filesystem "  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: podsnap}"
  wait_bound podsnap-restore
  pod_apply sreader podsnap-restore Filesystem "cat /data/f"
  pod_running sreader; pod_done sreader
  # The container's log may lag its exit by a moment: read it until it is there.
  local i out=""
  for i in $(seq 10); do
    out=$(k -n "$E2E_NS" logs sreader 2>/dev/null || true)
    ! grep -qx DONE <<<"$out" || break
    sleep 1
  done
  grep -qx before-snapshot <<<"$out" || fail "restored PVC does not hold the snapshot's data: '$out'"
  pod_delete sreader
  k -n "$E2E_NS" delete volumesnapshot podsnap --wait=true --timeout=120s
  pvc_delete podsnap-restore podsnap-src
}

# A node-side failure reaches the user as a Pod event: a hand-made PV that Tessera
# did not create (no attach context); kubelet's NodeStageVolume fails and the Pod
# gets FailedMount with the driver's message, e.g.
#   MountVolume.MountDevice failed for volume "e2e-missing-volume" : rpc error:
#   code = InvalidArgument desc = volume_context lacks a valid csi.tessera.io/attach ...
t_pod_failed_mount() {
  trap "k -n '$E2E_NS' delete pod broken --ignore-not-found --grace-period=1 --timeout=60s >/dev/null 2>&1
        k -n '$E2E_NS' delete pvc missing --ignore-not-found --timeout=60s >/dev/null 2>&1
        k delete pv e2e-missing-volume --ignore-not-found --timeout=60s >/dev/null 2>&1" EXIT
  k apply -f - <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: e2e-missing-volume}
spec:
  capacity: {storage: 64Mi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {namespace: $E2E_NS, name: missing}
  csi: {driver: $DRIVER, volumeHandle: tv-00000000deadbeef, fsType: ext4}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: missing, namespace: $E2E_NS}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: e2e-missing-volume
  resources: {requests: {storage: 64Mi}}
YAML
  wait_bound missing
  pod_apply broken missing Filesystem "true"
  local i ev=""
  for i in $(seq 60); do
    ev=$(k -n "$E2E_NS" get events --field-selector involvedObject.name=broken,reason=FailedMount \
         -o jsonpath='{range .items[*]}{.message}{"\n"}{end}')
    [ -n "$ev" ] && break
    sleep 1
  done
  say "FailedMount events: $ev"
  [ -n "$ev" ] || { k -n "$E2E_NS" describe pod broken; fail "no FailedMount event for the Pod"; }
  grep -q 'MountDevice failed for volume "e2e-missing-volume"' <<<"$ev" || fail "the FailedMount event does not name the PV"
  grep -q "desc = .*$DRIVER" <<<"$ev" || fail "the FailedMount event does not carry the driver's message"
  [ "$(k -n "$E2E_NS" get pod broken -o jsonpath='{.status.phase}')" = Pending ] || fail "Pod left Pending without its volume"
  k -n "$E2E_NS" delete pod broken --grace-period=1 --wait=true --timeout=120s
}

# portal_close HOST PORT: refuse every new TCP connection from this machine to
# the data plane's iSCSI portal, with a TCP reset, which is exactly what a node
# sees when nothing listens there (the data plane is down). The rule is written
# to $WORK/portal-closed so portal_open (the test's EXIT trap, and run.sh's
# cleanup) removes it whatever happens.
portal_rule() { # HOST PORT
  echo "OUTPUT -p tcp -d $1 --dport $2 -m comment --comment tessera-e2e-portal-closed -j REJECT --reject-with tcp-reset"
}
portal_close() {
  portal_rule "$1" "$2" >"$WORK/portal-closed"
  # shellcheck disable=SC2046 # the rule is words on purpose
  iptables -I $(cat "$WORK/portal-closed")
}
portal_open() {
  [ -f "$WORK/portal-closed" ] || return 0
  # shellcheck disable=SC2046
  while iptables -D $(cat "$WORK/portal-closed") 2>/dev/null; do :; done
  rm -f "$WORK/portal-closed"
}

# The data plane is down while a Pod wants its volume: kubelet's NodeStageVolume
# fails and the Pod gets a FailedMount event that says the volume's iSCSI target
# cannot be reached, at which portal and why, with code Unavailable. Then the
# portal opens again and, with nothing else done, kubelet's retry stages the
# volume and the Pod starts and uses it: what a user watching `kubectl describe
# pod` needs to trust that the outage, not the volume, was the problem.
t_pod_target_down() {
  local pv url portal host port i ev=""
  trap "portal_open
        k -n '$E2E_NS' delete pod tdpod --ignore-not-found --grace-period=1 --wait=true --timeout=60s >/dev/null 2>&1" EXIT
  make_pvc podtd 64Mi Filesystem
  wait_bound podtd
  pv=$(pv_of podtd)
  url=$(k get pv "$pv" -o jsonpath='{.spec.csi.volumeAttributes.csi\.tessera\.io/attach}')
  case $url in iscsi://*) ;; *) fail "PV $pv has no iSCSI attach context: '$url'" ;; esac
  portal=${url#iscsi://}; portal=${portal##*@}; portal=${portal%%/*}
  host=${portal%:*}; port=${portal##*:}
  say "closing the data plane's portal $portal to this node (TCP reset, as when nothing listens there)"
  portal_close "$host" "$port"
  pod_apply tdpod podtd Filesystem "echo after-outage > /data/f && sync && cat /data/f"
  for i in $(seq 90); do
    ev=$(k -n "$E2E_NS" get events --field-selector involvedObject.name=tdpod,reason=FailedMount \
         -o jsonpath='{range .items[*]}{.message}{"\n"}{end}')
    grep -q "cannot reach" <<<"$ev" && break
    sleep 1
  done
  say "FailedMount events while the portal is closed:"
  echo "$ev"
  grep -q "MountVolume.MountDevice failed for volume \"$pv\"" <<<"$ev" || { k -n "$E2E_NS" describe pod tdpod; fail "no FailedMount event naming $pv"; }
  grep -q "code = Unavailable desc = cannot reach the volume's iSCSI target [^ ]* at $portal: Connection refused (the Tessera data plane serving this volume is down or unreachable from this node)" <<<"$ev" ||
    fail "the FailedMount event does not say that the target at $portal cannot be reached"
  [ "$(k -n "$E2E_NS" get pod tdpod -o jsonpath='{.status.phase}')" = Pending ] || fail "Pod left Pending without its volume"
  say "opening the portal again: kubelet's retry must stage the volume and start the Pod"
  portal_open
  pod_running tdpod
  pod_done tdpod
  grep -qx after-outage <<<"$(k -n "$E2E_NS" logs tdpod)" ||
    { k -n "$E2E_NS" logs tdpod; k -n "$E2E_NS" describe pod tdpod; fail "the Pod did not write and read its volume after the outage"; }
  pod_delete tdpod
  pvc_delete podtd
}

# After the Pods are gone (control plane, kubelet and Tessera still running):
# kubelet unstaged everything, so no CSI mount under kubelet's root, no attach
# mount of Tessera's node side, and no loop device over an attached volume.
t_pod_no_leftovers() {
  local m l
  m=$(grep -o " $NODE_KUBELET_DIR/[^ ]*kubernetes.io[~/]csi[^ ]*" /proc/self/mountinfo || true)
  [ -z "$m" ] || fail "CSI mounts left under kubelet's root: $m"
  m=$(grep -o " $WORK/state/attach/[^ ]*" /proc/self/mountinfo || true)
  [ -z "$m" ] || fail "Tessera attach mounts left: $m"
  l=$(losetup -a | grep "$WORK/state/attach" || true)
  [ -z "$l" ] || fail "loop devices left: $l"
  [ -z "$(k -n "$E2E_NS" get pods -o name)" ] || fail "Pods left: $(k -n "$E2E_NS" get pods -o name)"
  say "no CSI mounts, attach mounts, loop devices or Pods left"
}
