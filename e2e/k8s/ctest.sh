#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ctest entry for the Kubernetes e2e: runs e2e/run.sh with the given tessera
# binary when the binaries are cached (warm) or TS_E2E=1; otherwise says why
# it did not run and exits 77 (ctest SKIP_RETURN_CODE).
# Warm means the control plane, the sidecars, helm, and (unless E2E_PODS=0)
# kubelet and kube-scheduler for the real-Pod tests, which then run by default
# (containerd, runc and the CNI plugins are Debian packages e2e/lib/node.sh
# installs when missing). TS_E2E=1 builds whatever is missing, kubelet included.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/versions.sh"
skip() { echo "e2e/k8s DID NOT RUN: $*"; echo "e2e: 0 passed, 0 failed, 1 skipped"; exit 77; }
pods=1
case ${E2E_PODS:-auto} in 0|off|no) pods=0 ;; esac
case ${TS_E2E:-auto} in
  0|off|no) skip "TS_E2E=${TS_E2E}" ;;
  1|on|yes) [ "$pods" = 1 ] && export E2E_PODS=${E2E_PODS:-1} ;;
  *)
    # The expensive builds; the cheap parts (CRDs, e2e/tools) are checked and,
    # if broken, rebuilt by e2e/lib/build.sh inside the run.
    need=("$HELM_BIN"/helm)
    for b in kube-apiserver kube-controller-manager kubectl; do need+=("$K8S_BIN/$b"); done
    for b in $SIDECAR_CMDS; do need+=("$SIDECAR_BIN/$b"); done
    [ "$pods" = 1 ] && need+=("$K8S_BIN"/kubelet "$K8S_BIN"/kube-scheduler)
    for b in "${need[@]}"; do
      [ -x "$b" ] || skip "binary cache is cold ($b missing; a cold build took ~15 min on a fresh 2-core machine of this kind, 40 min on a loaded one). Run E2E_PODS=1 e2e/run.sh once, or set TS_E2E=1 (E2E_PODS=0: without the real-Pod tests)."
    done ;;
esac
[ "$(id -u)" -eq 0 ] || skip "needs root (loop devices, mounts)"
command -v etcd >/dev/null || skip "etcd not installed (scripts/deps.sh installs etcd-server)"
exec "$here/../run.sh" --tessera "$1"
