"""Tenant limits (docs/security.md): what a namespace's clusters may name on the nodes is the
platform team's TenantPolicy, enforced by the API server (deploy/base/tenant-limits.yaml).

A real kube-apiserver (the `control_plane` fixture) with the CRDs, the policy and its binding,
and a TenantPolicy `tandem` with an entry for namespace `tenant-a` only. The writes come from
a namespace administrator: a ServiceAccount of tenant-a bound, in tenant-a and in tenant-b, to
a Role with every verb on every tandem.dev resource (the widest grant a namespace can give), so
that any refusal below is the policy's, not RBAC's. For each field the policy judges, an object
that is in the limits but for that one value is refused, with a message that names the field,
the value, the rule and the TenantPolicy; the same objects within the limits are accepted, and
so is every sample (deploy/samples in tandem-demo, deploy/samples/lab in tandem-lab) under the
example policies shipped beside them.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tandem.api.common import GROUP, VERSION
from tandem.kube.connect import load_client
from tests.conftest import Kubectl, remove_tenant_limits
from tests.integration.api_helpers import set_at, token_kubeconfig

pytestmark = pytest.mark.apiserver

REPO = Path(__file__).resolve().parents[2]
NS = "tenant-a"
OTHER_NS = "tenant-b"  # RBAC lets the tenant write here too; the TenantPolicy has no entry
POLICY = "tenant-limits"  # the binding's name in refusals
MANAGER = "tenant-policy-test"
_names = itertools.count()

LIMITS: dict[str, Any] = {
    "namespace": NS,
    "nodes": ["a1", "a2", "a-witness"],
    "nodePatterns": ["a-db[0-9]+"],
    "floatingIPCIDRs": ["198.18.7.0/24", "2001:db8:7::/64"],
    "interfaces": ["bond0"],
    "paths": ["/srv/tenant-a", "/var/lib/postgresql/15/", "/etc/postgresql/15"],
    "units": [r"postfix\.service", r"app-[a-z]+\.service", r"tenant-a-jobs\.timer"],
    "postgresBinDirectories": ["/usr/lib/postgresql/15/bin"],
    "blockDevices": ["/dev/vg-tenant-a", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"],
    "watchdogDevices": ["/dev/watchdog1"],
}


def tenant_policy(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TenantPolicy",
        "metadata": {"name": "tandem"},
        "spec": {"namespaces": list(entries)},
    }


def hacluster() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HACluster",
        "metadata": {},
        "spec": {
            "nodes": [{"name": "a1"}, {"name": "a2"}],
            "primary": "a1",
            "chain": {
                "volumes": ["data"],
                "mounts": [{"volume": "data", "mountPoint": "/srv/tenant-a"}],
                "bindMounts": [{"source": "/srv/tenant-a/spool", "target": "/srv/tenant-a/legacy/spool"}],
                "postgres": {
                    "dataDirectory": "/var/lib/postgresql/15/main",
                    "configDirectory": "/etc/postgresql/15/main",
                    "binDirectory": "/usr/lib/postgresql/15/bin",
                },
                "services": [
                    {"name": "smtp", "unit": "postfix.service"},
                    {"name": "api", "unit": "app-api.service"},
                    {"name": "jobs", "unit": "tenant-a-jobs.timer"},
                ],
            },
            "failover": {"fence": {"method": "Watchdog", "watchdogDevice": "/dev/watchdog1"}},
        },
    }


def drbdvolume() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DRBDVolume",
        "metadata": {},
        "spec": {
            "cluster": "c",
            "resourceName": "data",
            "minor": 0,
            "nodes": [
                {"name": "a1", "disk": "/dev/vg-tenant-a/data", "address": "198.19.7.1", "nodeId": 0},
                {"name": "a2", "disk": "/dev/vg-tenant-a/data", "address": "198.19.7.2", "nodeId": 1},
            ],
            "tiebreaker": {"name": "a-witness", "address": "198.19.7.3", "nodeId": 2},
        },
    }


def floatingip() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FloatingIP",
        "metadata": {},
        "spec": {
            "cluster": "c",
            "prefixLength": 24,
            "interface": "bond0",
            "addresses": [{"start": "198.18.7.10", "end": "198.18.7.99"}, {"start": "198.18.7.200"}],
        },
    }


BASE: dict[str, Callable[[], dict[str, Any]]] = {
    "haclusters": hacluster,
    "drbdvolumes": drbdvolume,
    "floatingips": floatingip,
}


def changed(plural: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = BASE[plural]()
    change(doc["spec"])
    return doc


@dataclass
class Tally:
    refused: list[str] = field(default_factory=list)
    let_through: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)


@dataclass
class Env:
    kubectl: Kubectl
    tenant: client.CustomObjectsApi
    admin: client.CustomObjectsApi
    tally: Tally

    def create(
        self,
        plural: str,
        doc: dict[str, Any],
        namespace: str = NS,
        api: client.CustomObjectsApi | None = None,
        dry_run: bool = False,
    ) -> tuple[int, str] | None:
        """None if the API server accepted the create, else (HTTP status, message)."""
        doc = copy.deepcopy(doc)
        doc["metadata"] = {"name": f"{plural[:3]}-{next(_names)}", "namespace": namespace}
        try:
            (api or self.tenant).create_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, doc, dry_run="All" if dry_run else None
            )
        except ApiException as exc:
            return exc.status, str(exc.body)
        return None

    def patch(self, plural: str, name: str, body: dict[str, Any], namespace: str = NS) -> tuple[int, str] | None:
        try:
            self.tenant.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, body)
        except ApiException as exc:
            return exc.status, str(exc.body)
        return None

    def refused(self, case: str, result: tuple[int, str] | None, *words: str) -> None:
        """The write was refused by this policy's own rule, with a message naming `words`."""
        if result is None:
            self.tally.let_through.append(case)
            raise AssertionError(f"{case}: let through")
        status, message = result
        assert status == 403, f"{case}: HTTP {status}: {message}"
        assert "ValidatingAdmissionPolicy 'tandem-tenant-limits'" in message, f"{case}: {message}"
        for word in ("tandem tenant limits:", *words):
            assert word in message, f"{case}: {word!r} not in {message}"
        self.tally.refused.append(case)

    def accepted(self, case: str, result: tuple[int, str] | None) -> None:
        assert result is None, f"{case}: refused: {result}"
        self.tally.accepted.append(case)

    def set_limits(self, *entries: dict[str, Any]) -> None:
        self.kubectl.run(
            ["apply", "--server-side", "--force-conflicts", f"--field-manager={MANAGER}", "-f", "-"],
            stdin=yaml.safe_dump(tenant_policy(*entries)),
        )


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    """The policy reads its binding and TenantPolicy through informers: a change takes effect
    a moment after the API server stored it."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not in force after {timeout}s: {what}"
        time.sleep(0.3)


def in_force(env: Env) -> None:
    """Both: a namespace without an entry is refused, and the entry of NS is read."""
    wait_until(
        "tenant limits",
        lambda: (
            (r := env.create("floatingips", floatingip(), OTHER_NS, dry_run=True)) is not None
            and "no entry for namespace" in r[1]
            and env.create("haclusters", hacluster(), dry_run=True) is None
        ),
    )


@pytest.fixture(scope="module")
def env(crds_installed: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    kubectl = crds_installed
    tmp = tmp_path_factory.mktemp("tenant")
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "rules": [{"apiGroups": [GROUP], "resources": ["*"], "verbs": ["*"]}],
    }
    docs: list[dict[str, Any]] = [
        *({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in (NS, OTHER_NS)),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tenant-admin", "namespace": NS}},
    ]
    for ns in (NS, OTHER_NS):
        docs += [
            {**role, "metadata": {"name": "tandem-edit", "namespace": ns}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "tenant-admin", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tandem-edit"},
                "subjects": [{"kind": "ServiceAccount", "name": "tenant-admin", "namespace": NS}],
            },
        ]
    kubectl.run(["apply", "-f", "-"], stdin=yaml.safe_dump_all(docs))
    token = kubectl.run(["create", "token", "tenant-admin", "-n", NS]).stdout.strip()
    tenant_cfg = token_kubeconfig(kubectl.kubeconfig, token, tmp / "tenant.kubeconfig")
    e = Env(
        kubectl,
        client.CustomObjectsApi(load_client(str(tenant_cfg))),
        client.CustomObjectsApi(load_client(str(kubectl.kubeconfig))),
        Tally(),
    )
    e.set_limits(LIMITS)
    kubectl.run(["apply", "--server-side", "-f", str(REPO / "deploy" / "base" / "tenant-limits.yaml")])
    in_force(e)
    yield e
    print(
        f"\ntenant limits: {len(e.tally.refused)} forbidden writes tried, "
        f"{len(e.tally.let_through)} let through {e.tally.let_through}; "
        f"{len(e.tally.accepted)} allowed writes accepted"
    )
    # Later tests in this session share the API server: leave no policy behind.
    remove_tenant_limits(kubectl)


# --- one value outside the limits per field ------------------------------------------------------

OUTSIDE: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
    # (resource, case, change, what the message must name)
    ("haclusters", "node", set_at("nodes.1.name", "b1"), "spec.nodes[1].name b1"),
    ("haclusters", "node by a pattern's prefix only", set_at("nodes.1.name", "a-db1x"), "spec.nodes[1].name a-db1x"),
    ("haclusters", "mount point", set_at("chain.mounts.0.mountPoint", "/etc"), "spec.chain.mounts[0].mountPoint /etc"),
    (
        "haclusters",
        "mount point beside a prefix",
        set_at("chain.mounts.0.mountPoint", "/srv/tenant-ab"),
        "spec.chain.mounts[0].mountPoint /srv/tenant-ab",
    ),
    (
        "haclusters",
        "bind source",
        set_at("chain.bindMounts.0.source", "/var/lib/kubelet"),
        "spec.chain.bindMounts[0].source /var/lib/kubelet",
    ),
    (
        "haclusters",
        "bind target",
        set_at("chain.bindMounts.0.target", "/root/.ssh"),
        "spec.chain.bindMounts[0].target /root/.ssh",
    ),
    (
        "haclusters",
        "PostgreSQL data directory",
        set_at("chain.postgres.dataDirectory", "/etc/ssh"),
        "spec.chain.postgres.dataDirectory /etc/ssh",
    ),
    (
        "haclusters",
        "PostgreSQL data directory at a trailing-slash prefix itself",
        set_at("chain.postgres.dataDirectory", "/var/lib/postgresql/15"),
        "spec.chain.postgres.dataDirectory /var/lib/postgresql/15",
    ),
    (
        "haclusters",
        "PostgreSQL configuration directory",
        set_at("chain.postgres.configDirectory", "/etc/postgresql/16/main"),
        "spec.chain.postgres.configDirectory /etc/postgresql/16/main",
    ),
    (
        "haclusters",
        "PostgreSQL binary directory",
        set_at("chain.postgres.binDirectory", "/tmp/bin"),
        "spec.chain.postgres.binDirectory /tmp/bin",
    ),
    ("haclusters", "unit", set_at("chain.services.0.unit", "ssh.service"), "spec.chain.services[0].unit ssh.service"),
    (
        "haclusters",
        "unit matching a pattern only in part",
        set_at("chain.services.1.unit", "evil-app-api.service"),
        "spec.chain.services[1].unit evil-app-api.service",
    ),
    (
        "haclusters",
        "watchdog device",
        set_at("failover.fence.watchdogDevice", "/dev/watchdog0"),
        "spec.failover.fence.watchdogDevice /dev/watchdog0",
    ),
    ("drbdvolumes", "node", set_at("nodes.0.name", "b1"), "spec.nodes[0].name b1"),
    ("drbdvolumes", "tiebreaker", set_at("tiebreaker.name", "b-witness"), "spec.tiebreaker.name b-witness"),
    ("drbdvolumes", "disk", set_at("nodes.1.disk", "/dev/sda"), "spec.nodes[1].disk /dev/sda"),
    (
        "drbdvolumes",
        "disk beside a device directory",
        set_at("nodes.0.disk", "/dev/vg-tenant-ab/x"),
        "spec.nodes[0].disk /dev/vg-tenant-ab/x",
    ),
    ("floatingips", "address", set_at("addresses.1", {"start": "198.18.8.1"}), "spec.addresses[1] 198.18.8.1"),
    (
        "floatingips",
        "end of a range",
        set_at("addresses.0.end", "198.18.8.20"),
        "spec.addresses[0] 198.18.7.10-198.18.8.20",
    ),
    (
        "floatingips",
        "IPv6 address",
        set_at("addresses", [{"start": "2001:db8:8::1"}]),
        "spec.addresses[0] 2001:db8:8::1",
    ),
    (
        "floatingips",
        "prefix length",
        set_at("prefixLength", 16),
        "spec.prefixLength 16 puts 198.18.7.10 in 198.18.0.0/16",
    ),
    ("floatingips", "interface", set_at("interface", "eth0"), "spec.interface eth0"),
]

# What each refusal names as the rule's list in the TenantPolicy.
RULE = {
    "node": "nodes [a1, a2, a-witness], nodePatterns [a-db[0-9]+]",
    "tiebreaker": "nodes [",
    "mount": "paths [",
    "bind": "paths [",
    "data directory": "paths [",
    "configuration directory": "paths [",
    "binary directory": "postgresBinDirectories [",
    "unit": "units [",
    "watchdog": "watchdogDevices [",
    "disk": "blockDevices [",
    "address": "floatingIPCIDRs [",
    "range": "floatingIPCIDRs [",
    "prefix length": "floatingIPCIDRs [",
    "interface": "interfaces [bond0]",
}


def rule_of(case: str) -> str:
    return next(text for key, text in RULE.items() if key in case)


def test_within_the_limits_everything_is_accepted(env: Env) -> None:
    for plural, make in BASE.items():
        env.accepted(f"{plural} within the limits", env.create(plural, make()))
    env.accepted("node by a pattern", env.create("haclusters", changed("haclusters", set_at("nodes.1.name", "a-db12"))))
    env.accepted(
        "mount point exactly a prefix, PostgreSQL below a prefix ending in /",
        env.create("haclusters", changed("haclusters", set_at("chain.mounts.0.mountPoint", "/srv/tenant-a"))),
    )
    env.accepted(
        "IPv6 range",
        env.create(
            "floatingips",
            changed(
                "floatingips",
                lambda s: s.update(prefixLength=64, addresses=[{"start": "2001:db8:7::10", "end": "2001:db8:7::20"}]),
            ),
        ),
    )
    env.accepted(
        "a disk named by itself",
        env.create(
            "drbdvolumes", changed("drbdvolumes", set_at("nodes.0.disk", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"))
        ),
    )
    env.accepted(
        "no binDirectory (the agent's own)",
        env.create("haclusters", changed("haclusters", lambda s: s["chain"]["postgres"].pop("binDirectory"))),
    )
    env.accepted(
        "another fence method: the watchdog device is not used",
        env.create(
            "haclusters",
            changed(
                "haclusters", set_at("failover.fence", {"method": "SysrqReboot", "watchdogDevice": "/dev/watchdog0"})
            ),
        ),
    )


@pytest.mark.parametrize(("plural", "case", "change", "names"), OUTSIDE, ids=[f"{p}-{c}" for p, c, _, _ in OUTSIDE])
def test_a_value_outside_the_limits_is_refused_naming_field_and_policy(
    env: Env, plural: str, case: str, change: Callable[[dict[str, Any]], None], names: str
) -> None:
    env.refused(
        f"{plural}: {case}",
        env.create(plural, changed(plural, change)),
        names,
        f"TenantPolicy tandem spec.namespaces[namespace={NS}]",
        rule_of(case),
    )


def test_a_namespace_without_an_entry_may_create_nothing(env: Env) -> None:
    for plural, make in BASE.items():
        env.refused(
            f"{plural} in {OTHER_NS}",
            env.create(plural, make(), OTHER_NS),
            f"TenantPolicy tandem has no entry for namespace {OTHER_NS}",
        )


def test_the_tenant_cannot_write_the_limits(env: Env) -> None:
    """A namespace's grants cannot reach the cluster-scoped TenantPolicy, whatever they say."""
    for verb in ("create", "update", "patch", "delete"):
        cfg = env.tenant.api_client
        auth = client.AuthorizationV1Api(cfg).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(
                        group=GROUP, resource="tenantpolicies", verb=verb, name="tandem"
                    )
                )
            )
        )
        assert not auth.status.allowed, verb
    try:
        env.tenant.patch_cluster_custom_object(
            GROUP,
            VERSION,
            "tenantpolicies",
            "tandem",
            {"spec": {"namespaces": [{"namespace": OTHER_NS, "nodes": ["b1"]}]}},
        )
    except ApiException as exc:
        assert exc.status == 403, exc.body
    else:
        env.tally.let_through.append("the tenant patched the TenantPolicy")
        raise AssertionError("the tenant patched the TenantPolicy")
    env.tally.refused.append("the tenant patches the TenantPolicy (RBAC)")


