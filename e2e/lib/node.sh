# SPDX-License-Identifier: Apache-2.0
# The node side of the real-Pod e2e (issue 8): containerd + runc + CNI from Debian,
# two local images (no registry can be reached), and kubelet.
# Sourced (not run) by e2e/run.sh when the real node runs (E2E_PODS).
# Needs from the caller: log, setup_fail, start (run.sh's process helpers), WORK.
#
# Functions:
#   node_pkgs                     install containerd, runc, CNI plugins, busybox-static, iptables if missing
#   node_images OUTDIR            build pause.tar and busybox.tar (OCI layouts as tar) once
#   node_containerd_start         own containerd (own root/state/socket, not the host's)
#   node_images_import DIR        ctr -n k8s.io images import of both images
#   node_kubelet_start KUBECONFIG start kubelet against the runtime (cgroupfs, cgroup v1 allowed)
#   node_cleanup                  unmount kubelet's mounts under WORK and remove CNI leftovers
# Images: $NODE_PAUSE_IMAGE (sandbox image) and $NODE_TEST_IMAGE (busybox-static).

NODE_PAUSE_IMAGE=${NODE_PAUSE_IMAGE:-tessera.local/pause:e2e}
NODE_TEST_IMAGE=${NODE_TEST_IMAGE:-tessera.local/busybox:e2e}
NODE_NAME=${NODE_NAME:-tessera-e2e-node}
# iptables: pod-target-down closes the data plane's portal to this node with it.
NODE_PKGS="containerd runc containernetworking-plugins busybox-static iptables"
NODE_CNI_BIN=${NODE_CNI_BIN:-/usr/lib/cni}
# The Pod bridge; its gateway address is also the node's InternalIP, where kubelet
# serves (the API server reaches it there for logs/exec). Host-only: nothing routes it out.
NODE_BRIDGE=tse2e0
NODE_SUBNET_PREFIX=${NODE_SUBNET_PREFIX:-10.244.77}
NODE_IP=$NODE_SUBNET_PREFIX.1
# Only Pods that tolerate this taint run on the node: the tests' Pods do, the chart's
# DaemonSet/Deployment (images that cannot be pulled here) do not.
NODE_TAINT=tessera.io/e2e-pods=true:NoSchedule

node_pkgs() {
  local p missing=()
  for p in $NODE_PKGS; do
    grep -q 'install ok installed' <<<"$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return 0
  log "installing ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$WORK/logs/apt.log" 2>&1
}

