# SPDX-License-Identifier: Apache-2.0
# Pinned versions of every outside component the e2e harness builds or runs.
# Sourced by e2e/run.sh, e2e/lib/build.sh and e2e/image/build-base.sh.
# Change a version here and the cache key changes with it (see docs/e2e.md).
K8S_VERSION=${K8S_VERSION:-v1.37.2}            # k8s.io/kubernetes; staging modules at v0.<minor>.<patch>
# Commands built from k8s.io/kubernetes/cmd/. The real-Pod tests (issue 8) also need
# kubelet and kube-scheduler: built with E2E_PODS=1; with the default E2E_PODS=auto
# the Pod tests run when they are already in the cache.
K8S_POD_CMDS="kubelet kube-scheduler"
if [ "${E2E_PODS:-0}" = 1 ]; then
  K8S_CMDS=${K8S_CMDS:-"kube-apiserver kube-controller-manager kubectl $K8S_POD_CMDS"}
else
  K8S_CMDS=${K8S_CMDS:-"kube-apiserver kube-controller-manager kubectl"}
fi
PROVISIONER_VERSION=${PROVISIONER_VERSION:-v6.4.0}   # github.com/kubernetes-csi/external-provisioner/v6
SNAPSHOTTER_VERSION=${SNAPSHOTTER_VERSION:-v8.7.0}   # github.com/kubernetes-csi/external-snapshotter/v8 (+client/v8)
RESIZER_VERSION=${RESIZER_VERSION:-v2.3.0}           # github.com/kubernetes-csi/external-resizer/v2
HELM_VERSION=${HELM_VERSION:-v3.21.4}                # helm.sh/helm/v3
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}               # base image for the Dockerfile
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_IMAGE=${BASE_IMAGE:-tessera/debian-base:bookworm}

# CI may run with a thin environment: Go where the toolchain installs it, and a
# HOME for Go's caches and ours.
case ":$PATH:" in *:/usr/local/go/bin:*) ;; *) PATH=$PATH:/usr/local/go/bin ;; esac
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export PATH HOME
E2E_CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tessera-e2e}
# The go command (the cache test, e2e/lib/build_test.sh, gives a stand-in).
E2E_GO=${E2E_GO:-go}
GO_VERSION_KEY=$($E2E_GO env GOVERSION 2>/dev/null || echo nogo)
K8S_BIN=$E2E_CACHE/k8s-$K8S_VERSION-$GO_VERSION_KEY
SIDECAR_BIN=$E2E_CACHE/sidecars-p$PROVISIONER_VERSION-s$SNAPSHOTTER_VERSION-r$RESIZER_VERSION-$GO_VERSION_KEY
HELM_BIN=$E2E_CACHE/helm-$HELM_VERSION-$GO_VERSION_KEY
# What the e2e reads from the sidecars' entry: the binaries and the snapshot and
# group snapshot CRDs (config/crd/<group>_<plural>.yaml of the client module).
SIDECAR_CMDS="csi-provisioner csi-resizer csi-snapshotter snapshot-controller"
SNAPSHOT_CRDS="snapshot.storage.k8s.io_volumesnapshotclasses snapshot.storage.k8s.io_volumesnapshotcontents
  snapshot.storage.k8s.io_volumesnapshots groupsnapshot.storage.k8s.io_volumegroupsnapshotclasses
  groupsnapshot.storage.k8s.io_volumegroupsnapshotcontents groupsnapshot.storage.k8s.io_volumegroupsnapshots"
# The repo's own Go tools, keyed by their sources.
E2E_TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)
e2e_tool_key() { cat "$E2E_TOOLS_DIR/$1"/*.go "$E2E_TOOLS_DIR/$1"/go.mod "$E2E_TOOLS_DIR/$1"/go.sum | sha256sum | cut -c1-12; }
CSIC=$E2E_CACHE/csic-$GO_VERSION_KEY-$(e2e_tool_key csic)
REGISTRAR=$E2E_CACHE/registrar-$GO_VERSION_KEY-$(e2e_tool_key registrar)
