#!/usr/bin/env bash
# Build etcd, kube-apiserver and kubectl from their Go modules and cache the binaries.
#
#   scripts/build-controlplane.sh          the control plane (make setup, make demo)
#   scripts/build-controlplane.sh --node   also kubelet, kube-controller-manager and
#                                          kube-scheduler, for the lab's kubelet node
#                                          (lab/tandem_lab/kubelet.py builds them when missing)
#
# The binaries land in $TANDEM_CACHE/controlplane/<k8s>-<etcd>/ (default ~/.cache/tandem),
# outside git. A second run with the same versions is a no-op.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${TANDEM_CACHE:-$HOME/.cache/tandem}"
OUT="$CACHE/controlplane/$K8S_VERSION-$ETCD_VERSION"
WORK="$CACHE/controlplane/build"

BINARIES=(etcd kube-apiserver kubectl)
case "${1:-}" in
  "") ;;
  --node) BINARIES+=(kubelet kube-controller-manager kube-scheduler) ;;
  *) echo "usage: build-controlplane.sh [--node]" >&2; exit 2 ;;
esac
missing=()
for binary in "${BINARIES[@]}"; do [[ -x "$OUT/$binary" ]] || missing+=("$binary"); done
if (( ${#missing[@]} == 0 )); then
  echo "$OUT"
  exit 0
fi
command -v go >/dev/null || { echo "build-controlplane: the Go toolchain is required (go not found on PATH)" >&2; exit 1; }

mkdir -p "$OUT" "$WORK/etcd" "$WORK/kubernetes"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
staging="${K8S_VERSION/#v1./v0.}"

build_etcd() {
  cd "$WORK/etcd"
  cat > go.mod <<MOD
module tandem.dev/lab/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  echo 'package tools' > tools.go
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
}

build_kubernetes() {
  cd "$WORK/kubernetes"
  local upstream
  upstream="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module tandem.dev/lab/kubernetes"
    echo
    grep -m1 '^go ' "$upstream"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$upstream"
    echo ")"
  } > go.mod
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for binary in "${BINARIES[@]:1}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$binary"; done
    printf ')\n'
  } > tools.go
  go mod tidy >&2
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for binary in "${missing[@]}"; do
    [[ $binary == etcd ]] && continue
    go build -trimpath -ldflags "$ldflags" -o "$OUT/$binary" "k8s.io/kubernetes/cmd/$binary"
  done
}

start=$(date +%s)
[[ -x "$OUT/etcd" ]] || ( build_etcd )
[[ "${missing[*]}" == etcd ]] || ( build_kubernetes )
echo "build-controlplane: built etcd $ETCD_VERSION and Kubernetes $K8S_VERSION in $(( $(date +%s) - start ))s" >&2
echo "$OUT"
