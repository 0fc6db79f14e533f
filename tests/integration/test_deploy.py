"""deploy/ renders with kustomize, its DaemonSet has the settings docs/install.md names, the API
server accepts all of it (--dry-run=server), Pod Security Admission holds the operator to
`restricted` and admits the privileged agent only in its own namespace, the operator does its
whole job under its ClusterRole alone (no capabilities, read-only root) and the role is the one
docs/security.md lists, and scripts/node-credential.sh makes a per-node credential the API
server takes as that node's agent."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tandem.api.common import LAST_HANDLED_ANNOTATION, MEMBERS_ANNOTATION
from tandem.kube.connect import load_client
from tandem_agent.kube import AgentWatches
from tandem_lab.controlplane import ControlPlane
from tests.conftest import Kubectl

pytestmark = pytest.mark.apiserver

REPO = Path(__file__).resolve().parents[2]
INSTALL_MD = REPO / "docs" / "install.md"
SECURITY_MD = REPO / "docs" / "security.md"
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
    proc = kubectl.run(["apply", "--server-side", "--dry-run=server", "-k", str(REPO / "deploy")], check=False)
    assert proc.returncode == 0, proc.stderr
    assert "daemonset.apps/tandem-agent serverside-applied (server dry run)" in proc.stdout
    assert "deployment.apps/tandem-operator serverside-applied (server dry run)" in proc.stdout
    # The one Pod Security warning is the agent's, against `baseline` (the warn label of its
    # namespace), and it names exactly what agent.yaml justifies; the operator draws none.
    warnings = [line for line in proc.stderr.splitlines() if "PodSecurity" in line]
    assert len(warnings) == 1, proc.stderr
    assert 'would violate PodSecurity "baseline:v1.36"' in warnings[0]
    assert set(re.findall(r"(?:: |\), )([A-Za-z ]+) \(", warnings[0])) == {
        "host namespaces",
        "privileged",
        "hostPath volumes",
        "seccompProfile",
        "forbidden AppArmor profile",
    }, warnings[0]


# --- Pod Security Admission ---------------------------------------------------------------------


def pod_security_labels(namespace: dict[str, Any]) -> dict[str, str]:
    return {k.removeprefix(PSA): v for k, v in namespace["metadata"].get("labels", {}).items() if k.startswith(PSA)}


def test_each_part_has_its_namespace_with_pinned_pod_security_levels(kubectl: Kubectl) -> None:
    docs = render(kubectl)
    assert pod_security_labels(find(docs, "Namespace", AGENT_NS)) == {
        "enforce": "privileged",
        "enforce-version": "v1.36",
        "warn": "baseline",
        "warn-version": "v1.36",
        "audit": "baseline",
        "audit-version": "v1.36",
    }
    assert pod_security_labels(find(docs, "Namespace", OPERATOR_NS)) == {
        "enforce": "restricted",
        "enforce-version": "v1.36",
        "warn": "restricted",
        "warn-version": "v1.36",
        "audit": "restricted",
        "audit-version": "v1.36",
    }
    # The agent and everything that names it in tandem-system; the operator in its own.
    assert find(docs, "DaemonSet", "tandem-agent")["metadata"]["namespace"] == AGENT_NS
    assert find(docs, "ServiceAccount", "tandem-agent")["metadata"]["namespace"] == AGENT_NS
    assert find(docs, "Deployment", "tandem-operator")["metadata"]["namespace"] == OPERATOR_NS
    assert find(docs, "ServiceAccount", "tandem-operator")["metadata"]["namespace"] == OPERATOR_NS
    assert find(docs, "ClusterRoleBinding", "tandem-operator")["subjects"] == [
        {"kind": "ServiceAccount", "name": "tandem-operator", "namespace": OPERATOR_NS}
    ]
    assert find(docs, "ClusterRoleBinding", "tandem-agent")["subjects"] == [
        {"kind": "ServiceAccount", "name": "tandem-agent", "namespace": AGENT_NS}
    ]
    namespaced = {d["metadata"].get("namespace") for d in docs} - {None}
    assert namespaced == {AGENT_NS, OPERATOR_NS}
    # On the server, as applied.
    kubectl.run(["apply", "--server-side", "-f", str(REPO / "deploy" / "base" / "namespace.yaml")])
    for name in (AGENT_NS, OPERATOR_NS):
        assert pod_security_labels(kubectl.json(["get", "namespace", name])) == pod_security_labels(
            find(docs, "Namespace", name)
        )


def template_pod(workload: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    """A Pod made from a workload's Pod template, as its controller would create it."""
    template = copy.deepcopy(workload["spec"]["template"])
    name = workload["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-psa",
            "labels": template["metadata"]["labels"],
            "namespace": namespace or workload["metadata"]["namespace"],
        },
        "spec": template["spec"],
    }


