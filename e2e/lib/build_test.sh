#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The e2e binary cache (e2e/lib/build.sh) from an empty cache, in seconds: the
# expensive `go` calls are answered by a stand-in (test/fake-go), everything
# else — directories, temporary names, validity checks, the two build streams —
# is the real script. Asserts that a cold build produces every artifact the e2e
# reads (the list is taken from the scripts that read them, not from build.sh),
# that a warm run builds nothing, that a broken entry (what the script before
# issue 23 left: crds/done and no CRDs) is rebuilt, and that a failing step
# fails the run loudly and leaves nothing that looks done.
# Usage: e2e/lib/build_test.sh   (exit 0 all passed; prints one line per case)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
e2e=$(cd "$here/.." && pwd)
T=$(mktemp -d /tmp/tessera-build-test.XXXXXX)
trap 'chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
failures=0 n=0
ok() { n=$((n + 1)); echo "ok   $n $*"; }
bad() { n=$((n + 1)); failures=$((failures + 1)); echo "FAIL $n $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

# build CASE [env...]: build.sh all on cache $T/CASE with the stand-in; output in $T/CASE.log.
build() {
  local c=$1; shift
  env E2E_CACHE="$T/$c" E2E_GO="$here/test/fake-go" FAKE_GO_ROOT="$T/$c-go" E2E_PODS=1 "$@" \
    "$here/build.sh" all >"$T/$c.log" 2>&1
}
# The paths as the e2e computes them for cache CASE.
paths() { # CASE -> sets K8S_BIN SIDECAR_BIN HELM_BIN CSIC REGISTRAR
  eval "$(env E2E_CACHE="$T/$1" E2E_GO="$here/test/fake-go" FAKE_GO_ROOT="$T/$1-go" E2E_PODS=1 \
    bash -c '. "$0/versions.sh"; for v in K8S_BIN SIDECAR_BIN HELM_BIN CSIC REGISTRAR; do printf "%s=%q\n" $v "${!v}"; done' "$here")"
}
# Every cached artifact the e2e scripts read, found in the scripts themselves:
# "$K8S_BIN/x", "$SIDE/x", "$HELM_BIN/x", the CRDs it waits for, csic, registrar.
read_by_e2e() {
  local f=("$e2e/run.sh") s
  for s in "$e2e"/lib/*.sh; do case $s in */build.sh|*/build_test.sh) ;; *) f+=("$s") ;; esac; done
  grep -ohE '\$\{?(K8S_BIN|SIDECAR_BIN|SIDE|HELM_BIN)\}?"?/[A-Za-z0-9._-]+' "${f[@]}" | grep -v '/crds$' |
    sed -E 's/[{}"]//g; s/^\$SIDE\//$SIDECAR_BIN\//' | sort -u |
    while read -r p; do eval "echo $p"; done
  # run.sh waits for these CRDs to be established.
  grep -ohE 'crd/[a-z]+\.(group)?snapshot\.storage\.k8s\.io' "$e2e/run.sh" | sort -u |
    sed -E "s|crd/([a-z]+)\.([a-z0-9.]+)|$SIDECAR_BIN/crds/\2_\1.yaml|"
  echo "$CSIC"; echo "$REGISTRAR"
}
all_present() { # CASE: every artifact valid (and there are some)
  local p missing=0
  [ "$(read_by_e2e | wc -l)" -ge 15 ] || { echo "  only $(read_by_e2e | wc -l) artifacts found in the scripts"; return 1; }
  while read -r p; do
    case $p in
      *.yaml) grep -q '^kind: CustomResourceDefinition' "$p" 2>/dev/null || { echo "  missing $p"; missing=1; } ;;
      *) [ -x "$p" ] && [ -s "$p" ] && "$p" | grep -q '^fake ' || { echo "  missing or not built: $p"; missing=1; } ;;
    esac
  done < <(read_by_e2e)
  return $missing
}
no_tmp_left() { ! grep -q . <<<"$(find "$T/$1" -name '*.tmp')"; }
builds_in() { grep -cE '^(build|install) ' "$T/$1-go/calls" 2>/dev/null || true; }

