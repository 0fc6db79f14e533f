#!/usr/bin/env bash
# The quick-start demo: a real control plane, tandem's CRDs and one HACluster per reference
# workload, shown the way a platform team reads them. Leaves the lab running (make demo-down).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/${VENV:-.venv}/bin:$PATH"

tandem lab up
KUBECONFIG="$(tandem lab kubeconfig)"
export KUBECONFIG
kubectl="$(tandem lab kubectl-path)"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "install the CRDs (generated from tandem/api)"
"$kubectl" apply --server-side -k crds/
"$kubectl" wait --for=condition=Established --timeout=60s \
  crd/haclusters.tandem.dev crd/drbdvolumes.tandem.dev crd/floatingips.tandem.dev

step "apply the samples (deploy/samples: mail, groupware with witness, two dependent groups)"
"$kubectl" apply -f deploy/samples/

step "kubectl get tandem -n tandem-demo"
"$kubectl" get tandem -n tandem-demo

step "a bad spec is refused by the API server, naming the field"
"$kubectl" apply -f - <<'YAML' || true
apiVersion: tandem.dev/v1alpha1
kind: HACluster
metadata: {name: broken, namespace: tandem-demo}
spec:
  nodes: [{name: node1}, {name: node2}]
  primary: node3
  leases: {leaseDurationMs: 2000, renewDeadlineMs: 1900}
YAML

cat <<TXT

The lab is still running. Explore it with:
  export KUBECONFIG=$KUBECONFIG
  $kubectl get hac -n tandem-demo -o wide
  $kubectl describe hac mail -n tandem-demo
Stop it with: make demo-down
TXT
