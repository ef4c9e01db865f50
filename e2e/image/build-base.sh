#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the Debian base image the Dockerfile starts FROM, without pulling:
# debootstrap a minbase Debian into a temp dir, tar it, `docker import` it under
# $BASE_IMAGE (the tag in the Dockerfile's `ARG BASE_IMAGE`). Skips everything when
# the tag already exists (pass --force to rebuild). Needs root, debootstrap and
# the Debian mirror ($DEBIAN_MIRROR).
# Usage: e2e/image/build-base.sh [--force]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/versions.sh"

if [ "${1:-}" != "--force" ] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "base: $BASE_IMAGE exists, not rebuilt" >&2
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  echo "base: installing debootstrap" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
t0=$SECONDS
root=$(mktemp -d /tmp/tessera-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base: debootstrap --variant=minbase $DEBIAN_SUITE from $DEBIAN_MIRROR" >&2
debootstrap --variant=minbase "$DEBIAN_SUITE" "$root/rootfs" "$DEBIAN_MIRROR" >"$root/debootstrap.log" 2>&1 ||
  { tail -30 "$root/debootstrap.log" >&2; exit 1; }
# Same apt sources a stock Debian image has; drop the apt lists and caches.
cat > "$root/rootfs/etc/apt/sources.list" <<SRC
deb $DEBIAN_MIRROR $DEBIAN_SUITE main
deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security $DEBIAN_SUITE-security main
SRC
rm -rf "$root/rootfs/var/lib/apt/lists/"* "$root/rootfs/var/cache/apt/"*.bin "$root/rootfs/var/log/"*.log
tar -C "$root/rootfs" --numeric-owner -c . |
  docker import --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$BASE_IMAGE" >/dev/null
echo "base: $BASE_IMAGE imported in $((SECONDS - t0))s" >&2
