#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds (once) and caches the outside binaries the e2e harness runs:
#   kube-apiserver, kube-controller-manager, kubectl  from k8s.io/kubernetes
#   csi-provisioner, csi-snapshotter, snapshot-controller, csi-resizer  from kubernetes-csi
#   helm  from helm.sh/helm/v3
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every staging module
# k8s.io/<x> with ./staging/src/k8s.io/<x>, and module zips leave staging out. So we build
# from a wrapper module whose go.mod requires k8s.io/kubernetes at the pinned version and
# replaces each staging module with its published release v0.<minor>.<patch>. The replace
# list is read from the pinned k8s.io/kubernetes go.mod itself, so it always matches.
# The kubernetes-csi sidecars carry replace directives too, so each is built inside a
# writable copy of its own module (its go.mod then is the main module's, replaces apply).
# Usage: e2e/lib/build.sh [k8s|sidecars|helm|all]   (default all); prints timings.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.sh"

# Be gentle with a shared 2-core machine.
export GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false"
export CGO_ENABLED=0
BUILD_P=${E2E_BUILD_P:-1}
NICE="nice -n 10"

log() { printf '[e2e-build] %s\n' "$*" >&2; }

moddir() { # module@version -> its extracted dir in the module cache
  go mod download -json "$1" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p'
}
modfile() {
  go mod download -json "$1" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p'
}

build_k8s() {
  local out=$K8S_BIN
  local c missing=0
  for c in $K8S_CMDS; do [ -x "$out/$c" ] || missing=1; done
  if [ "$missing" = 0 ]; then
    log "k8s $K8S_VERSION: cached in $out"; return 0
  fi
  local t0=$SECONDS minor patch w
  minor=$(echo "$K8S_VERSION" | cut -d. -f2); patch=$(echo "$K8S_VERSION" | cut -d. -f3)
  w=$E2E_CACHE/src/k8s-wrapper-$K8S_VERSION
  mkdir -p "$w" "$out"
  local kmod; kmod=$(cd "$w" && GOFLAGS=-mod=mod modfile "k8s.io/kubernetes@$K8S_VERSION")
  {
    echo "module tessera.local/e2e/k8s"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/').0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    sed -n '/^replace (/,/^)/p' "$kmod" | grep -o 'k8s.io/[a-z0-9-]* => ./staging' |
      while read -r m _ _; do echo "replace $m => $m v0.$minor.$patch"; done
  } > "$w/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for c in $K8S_CMDS; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  } > "$w/tools.go"
  log "k8s $K8S_VERSION: resolving modules in $w"
  (cd "$w" && go mod tidy -e >/dev/null 2>&1 || true; cd "$w" && go mod download)
  local ld="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for c in $K8S_CMDS; do
    [ -x "$out/$c" ] && continue
    local t1=$SECONDS
    log "k8s: building $c (go build -p $BUILD_P)"
    (cd "$w" && GOMAXPROCS=2 $NICE go build -p "$BUILD_P" -trimpath -ldflags "$ld" \
       -o "$out/$c.tmp" "k8s.io/kubernetes/cmd/$c") || { log "k8s: $c build FAILED"; return 1; }
    mv "$out/$c.tmp" "$out/$c"
    log "k8s: $c built in $((SECONDS - t1))s"
  done
  log "k8s $K8S_VERSION: all built in $((SECONDS - t0))s"
}

build_sidecar() { # module version cmd-dir binary-name
  local mod=$1 ver=$2 cmd=$3 name=$4 out=$SIDECAR_BIN
  [ -x "$out/$name" ] && { log "$name: cached"; return 0; }
  mkdir -p "$out" "$E2E_CACHE/src"
  local src dst=$E2E_CACHE/src/$(basename "$(dirname "$mod")")-$(basename "$mod")-$ver
  src=$(cd "$E2E_CACHE/src" && GOFLAGS=-mod=mod moddir "$mod@$ver")
  if [ ! -d "$dst" ]; then
    rm -rf "$dst.tmp"
    cp -r "$src" "$dst.tmp" && chmod -R u+w "$dst.tmp" || return 1
    # external-snapshotter replaces its client module with ./client, which the
    # module zip leaves out (a nested module): put the same tag's client there.
    if grep -q '=> ./client' "$dst.tmp/go.mod"; then
      local csrc; csrc=$(cd "$E2E_CACHE/src" && GOFLAGS=-mod=mod moddir "$mod/client@$ver" 2>/dev/null || true)
      [ -z "$csrc" ] && csrc=$(cd "$E2E_CACHE/src" && GOFLAGS=-mod=mod moddir "$(dirname "$mod")/client/$(basename "$mod")@$ver")
      cp -r "$csrc" "$dst.tmp/client" && chmod -R u+w "$dst.tmp/client" || return 1
    fi
    mv "$dst.tmp" "$dst"
  fi
  local t1=$SECONDS flags=""
  [ -d "$dst/vendor" ] && flags="-mod=vendor"
  log "$name: building from $mod@$ver"
  (cd "$dst" && GOFLAGS="-buildvcs=false $flags" GOMAXPROCS=2 $NICE go build -p "$BUILD_P" -trimpath \
     -ldflags "-s -w -X main.version=$ver" -o "$out/$name.tmp" "./$cmd") || { log "$name: build FAILED"; return 1; }
  mv "$out/$name.tmp" "$out/$name"
  log "$name: built in $((SECONDS - t1))s"
}

build_sidecars() {
  local t0=$SECONDS
  # The VolumeSnapshot (and VolumeGroupSnapshot) CRDs ship in the client module (config/crd).
  if [ ! -f "$SIDECAR_BIN/crds/done" ]; then
    local cdir; cdir=$(cd "$E2E_CACHE/src" && GOFLAGS=-mod=mod moddir "github.com/kubernetes-csi/external-snapshotter/client/v8@$SNAPSHOTTER_VERSION")
    mkdir -p "$SIDECAR_BIN/crds"
    cp "$cdir"/config/crd/*snapshot.storage.k8s.io_*.yaml "$SIDECAR_BIN/crds/"
    touch "$SIDECAR_BIN/crds/done"
  fi
  build_sidecar github.com/kubernetes-csi/external-provisioner/v6 "$PROVISIONER_VERSION" cmd/csi-provisioner csi-provisioner || return 1
  build_sidecar github.com/kubernetes-csi/external-resizer/v2 "$RESIZER_VERSION" cmd/csi-resizer csi-resizer || return 1
  build_sidecar github.com/kubernetes-csi/external-snapshotter/v8 "$SNAPSHOTTER_VERSION" cmd/csi-snapshotter csi-snapshotter || return 1
  build_sidecar github.com/kubernetes-csi/external-snapshotter/v8 "$SNAPSHOTTER_VERSION" cmd/snapshot-controller snapshot-controller || return 1
  log "sidecars: done in $((SECONDS - t0))s"
}

build_helm() {
  [ -x "$HELM_BIN/helm" ] && { log "helm: cached"; return 0; }
  local t1=$SECONDS
  mkdir -p "$HELM_BIN"
  GOBIN=$HELM_BIN GOFLAGS=-buildvcs=false GOMAXPROCS=2 $NICE go install -p "$BUILD_P" -trimpath "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ||
    { log "helm: build FAILED"; return 1; }
  log "helm: built in $((SECONDS - t1))s"
}

what=${1:-all}
case $what in
  k8s) build_k8s ;;
  sidecars) build_sidecars ;;
  helm) build_helm ;;
  all) build_helm && build_sidecars && build_k8s ;;
  *) echo "usage: $0 [k8s|sidecars|helm|all]" >&2; exit 2 ;;
esac
