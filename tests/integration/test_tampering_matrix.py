"""The tampering matrix (docs/security.md): with node a's real credentials, every write an agent
must not make is refused by the API server, and every write the agent's code makes gets through.

A real kube-apiserver (the `control_plane` fixture: Node,RBAC authorization, NodeRestriction)
with deploy/'s RBAC and admission policy (deploy/base/agent-rbac.yaml, agent-admission.yaml).
Node a is tried with both identities an agent can have: the host install's ServiceAccount
tandem-agent-a (made by scripts/node-credential.sh, as the lab does), and the DaemonSet's
ServiceAccount tandem-agent with a token bound to a Pod on Node a (the API server adds the
node-name claim the policy reads). The allowed writes go through the agent's own functions
(tandem_agent.kube.Kube), so a change in what the agent sends shows up here.

Then RBAC is widened to cluster-admin for a's ServiceAccount and every forbidden write is tried
again: the admission policy alone refuses them all.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tandem.api.common import GROUP, VERSION
from tandem.api.hacluster import HACluster
from tandem.kube.connect import load_client
from tandem_agent.kube import AgentWatches, Kube
from tandem_operator.kube import Kube as OperatorKube
from tandem_operator.lease import lease_manifest
from tests.conftest import Kubectl
from tests.integration.api_helpers import token_kubeconfig

pytestmark = pytest.mark.apiserver

REPO = Path(__file__).resolve().parents[2]
NS = "tamper"
OTHER_NS = "tamper-other"  # no tandem-agent-secrets binding here
SYSTEM = "tandem-system"  # the agents' namespace
OPERATOR_NS = "tandem-operator"
SECRET = "pg-replication"  # the one Secret the clusters name
UNNAMED_SECRET = "tls-key"  # beside it in the same namespace, named by no cluster


# --- set-up -----------------------------------------------------------------------------------


def host_credential(kubectl: Kubectl, node: str, out: Path) -> Path:
    env = {**os.environ, "KUBECONFIG": str(kubectl.kubeconfig), "KUBECTL": str(kubectl.binary)}
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "node-credential.sh"), node, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def daemonset_credential(kubectl: Kubectl, node: str, out: Path) -> Path:
    """A token of the DaemonSet's ServiceAccount bound to a Pod on `node`, as the kubelet gets
    for the agent's pod (the Pod need not run)."""
    pod = f"tandem-agent-{node}-matrix"
    kubectl.run(
        ["apply", "-f", "-"],
        stdin=yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "namespace": SYSTEM},
                "spec": {
                    "nodeName": node,
                    "serviceAccountName": "tandem-agent",
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "agent", "image": "localhost/tandem:0.1.0"}],
                },
            }
        ),
    )
    token = kubectl.run(
        [
            "create",
            "token",
            "tandem-agent",
            "-n",
            SYSTEM,
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            pod,
            "--duration=1h",
        ]
    ).stdout.strip()
    return token_kubeconfig(kubectl.kubeconfig, token, out)


def cluster_doc(name: str, nodes: tuple[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HACluster",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodes": [{"name": n} for n in nodes],
            "primary": nodes[0],
            "chain": {"volumes": [], "floatingIPs": []},
        },
    }


def report(node: str, epoch: int = 0, message: str = "standby") -> dict[str, Any]:
    """A status entry shaped as agent.py's _report sends it."""
    return {
        "name": node,
        "role": "Standby",
        "epoch": epoch,
        "drbd": [],
        "services": [],
        "eligible": True,
        "message": message,
        "heartbeatTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@dataclass
class Env:
    kubectl: Kubectl
    admin: client.ApiClient
    host_a: Path
    daemonset_a: Path
    host_b: Path

    def leases(self, cfg: Path | None = None) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(load_client(str(cfg)) if cfg else self.admin)

    def set_lease(
        self, cluster: str, holder: str | None, epoch: int, sync: str | None = None, namespace: str = NS
    ) -> None:
        """The Lease as the admin forces it: the starting point of one case."""
        api = self.leases()
        lease = api.read_namespaced_lease(f"{cluster}-primary", namespace)
        lease.spec.holder_identity = holder
        lease.spec.lease_transitions = epoch
        annotations = dict(lease.metadata.annotations or {})
        annotations.pop("tandem.dev/synchronous-standbys", None)
        if sync is not None:
            annotations["tandem.dev/synchronous-standbys"] = sync
        lease.metadata.annotations = annotations
        api.replace_namespaced_lease(f"{cluster}-primary", namespace, lease)

    def reset_status(self) -> None:
        """Status with the operator's fields and both members' entries, as the admin writes it."""
        custom = client.CustomObjectsApi(self.admin)
        for name, nodes in (("ab", ("a", "b")), ("cd", ("c", "d"))):
            body = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "haclusters", name)
            body["status"] = {
                "primary": nodes[0],
                "epoch": 1,
                "observedGeneration": 1,
                "nodes": [report(n) for n in nodes],
            }
            custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, "haclusters", name, body)


