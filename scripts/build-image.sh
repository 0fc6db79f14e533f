#!/usr/bin/env bash
# Build tandem's OCI image without any image registry and write it as an OCI archive.
#
#   scripts/build-image.sh VERSION      (make image: after make wheelhouse)
#
# 1. A Debian 12 root file system made locally with mmdebstrap (minbase + python3,
#    python3-venv, util-linux for nsenter, iproute2), from this host's own apt sources; cached
#    in $TANDEM_CACHE/image/ under a hash of its inputs, and imported into podman as
#    localhost/tandem-base:<hash> (FROM scratch + ADD in packaging/Containerfile.base).
# 2. packaging/Containerfile on top of it: the wheelhouse (dist/wheelhouse) installed into the
#    venv /opt/tandem without network (pip --no-index), tagged localhost/tandem:VERSION.
# 3. podman save --format oci-archive -> dist/tandem-VERSION.oci.tar, then the check that
#    the archive loads into an empty image store and `tandem-agent --help` runs from it.
#
# Podman here: cgroup v1 (hybrid) and no systemd as PID 1, so the cgroupfs cgroup manager,
# file events and runc (crun refuses hybrid cgroups); builds use chroot isolation (RUN steps
# need no OCI runtime; chroot isolation only allows the host network, and nothing in the
# build uses it: pip installs with --no-index). The storage driver is overlay
# (TANDEM_PODMAN_DRIVER=vfs where overlay mounts are not allowed; slower). The image store
# is $TANDEM_CACHE/image/storage unless TANDEM_PODMAN_ROOT says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${1:?usage: build-image.sh VERSION}"
CACHE="${TANDEM_CACHE:-$HOME/.cache/tandem}/image"
STORE="${TANDEM_PODMAN_ROOT:-$CACHE/storage}"
DRIVER="${TANDEM_PODMAN_DRIVER:-overlay}"
PACKAGES=(python3 python3-venv util-linux iproute2)
SOURCES="${TANDEM_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
WHEELHOUSE=dist/wheelhouse
ARCHIVE="dist/tandem-${VERSION}.oci.tar"
started=$SECONDS

mkdir -p "$CACHE" "$STORE"
podman_in() {  # podman_in STORE ARGS...: podman on its own image store
  local store=$1
  shift
  command podman --root "$store" --runroot "$store.run" --storage-driver "$DRIVER" \
    --cgroup-manager cgroupfs --events-backend file --runtime runc "$@"
}
podman() { podman_in "$STORE" "$@"; }
log() { echo "build-image: $*"; }

[[ -f "$WHEELHOUSE/tandem-${VERSION}-py3-none-any.whl" ]] ||
  { echo "build-image: $WHEELHOUSE/tandem-${VERSION}-py3-none-any.whl missing: run make wheelhouse" >&2; exit 1; }

# --- 1. the base: a Debian 12 root file system, cached by its inputs
key=$( { echo bookworm minbase "${PACKAGES[*]}"; cat "$SOURCES" packaging/Containerfile.base; } |
       sha256sum | cut -c1-16)
rootfs="$CACHE/rootfs-$key.tar"
if [[ ! -s "$rootfs" ]]; then
  log "making the Debian 12 root file system (mmdebstrap, once per package list)"
  mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$rootfs.partial.tar" "$SOURCES"
  mv "$rootfs.partial.tar" "$rootfs"
fi
base="localhost/tandem-base:$key"
if ! podman image exists "$base"; then
  log "importing the root file system as $base"
  ctx=$(mktemp -d)
  ln "$rootfs" "$ctx/rootfs.tar" 2>/dev/null || cp "$rootfs" "$ctx/rootfs.tar"
  podman build --quiet --isolation=chroot -f packaging/Containerfile.base \
    -t "$base" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# --- 2. tandem on top of it, from the wheelhouse only
log "building localhost/tandem:$VERSION on $base"
podman build --quiet --isolation=chroot --build-arg "BASE=$base" \
  --build-arg "VERSION=$VERSION" -f packaging/Containerfile -t "localhost/tandem:$VERSION" . >/dev/null

# --- 3. the archive
rm -f "$ARCHIVE"
podman save --quiet --format oci-archive -o "$ARCHIVE" "localhost/tandem:$VERSION"
# --- 4. the archive loads into an empty store and runs. Limits are set below this machine's
# hard limits, which root cannot raise here (podman's defaults are above them).
check=$(mktemp -d)
trap 'podman_in "$check/store" system reset --force >/dev/null 2>&1 || true; rm -rf "$check"' EXIT
podman_in "$check/store" load --quiet -i "$ARCHIVE" >/dev/null
podman_in "$check/store" run --rm --network=none --ulimit nofile=4096:4096 --ulimit nproc=8192:8192 \
  "localhost/tandem:$VERSION" tandem-agent --help | grep -q -- "--host-exec" ||
  { echo "build-image: tandem-agent --help from $ARCHIVE did not list --host-exec" >&2; exit 1; }
log "wrote $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1), image tandem:$VERSION) in $((SECONDS - started)) s"
