#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds (once) and caches the outside binaries the e2e harness runs:
#   kube-apiserver, kube-controller-manager, kubectl (+ kubelet, kube-scheduler
#     with E2E_PODS=1)                                  from k8s.io/kubernetes
#   csi-provisioner, csi-resizer, csi-snapshotter, snapshot-controller, and the
#     VolumeSnapshot CRDs                               from kubernetes-csi
#   helm                                                from helm.sh/helm/v3
#   csic, registrar                                     from e2e/tools (this repo)
#
# How the outside modules build. k8s.io/kubernetes cannot be `go install`ed: its go.mod
# replaces every staging module k8s.io/<x> with ./staging/src/k8s.io/<x>, and module zips
# leave staging out. So we build from a wrapper module whose go.mod requires
# k8s.io/kubernetes at the pinned version and replaces each staging module with its
# published release v0.<minor>.<patch>; the replace list is read from the pinned
# k8s.io/kubernetes go.mod itself, so it always matches. The kubernetes-csi sidecars
# carry replace directives too, so each is built inside a writable copy of its own
# module (its go.mod then is the main module's, replaces apply).
#
# How the cache stays honest (issue 23). A cache entry is valid only if its contents
# are: `check` (and every step, before it skips work) inspects the artifacts
# themselves — executable non-empty files, CRD manifests that are CRDs — and never a
# marker file. Every step writes to a temporary name, checks each command's status
# explicitly (errexit does not apply inside a function called from a condition, which
# is how these run) and moves the result into place only when it is complete, so a
# failed step leaves nothing behind that a later run could mistake for done; a broken
# entry left by an older version of this script is rebuilt.
#
# Usage: e2e/lib/build.sh [all|k8s|sidecars|helm|tools|check]   (default all)
#   all        everything the e2e reads; then `check`
#   check      lists every artifact the e2e reads that is missing or invalid; exit 1 if any
# Environment: E2E_CACHE, E2E_PODS (see versions.sh), E2E_BUILD_P (go build -p, default 1),
#   E2E_BUILD_STREAMS (1 or 2, default 2: Kubernetes builds beside the rest),
#   E2E_GO (the go command; the cache test gives a stand-in).
# Prints timings; exit status 0 only when every requested artifact is valid.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.sh"

# Be gentle with a shared 2-core machine.
export GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false"
export CGO_ENABLED=0
BUILD_P=${E2E_BUILD_P:-1}
STREAMS=${E2E_BUILD_STREAMS:-2}
NICE="nice -n 10"
GO=$E2E_GO
SRC=$E2E_CACHE/src

log() { printf '[e2e-build] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; return 1; }

# ---- validity of cache entries -------------------------------------------------------
bin_ok() { [ -f "$1" ] && [ -x "$1" ] && [ -s "$1" ]; }
crd_ok() { [ -s "$1" ] && grep -q '^kind: CustomResourceDefinition' "$1"; }
crds_ok() { # dir: every CRD the e2e applies is there and is a CRD
  local n
  for n in $SNAPSHOT_CRDS; do crd_ok "$1/$n.yaml" || return 1; done
}

# Every artifact the e2e reads, one path a line (CRDs as their files).
artifacts() {
  local c
  for c in $K8S_CMDS; do echo "$K8S_BIN/$c"; done
  for c in $SIDECAR_CMDS; do echo "$SIDECAR_BIN/$c"; done
  for c in $SNAPSHOT_CRDS; do echo "$SIDECAR_BIN/crds/$c.yaml"; done
  echo "$HELM_BIN/helm"
  echo "$CSIC"
  echo "$REGISTRAR"
}

check() {
  local a bad=0
  while read -r a; do
    case $a in
      *.yaml) crd_ok "$a" || { log "invalid or missing: $a"; bad=1; } ;;
      *) bin_ok "$a" || { log "invalid or missing: $a"; bad=1; } ;;
    esac
  done < <(artifacts)
  [ "$bad" = 0 ] || return 1
  log "cache valid: $(artifacts | wc -l) artifacts in $E2E_CACHE"
}

# ---- helpers ----------------------------------------------------------------------
# modinfo FIELD module@version: a field of `go mod download -json` (Dir, GoMod). The
# download runs in $SRC (no go.mod there: module-aware mode outside a module).
modinfo() {
  local field=$1 mod=$2 json v
  mkdir -p "$SRC" || return 1
  json=$(cd "$SRC" && GOFLAGS=-mod=mod $GO mod download -json "$mod") || { fail "go mod download $mod"; return 1; }
  v=$(printf '%s' "$json" | jq -r ".$field // empty") || { fail "go mod download $mod: unreadable answer"; return 1; }
  [ -n "$v" ] && [ -e "$v" ] || { fail "go mod download $mod: no $field"; return 1; }
  printf '%s\n' "$v"
}