@pytest.fixture(scope="module")
def env(crds_installed: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Any:
    kubectl = crds_installed
    tmp = tmp_path_factory.mktemp("matrix")
    base = REPO / "deploy" / "base"
    kubectl.run(
        [
            "apply",
            "--server-side",
            "-f",
            str(base / "namespace.yaml"),
            "-f",
            str(base / "agent-rbac.yaml"),
            "-f",
            str(base / "operator-rbac.yaml"),
            "-f",
            str(base / "agent-admission.yaml"),
        ]
    )
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OTHER_NS}},
        *({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}} for n in "abcd"),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": NS},
            "stringData": {"password": "s3cret"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": OTHER_NS},
            "stringData": {"password": "other"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": UNNAMED_SECRET, "namespace": NS},
            "stringData": {"key": "k"},
        },
        # docs/postgres.md: the agents may get the Secrets a namespace's clusters name.
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "tandem-agent-secrets", "namespace": NS},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SECRET], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "tandem-agent-secrets", "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tandem-agent-secrets"},
            "subjects": [
                {"kind": "ServiceAccount", "name": sa, "namespace": SYSTEM}
                for sa in ("tandem-agent", "tandem-agent-a", "tandem-agent-b")
            ],
        },
        cluster_doc("ab", ("a", "b")),
        cluster_doc("cd", ("c", "d")),
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DRBDVolume",
            "metadata": {"name": "ab-data", "namespace": NS},
            "spec": {
                "cluster": "ab",
                "resourceName": "ab-data",
                "minor": 0,
                "quorum": {"mode": "off"},
                "nodes": [
                    {"name": n, "disk": "/dev/vg0/data", "address": f"198.19.0.{i + 1}", "nodeId": i}
                    for i, n in enumerate("ab")
                ],
            },
        },
        # Leases that are no tandem cluster's: kube-system's, and one without a member list.
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
            "spec": {"holderIdentity": "control-plane", "leaseDurationSeconds": 15},
        },
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "stray-primary", "namespace": NS},
            "spec": {"leaseDurationSeconds": 15},
        },
    ]
    kubectl.run(["apply", "-f", "-"], stdin=yaml.safe_dump_all(docs))
    admin = load_client(str(kubectl.kubeconfig))
    # The Leases as the operator creates them (its own code, its own credential).
    op_token = kubectl.run(["create", "token", "tandem-operator", "-n", OPERATOR_NS]).stdout.strip()
    operator = OperatorKube(
        load_client(str(token_kubeconfig(kubectl.kubeconfig, op_token, tmp / "operator.kubeconfig")))
    )
    custom = client.CustomObjectsApi(admin)
    for name in ("ab", "cd"):
        body = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "haclusters", name)
        model = HACluster.model_validate({"spec": body["spec"]})
        _, created = operator.create_lease(lease_manifest(name, NS, body["metadata"]["uid"], model))
        assert created
    e = Env(
        kubectl,
        admin,
        host_credential(kubectl, "a", tmp / "a.kubeconfig"),
        daemonset_credential(kubectl, "a", tmp / "a-ds.kubeconfig"),
        host_credential(kubectl, "b", tmp / "b.kubeconfig"),
    )
    # The policy is in force once the API server refuses what RBAC allows it.
    deadline = time.monotonic() + 30
    while True:
        refusal = attempt(lambda: _touch_lease(e.leases(e.host_a), "kube-system", "kube-scheduler"))
        if refusal is not None and refused_by(refusal[1]) == "policy":
            break
        assert time.monotonic() < deadline, f"the admission policy is not in force: {refusal}"
        time.sleep(0.3)
    yield e
    # Later tests in this session share the API server: leave no policy behind.
    kubectl.run(["delete", "validatingadmissionpolicybinding", "tandem-agent", "--ignore-not-found"])
    kubectl.run(["delete", "clusterrolebinding", "matrix-widened", "--ignore-not-found"])


def _touch_lease(api: client.CoordinationV1Api, namespace: str, name: str) -> None:
    lease = api.read_namespaced_lease(name, namespace)
    lease.spec.renew_time = dt.datetime.now(dt.UTC).replace(microsecond=1)
    api.replace_namespaced_lease(name, namespace, lease)


