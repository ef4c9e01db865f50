# SPDX-License-Identifier: Apache-2.0
# Tessera container image: one image for the controller and the node plugin.
#
#   docker build -t tessera:dev .
#   docker run --rm tessera:dev tessera --version
#
# BASE_IMAGE is any Debian bookworm image. On a machine that cannot pull,
# e2e/image/build-base.sh makes one with debootstrap + `docker import` under
# this default tag (see docs/e2e.md).
ARG BASE_IMAGE=tessera/debian-base:bookworm

# ---- build stage: toolchain + every package scripts/deps.sh lists ----------
FROM ${BASE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
COPY scripts/deps.sh /src/scripts/deps.sh
# Extra CAs for a TLS-intercepting proxy (normally none; see the README there).
COPY e2e/image/extra-ca/ /usr/local/share/ca-certificates/extra/
# deps.sh installs the build/test packages; golang-go is only used by the CSI
# code generation to fetch the pinned CSI spec module (go mod download).
RUN apt-get update -qq \
 && bash /src/scripts/deps.sh \
 && apt-get install -y -qq --no-install-recommends golang-go ca-certificates git >/dev/null \
 && update-ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build /build --target tessera \
 && install -D -m 0755 /build/bin/tessera /out/usr/local/bin/tessera \
 && strip /out/usr/local/bin/tessera

# ---- runtime stage: Tessera's binaries, their shared libraries, fs tools ----
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# Runtime libraries of the binaries (the non -dev halves of deps.sh's packages)
# plus what the node plugin runs: mkfs/e2fsck/resize2fs (e2fsprogs), mkfs.xfs/
# xfs_growfs (xfsprogs), mount/umount/blkid/losetup (util-linux, mount).
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      libgrpc29 libprotobuf-c1 libisal2 libiscsi7 libjansson4 liburing2 libfuse3-3 \
      libzstd1 libssl3 libcurl4 ca-certificates \
      e2fsprogs xfsprogs util-linux mount fuse3 >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=build /out/ /
# Fail the build if a shared library is missing.
RUN ldd /usr/local/bin/tessera | (! grep 'not found') && tessera --version
ENTRYPOINT []
CMD ["tessera", "--help"]
