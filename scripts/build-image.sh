#!/usr/bin/env bash
# Build tandem's OCI image without any image registry and write it as an OCI archive.
#
#   scripts/build-image.sh VERSION        (make image: after make wheelhouse)
#   scripts/build-image.sh VERSION --lab  (make lab-image: also the lab's image, below)
#
# 1. A Debian 12 root file system made locally with mmdebstrap (minbase + python3,
#    python3-venv, util-linux for nsenter, iproute2), from this host's own apt sources; cached
#    in $TANDEM_CACHE/image/ under a hash of its inputs, and imported into podman as
#    localhost/tandem-base:<hash> (FROM scratch + ADD in packaging/Containerfile.base).
# 2. packaging/Containerfile on top of it: the wheelhouse (dist/wheelhouse) installed into the
#    venv /opt/tandem without network (pip --no-index), tagged localhost/tandem:VERSION.
# 3. podman save --format oci-archive -> dist/tandem-VERSION.oci.tar, then the check that
#    the archive loads into an empty image store and `tandem-agent --help` runs from it and
#    lists no lab flag.
# 4. With --lab: lab/Containerfile on top of it, the image plus the development package
#    tandem-lab (dist/tandem_lab-VERSION-py3-none-any.whl, make package), tagged
#    localhost/tandem-lab:VERSION -> dist/tandem-lab-VERSION.oci.tar, for the lab's DaemonSet.
#
# Podman here: cgroup v1 (hybrid) and no systemd as PID 1, so the cgroupfs cgroup manager,
# file events and runc (crun refuses hybrid cgroups); builds use chroot isolation (RUN steps
# need no OCI runtime; chroot isolation only allows the host network, and nothing in the
# build uses it: pip installs with --no-index). The storage driver is overlay
# (TANDEM_PODMAN_DRIVER=vfs where overlay mounts are not allowed; slower). The image store
# is $TANDEM_CACHE/image/storage unless TANDEM_PODMAN_ROOT says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${1:?usage: build-image.sh VERSION [--lab]}"
LAB=0
[[ ${2:-} == --lab ]] && LAB=1
CACHE="${TANDEM_CACHE:-$HOME/.cache/tandem}/image"
STORE="${TANDEM_PODMAN_ROOT:-$CACHE/storage}"
DRIVER="${TANDEM_PODMAN_DRIVER:-overlay}"
PACKAGES=(python3 python3-venv util-linux iproute2)
SOURCES="${TANDEM_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
WHEELHOUSE=dist/wheelhouse
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

for wheel in "$WHEELHOUSE"/{tandem,tandem_agent,tandem_operator}-"${VERSION}"-py3-none-any.whl \
  $( ((LAB)) && echo "dist/tandem_lab-${VERSION}-py3-none-any.whl"); do
  [[ -f $wheel ]] || { echo "build-image: $wheel missing: run make wheelhouse (make package for tandem-lab)" >&2; exit 1; }
done

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

# --- 2.-4. one image: built from its Containerfile, saved as an OCI archive, and the archive
# loaded into an empty store, where `tandem-agent --help` must list $3 and must not list $4.
# Limits are set below this machine's hard limits, which root cannot raise here (podman's
# defaults are above them).
check=""
trap 'if [[ -n $check ]]; then podman_in "$check/store" system reset --force >/dev/null 2>&1 || true; rm -rf "$check"; fi' EXIT
image() {  # image NAME CONTAINERFILE LISTED [ABSENT]
  local name=$1 file=$2 listed=$3 absent=${4:-} archive="dist/$1-${VERSION}.oci.tar" help
  log "building localhost/$name:$VERSION on $base"
  podman build --quiet --isolation=chroot --build-arg "BASE=$base" \
    --build-arg "VERSION=$VERSION" -f "$file" -t "localhost/$name:$VERSION" . >/dev/null
  rm -f "$archive"
  podman save --quiet --format oci-archive -o "$archive" "localhost/$name:$VERSION"
  check=$(mktemp -d)
  podman_in "$check/store" load --quiet -i "$archive" >/dev/null
  help=$(podman_in "$check/store" run --rm --network=none --ulimit nofile=4096:4096 --ulimit nproc=8192:8192 \
    "localhost/$name:$VERSION" tandem-agent --help)
  podman_in "$check/store" system reset --force >/dev/null 2>&1 || true
  rm -rf "$check"
  check=""
  grep -q -- "$listed" <<<"$help" ||
    { echo "build-image: tandem-agent --help from $archive did not list $listed" >&2; exit 1; }
  if [[ -n $absent ]] && grep -q -- "$absent" <<<"$help"; then
    echo "build-image: tandem-agent --help from $archive lists $absent" >&2
    exit 1
  fi
  log "wrote $archive ($(du -h "$archive" | cut -f1), image $name:$VERSION) in $((SECONDS - started)) s"
}
# tandem on top of the base, from the wheelhouse only: the product, without a lab flag.
image tandem packaging/Containerfile --host-exec --drbd-sim-state
# With --lab, the lab's image on top of it (lab/Containerfile: the lab's DaemonSet runs it).
if [[ $LAB == 1 ]]; then
  image tandem-lab lab/Containerfile --drbd-sim-state
fi