def attempt(fn: Callable[[], Any]) -> tuple[int, str] | None:
    """None if the API server accepted the write, else (HTTP status, message)."""
    try:
        fn()
    except ApiException as exc:
        return exc.status, str(exc.body)
    return None


# --- the writes ---------------------------------------------------------------------------------


def lease_write(cfg: Path, cluster: str, change: Callable[[Any], None], namespace: str = NS) -> Callable[[], None]:
    """Read the Lease with `cfg`, apply `change` to it, replace it (as write_lease does)."""

    def go() -> None:
        api = client.CoordinationV1Api(load_client(str(cfg)))
        name = cluster if cluster.endswith(("-scheduler", "-primary")) else f"{cluster}-primary"
        lease = api.read_namespaced_lease(name, namespace)
        change(lease)
        lease.spec.renew_time = dt.datetime.now(dt.UTC).replace(microsecond=1)
        api.replace_namespaced_lease(name, namespace, lease)

    return go


def holder(name: str | None, epoch: int) -> Callable[[Any], None]:
    def change(lease: Any) -> None:
        lease.spec.holder_identity = name
        lease.spec.lease_transitions = epoch

    return change


def annotate(key: str, value: str) -> Callable[[Any], None]:
    def change(lease: Any) -> None:
        lease.metadata.annotations = {**(lease.metadata.annotations or {}), key: value}

    return change


def status_apply(
    cfg: Path, cluster: str, status: dict[str, Any], manager: str = "tandem-agent-a"
) -> Callable[[], None]:
    """A server-side apply of `status` as the agent's report sends it, but with any body."""

    def go() -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "HACluster",
            "metadata": {"name": cluster, "namespace": NS},
            "status": status,
        }
        client.CustomObjectsApi(load_client(str(cfg))).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            NS,
            "haclusters",
            cluster,
            body,
            field_manager=manager,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    return go


def replace_status(api: client.CustomObjectsApi, change: dict[str, Any]) -> None:
    """PUT of HACluster ab's status with `change` applied (needs `get` on haclusters)."""
    body = api.get_namespaced_custom_object(GROUP, VERSION, NS, "haclusters", "ab")
    body["status"] = {**body["status"], **change}
    api.replace_namespaced_custom_object_status(GROUP, VERSION, NS, "haclusters", "ab", body)


@dataclass(frozen=True)
class Forbidden:
    name: str
    setup: Callable[[Env], None]
    write: Callable[[Env, Path], Callable[[], None]]
    layer: str  # "policy" or "rbac": which refuses it with the shipped RBAC
    is_write: bool = True  # reads cannot be refused by admission, only by RBAC


def held_by(who: str | None, epoch: int = 1, sync: str | None = None) -> Callable[[Env], None]:
    def setup(e: Env) -> None:
        e.set_lease("ab", who, epoch, sync)
        e.set_lease("cd", "c", 1)

    return setup


def as_status(e: Env) -> None:
    e.reset_status()


def _nothing(e: Env) -> None:
    return None


