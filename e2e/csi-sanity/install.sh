# SPDX-License-Identifier: Apache-2.0
# Shared by run.sh and dev.sh: find or install the pinned csi-sanity.
# Expects WORK (the run's work dir); sets SANITY to the binary's path.
VERSION=v5.4.0
TOOLS=${CSI_SANITY_TOOLS:-$(dirname "$WORK")/tools}
export PATH=$PATH:/usr/local/go/bin
export GOFLAGS="-mod=mod -modcacherw" GOTOOLCHAIN=local
[ -n "${HOME:-}" ] || export GOPATH=$TOOLS/gopath GOMODCACHE=$TOOLS/gopath/pkg/mod GOCACHE=$TOOLS/gocache

SANITY=""
for c in "${GOBIN:+$GOBIN/csi-sanity}" "$TOOLS/bin/csi-sanity"; do
  [ -n "$c" ] && [ -x "$c" ] && SANITY=$c && break
done
if [ -z "$SANITY" ]; then
  mkdir -p "$TOOLS/bin"
  echo "csi-sanity: installing $VERSION into $TOOLS/bin" >&2
  GOBIN=$TOOLS/bin go install github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@$VERSION
  SANITY=$TOOLS/bin/csi-sanity
fi
