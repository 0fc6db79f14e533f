#!/usr/bin/env bash
# Install everything tandem needs on a fresh Debian machine: Debian packages, a Python venv
# with the project's four distributions and its dev tools, and the control plane built from
# Go modules.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

mapfile -t packages < <(grep -v '^\s*\(#\|$\)' .ci/apt-packages.txt)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
# Every distribution editable: the product's tandem, tandem-agent and tandem-operator and the
# development package tandem-lab, whose entry points give the agent its lab flags and
# `tandem` its lab, bench and chaos subcommands.
"$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]' -e node-agent -e operator -e lab

bash scripts/build-controlplane.sh >/dev/null
PYTHON="$VENV/bin/python" bash scripts/build-noderoot.sh >/dev/null
echo "install-deps: done"