FORBIDDEN: list[Forbidden] = [
    # B's Lease (cluster ab, held by b)
    Forbidden("renew B's Lease in B's name", held_by("b"), lambda e, c: lease_write(c, "ab", holder("b", 1)), "policy"),
    Forbidden("release B's Lease", held_by("b"), lambda e, c: lease_write(c, "ab", holder(None, 1)), "policy"),
    Forbidden(
        "forged switchover: hand B's Lease to b at epoch+1",
        held_by("b"),
        lambda e, c: lease_write(c, "ab", holder("b", 2)),
        "policy",
    ),
    Forbidden(
        "forged switchover: give the free Lease to b",
        held_by(None),
        lambda e, c: lease_write(c, "ab", holder("b", 2)),
        "policy",
    ),
    Forbidden(
        "hand its own Lease to a non-member (c)",
        held_by("a"),
        lambda e, c: lease_write(c, "ab", holder("c", 2)),
        "policy",
    ),
    Forbidden(
        "take the Lease with an epoch jump (+5)",
        held_by(None),
        lambda e, c: lease_write(c, "ab", holder("a", 6)),
        "policy",
    ),
    Forbidden(
        "renew its own Lease with a new epoch",
        held_by("a"),
        lambda e, c: lease_write(c, "ab", holder("a", 7)),
        "policy",
    ),
    Forbidden(
        "synchronous-standby annotation while not holder",
        held_by("b", sync="b"),
        lambda e, c: lease_write(c, "ab", annotate("tandem.dev/synchronous-standbys", "a")),
        "policy",
    ),
    Forbidden(
        "take the Lease naming itself a synchronous standby",
        held_by(None),
        lambda e, c: lease_write(
            c, "ab", lambda ls: (holder("a", 2)(ls), annotate("tandem.dev/synchronous-standbys", "a")(ls))
        ),
        "policy",
    ),
    Forbidden(
        "holder rewrites the member list",
        held_by("a"),
        lambda e, c: lease_write(c, "ab", annotate("tandem.dev/members", "a,b,x")),
        "policy",
    ),
    Forbidden(
        "holder changes leaseDurationSeconds",
        held_by("a"),
        lambda e, c: lease_write(c, "ab", lambda ls: setattr(ls.spec, "lease_duration_seconds", 3600)),
        "policy",
    ),
    Forbidden(
        "holder drops the Lease's owner (garbage collection)",
        held_by("a"),
        lambda e, c: lease_write(c, "ab", lambda ls: setattr(ls.metadata, "owner_references", None)),
        "policy",
    ),
    Forbidden(
        "holder relabels the Lease",
        held_by("a"),
        lambda e, c: lease_write(c, "ab", lambda ls: setattr(ls.metadata, "labels", {"tandem.dev/cluster": "cd"})),
        "policy",
    ),
    # Other Leases
    Forbidden(
        "take another cluster's Lease (cd: c, d)",
        held_by(None),
        lambda e, c: lease_write(c, "cd", holder("a", 2)),
        "policy",
    ),
    Forbidden(
        "take a kube-system Lease",
        _nothing,
        lambda e, c: lease_write(c, "kube-scheduler", holder("a", 1), "kube-system"),
        "policy",
    ),
    Forbidden(
        "take a Lease with no member list", _nothing, lambda e, c: lease_write(c, "stray", holder("a", 1)), "policy"
    ),
    Forbidden(
        "create a Lease listing itself",
        _nothing,
        lambda e, c: (
            lambda: client.CoordinationV1Api(load_client(str(c))).create_namespaced_lease(
                NS,
                {
                    "metadata": {"name": "mine-primary", "annotations": {"tandem.dev/members": "a"}},
                    "spec": {"holderIdentity": "a"},
                },
            )
        ),
        "rbac",
    ),
    Forbidden(
        "delete a Lease",
        held_by("b"),
        lambda e, c: lambda: client.CoordinationV1Api(load_client(str(c))).delete_namespaced_lease("ab-primary", NS),
        "rbac",
    ),
    Forbidden(
        "hand over by a patch, keeping the epoch",
        held_by("a"),
        lambda e, c: (
            lambda: client.CoordinationV1Api(load_client(str(c))).patch_namespaced_lease(
                "ab-primary", NS, {"spec": {"holderIdentity": "b"}}
            )
        ),
        "rbac",
    ),
    # HACluster status
    Forbidden(
        "write B's status entry",
        as_status,
        lambda e, c: status_apply(c, "ab", {"nodes": [report("b", message="forged")]}),
        "policy",
    ),
    Forbidden(
        "write B's status entry under B's field manager",
        as_status,
        lambda e, c: status_apply(c, "ab", {"nodes": [report("b", message="forged")]}, manager="tandem-agent-b"),
        "policy",
    ),
    Forbidden(
        "remove B's status entry (JSON patch)",
        as_status,
        lambda e, c: (
            lambda: client.CustomObjectsApi(load_client(str(c))).patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                NS,
                "haclusters",
                "ab",
                [{"op": "remove", "path": "/status/nodes/1"}],
                _content_type="application/json-patch+json",
            )
        ),
        "policy",
    ),
    Forbidden(
        "write its entry in a cluster that does not list it (cd)",
        as_status,
        lambda e, c: status_apply(c, "cd", {"nodes": [report("a")]}),
        "policy",
    ),
    Forbidden(
        "set the operator's status.primary",
        as_status,
        lambda e, c: status_apply(c, "ab", {"primary": "b", "nodes": [report("a")]}),
        "policy",
    ),
    Forbidden("set the operator's status.epoch", as_status, lambda e, c: status_apply(c, "ab", {"epoch": 9}), "policy"),
    Forbidden(
        "forged switchover in status.switchover",
        as_status,
        lambda e, c: status_apply(
            c,
            "ab",
            {"switchover": {"target": "a", "phase": "Pending", "fromEpoch": 1, "requestedAt": "2025-01-01T00:00:00Z"}},
        ),
        "policy",
    ),
    Forbidden(
        "set a status condition",
        as_status,
        lambda e, c: status_apply(
            c,
            "ab",
            {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Forged",
                        "message": "",
                        "lastTransitionTime": "2025-01-01T00:00:00Z",
                    }
                ]
            },
        ),
        "policy",
    ),
    Forbidden(
        "replace (PUT) the status with another primary",
        as_status,
        lambda e, c: lambda: replace_status(client.CustomObjectsApi(load_client(str(c))), {"primary": "b"}),
        "rbac",
    ),
    # Spec and the other kinds
    Forbidden(
        "change spec.primary",
        _nothing,
        lambda e, c: (
            lambda: client.CustomObjectsApi(load_client(str(c))).patch_namespaced_custom_object(
                GROUP, VERSION, NS, "haclusters", "ab", {"spec": {"primary": "a"}}
            )
        ),
        "rbac",
    ),
    Forbidden(
        "delete an HACluster",
        _nothing,
        lambda e, c: (
            lambda: client.CustomObjectsApi(load_client(str(c))).delete_namespaced_custom_object(
                GROUP, VERSION, NS, "haclusters", "cd"
            )
        ),
        "rbac",
    ),
    Forbidden(
        "write a DRBDVolume's status",
        _nothing,
        lambda e, c: (
            lambda: client.CustomObjectsApi(load_client(str(c))).patch_namespaced_custom_object_status(
                GROUP, VERSION, NS, "drbdvolumes", "ab-data", {"status": {"x": 1}}
            )
        ),
        "rbac",
    ),
    # Secrets, Nodes, Events, tokens
    Forbidden(
        "read a Secret where no binding allows it",
        _nothing,
        lambda e, c: lambda: client.CoreV1Api(load_client(str(c))).read_namespaced_secret(SECRET, OTHER_NS),
        "rbac",
        is_write=False,
    ),
    Forbidden(
        "read a Secret of its clusters' namespace that no cluster names",
        _nothing,
        lambda e, c: lambda: client.CoreV1Api(load_client(str(c))).read_namespaced_secret(UNNAMED_SECRET, NS),
        "rbac",
        is_write=False,
    ),
    Forbidden(
        "list the Secrets of its own namespace",
        _nothing,
        lambda e, c: lambda: client.CoreV1Api(load_client(str(c))).list_namespaced_secret(NS),
        "rbac",
        is_write=False,
    ),
    Forbidden(
        "create a Secret",
        _nothing,
        lambda e, c: (
            lambda: client.CoreV1Api(load_client(str(c))).create_namespaced_secret(
                NS, {"metadata": {"name": "mine"}, "stringData": {"k": "v"}}
            )
        ),
        "rbac",
    ),
    Forbidden(
        "update a Secret",
        _nothing,
        lambda e, c: (
            lambda: client.CoreV1Api(load_client(str(c))).patch_namespaced_secret(
                SECRET, NS, {"stringData": {"password": "mine"}}
            )
        ),
        "rbac",
    ),
    Forbidden(
        "label its Node into running the DaemonSet",
        _nothing,
        lambda e, c: (
            lambda: client.CoreV1Api(load_client(str(c))).patch_node(
                "a", {"metadata": {"labels": {"node-restriction.kubernetes.io/tandem-agent": "true"}}}
            )
        ),
        "rbac",
    ),
    Forbidden(
        "cordon B's Node (a switchover by the back door)",
        _nothing,
        lambda e, c: lambda: client.CoreV1Api(load_client(str(c))).patch_node("b", {"spec": {"unschedulable": True}}),
        "rbac",
    ),
    Forbidden(
        "create an Event",
        _nothing,
        lambda e, c: (
            lambda: client.CoreV1Api(load_client(str(c))).create_namespaced_event(
                NS,
                {
                    "metadata": {"name": "forged"},
                    "involvedObject": {"name": "ab", "namespace": NS},
                    "reason": "Forged",
                    "message": "x",
                },
            )
        ),
        "rbac",
    ),
    Forbidden(
        "mint a token for node b's ServiceAccount",
        _nothing,
        lambda e, c: (
            lambda: client.CoreV1Api(load_client(str(c))).create_namespaced_service_account_token(
                "tandem-agent-b", SYSTEM, {"spec": {"audiences": []}}
            )
        ),
        "rbac",
    ),
]