def create_dry_run(kubectl: Kubectl, pod: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl.run(["create", "--dry-run=server", "-f", "-"], stdin=yaml.safe_dump(pod), check=False)


def _operator_container(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["spec"]["containers"][0]
    return container


WEAKENED: dict[str, Callable[[dict[str, Any]], None]] = {
    "runs as root": lambda p: p["spec"]["securityContext"].update(runAsNonRoot=False, runAsUser=0),
    "may escalate": lambda p: _operator_container(p)["securityContext"].update(allowPrivilegeEscalation=True),
    "keeps capabilities": lambda p: _operator_container(p)["securityContext"].pop("capabilities"),
    "no seccomp profile": lambda p: p["spec"]["securityContext"].pop("seccompProfile"),
    "a host path": lambda p: p["spec"].update(volumes=[{"name": "h", "hostPath": {"path": "/etc"}}]),
}


def test_the_operator_pod_passes_restricted_and_a_weaker_one_is_refused(kubectl: Kubectl) -> None:
    """Pods made from deploy/'s templates, created (server dry run) where deploy/ puts them:
    Pod Security Admission enforces the namespaces' levels."""
    base = REPO / "deploy" / "base"
    kubectl.run(
        [
            "apply",
            "--server-side",
            "-f",
            str(base / "namespace.yaml"),
            "-f",
            str(base / "operator-rbac.yaml"),
            "-f",
            str(base / "agent-rbac.yaml"),
        ]
    )
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


# --- the operator's RBAC ---------------------------------------------------------------------


def documented_operator_rules() -> dict[str, set[str]]:
    """security.md's table of the operator's ClusterRole: `resource` | verbs | ..."""
    section = SECURITY_MD.read_text().split("<!-- operator-rbac -->")
    assert len(section) == 3, "security.md marks its table of the operator's RBAC with two comments"
    rows = re.findall(r"^\| `([^`]+)` \| ([a-z, ]+) \|", section[1], re.M)
    assert rows
    return {resource: {v.strip() for v in verbs.split(",")} for resource, verbs in rows}


def role_rules(role: dict[str, Any]) -> dict[str, set[str]]:
    """resource[.group][/subresource] -> verbs, as kubectl names them."""
    out: dict[str, set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                plural, _, sub = resource.partition("/")
                name = plural + (f".{group}" if group else "") + (f"/{sub}" if sub else "")
                out.setdefault(name, set()).update(rule["verbs"])
    return out


def test_the_operator_role_is_the_one_security_md_lists(kubectl: Kubectl) -> None:
    role = find(render(kubectl), "ClusterRole", "tandem-operator")
    assert role_rules(role) == documented_operator_rules()
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule


@pytest.fixture(scope="module")
def own_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """An API server of its own: the operator serves every namespace, as deployed, and the
    session's shared one holds other tests' HAClusters, which it would take over."""
    plane = ControlPlane(tmp_path_factory.mktemp("operator-plane"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


# The Pod's service-account volume, where the in-cluster client reads it (/var/run is /run).
SERVICE_ACCOUNT_DIR = "/run/secrets/kubernetes.io/serviceaccount"
POD_USER = 65532  # deploy/base/operator.yaml's runAsUser; no passwd entry, as in the image

POD_SANDBOX = f"""set -e
# -n: the sandbox's /run holds no mount table to update.
account="$1" prefix="$2" hidden="$3"
shift 3
# The service-account volume: token, CA and namespace (/run is the sandbox's own).
mount -n -t tmpfs -o mode=0755 tmpfs /run
mkdir -p {SERVICE_ACCOUNT_DIR}
cp "$account"/token "$account"/ca.crt "$account"/namespace {SERVICE_ACCOUNT_DIR}/
mount -n -o remount,ro /run
if [ -n "$hidden" ]; then
  # The interpreter lies below a directory only root may enter: show the Pod's user that
  # directory with the interpreter alone in it.
  mount -n -t tmpfs -o mode=0755 tmpfs /mnt
  mkdir /mnt/prefix
  mount -n --bind "$prefix" /mnt/prefix
  mount -n -t tmpfs -o mode=0755 tmpfs "$hidden"
  mkdir -p "$prefix"
  mount -n --move /mnt/prefix "$prefix"
  mount -n -o remount,ro "$hidden"
fi
# A read-only root file system (/dev/shm stays writable, as in a Pod).
mount -n -o remount,bind,ro /
exec setpriv --reuid={POD_USER} --regid={POD_USER} --clear-groups --no-new-privs \\
  --inh-caps=-all --bounding-set=-all "$@"
"""


def sandboxed(service_account: Path, argv: list[str]) -> list[str]:
    """`argv` run the way deploy/base/operator.yaml's container runs: as user 65532, which has
    no passwd entry, with no capabilities at all, no_new_privs, in-cluster credentials from the
    service-account volume and a read-only root file system; in a private mount namespace, so
    nothing of it is seen outside. Needs root to set up."""
    prefix = Path(sys.base_prefix).resolve()
    hidden = next((d for d in reversed(prefix.parents) if not d.stat().st_mode & stat.S_IXOTH), None)
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        POD_SANDBOX,
        "sh",
        str(service_account),
        str(prefix),
        str(hidden or ""),
        *argv,
    ]


def pod_env(container: dict[str, Any], pod_name: str, api_port: int) -> dict[str, str]:
    """The environment a Pod's container gets: the kubelet's service variables and its own
    `env` (values, and fieldRef metadata.name), nothing of this test's."""
    env = {
        "PATH": os.environ["PATH"],
        "HOSTNAME": pod_name,
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(api_port),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            assert var["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, var
            env[var["name"]] = pod_name
    return env


def wait_for(what: str, fn: Callable[[], Any], log: Path, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}; operator log:\n{log.read_text(errors='replace')[-4000:]}"
            )
        time.sleep(0.3)


# What the operator's log would say if its role or its file system refused it something. (Not
# a bare "403": a log line's milliseconds may read so. Every 403 the API server sends says
# Forbidden.)
REFUSALS = re.compile(
    r"[Ff]orbidden|Not enough permissions|Failed to post an event|"
    r"Read-only file system|Permission denied|Traceback"
)


def test_the_operator_does_its_whole_job_under_its_role_alone(own_plane: ControlPlane, tmp_path: Path) -> None:
    """The operator as deploy/ runs it: cluster-wide, with the Deployment's environment, its
    own ServiceAccount's token read in-cluster and deploy/'s ClusterRole alone, as user 65532
    (no passwd entry) with no capabilities and a read-only root. It creates and stamps the
    Lease, applies its status, posts an Event, takes its finalizer, handles a spec.primary
    change and a deletion, and its log shows no refusal."""
    # CI runs as root; a tier it cannot run must fail, not skip.
    assert os.geteuid() == 0, "the sandbox (a private mount namespace) needs root"
    kubectl = Kubectl(own_plane.kubectl(), own_plane.kubeconfig)
    base = REPO / "deploy" / "base"
    kubectl.run(["apply", "--server-side", "-k", str(REPO / "crds")])
    kubectl.run(
        [
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "haclusters.tandem.dev",
            "drbdvolumes.tandem.dev",
            "floatingips.tandem.dev",
        ]
    )
    kubectl.run(["apply", "--server-side", "-f", str(base / "namespace.yaml"), "-f", str(base / "operator-rbac.yaml")])
    ns = "rbac"
    kubectl.run(
        ["apply", "-f", "-"],
        stdin=yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                *({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}} for n in ("n1", "n2")),
                {
                    "apiVersion": "tandem.dev/v1alpha1",
                    "kind": "HACluster",
                    "metadata": {"name": "pair", "namespace": ns},
                    "spec": {
                        "nodes": [{"name": "n1"}, {"name": "n2"}],
                        "primary": "n1",
                        "chain": {"volumes": ["pair-data"], "floatingIPs": ["pair-vips"]},
                    },
                },
                {
                    "apiVersion": "tandem.dev/v1alpha1",
                    "kind": "DRBDVolume",
                    "metadata": {"name": "pair-data", "namespace": ns},
                    "spec": {
                        "cluster": "pair",
                        "resourceName": "pair-data",
                        "minor": 0,
                        "port": 7789,
                        "nodes": [
                            {"name": n, "disk": "/dev/vg0/pair", "address": f"198.19.0.{i}", "nodeId": i}
                            for i, n in enumerate(("n1", "n2"))
                        ],
                    },
                },
                {
                    "apiVersion": "tandem.dev/v1alpha1",
                    "kind": "FloatingIP",
                    "metadata": {"name": "pair-vips", "namespace": ns},
                    "spec": {
                        "cluster": "pair",
                        "addresses": [{"start": "198.18.0.2", "end": "198.18.0.4"}],
                        "prefixLength": 24,
                        "interface": "mgmt",
                    },
                },
            ]
        ),
    )
    token = kubectl.run(["create", "token", "tandem-operator", "-n", OPERATOR_NS, "--duration=1h"]).stdout.strip()
    service_account = tmp_path / "serviceaccount"
    service_account.mkdir()
    (service_account / "token").write_text(token)
    (service_account / "ca.crt").write_bytes((own_plane.pki / "ca.crt").read_bytes())
    (service_account / "namespace").write_text(OPERATOR_NS)
    # The sandbox holds: its user is the Pod's, and cannot write even where anyone may.
    probe_file = Path("/tmp") / f"tandem-sandbox-probe-{os.getpid()}"
    probe = subprocess.run(
        sandboxed(service_account, ["sh", "-c", f"id -u; touch {probe_file}"]),
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.stdout.strip() == str(POD_USER), probe.stdout + probe.stderr
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr, probe.stderr
    assert not probe_file.exists()

    deployment = find(render(kubectl), "Deployment", "tandem-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["tandem-operator"]  # run here as python -m
    state = own_plane.state()
    assert state is not None
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            sandboxed(service_account, [sys.executable, "-m", "tandem_operator"]),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd="/",
            env=pod_env(container, "tandem-operator-5d9f7-x2x4q", state.api_port),
            start_new_session=True,
        )
    try:

        def get(*args: str) -> dict[str, Any] | None:
            got = kubectl.run(["get", *args, "-o", "json"], check=False)
            return json.loads(got.stdout) if got.returncode == 0 else None

        lease = wait_for("the Lease, stamped", lambda: get("lease", "-n", ns, "pair-primary"), log)
        assert lease["metadata"]["annotations"][MEMBERS_ANNOTATION] == "n1,n2"
        wait_for(
            "the status and the finalizer",
            lambda: (
                (c := get("hac", "-n", ns, "pair"))
                and c.get("status", {}).get("conditions")
                and "tandem.dev/teardown" in c["metadata"].get("finalizers", [])
            ),
            log,
        )
        # The chain's volume and addresses show what the nodes report (none yet).
        wait_for(
            "the DRBDVolume's and FloatingIP's status",
            lambda: (
                (get("drbdvolume", "-n", ns, "pair-data") or {}).get("status", {}).get("roles") == "Unknown/Unknown"
                and (get("floatingip", "-n", ns, "pair-vips") or {}).get("status", {}).get("summary")
                == "3 addresses 198.18.0.2-198.18.0.4"
            ),
            log,
        )
        wait_for(
            "the LeaseCreated Event",
            lambda: any(
                e["reason"] == "LeaseCreated" and e["involvedObject"]["name"] == "pair"
                for e in (get("events", "-n", ns) or {"items": []})["items"]
            ),
            log,
        )
        # The member list stamped again after a change by hand (a merge patch of the Lease).
        kubectl.run(["annotate", "--overwrite", "lease", "-n", ns, "pair-primary", f"{MEMBERS_ANNOTATION}=n1"])
        wait_for(
            "the member list stamped again",
            lambda: (
                (get("lease", "-n", ns, "pair-primary") or {"metadata": {}})["metadata"]
                .get("annotations", {})
                .get(MEMBERS_ANNOTATION)
                == "n1,n2"
            ),
            log,
        )
        # A spec.primary change: kopf records the handled spec in an annotation.
        kubectl.run(["patch", "hac", "-n", ns, "pair", "--type=merge", "-p", '{"spec":{"primary":"n2"}}'])
        wait_for(
            "the spec.primary change handled",
            lambda: (
                '"primary":"n2"'
                in (get("hac", "-n", ns, "pair") or {"metadata": {}})["metadata"]
                .get("annotations", {})
                .get(LAST_HANDLED_ANNOTATION, "")
            ),
            log,
        )
        # Deletion: nobody holds the Lease, so the teardown deletes it and lets the HACluster go.
        kubectl.run(["delete", "hac", "-n", ns, "pair", "--wait=false"])
        wait_for(
            "the HACluster and its Lease gone",
            lambda: get("hac", "-n", ns, "pair") is None and get("lease", "-n", ns, "pair-primary") is None,
            log,
        )
        assert proc.poll() is None, log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    text = log.read_text(errors="replace")
    assert "starting: all namespaces, standalone" in text, text
    refused = [line for line in text.splitlines() if REFUSALS.search(line)]
    assert not refused, "\n".join(refused)
    # And no more than it needs: what the operator's code never does, its role does not allow.
    who = f"--as=system:serviceaccount:{OPERATOR_NS}:tandem-operator"
    for verb, resource in (
        ("update", "leases"),
        ("update", "haclusters.tandem.dev"),
        ("patch", "drbdvolumes.tandem.dev"),
        ("get", "nodes"),
        ("patch", "nodes"),
        ("get", "secrets"),
        ("patch", "events"),
        ("list", "namespaces"),
        ("create", "pods"),
    ):
        answer = kubectl.run(["auth", "can-i", who, verb, resource, "-n", ns], check=False)
        assert answer.stdout.strip() == "no", (verb, resource)


def test_node_credential_names_the_node_and_grants_the_agent_role(crds_installed: Kubectl, tmp_path: Path) -> None:
    kubectl = crds_installed
    kubectl.run(["apply", "--server-side", "-f", str(REPO / "deploy" / "base" / "namespace.yaml")])
    kubectl.run(["apply", "--server-side", "-f", str(REPO / "deploy" / "base" / "agent-rbac.yaml")])
    env = {**os.environ, "KUBECONFIG": str(kubectl.kubeconfig), "KUBECTL": str(kubectl.binary)}
    out = tmp_path / "mail1.kubeconfig"
    script = str(REPO / "scripts" / "node-credential.sh")
    for _ in range(2):  # again: keeps the objects, issues a fresh token
        proc = subprocess.run(
            ["bash", script, "mail1", str(out)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
    assert "system:serviceaccount:tandem-system:tandem-agent-mail1" in proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    def as_node(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kubectl.binary), f"--kubeconfig={out}", *args], capture_output=True, text=True, timeout=30, check=False
        )

    whoami = yaml.safe_load(as_node("auth", "whoami", "-o", "yaml").stdout)
    assert whoami["status"]["userInfo"]["username"] == "system:serviceaccount:tandem-system:tandem-agent-mail1"
    assert as_node("auth", "can-i", "update", "leases", "-n", "mail").stdout.strip() == "yes"
    assert as_node("auth", "can-i", "delete", "leases", "-n", "mail").stdout.strip() == "no"
    assert (
        as_node("auth", "can-i", "patch", "haclusters.tandem.dev", "--subresource=status", "-n", "x").stdout.strip()
        == "yes"
    )
    assert as_node("auth", "can-i", "create", "secrets", "-n", "mail").stdout.strip() == "no"
    sa = kubectl.json(["get", "serviceaccount", "-n", "tandem-system", "tandem-agent-mail1"])
    assert sa["metadata"]["labels"]["tandem.dev/node"] == "mail1"
    # The agent's own client takes the kubeconfig as it is.
    watches = AgentWatches(load_client(str(out)), ["mail"]).start()
    try:
        assert watches.wait_synced(10), watches.problems()
        assert watches.objects("haclusters") == []
    finally:
        watches.stop()

    bad = subprocess.run(
        ["bash", script, "Mail_1", str(tmp_path / "bad")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2 and "not a node name" in bad.stderr
    assert not (tmp_path / "bad").exists()