# node_oci_layout DIR ROOTFS NAME ENTRYPOINT-JSON: write an OCI image layout of one layer.
node_oci_layout() {
  local d=$1 rootfs=$2 name=$3 entry=$4
  rm -rf "$d" && mkdir -p "$d/blobs/sha256" || return 1
  local tmp=$d/layer.tar diffid layer lsize cfg csize man msize
  tar -C "$rootfs" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "$tmp" . || return 1
  diffid=$(sha256sum "$tmp" | cut -d' ' -f1)
  gzip -n -9 "$tmp" || return 1
  layer=$(sha256sum "$tmp.gz" | cut -d' ' -f1); lsize=$(stat -c %s "$tmp.gz")
  mv "$tmp.gz" "$d/blobs/sha256/$layer"
  printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Entrypoint":%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$entry" "$diffid" >"$d/cfg"
  cfg=$(sha256sum "$d/cfg" | cut -d' ' -f1); csize=$(stat -c %s "$d/cfg"); mv "$d/cfg" "$d/blobs/sha256/$cfg"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$cfg" "$csize" "$layer" "$lsize" >"$d/man"
  man=$(sha256sum "$d/man" | cut -d' ' -f1); msize=$(stat -c %s "$d/man"); mv "$d/man" "$d/blobs/sha256/$man"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$man" "$msize" "$name" "${name##*:}" >"$d/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$d/oci-layout"
}

node_busybox_rootfs() { # DIR: busybox-static and a link per applet
  local r=$1 a
  rm -rf "$r" && mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/proc" "$r/sys" "$r/dev" "$r/data" || return 1
  cp /bin/busybox "$r/bin/busybox" || return 1
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"; done
  echo 'root:x:0:0:root:/:/bin/sh' >"$r/etc/passwd"
  echo 'root:x:0:' >"$r/etc/group"
}

# An image archive is valid when it holds an OCI index naming the image.
node_image_ok() { # TAR NAME
  [ -s "$1" ] && grep -q "\"io.containerd.image.name\":\"$2\"" <<<"$(tar -xOf "$1" ./index.json 2>/dev/null)"
}
node_images() { # OUTDIR: pause.tar, busybox.tar (cached by busybox version)
  local out=$1 key
  key=$(dpkg-query -W -f='${Version}' busybox-static | sha256sum | cut -c1-12) || return 1
  # The key file says which busybox the archives hold; the archives themselves
  # are checked, so a half-written cache is rebuilt, never trusted.
  if [ "$(cat "$out/key" 2>/dev/null)" = "$key" ] && node_image_ok "$out/pause.tar" "$NODE_PAUSE_IMAGE" &&
     node_image_ok "$out/busybox.tar" "$NODE_TEST_IMAGE"; then
    return 0
  fi
  mkdir -p "$out" || return 1
  local w=$out/work; rm -rf "$w" && mkdir -p "$w" || return 1
  node_busybox_rootfs "$w/rootfs" || return 1
  # The sandbox ("pause") container only has to hold the namespaces open.
  node_oci_layout "$w/pause" "$w/rootfs" "$NODE_PAUSE_IMAGE" '["/bin/sleep","2147483647"]' || return 1
  node_oci_layout "$w/busybox" "$w/rootfs" "$NODE_TEST_IMAGE" '["/bin/sh"]' || return 1
  tar -C "$w/pause" -cf "$w/pause.tar" . && tar -C "$w/busybox" -cf "$w/busybox.tar" . || return 1
  node_image_ok "$w/pause.tar" "$NODE_PAUSE_IMAGE" && node_image_ok "$w/busybox.tar" "$NODE_TEST_IMAGE" || return 1
  mv -f "$w/pause.tar" "$out/pause.tar" && mv -f "$w/busybox.tar" "$out/busybox.tar" || return 1
  rm -rf "$w" "$out"/done-* && echo "$key" >"$out/key"
}

node_containerd_start() {
  local c=$WORK/containerd
  NODE_CRI_SOCK=$c/containerd.sock
  mkdir -p "$c/root" "$c/state" "$WORK/cni/net.d" "$WORK/cni/state" || return 1
  cat >"$c/config.toml" <<CFG
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$NODE_CRI_SOCK"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  address = "$c/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # Without CAP_SYS_RESOURCE (this machine) a negative oom_score_adj cannot be set, and
  # the sandbox asks for -998: runc then fails with "can't get final child's PID from
  # pipe: EOF". Clamp every container's score to containerd's own instead.
  restrict_oom_score_adj = true
  # Nothing may be pulled from outside: send docker.io to a closed loopback port.
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["http://127.0.0.1:9"]
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$NODE_CNI_BIN"
    conf_dir = "$WORK/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
CFG
  # A bridge with host-local IPAM on a private range; loopback for every Pod.
  cat >"$WORK/cni/net.d/10-tessera-e2e.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "tessera-e2e",
  "plugins": [
    {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$WORK/cni/state",
              "ranges": [[{"subnet": "$NODE_SUBNET_PREFIX.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
  ls -d /var/run/netns/cni-* 2>/dev/null >"$WORK/netns-before"
  # The bridge exists before kubelet starts (it binds to NODE_IP); the CNI bridge
  # plugin adopts it.
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge && ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE" &&
      ip link set "$NODE_BRIDGE" up || { log "creating bridge $NODE_BRIDGE failed"; return 1; }
  fi
  start containerd containerd --config "$c/config.toml" --log-level info
  wait_for 30 containerd ctr --address "$NODE_CRI_SOCK" version || { log "containerd did not start (logs/containerd.log)"; return 1; }
}

node_images_import() { # DIR with pause.tar busybox.tar
  local t
  for t in pause busybox; do
    ctr --address "$NODE_CRI_SOCK" -n k8s.io images import --no-unpack=false "$1/$t.tar" >>"$WORK/logs/ctr-import.log" 2>&1 ||
      { log "ctr import $t failed (logs/ctr-import.log)"; return 1; }
  done
  ctr --address "$NODE_CRI_SOCK" -n k8s.io images ls -q >>"$WORK/logs/ctr-import.log" 2>&1
}

node_kubelet_start() { # KUBECONFIG
  local kc=$1 k=$WORK/kubelet
  NODE_KUBELET_DIR=$k/root
  mkdir -p "$k/root/plugins_registry" "$k/root/plugins" "$k/pods-log" || return 1
  # kubelet's device-plugin socket dir is fixed at /var/lib/kubelet/device-plugins
  # whatever --root-dir says: remove /var/lib/kubelet afterwards if we created it.
  [ -e /var/lib/kubelet ] && NODE_VARLIB_KUBELET=kept || NODE_VARLIB_KUBELET=ours
  cat >"$k/config.yaml" <<KCFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://$NODE_CRI_SOCK
staticPodPath: "${NODE_STATIC_DIR:-}"
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$WORK/pki/ca.crt"}
authorization: {mode: AlwaysAllow}
address: $NODE_IP
port: ${NODE_KUBELET_PORT:-32350}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${NODE_KUBELET_HEALTHZ_PORT:-32348}
enableServer: true
podLogsDir: "$k/pods-log"
# Keep the locally imported images: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 8760h
evictionHard: {}
failSwapOn: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
cgroupsPerQOS: true
enforceNodeAllocatable: []
serializeImagePulls: false
registerNode: true
resolvConf: ""
clusterDNS: []
KCFG
  start kubelet "$K8S_BIN/kubelet" --config "$k/config.yaml" ${kc:+--kubeconfig "$kc"} \
    --root-dir "$k/root" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --cert-dir "$k/pki" --register-with-taints "$NODE_TAINT" --v=2
  NODE_KUBELET_PID=$!
}

# node_stop: kubelet first (it would restart what we remove), then every task and
# container of our containerd, the Pod network namespaces it created, the bridge,
# and kubelet's mounts under WORK. containerd itself is left to the caller's
# process list (it stops last). Safe to call twice and when nothing was started.
node_stop() {
  local pid n id
  if [ -n "${NODE_KUBELET_PID:-}" ]; then
    kill -TERM "$NODE_KUBELET_PID" 2>/dev/null
    for n in $(seq 50); do kill -0 "$NODE_KUBELET_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NODE_KUBELET_PID" 2>/dev/null
  fi
  if [ -n "${NODE_CRI_SOCK:-}" ] && [ -S "$NODE_CRI_SOCK" ]; then
    local c=(ctr --address "$NODE_CRI_SOCK" -n k8s.io)
    for id in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks kill -s KILL "$id" >/dev/null 2>&1; done
    for n in $(seq 50); do
      [ -z "$("${c[@]}" tasks ls 2>/dev/null | awk 'NR>1 && $3 != "STOPPED"')" ] && break; sleep 0.1
    done
    for id in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks rm -f "$id" >/dev/null 2>&1; done
    for id in $("${c[@]}" containers ls -q 2>/dev/null); do "${c[@]}" containers rm "$id" >/dev/null 2>&1; done
  fi
  # Network namespaces the CRI plugin made for our sandboxes (not the host's others).
  local ns
  for ns in /var/run/netns/cni-*; do
    [ -e "$ns" ] || continue
    grep -qxF "$ns" "$WORK/netns-before" 2>/dev/null && continue
    umount "$ns" 2>/dev/null; rm -f "$ns"
  done
  node_cleanup
}

node_cleanup() {
  local m
  { grep -o " $WORK/kubelet/[^ ]*\| $WORK/containerd/[^ ]*\| /run/containerd/io.containerd[^ ]*$WORK[^ ]*" /proc/self/mountinfo || true; } | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  [ "${NODE_VARLIB_KUBELET:-}" = ours ] && rm -rf /var/lib/kubelet
  return 0
}