def refused_by(message: str) -> str:
    """Which layer refused: the policy by one of its rules, RBAC, or anything else (a policy
    expression that fails to evaluate also refuses, but proves nothing)."""
    if "resulted in error" in message or "fails to evaluate" in message:
        return "policy error"
    if "ValidatingAdmissionPolicy 'tandem-agent'" in message:
        return "policy"
    if " cannot " in message:
        return "rbac"
    return "other"


# --- the allowed writes: what the agent's code does, through its own functions -----------------


def allowed_sequence(e: Env, a_cfg: Path) -> list[tuple[str, Callable[[], Any]]]:
    """The agent's calls in the order a life of the pair makes them: take, publish, renew,
    report, hand over, the peer's renew and release, take a free Lease, take an expired one,
    the watches (the three kinds and the Leases, in every namespace and in one), the credentials
    Secret. The writes read the Lease by GET (what the agent does after a 409), so each step
    sees the one before without waiting for a watch."""
    a_api, b_api = load_client(str(a_cfg)), load_client(str(e.host_b))
    a = Kube(a_api, NS, "a", AgentWatches(a_api, [NS]))
    b = Kube(b_api, NS, "b", AgentWatches(b_api, [NS]))

    def watch(namespaces: list[str] | None) -> None:
        watches = AgentWatches(a_api, namespaces).start()
        try:
            assert watches.wait_synced(10), watches.problems()
            assert {o["metadata"]["name"] for o in watches.objects("haclusters")} >= {"ab"}
            assert watches.lease(NS, "ab-primary") is not None
        finally:
            watches.stop()

    def take_free() -> None:
        lease = a.read_lease_now("ab")
        assert lease is not None and lease.holder is None
        record = a.write_lease("ab", "a", lease.epoch + 1, acquire=True, sync_standbys=())
        assert record.holder == "a"

    def publish() -> None:
        a.write_lease(
            "ab",
            "a",
            a.read_lease_now("ab").epoch,
            acquire=False,  # type: ignore[union-attr]
            sync_standbys=("b",),
        )

    def renew() -> None:
        lease = a.read_lease_now("ab")
        assert lease is not None and lease.sync_standbys == ("b",)
        a.write_lease("ab", "a", lease.epoch, acquire=False)

    def hand_over() -> None:
        lease = a.read_lease_now("ab")
        assert lease is not None
        a.write_lease("ab", "b", lease.epoch + 1, acquire=True, sync_standbys=())

    def b_renews_then_releases() -> None:
        lease = b.read_lease_now("ab")
        assert lease is not None and lease.holder == "b"
        b.write_lease("ab", "b", lease.epoch, acquire=False, sync_standbys=("a",))
        b.write_lease("ab", None, lease.epoch, acquire=False)

    def take_expired() -> None:
        e.set_lease("ab", "b", 5, sync="a")  # b stopped renewing
        lease = a.read_lease_now("ab")
        assert lease is not None
        a.write_lease("ab", "a", lease.epoch + 1, acquire=True, sync_standbys=())

    def release_without_list() -> None:
        lease = a.read_lease_now("ab")
        assert lease is not None and lease.holder == "a"
        a.write_lease("ab", None, lease.epoch, acquire=False)

    return [
        ("take the free Lease (epoch+1, list cleared)", take_free),
        ("publish its synchronous standbys", publish),
        ("renew", renew),
        ("report its own status entry", lambda: a.report("ab", report("a", 1, "primary"))),
        ("the peer reports its own entry", lambda: b.report("ab", report("b", 1))),
        ("hand the Lease over to b (epoch+1)", hand_over),
        ("b renews, publishes, then releases", b_renews_then_releases),
        ("take an expired Lease from b", take_expired),
        ("release it", release_without_list),
        ("watch the three kinds and the Leases in every namespace", lambda: watch(None)),
        ("watch the three kinds and the Leases in a namespace", lambda: watch([NS])),
        ("get the credentials Secret", lambda: a.read_secret(SECRET)),
    ]


