#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the Tessera image from the repo's Dockerfile on a machine that cannot
# pull: the base image comes from build-base.sh (cached by tag), then
# `docker build` runs on the same Dockerfile a user builds elsewhere, and the
# result is checked with `docker run <image> tessera --version`.
# Usage: e2e/image/build.sh [image tag]   (default tessera:dev)
# --network host: the build stage fetches Debian packages and the CSI spec
# module; host networking avoids depending on the bridge's NAT here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/../lib/versions.sh"
TAG=${1:-tessera:dev}
"$here/build-base.sh"
# The build stage trusts the host's extra CAs (a TLS-intercepting proxy here).
extra=()
for c in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$c" ] || continue
  cp "$c" "$repo/e2e/image/extra-ca/host-$(basename "$c")"; extra+=("$repo/e2e/image/extra-ca/host-$(basename "$c")")
done
trap 'rm -f "${extra[@]}"' EXIT
t0=$SECONDS
docker build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$TAG" "$repo" >&2
echo "image: $TAG built in $((SECONDS - t0))s" >&2
docker run --rm "$TAG" tessera --version
docker image ls "$TAG" --format 'image: {{.Repository}}:{{.Tag}} {{.Size}}' >&2