def test_updates_are_judged_when_they_change_the_spec(env: Env) -> None:
    name = "updated"
    doc = hacluster()
    doc["metadata"] = {"name": name, "namespace": NS}
    env.tenant.create_namespaced_custom_object(GROUP, VERSION, NS, "haclusters", doc)
    env.accepted(
        "switchover (spec.primary) within the limits", env.patch("haclusters", name, {"spec": {"primary": "a2"}})
    )
    services = [*doc["spec"]["chain"]["services"], {"name": "shell", "unit": "ssh.service"}]
    env.refused(
        "update adding a unit outside the limits",
        env.patch("haclusters", name, {"spec": {"chain": {"services": services}}}),
        "spec.chain.services[3].unit ssh.service",
    )
    env.refused(
        "update moving the cluster to another node",
        env.patch("haclusters", name, {"spec": {"nodes": [{"name": "a1"}, {"name": "b1"}], "primary": "a1"}}),
        "spec.nodes[1].name b1",
    )
    # The platform team takes a2 away: the stored object stays, its metadata can still change
    # (the operator's finalizers and annotations), a spec change is judged by the new limits.
    env.set_limits({**LIMITS, "nodes": ["a1", "a-witness"]})
    wait_until("narrowed limits", lambda: env.create("haclusters", hacluster(), dry_run=True) is not None)
    env.accepted(
        "metadata only, on an object the limits no longer allow",
        env.patch("haclusters", name, {"metadata": {"labels": {"team": "a"}, "finalizers": ["tandem.dev/test"]}}),
    )
    env.accepted(
        "finalizer removed (as the operator does on deletion)",
        env.patch("haclusters", name, {"metadata": {"finalizers": None}}),
    )
    env.refused(
        "spec change of an object the limits no longer allow",
        env.patch("haclusters", name, {"spec": {"primary": "a1"}}),
        "spec.nodes[1].name a2",
    )
    env.set_limits(LIMITS)
    in_force(env)
    env.tenant.delete_namespaced_custom_object(GROUP, VERSION, NS, "haclusters", name)


