#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs a test program against a real kube-apiserver + etcd on free loopback
# ports: a fresh PKI, an admin kubeconfig, Tessera's CRDs installed, and two
# helper scripts the tests call to break things. Stops everything afterwards.
#
# Usage: e2e/kube/run.sh PROGRAM [ARGS...]
# The program gets in its environment:
#   TS_KUBE_KUBECONFIG  the admin kubeconfig (client certificate, system:masters)
#   TS_KUBE_CTL         WORK/ctl.sh: `ctl.sh apiserver-stop|apiserver-start|compact`
#                       (start waits until /readyz; compact compacts etcd at its
#                       current revision)
#   TS_KUBE_WORK        the work dir
#   TS_KUBE_KUBECTL     the cached kubectl
# When the cached kube-apiserver/kubectl or etcd are missing it prints
# "DID NOT RUN: <why>" and exits 77 (ctest SKIP_RETURN_CODE). Needs no root.
# Environment: E2E_CACHE (lib/versions.sh), TS_KUBE_KEEP=1 keeps the work dir.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/../lib/versions.sh"
. "$here/../lib/controlplane.sh"
skip() { echo "e2e/kube DID NOT RUN: $*"; exit 77; }
[ $# -ge 1 ] || { echo "usage: $0 PROGRAM [ARGS...]" >&2; exit 2; }
KAPI=$K8S_BIN/kube-apiserver KUBECTL=$K8S_BIN/kubectl
for b in "$KAPI" "$KUBECTL"; do
  [ -x "$b" ] || skip "no $b in the binary cache (e2e/lib/build.sh all builds it; a cold build takes 15-40 min)"
done
for t in etcd openssl curl ss; do
  command -v "$t" >/dev/null || skip "$t not installed (scripts/deps.sh)"
done

WORK=$(mktemp -d /tmp/tessera-kube.XXXXXX)
mkdir -p "$WORK/logs" "$WORK/etcd"
B=$(cp_free_port_base 3) || { echo "no free ports" >&2; exit 2; }
ETCD_PORT=$B ETCD_PEER=$((B + 1)) API_PORT=$((B + 2))
log() { echo "[e2e/kube] $*" >&2; }

cleanup() {
  local rc=$?
  for f in apiserver etcd; do
    [ -f "$WORK/$f.pid" ] || continue
    local pid; pid=$(cat "$WORK/$f.pid")
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    log "failed (exit $rc); logs in $WORK/logs"; tail -20 "$WORK/logs/kube-apiserver.log" >&2
  elif [ "${TS_KUBE_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp_pki "$WORK/pki" "$WORK/logs/openssl.log" &&
  cp_cert "$WORK/pki" "$WORK/logs/openssl.log" admin "/O=system:masters/CN=tessera-kube-test" ||
  { log "PKI failed"; exit 2; }
KCFG=$WORK/admin.kubeconfig
cp_kubeconfig "$KCFG" "https://127.0.0.1:$API_PORT" "$WORK/pki/ca.crt" admin "$WORK/pki/admin.crt" "$WORK/pki/admin.key"
cp_etcd_cmd tessera-kube "$WORK/etcd" "$ETCD_PORT" "$ETCD_PEER"
cp_apiserver_cmd "$KAPI" "$WORK/pki" "$ETCD_PORT" "$API_PORT" RBAC

# ctl.sh: what the tests use to stop/start the API server and compact etcd.
{
  echo '#!/usr/bin/env bash'
  echo 'set -uo pipefail'
  echo "W='$WORK'"
  printf 'APISERVER=('; printf '%q ' "${CP_APISERVER_CMD[@]}"; echo ')'
  printf 'ETCD=('; printf '%q ' "${CP_ETCD_CMD[@]}"; echo ')'
  echo "KUBECTL='$KUBECTL' KCFG='$KCFG' ETCD_URL='http://127.0.0.1:$ETCD_PORT'"
  cat <<'CTL'
ready() { for _ in $(seq 240); do "$KUBECTL" --kubeconfig "$KCFG" get --raw /readyz >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }
case $1 in
  etcd-start)
    "${ETCD[@]}" >>"$W/logs/etcd.log" 2>&1 & echo $! >"$W/etcd.pid"
    for _ in $(seq 60); do curl -sf "$ETCD_URL/health" >/dev/null && exit 0; sleep 0.5; done; exit 1 ;;
  apiserver-start)
    "${APISERVER[@]}" >>"$W/logs/kube-apiserver.log" 2>&1 & echo $! >"$W/apiserver.pid"
    ready ;;
  apiserver-stop)
    pid=$(cat "$W/apiserver.pid"); kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -KILL "$pid"; sleep 0.2 ;;
  compact)
    rev=$(curl -sf -X POST "$ETCD_URL/v3/kv/range" -d '{"key":"AA=="}' | sed -n 's/.*"revision":"\([0-9]*\)".*/\1/p')
    [ -n "$rev" ] || exit 1
    curl -sf -X POST "$ETCD_URL/v3/kv/compaction" -d "{\"revision\":\"$rev\",\"physical\":true}" >/dev/null ;;
  *) echo "usage: ctl.sh etcd-start|apiserver-start|apiserver-stop|compact" >&2; exit 2 ;;
esac
CTL
} >"$WORK/ctl.sh"
chmod +x "$WORK/ctl.sh"

t0=$SECONDS
"$WORK/ctl.sh" etcd-start || { log "etcd did not start ($WORK/logs/etcd.log)"; exit 2; }
"$WORK/ctl.sh" apiserver-start || { log "kube-apiserver not ready ($WORK/logs/kube-apiserver.log)"; exit 2; }
"$KUBECTL" --kubeconfig "$KCFG" apply -f "$repo/charts/tessera/crds/" >"$WORK/logs/crds.log" 2>&1 &&
  "$KUBECTL" --kubeconfig "$KCFG" wait --for condition=established --timeout=60s \
    crd/tesseranodes.tessera.io crd/tesseragroups.tessera.io crd/tesserarequests.tessera.io \
    crd/tesseravolumes.tessera.io crd/tesseravolumegroupsnapshots.tessera.io crd/tesseratasks.tessera.io >>"$WORK/logs/crds.log" 2>&1 ||
  { log "installing the CRDs failed:"; cat "$WORK/logs/crds.log" >&2; exit 2; }
log "etcd + kube-apiserver on 127.0.0.1:$API_PORT ready, CRDs installed in $((SECONDS - t0))s"

export TS_KUBE_KUBECONFIG=$KCFG TS_KUBE_CTL=$WORK/ctl.sh TS_KUBE_WORK=$WORK TS_KUBE_KUBECTL=$KUBECTL
"$@"