# gobuild DIR OUT ARGS...: `go build ARGS -o OUT.tmp` in DIR, then OUT.tmp -> OUT.
gobuild() {
  local dir=$1 out=$2; shift 2
  rm -f "$out.tmp"
  if ! (cd "$dir" && GOMAXPROCS=2 $NICE $GO build -p "$BUILD_P" -trimpath -o "$out.tmp" "$@"); then
    rm -f "$out.tmp"; fail "go build $* (in $dir)"; return 1
  fi
  bin_ok "$out.tmp" || { rm -f "$out.tmp"; fail "go build $*: no binary"; return 1; }
  mv -f "$out.tmp" "$out" || { rm -f "$out.tmp"; return 1; }
}

# ---- Kubernetes ---------------------------------------------------------------------------
build_k8s() {
  local out=$K8S_BIN c missing=""
  for c in $K8S_CMDS; do bin_ok "$out/$c" || missing="$missing $c"; done
  if [ -z "$missing" ]; then log "k8s $K8S_VERSION: cached in $out"; return 0; fi
  local t0=$SECONDS minor patch w kmod gover
  minor=$(echo "$K8S_VERSION" | cut -d. -f2); patch=$(echo "$K8S_VERSION" | cut -d. -f3)
  w=$SRC/k8s-wrapper-$K8S_VERSION
  mkdir -p "$w" "$out" || return 1
  kmod=$(modinfo GoMod "k8s.io/kubernetes@$K8S_VERSION") || return 1
  gover=$($GO env GOVERSION) || { fail "go env GOVERSION"; return 1; }
  local staging
  staging=$(sed -n '/^replace (/,/^)/p' "$kmod" | grep -o 'k8s.io/[a-z0-9-]* => ./staging' | cut -d' ' -f1) || true
  [ -n "$staging" ] || { fail "no staging replaces in $kmod"; return 1; }
  {
    echo "module tessera.local/e2e/k8s"
    echo
    echo "go $(echo "$gover" | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/').0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    for c in $staging; do echo "replace $c => $c v0.$minor.$patch"; done
  } > "$w/go.mod.tmp" || return 1
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for c in $K8S_CMDS; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  } > "$w/tools.go.tmp" || return 1
  mv -f "$w/go.mod.tmp" "$w/go.mod" && mv -f "$w/tools.go.tmp" "$w/tools.go" || return 1
  log "k8s $K8S_VERSION: resolving modules in $w"
  # tidy may complain about test-only imports of the staging modules (-e); the
  # download below and the builds are what must succeed.
  (cd "$w" && $GO mod tidy -e >/dev/null 2>&1) || log "k8s: go mod tidy -e reported errors (continuing)"
  (cd "$w" && $GO mod download) || { fail "k8s: go mod download in $w"; return 1; }
  local ld="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for c in $missing; do
    local t1=$SECONDS
    log "k8s: building $c (go build -p $BUILD_P)"
    gobuild "$w" "$out/$c" -ldflags "$ld" "k8s.io/kubernetes/cmd/$c" || { fail "k8s: $c"; return 1; }
    log "k8s: $c built in $((SECONDS - t1))s"
  done
  log "k8s $K8S_VERSION: built in $((SECONDS - t0))s"
}

# ---- CSI sidecars and the snapshot CRDs ---------------------------------------------------------
# A writable copy of a sidecar's module, valid when its go.mod is there and, if
# it replaces its client module with ./client, that one is there too.
srccopy_ok() {
  [ -f "$1/go.mod" ] || return 1
  if grep -q '=> ./client' "$1/go.mod"; then [ -f "$1/client/go.mod" ] || return 1; fi
}

build_sidecar() { # module version cmd-dir binary-name
  local mod=$1 ver=$2 cmd=$3 name=$4 out=$SIDECAR_BIN
  bin_ok "$out/$name" && { log "$name: cached"; return 0; }
  mkdir -p "$out" "$SRC" || return 1
  local src dst=$SRC/$(basename "$(dirname "$mod")")-$(basename "$mod")-$ver
  if ! srccopy_ok "$dst"; then
    rm -rf "$dst" "$dst.tmp" || return 1
    src=$(modinfo Dir "$mod@$ver") || return 1
    cp -r "$src" "$dst.tmp" && chmod -R u+w "$dst.tmp" || { rm -rf "$dst.tmp"; fail "copying $src"; return 1; }
    # external-snapshotter replaces its client module with ./client, which the
    # module zip leaves out (a nested module): put the same tag's client there.
    if grep -q '=> ./client' "$dst.tmp/go.mod"; then
      local csrc
      csrc=$(modinfo Dir "$mod/client@$ver" 2>/dev/null) ||
        csrc=$(modinfo Dir "$(dirname "$mod")/client/$(basename "$mod")@$ver") ||
        { rm -rf "$dst.tmp"; return 1; }
      cp -r "$csrc" "$dst.tmp/client" && chmod -R u+w "$dst.tmp/client" ||
        { rm -rf "$dst.tmp"; fail "copying $csrc"; return 1; }
    fi
    srccopy_ok "$dst.tmp" || { rm -rf "$dst.tmp"; fail "incomplete copy of $mod@$ver"; return 1; }
    mv "$dst.tmp" "$dst" || return 1
  fi
  local t1=$SECONDS flags=""
  [ -d "$dst/vendor" ] && flags="-mod=vendor"
  log "$name: building from $mod@$ver"
  GOFLAGS="-buildvcs=false $flags" gobuild "$dst" "$out/$name" -ldflags "-s -w -X main.version=$ver" "./$cmd" ||
    { fail "$name"; return 1; }
  log "$name: built in $((SECONDS - t1))s"
}

