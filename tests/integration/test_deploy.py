"""deploy/ renders with kustomize, its DaemonSet has the settings docs/install.md names, the API
server accepts all of it (--dry-run=server), Pod Security Admission holds the operator to
`restricted` and admits the privileged agent only in its own namespace, and
scripts/node-credential.sh makes a per-node credential the API server takes as that node's
agent."""

from __future__ import annotations

import copy
import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tandem_agent.kube import Kube, load_client
from tests.conftest import Kubectl

pytestmark = pytest.mark.apiserver

REPO = Path(__file__).resolve().parents[2]
INSTALL_MD = REPO / "docs" / "install.md"
AGENT_NS, OPERATOR_NS = "tandem-system", "tandem-operator"
PSA = "pod-security.kubernetes.io/"


def render(kubectl: Kubectl) -> list[dict[str, Any]]:
    out = kubectl.run(["kustomize", str(REPO / "deploy")]).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} rendered"
    return matches[0]


def documented_settings() -> dict[str, str]:
    """The rows of install.md's table of the DaemonSet's settings: `setting` | `value` | why."""
    section = INSTALL_MD.read_text().split("<!-- daemonset-settings -->")
    assert len(section) == 3, "install.md marks its DaemonSet settings table with two comments"
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]*)` \|", section[1], re.M)
    assert len(rows) >= 8
    return dict(rows)


def actual_setting(daemonset: dict[str, Any], setting: str) -> str:
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    if setting in ("hostPID", "hostNetwork", "terminationGracePeriodSeconds"):
        return str(pod.get(setting)).lower()
    if setting == "privileged":
        return str(container["securityContext"].get("privileged")).lower()
    if setting in ("seccompProfile", "appArmorProfile"):
        return str(container["securityContext"].get(setting, {}).get("type"))
    if setting == "priorityClassName":
        return str(pod.get(setting))
    if setting == "updateStrategy":
        return daemonset["spec"]["updateStrategy"]["type"]
    if setting == "image":
        return container["image"]
    if setting == "resources.limits.memory":
        return container["resources"]["limits"]["memory"]
    if setting.isupper():
        return str(env.get(setting, "(unset)"))
    if setting.startswith("/"):  # a host path: mounted at the same path, type as documented
        mount = mounts.get(setting)
        assert mount is not None, f"{setting} is not mounted"
        host_path = volumes[mount["name"]]["hostPath"]
        assert host_path["path"] == setting, f"{setting} is host path {host_path['path']}"
        return host_path.get("type", "")
    raise AssertionError(f"install.md names a setting the test does not know: {setting}")


def test_the_daemonset_has_the_settings_install_md_names(kubectl: Kubectl) -> None:
    docs = render(kubectl)
    daemonset = find(docs, "DaemonSet", "tandem-agent")
    documented = documented_settings()
    for setting, value in documented.items():
        assert actual_setting(daemonset, setting) == value, f"{setting}: install.md says {value}"
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # Nothing the table leaves out: every host path is in it, and it is mounted at its own path.
    for mount in container["volumeMounts"]:
        assert mount["mountPath"] in documented, f"{mount['mountPath']} is not in install.md"
    for volume in pod["volumes"]:
        assert volume["hostPath"]["path"] in documented
    env = {e["name"] for e in container["env"]} - {"NODE_NAME"}
    assert env <= set(documented), f"undocumented env {env - set(documented)}"
    assert container["command"] == ["tandem-agent"]
    # TMPDIR lies in a directory mounted from the host at the same path.
    assert documented["TMPDIR"] in {m["mountPath"] for m in container["volumeMounts"]}
    operator = find(docs, "Deployment", "tandem-operator")
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == container["image"]


def test_the_api_server_accepts_deploy(kubectl: Kubectl) -> None:
    docs = render(kubectl)
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Namespace", "DaemonSet", "Deployment", "ClusterRole"} <= kinds
    # Server-side dry run of namespaced objects needs their namespace to exist.
    kubectl.run(["apply", "--server-side", "-f", str(REPO / "deploy" / "base" / "namespace.yaml")])
    proc = kubectl.run(["apply", "--server-side", "--dry-run=server", "-k", str(REPO / "deploy")],
                       check=False)
    assert proc.returncode == 0, proc.stderr
    assert "daemonset.apps/tandem-agent serverside-applied (server dry run)" in proc.stdout
    assert "deployment.apps/tandem-operator serverside-applied (server dry run)" in proc.stdout
    # The one Pod Security warning is the agent's, against `baseline` (the warn label of its
    # namespace), and it names exactly what agent.yaml justifies; the operator draws none.
    warnings = [line for line in proc.stderr.splitlines() if "PodSecurity" in line]
    assert len(warnings) == 1, proc.stderr
    assert 'would violate PodSecurity "baseline:v1.36"' in warnings[0]
    assert set(re.findall(r"(?:: |\), )([A-Za-z ]+) \(", warnings[0])) == {
        "host namespaces", "privileged", "hostPath volumes", "seccompProfile",
        "forbidden AppArmor profile"}, warnings[0]


# --- Pod Security Admission ---------------------------------------------------------------------


def pod_security_labels(namespace: dict[str, Any]) -> dict[str, str]:
    return {k.removeprefix(PSA): v for k, v in namespace["metadata"].get("labels", {}).items()
            if k.startswith(PSA)}


def test_each_part_has_its_namespace_with_pinned_pod_security_levels(kubectl: Kubectl) -> None:
    docs = render(kubectl)
    assert pod_security_labels(find(docs, "Namespace", AGENT_NS)) == {
        "enforce": "privileged", "enforce-version": "v1.36",
        "warn": "baseline", "warn-version": "v1.36", "audit": "baseline", "audit-version": "v1.36"}
    assert pod_security_labels(find(docs, "Namespace", OPERATOR_NS)) == {
        "enforce": "restricted", "enforce-version": "v1.36",
        "warn": "restricted", "warn-version": "v1.36",
        "audit": "restricted", "audit-version": "v1.36"}
    # The agent and everything that names it in tandem-system; the operator in its own.
    assert find(docs, "DaemonSet", "tandem-agent")["metadata"]["namespace"] == AGENT_NS
    assert find(docs, "ServiceAccount", "tandem-agent")["metadata"]["namespace"] == AGENT_NS
    assert find(docs, "Deployment", "tandem-operator")["metadata"]["namespace"] == OPERATOR_NS
    assert find(docs, "ServiceAccount", "tandem-operator")["metadata"]["namespace"] == OPERATOR_NS
    assert find(docs, "ClusterRoleBinding", "tandem-operator")["subjects"] == [
        {"kind": "ServiceAccount", "name": "tandem-operator", "namespace": OPERATOR_NS}]
    assert find(docs, "ClusterRoleBinding", "tandem-agent")["subjects"] == [
        {"kind": "ServiceAccount", "name": "tandem-agent", "namespace": AGENT_NS}]
    namespaced = {d["metadata"].get("namespace") for d in docs} - {None}
    assert namespaced == {AGENT_NS, OPERATOR_NS}
    # On the server, as applied.
    kubectl.run(["apply", "--server-side", "-f", str(REPO / "deploy" / "base" / "namespace.yaml")])
    for name in (AGENT_NS, OPERATOR_NS):
        assert pod_security_labels(kubectl.json(["get", "namespace", name])) == \
            pod_security_labels(find(docs, "Namespace", name))


def template_pod(workload: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    """A Pod made from a workload's Pod template, as its controller would create it."""
    template = copy.deepcopy(workload["spec"]["template"])
    name = workload["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-psa", "labels": template["metadata"]["labels"],
                         "namespace": namespace or workload["metadata"]["namespace"]},
            "spec": template["spec"]}


def create_dry_run(kubectl: Kubectl, pod: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl.run(["create", "--dry-run=server", "-f", "-"], stdin=yaml.safe_dump(pod),
                       check=False)


def _operator_container(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["spec"]["containers"][0]
    return container


WEAKENED: dict[str, Callable[[dict[str, Any]], None]] = {
    "runs as root": lambda p: p["spec"]["securityContext"].update(runAsNonRoot=False, runAsUser=0),
    "may escalate": lambda p: _operator_container(p)["securityContext"].update(
        allowPrivilegeEscalation=True),
    "keeps capabilities": lambda p: _operator_container(p)["securityContext"].pop("capabilities"),
    "no seccomp profile": lambda p: p["spec"]["securityContext"].pop("seccompProfile"),
    "a host path": lambda p: p["spec"].update(
        volumes=[{"name": "h", "hostPath": {"path": "/etc"}}]),
}


def test_the_operator_pod_passes_restricted_and_a_weaker_one_is_refused(
        kubectl: Kubectl) -> None:
    """Pods made from deploy/'s templates, created (server dry run) where deploy/ puts them:
    Pod Security Admission enforces the namespaces' levels."""
    base = REPO / "deploy" / "base"
    kubectl.run(["apply", "--server-side", "-f", str(base / "namespace.yaml"),
                 "-f", str(base / "operator-rbac.yaml"), "-f", str(base / "agent-rbac.yaml")])
    docs = render(kubectl)
    operator = template_pod(find(docs, "Deployment", "tandem-operator"))
    proc = create_dry_run(kubectl, operator)
    assert proc.returncode == 0, proc.stderr
    assert "PodSecurity" not in proc.stderr, proc.stderr  # restricted is also the warn level
    for what, weaken in WEAKENED.items():
        pod = copy.deepcopy(operator)
        weaken(pod)
        proc = create_dry_run(kubectl, pod)
        assert proc.returncode != 0, f"a restricted namespace admitted an operator that {what}"
        assert 'violates PodSecurity "restricted:v1.36"' in proc.stderr, (what, proc.stderr)
    # The agent runs only where deploy/ puts it: privileged is admitted in tandem-system alone.
    agent = template_pod(find(docs, "DaemonSet", "tandem-agent"))
    proc = create_dry_run(kubectl, agent)
    assert proc.returncode == 0, proc.stderr
    assert 'would violate PodSecurity "baseline:v1.36"' in proc.stderr  # warned, not refused
    misplaced = template_pod(find(docs, "DaemonSet", "tandem-agent"), OPERATOR_NS)
    misplaced["spec"]["serviceAccountName"] = "tandem-operator"  # one that exists there
    proc = create_dry_run(kubectl, misplaced)
    assert proc.returncode != 0
    assert 'violates PodSecurity "restricted:v1.36"' in proc.stderr
    assert "privileged" in proc.stderr and "host namespaces" in proc.stderr


def test_node_credential_names_the_node_and_grants_the_agent_role(
        crds_installed: Kubectl, tmp_path: Path) -> None:
    kubectl = crds_installed
    kubectl.run(["apply", "--server-side", "-f", str(REPO / "deploy" / "base" / "namespace.yaml")])
    kubectl.run(["apply", "--server-side", "-f", str(REPO / "deploy" / "base" / "agent-rbac.yaml")])
    env = {**os.environ, "KUBECONFIG": str(kubectl.kubeconfig), "KUBECTL": str(kubectl.binary)}
    out = tmp_path / "mail1.kubeconfig"
    script = str(REPO / "scripts" / "node-credential.sh")
    for _ in range(2):  # again: keeps the objects, issues a fresh token
        proc = subprocess.run(["bash", script, "mail1", str(out)], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
    assert "system:serviceaccount:tandem-system:tandem-agent-mail1" in proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    def as_node(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(kubectl.binary), f"--kubeconfig={out}", *args],
                              capture_output=True, text=True, timeout=30, check=False)

    whoami = yaml.safe_load(as_node("auth", "whoami", "-o", "yaml").stdout)
    assert whoami["status"]["userInfo"]["username"] == \
        "system:serviceaccount:tandem-system:tandem-agent-mail1"
    assert as_node("auth", "can-i", "update", "leases", "-n", "mail").stdout.strip() == "yes"
    assert as_node("auth", "can-i", "delete", "leases", "-n", "mail").stdout.strip() == "no"
    assert as_node("auth", "can-i", "patch", "haclusters.tandem.dev", "--subresource=status",
                   "-n", "x").stdout.strip() == "yes"
    assert as_node("auth", "can-i", "create", "secrets", "-n", "mail").stdout.strip() == "no"
    sa = kubectl.json(["get", "serviceaccount", "-n", "tandem-system", "tandem-agent-mail1"])
    assert sa["metadata"]["labels"]["tandem.dev/node"] == "mail1"
    # The agent's own client takes the kubeconfig as it is.
    assert Kube(load_client(str(out)), "mail", "mail1").read_objects("haclusters") == []

    bad = subprocess.run(["bash", script, "Mail_1", str(tmp_path / "bad")], env=env,
                         capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "not a node name" in bad.stderr
    assert not (tmp_path / "bad").exists()