# --- the test -------------------------------------------------------------------------------


def run_forbidden(e: Env, cfg: Path, widened: bool) -> tuple[int, list[str]]:
    tried, through = 0, []
    for case in FORBIDDEN:
        if widened and not case.is_write:
            continue
        case.setup(e)
        tried += 1
        refusal = attempt(case.write(e, cfg))
        if refusal is None:
            through.append(case.name)
            print(f"  ALLOWED  {case.name}")
            continue
        status, message = refusal
        layer = refused_by(message)
        expected = "policy" if widened else case.layer
        print(f"  refused  {case.name}: HTTP {status} by {layer}")
        assert status in (403, 422), f"{case.name}: HTTP {status}: {message}"
        assert layer == expected, f"{case.name}: refused by {layer}, expected {expected}: {message}"
    return tried, through


def run_allowed(e: Env, cfg: Path) -> int:
    e.set_lease("ab", None, 0)
    e.set_lease("cd", "c", 1)
    e.reset_status()
    steps = allowed_sequence(e, cfg)
    for name, step in steps:
        for retry in range(20):
            try:
                step()
                break
            except Exception as exc:  # the agent's wrapper hides the API server's message
                cause = exc.__cause__ if isinstance(exc.__cause__, ApiException) else exc
                # A freshly served CRD's watch cache answers 429 for a moment; the agent
                # retries on its next tick, so does this.
                if getattr(cause, "status", None) == 429 and retry < 19:
                    time.sleep(0.5)
                    continue
                raise AssertionError(
                    f"the agent's own call refused: {name}: {exc} {getattr(cause, 'body', '')}"
                ) from exc
        print(f"  allowed  {name}")
    return len(steps)