# The VolumeSnapshot (and VolumeGroupSnapshot) CRDs ship in the client module (config/crd).
build_crds() {
  local dir=$SIDECAR_BIN/crds
  crds_ok "$dir" && { log "snapshot CRDs: cached"; return 0; }
  local cdir f
  cdir=$(modinfo Dir "github.com/kubernetes-csi/external-snapshotter/client/v8@$SNAPSHOTTER_VERSION") || return 1
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp" || return 1
  for f in "$cdir"/config/crd/*snapshot.storage.k8s.io_*.yaml; do
    [ -f "$f" ] || continue
    cp "$f" "$dir.tmp/" || { rm -rf "$dir.tmp"; fail "copying $f"; return 1; }
  done
  crds_ok "$dir.tmp" || { rm -rf "$dir.tmp"; fail "snapshot CRDs ($SNAPSHOT_CRDS) not in $cdir/config/crd"; return 1; }
  # Replace whatever was there (an older script left `crds/done` and no CRDs).
  rm -rf "$dir" && mv "$dir.tmp" "$dir" || return 1
  log "snapshot CRDs: $(ls "$dir" | wc -l) manifests"
}

build_sidecars() {
  local t0=$SECONDS
  build_crds || return 1
  build_sidecar github.com/kubernetes-csi/external-provisioner/v6 "$PROVISIONER_VERSION" cmd/csi-provisioner csi-provisioner || return 1
  build_sidecar github.com/kubernetes-csi/external-resizer/v2 "$RESIZER_VERSION" cmd/csi-resizer csi-resizer || return 1
  build_sidecar github.com/kubernetes-csi/external-snapshotter/v8 "$SNAPSHOTTER_VERSION" cmd/csi-snapshotter csi-snapshotter || return 1
  build_sidecar github.com/kubernetes-csi/external-snapshotter/v8 "$SNAPSHOTTER_VERSION" cmd/snapshot-controller snapshot-controller || return 1
  log "sidecars: done in $((SECONDS - t0))s"
}

# ---- helm -----------------------------------------------------------------------------------
build_helm() {
  bin_ok "$HELM_BIN/helm" && { log "helm: cached"; return 0; }
  local t1=$SECONDS tmp=$HELM_BIN.tmp
  rm -rf "$tmp" && mkdir -p "$tmp" || return 1
  if ! GOBIN=$tmp GOFLAGS=-buildvcs=false GOMAXPROCS=2 $NICE $GO install -p "$BUILD_P" -trimpath \
         "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"; then
    rm -rf "$tmp"; fail "helm: go install"; return 1
  fi
  bin_ok "$tmp/helm" || { rm -rf "$tmp"; fail "helm: no binary"; return 1; }
  mkdir -p "$HELM_BIN" && mv -f "$tmp/helm" "$HELM_BIN/helm" && rm -rf "$tmp" || return 1
  log "helm: built in $((SECONDS - t1))s"
}

# ---- the repo's own Go tools (e2e/tools) -----------------------------------------------------------
build_tool() { # name out
  bin_ok "$2" && return 0
  mkdir -p "$(dirname "$2")" || return 1
  GOFLAGS=-mod=mod gobuild "$E2E_TOOLS_DIR/$1" "$2" . || { fail "e2e/tools/$1"; return 1; }
  log "e2e/tools/$1: built"
}
build_tools() {
  build_tool csic "$CSIC" && build_tool registrar "$REGISTRAR"
}

# ---- everything --------------------------------------------------------------------------------
build_all() {
  local rc=0
  if [ "$STREAMS" -ge 2 ]; then
    # Two streams: Kubernetes (the long one) beside helm, the sidecars and the tools.
    build_k8s & local kpid=$!
    { build_helm && build_sidecars && build_tools; } || rc=1
    wait "$kpid" || rc=1
  else
    { build_helm && build_sidecars && build_tools && build_k8s; } || rc=1
  fi
  [ "$rc" = 0 ] || { fail "e2e binaries (see above)"; return 1; }
  check
}

what=${1:-all}
t0=$SECONDS
case $what in
  k8s) build_k8s ;;
  sidecars) build_sidecars ;;
  helm) build_helm ;;
  tools) build_tools ;;
  check) check ;;
  all) build_all ;;
  *) echo "usage: $0 [all|k8s|sidecars|helm|tools|check]" >&2; exit 2 ;;
esac || { log "$what: FAILED after $((SECONDS - t0))s"; exit 1; }
log "$what: ok in $((SECONDS - t0))s"