# 1. cold: an empty cache (no src/ either — the defect of issue 23)
paths cold
check "cold build succeeds" build cold
check "cold build: every artifact the e2e reads is there ($(read_by_e2e | wc -l) of them)" all_present cold
check "cold build: the list found in the scripts covers the binaries and the CRDs" \
  test "$(read_by_e2e | grep -c "$K8S_BIN/\|$SIDECAR_BIN/\|$HELM_BIN/")" -ge 13
check "cold build: no temporary files left" no_tmp_left cold
check "build.sh check passes on the result" env E2E_CACHE="$T/cold" E2E_GO="$here/test/fake-go" \
  FAKE_GO_ROOT="$T/cold-go" E2E_PODS=1 "$here/build.sh" check
before=$(builds_in cold)
check "warm run succeeds" build cold
check "warm run builds nothing ($before builds cold, $(( $(builds_in cold) - before )) warm)" \
  test "$(builds_in cold)" = "$before"

# 2. broken entries are rebuilt, not trusted: what the old script left, and a truncated binary
cp -a "$T/cold" "$T/broken" && chmod -R u+w "$T/broken"
paths broken
rm -rf "$SIDECAR_BIN/crds" && mkdir -p "$SIDECAR_BIN/crds" && touch "$SIDECAR_BIN/crds/done"
: >"$K8S_BIN/kube-controller-manager"
: >"$HELM_BIN/helm"
check "build.sh check refuses the broken cache" bash -c '! env E2E_CACHE="$0/broken" E2E_GO="$1/test/fake-go" \
  FAKE_GO_ROOT="$0/broken-go" E2E_PODS=1 "$1/build.sh" check 2>/dev/null' "$T" "$here"
check "a run over the broken cache succeeds" build broken
check "... and every artifact is valid again" all_present broken
check "... rebuilding exactly the broken ones (kube-controller-manager, helm)" \
  test "$(grep -cE '^(build|install) ' "$T/broken-go/calls")" = 2

# 3. a failing step fails the run, loudly, and leaves nothing that looks done
fail_case() { # name FAKE_GO_FAIL artifact-that-must-be-absent... (STREAMS in env)
  local c=$1 word=$2; shift 2
  paths "$c"
  if build "$c" FAKE_GO_FAIL="$word" E2E_BUILD_STREAMS="${STREAMS:-2}"; then
    bad "$c: build.sh all exits 0 although $word failed"; return
  fi
  ok "$c: build.sh all fails when $word fails"
  check "$c: the failure is reported" grep -q 'FAILED' "$T/$c.log"
  local a absent=1
  for a in "$@"; do a=$(eval "echo $a"); [ -e "$a" ] && { echo "  left behind: $a"; absent=0; }; done
  check "$c: nothing of the failed step left (${*##*/})" test "$absent" = 1
  check "$c: no temporary files left" no_tmp_left "$c"
  check "$c: build.sh check fails" bash -c '! env E2E_CACHE="$0" E2E_GO="$1/test/fake-go" FAKE_GO_ROOT="$0-go" \
    E2E_PODS=1 "$1/build.sh" check 2>/dev/null' "$T/$c" "$here"
  check "$c: the next run without the fault completes the cache" build "$c"
  check "$c: ... with every artifact valid" all_present "$c"
}
fail_case sidecar csi-resizer '$SIDECAR_BIN/csi-resizer'
fail_case crds external-snapshotter/client/v8 '$SIDECAR_BIN/crds' '$SIDECAR_BIN/crds/done'
fail_case k8s kube-controller-manager '$K8S_BIN/kube-controller-manager'
STREAMS=1 fail_case k8s-1stream kubelet '$K8S_BIN/kubelet'
fail_case helm helm.sh '$HELM_BIN/helm'
fail_case tools tools/registrar '$REGISTRAR'

echo "build-cache: $((n - failures)) passed, $failures failed"
[ "$failures" = 0 ]