def test_tampering_matrix(env: Env) -> None:
    e = env
    # Who the API server says each credential is.
    who = e.kubectl.run(["--kubeconfig", str(e.daemonset_a), "auth", "whoami", "-o", "yaml"])
    info = yaml.safe_load(who.stdout)["status"]["userInfo"]
    assert info["username"] == "system:serviceaccount:tandem-system:tandem-agent"
    assert info["extra"]["authentication.kubernetes.io/node-name"] == ["a"]

    totals = {"forbidden": 0, "through": 0, "allowed": 0}
    for label, cfg in (("host agent tandem-agent-a", e.host_a), ("DaemonSet agent on node a", e.daemonset_a)):
        print(f"\n{label}: forbidden writes")
        tried, through = run_forbidden(e, cfg, widened=False)
        assert not through, f"{label}: let through: {through}"
        totals["forbidden"] += tried
        totals["through"] += len(through)
        print(f"{label}: the agent's own writes")
        totals["allowed"] += run_allowed(e, cfg)

    # RBAC widened to everything: the admission policy alone refuses every forbidden write.
    e.kubectl.run(
        [
            "create",
            "clusterrolebinding",
            "matrix-widened",
            "--clusterrole=cluster-admin",
            "--serviceaccount=tandem-system:tandem-agent-a",
            "--serviceaccount=tandem-system:tandem-agent",
        ]
    )
    deadline = time.monotonic() + 30
    while (
        "yes"
        not in e.kubectl.run(
            ["--kubeconfig", str(e.host_a), "auth", "can-i", "create", "secrets", "-n", NS], check=False
        ).stdout
    ):
        assert time.monotonic() < deadline, "the cluster-admin binding did not take"
        time.sleep(0.3)
    try:
        for label, cfg in (
            ("host agent tandem-agent-a, as cluster-admin", e.host_a),
            ("DaemonSet agent on node a, as cluster-admin", e.daemonset_a),
        ):
            print(f"\n{label}: forbidden writes")
            tried, through = run_forbidden(e, cfg, widened=True)
            assert not through, f"{label}: let through: {through}"
            totals["forbidden"] += tried
            totals["through"] += len(through)
    finally:
        e.kubectl.run(["delete", "clusterrolebinding", "matrix-widened"])

    print(
        f"\ntampering matrix: {totals['forbidden']} forbidden writes tried, "
        f"{totals['through']} let through; {totals['allowed']} allowed writes, all accepted"
    )
    assert totals["through"] == 0


def test_the_operator_is_not_caught_by_the_policy(env: Env, tmp_path: Path) -> None:
    """The operator's own writes (its code, its ServiceAccount): create, stamp and delete a
    Lease, apply its status fields."""
    e = env
    token = e.kubectl.run(["create", "token", "tandem-operator", "-n", OPERATOR_NS]).stdout.strip()
    op = OperatorKube(load_client(str(token_kubeconfig(e.kubectl.kubeconfig, token, tmp_path / "op.kubeconfig"))))
    custom = client.CustomObjectsApi(e.admin)
    e.kubectl.run(["apply", "-f", "-"], stdin=yaml.safe_dump(cluster_doc("ef", ("e", "f"))))
    body = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "haclusters", "ef")
    model = HACluster.model_validate({"spec": body["spec"]})
    state, created = op.create_lease(lease_manifest("ef", NS, body["metadata"]["uid"], model))
    assert created and state.members == "e,f"
    op.stamp_lease_members(NS, "ef-primary", "e,f,g")
    assert op.get_lease(NS, "ef-primary").members == "e,f,g"  # type: ignore[union-attr]
    op.apply_status(
        NS,
        "ef",
        {
            "primary": "e",
            "epoch": 0,
            "switchover": {"target": "f", "phase": "Pending", "fromEpoch": 0, "requestedAt": "2025-01-01T00:00:00Z"},
        },
    )
    assert op.delete_lease(NS, "ef-primary")
    e.kubectl.run(["delete", "hac", "ef", "-n", NS])