def test_the_limits_bind_the_cluster_admin_too(env: Env) -> None:
    env.refused(
        "cluster-admin: node outside the limits",
        env.create("haclusters", changed("haclusters", set_at("nodes.1.name", "b1")), api=env.admin),
        "spec.nodes[1].name b1",
    )


def test_without_a_tenant_policy_nothing_is_created(env: Env) -> None:
    """parameterNotFoundAction Deny: a deleted (or never written) TenantPolicy allows nothing."""
    env.kubectl.run(["delete", "tenantpolicy", "tandem"])
    try:
        wait_until(
            "no TenantPolicy",
            lambda: (
                (r := env.create("haclusters", hacluster(), dry_run=True)) is not None and "no params found" in r[1]
            ),
        )
        for plural, make in BASE.items():
            result = env.create(plural, make())
            if result is None:
                env.tally.let_through.append(f"{plural} without a TenantPolicy")
            # The API server's own refusal (422 Invalid): the binding cannot be configured.
            assert result is not None and result[0] == 422, result
            assert "tandem-tenant-limits" in result[1] and "no params found" in result[1], result
            env.tally.refused.append(f"{plural} without a TenantPolicy")
    finally:
        env.set_limits(LIMITS)
        in_force(env)


def test_every_sample_passes_the_example_policy_shipped_beside_it(env: Env) -> None:
    """deploy/samples in tandem-demo under deploy/samples/02-tenant-policy.yaml, and the lab
    samples in tandem-lab under deploy/samples/lab/tenant-policy.yaml: each file's entry added
    by its own field manager (docs/install.md), the samples created in a server dry run."""
    samples = REPO / "deploy" / "samples"
    env.kubectl.run(["apply", "-f", str(samples / "00-namespace.yaml")])
    env.kubectl.run(["create", "namespace", "tandem-lab"], check=False)
    for manager, path in (
        ("tenant-tandem-demo", samples / "02-tenant-policy.yaml"),
        ("tenant-tandem-lab", samples / "lab" / "tenant-policy.yaml"),
    ):
        env.kubectl.run(["apply", "--server-side", "--force-conflicts", f"--field-manager={manager}", "-f", str(path)])
    entries = env.kubectl.json(["get", "tenantpolicy", "tandem"])["spec"]["namespaces"]
    assert {e["namespace"] for e in entries} >= {NS, "tandem-demo", "tandem-lab"}
    checked = 0
    for namespace, paths in (
        ("tandem-demo", sorted(samples.glob("*.yaml"))),
        ("tandem-lab", sorted((samples / "lab").glob("*.yaml"))),
    ):
        for path in paths:
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") not in ("HACluster", "DRBDVolume", "FloatingIP"):
                    continue
                plural = {"HACluster": "haclusters", "DRBDVolume": "drbdvolumes", "FloatingIP": "floatingips"}[
                    doc["kind"]
                ]
                case = f"sample {path.relative_to(samples)} {doc['kind']} {doc['metadata']['name']}"
                deadline = time.monotonic() + 30
                while (
                    result := env.create(plural, doc, namespace, api=env.admin, dry_run=True)
                ) is not None and "no entry for namespace" in result[1]:
                    assert time.monotonic() < deadline, result  # the informer catches up
                    time.sleep(0.3)
                env.accepted(case, result)
                checked += 1
    assert checked >= 25
