#!/usr/bin/env bash
# Build (once) the Debian 12 root file system every lab node boots, and cache it.
#
# The root holds what a freshly installed Debian host of the seeds holds: systemd as init,
# Debian's postgresql-15 as Debian installs it, drbd-utils, Python 3.11 and the tools the
# agent calls. It also carries a wheelhouse of tandem's Python dependencies in
# /var/cache/tandem/wheelhouse, as an administrator copies one to a host without PyPI access
# (docs/install.md); tandem itself is NOT in it: the lab installs the freshly built wheel by
# the documented commands. Nodes share this directory read-only as the lower layer of an
# overlayfs (lab/tandem_lab/machine.py). /etc/machine-id is left empty, so each node boots with
# its own id. containerd is installed but disabled: only the lab's kubelet node starts it
# (lab/tandem_lab/kubelet.py).
#
# Output: prints the root's path, $TANDEM_CACHE/noderoot/<key>/root (default ~/.cache/tandem),
# where <key> hashes this script and those dependencies. A second run with the
# same key is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${TANDEM_CACHE:-$HOME/.cache/tandem}"
SUITE=bookworm
PACKAGES=(
  systemd systemd-sysv dbus libpam-systemd   # init, the system bus, logind
  iproute2 procps psmisc util-linux kmod      # ip, ps/pkill, fuser, mount/nsenter/losetup
  e2fsprogs xfsprogs                          # the file systems the chains mount
  postgresql-15                               # Debian's cluster 15/main, as Debian installs it
  drbd-utils                                  # the real drbdadm (drbdsetup is the lab stand-in)
  python3 python3-venv                        # the agent's runtime (Debian 12: Python 3.11)
  faketime                                    # per-process clock faults (docs/lab.md)
  containerd runc                             # the container runtime of the kubelet node
)
PYTHON="${PYTHON:-python3}"

# The dependencies of the distributions a lab node installs (lab/tandem_lab/install.py), but
# tandem's own: those are the freshly built wheels.
deps=$("$PYTHON" - <<'PY'
import re
import tomllib

projects = [tomllib.load(open(f"{d}/pyproject.toml", "rb"))["project"] for d in (".", "node-agent", "lab")]
own = {p["name"] for p in projects}
print("\n".join(d for p in projects for d in p["dependencies"] if re.split(r"[\[<>=!~ ]", d)[0] not in own))
PY
)
key=$( { cat "$0"; echo "$deps"; } | sha256sum | cut -c1-16)
OUT="$CACHE/noderoot/$key"
if [[ -f "$OUT/complete" ]]; then
  echo "$OUT/root"
  exit 0
fi
for tool in mmdebstrap systemd-nspawn; do
  command -v "$tool" >/dev/null || {
    echo "build-noderoot: $tool not found: apt-get install mmdebstrap systemd-container" >&2
    exit 1
  }
done

mkdir -p "$CACHE/noderoot"
BUILD=$(mktemp -d "$CACHE/noderoot/.build-XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
echo "build-noderoot: building $SUITE with ${#PACKAGES[@]} packages into $OUT" >&2

mapfile -t dep_list <<<"$deps"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check -w "$BUILD/wheelhouse" "${dep_list[@]}" >&2

include=$(IFS=,; echo "${PACKAGES[*]}")
mmdebstrap --quiet --variant=minbase --include="$include" \
  --customize-hook='rm -f "$1/etc/hostname" && : > "$1/etc/machine-id"' \
  --customize-hook='chroot "$1" systemctl disable containerd.service' \
  --customize-hook="mkdir -p \"\$1/var/cache/tandem\" && cp -a '$BUILD/wheelhouse' \"\$1/var/cache/tandem/\"" \
  "$SUITE" "$BUILD/root" >&2

rm -rf "$OUT"
mkdir -p "$OUT"
mv "$BUILD/root" "$OUT/root"
echo "$SUITE ${PACKAGES[*]}" > "$OUT/complete"
echo "$OUT/root"