# --- a namespace administrator ----------------------------------------------------------------

NS_ADMIN = "ns-admin"


def test_a_namespace_admin_rules_its_namespace_only(env: Env) -> None:
    """docs/security.md's compromised namespace administrator: every verb on every resource of
    the namespace `tamper` (a Role, stronger than the built-in `admin`), tried through
    impersonation, writes as server dry runs (authorization and admission run, nothing is
    stored). What it can do in its namespace is asserted too: the threat model says so."""
    e = env
    e.kubectl.run(
        ["apply", "-f", "-"],
        stdin=yaml.safe_dump_all(
            [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": {"name": "everything", "namespace": NS},
                    "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": "ns-admin", "namespace": NS},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "everything"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": NS_ADMIN}],
                },
            ]
        ),
    )

    def doc(namespace: str) -> str:
        return yaml.safe_dump(
            {**cluster_doc("anynode", ("a", "c")), "metadata": {"name": "anynode", "namespace": namespace}}
        )

    def run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return e.kubectl.run([f"--as={NS_ADMIN}", *args], stdin=stdin, check=False)

    dry = "--dry-run=server"
    can = {
        "create an HACluster naming any nodes": (["create", dry, "-f", "-"], doc(NS)),
        "read the namespace's Secrets": (["get", "secret", "-n", NS, SECRET], None),
        "rewrite its Lease's member list": (
            ["annotate", dry, "--overwrite", "lease", "-n", NS, "ab-primary", "tandem.dev/members=a,b,x"],
            None,
        ),
        "hand its Lease to any node": (
            ["patch", dry, "lease", "-n", NS, "ab-primary", "--type=merge", "-p", '{"spec":{"holderIdentity":"x"}}'],
            None,
        ),
        "forge node b's report in its own cluster": (
            [
                "patch",
                dry,
                "hac",
                "-n",
                NS,
                "ab",
                "--subresource=status",
                "--type=merge",
                "-p",
                json.dumps({"status": {"nodes": [report("a"), report("b", message="forged")]}}),
            ],
            None,
        ),
        "delete its Lease": (["delete", dry, "lease", "-n", NS, "ab-primary"], None),
    }
    cannot = {
        "create an HACluster in another namespace": (["create", dry, "-f", "-"], doc(OTHER_NS)),
        "read another namespace's Secret": (["get", "secret", "-n", OTHER_NS, SECRET], None),
        "write a Lease of kube-system": (
            ["annotate", dry, "lease", "-n", "kube-system", "kube-scheduler", "x=y"],
            None,
        ),
        "run a Pod in tandem-system": (["run", dry, "x", "-n", SYSTEM, "--image=localhost/tandem:0.1.0"], None),
        "mint a token of node a's agent": (["create", "token", "tandem-agent-a", "-n", SYSTEM], None),
        "mint a token of the DaemonSet's agents": (["create", "token", "tandem-agent", "-n", SYSTEM], None),
        "mint a token of the operator": (["create", "token", "tandem-operator", "-n", OPERATOR_NS], None),
        "label a Node into the DaemonSet": (
            ["label", dry, "node", "c", "node-restriction.kubernetes.io/tandem-agent=true"],
            None,
        ),
        "bind itself to the agents' role": (
            ["create", dry, "clusterrolebinding", "x", "--clusterrole=tandem-agent", f"--user={NS_ADMIN}"],
            None,
        ),
        "remove the agents' admission policy": (
            ["delete", dry, "validatingadmissionpolicybinding", "tandem-agent"],
            None,
        ),
        "change a CRD": (["label", dry, "crd", "haclusters.tandem.dev", "x=y"], None),
    }
    try:
        for what, (args, stdin) in can.items():
            proc = run(args, stdin)
            assert proc.returncode == 0, f"a namespace admin could not {what}: {proc.stderr}"
            print(f"  can     {what}")
        for what, (args, stdin) in cannot.items():
            proc = run(args, stdin)
            assert proc.returncode != 0 and " cannot " in proc.stderr, (
                f"a namespace admin could {what}: {proc.stdout}{proc.stderr}"
            )
            print(f"  refused {what}")
    finally:
        e.kubectl.run(["delete", "rolebinding,role", "-n", NS, "ns-admin", "everything", "--ignore-not-found"])
