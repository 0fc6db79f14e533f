"""deploy/ renders with kustomize, its DaemonSet has the settings docs/install.md names, the API
server accepts all of it (--dry-run=server), and scripts/node-credential.sh makes a per-node
credential the API server takes as that node's agent."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tandem_agent.kube import Kube, load_client
from tests.conftest import Kubectl

pytestmark = pytest.mark.apiserver

REPO = Path(__file__).resolve().parents[2]
INSTALL_MD = REPO / "docs" / "install.md"


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
