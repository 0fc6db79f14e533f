#!/usr/bin/env bash
# Make the per-node credential of a host-installed tandem agent (docs/install.md).
#
#   KUBECONFIG=admin.kubeconfig scripts/node-credential.sh NODE [OUTPUT]
#
# With an administrator's kubeconfig, it creates (or keeps) in the namespace tandem-system:
#   - the ServiceAccount tandem-agent-NODE, labelled tandem.dev/node=NODE: the agent's own
#     identity, system:serviceaccount:tandem-system:tandem-agent-NODE, from which the API
#     server can tell which node a request comes from;
#   - the ClusterRoleBinding tandem-agent-NODE to the ClusterRole tandem-agent
#     (deploy/base/agent-rbac.yaml, which must be applied first);
# then asks the TokenRequest API for a token of that ServiceAccount valid for DURATION
# (default 8760h; the API server may shorten it) and writes a kubeconfig with the API
# server's address and CA and that token to OUTPUT (mode 0600; default stdout).
# Running it again keeps the objects and issues a fresh token: that is how to renew it.
#
# Environment: KUBECONFIG (the administrator's), KUBECTL (default kubectl), DURATION,
# SERVER (the API server URL as the node reaches it; default the administrator's),
# TLS_SERVER_NAME (the name to verify its certificate by, when SERVER is an address the
# certificate does not name).
set -euo pipefail
NODE="${1:?usage: node-credential.sh NODE [OUTPUT]}"
OUTPUT="${2:-}"
KUBECTL="${KUBECTL:-kubectl}"
DURATION="${DURATION:-8760h}"
NS=tandem-system
SA="tandem-agent-$NODE"

# A Node name is a DNS subdomain; the label value it becomes is at most 63 characters.
if ! [[ "$NODE" =~ ^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$ ]]; then
  echo "node-credential: $NODE is not a node name this script accepts (lower-case letters," \
       "digits, '-' and '.', at most 63 characters)" >&2
  exit 2
fi
kubectl() { command "$KUBECTL" "$@"; }

if ! kubectl get namespace "$NS" >/dev/null 2>&1 || ! kubectl get clusterrole tandem-agent >/dev/null 2>&1; then
  echo "node-credential: no namespace $NS or no ClusterRole tandem-agent: apply deploy/ first" >&2
  exit 1
fi
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata:
  name: $SA
  namespace: $NS
  labels:
    app.kubernetes.io/part-of: tandem
    app.kubernetes.io/name: tandem-agent
    tandem.dev/node: "$NODE"
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: $SA
  labels:
    app.kubernetes.io/part-of: tandem
    tandem.dev/node: "$NODE"
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: tandem-agent
subjects:
  - kind: ServiceAccount
    name: $SA
    namespace: $NS
YAML

token=$(kubectl create token "$SA" -n "$NS" --duration="$DURATION")
server="${SERVER:-$(kubectl config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.server}')}"
ca=$(kubectl config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
if [[ -z "$ca" ]]; then
  echo "node-credential: the administrator's kubeconfig names no CA for the API server" >&2
  exit 1
fi
config="apiVersion: v1
kind: Config
clusters:
  - name: tandem
    cluster:
      server: $server
      certificate-authority-data: $ca${TLS_SERVER_NAME:+
      tls-server-name: $TLS_SERVER_NAME}
users:
  - name: $SA
    user:
      token: $token
contexts:
  - name: $SA
    context: {cluster: tandem, user: $SA}
current-context: $SA
"
# When the token expires, from its payload (base64url JSON).
payload=$(cut -d. -f2 <<<"$token" | tr '_-' '/+')
while (( ${#payload} % 4 )); do payload+="="; done
expires=$(base64 -d <<<"$payload" 2>/dev/null | sed -n 's/.*"exp":\([0-9]*\).*/\1/p')
if [[ -n "$OUTPUT" ]]; then
  (umask 077 && printf '%s' "$config" >"$OUTPUT.tmp" && mv "$OUTPUT.tmp" "$OUTPUT")
  echo "node-credential: wrote $OUTPUT for system:serviceaccount:$NS:$SA" \
       "(token valid until $(date -u -d "@${expires:-0}" '+%Y-%m-%d %H:%M UTC'))" >&2
else
  printf '%s' "$config"
fi
