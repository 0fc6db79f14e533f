"""The API server itself accepts every sample and refuses bad specs with a message naming the field."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tandem_agent.__main__ import resolve
from tandem_agent.invalid import InvalidSpec
from tests.conftest import Kubectl
from tests.integration.api_helpers import Mutation, set_at

pytestmark = pytest.mark.apiserver

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "deploy" / "samples"
NAMESPACE = "tandem-validation"
_names = itertools.count()


def sample(kind: str, name: str) -> dict[str, Any]:
    for path in sorted(SAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind and doc["metadata"]["name"] == name:
                return copy.deepcopy(doc)
    raise LookupError(f"no {kind} {name} in {SAMPLES}")


@pytest.fixture(scope="module")
def api(crds_installed: Kubectl) -> Kubectl:
    crds_installed.run(["create", "namespace", NAMESPACE])
    return crds_installed


def apply(api: Kubectl, doc: dict[str, Any]) -> tuple[int, str]:
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = NAMESPACE
    doc["metadata"]["name"] = f"{doc['metadata']['name']}-{next(_names)}"
    proc = api.run(["apply", "-f", "-"], stdin=yaml.safe_dump(doc), check=False)
    return proc.returncode, proc.stderr


def test_every_sample_is_accepted(crds_installed: Kubectl) -> None:
    out = crds_installed.run(["apply", "-f", str(SAMPLES)]).stdout
    created = [line for line in out.splitlines() if "tandem.dev/" in line]
    assert len(created) >= 12, out
    listed = crds_installed.run(["get", "tandem", "-n", "tandem-demo", "-o", "name"]).stdout
    for expected in (
        "hacluster.tandem.dev/mail",
        "hacluster.tandem.dev/groupware",
        "hacluster.tandem.dev/db",
        "hacluster.tandem.dev/app",
        "drbdvolume.tandem.dev/groupware-data",
        "floatingip.tandem.dev/mail-vips",
    ):
        assert expected in listed


def test_defaults_are_applied_by_the_api_server(api: Kubectl) -> None:
    doc = sample("HACluster", "mail")
    doc["metadata"]["namespace"] = NAMESPACE
    doc["metadata"]["name"] = "defaults"
    api.run(["apply", "-f", "-"], stdin=yaml.safe_dump(doc))
    spec = api.json(["get", "hac", "defaults", "-n", NAMESPACE])["spec"]
    assert spec["leases"]["leaseDurationMs"] == 3000
    assert spec["failover"]["apiServerOutage"] == "Demote"
    assert spec["failover"]["fence"]["method"] == "SysrqReboot"


def _all(*mutations: Mutation) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        for m in mutations:
            m(doc)

    return mutate


# Issue 12. Leases with room for a 10 s tear-down:
# (1800 + 10000 + 200 + 200) * 1000 < 15000 * (1000 - 10).
ROOMY_LEASES = {"leaseDurationMs": 15000, "renewIntervalMs": 1200, "renewDeadlineMs": 1800, "demotionTimeoutMs": 10000}
STOP_BUDGET = [
    "spec.chain",
    "add up to more than spec.leases.demotionTimeoutMs",
    "lower them or raise demotionTimeoutMs",
]


def _health_check(service: int, check: dict[str, Any]) -> Mutation:
    return set_at(f"spec.chain.services.{service}.healthCheck", check)


# A disk that passes drbdadm dump when written unescaped and adds a handler drbdadm runs as root.
HOSTILE_DISK = (
    '/dev/vg0/mail";\n    meta-disk internal;\n    address ipv4 198.19.1.2:7789;\n  }\n'
    '  handlers { split-brain "/bin/sh -c id"; }\n  skip on "decoy" {\n    disk "/dev/vg0/mail'
)

BAD: list[tuple[str, tuple[str, str], Mutation, list[str]]] = [
    (
        "one-node",
        ("HACluster", "mail"),
        set_at("spec.nodes", [{"name": "mail1"}]),
        ["spec.nodes", "at least two distinct nodes"],
    ),
    (
        "duplicate-node",
        ("HACluster", "mail"),
        set_at("spec.nodes", [{"name": "mail1"}, {"name": "mail1"}]),
        ["spec.nodes[1]", "Duplicate"],
    ),
    (
        "primary-not-a-node",
        ("HACluster", "mail"),
        set_at("spec.primary", "mail3"),
        ["spec.primary", "must be one of spec.nodes"],
    ),
    (
        "standby-not-a-node",
        ("HACluster", "mail"),
        set_at("spec.standbyNodes", ["mail9"]),
        ["spec.standbyNodes", "only name nodes"],
    ),
    (
        "every-node-standby",
        ("HACluster", "mail"),
        set_at("spec.standbyNodes", ["mail1", "mail2"]),
        ["spec.standbyNodes", "at least one node"],
    ),
    (
        "lease-inequality",
        ("HACluster", "mail"),
        set_at("spec.leases", {"leaseDurationMs": 2000, "renewDeadlineMs": 1900, "renewIntervalMs": 500}),
        ["spec.leases.leaseDurationMs", "two nodes could both act as primary"],
    ),
    (
        "renew-interval-too-long",
        ("HACluster", "mail"),
        set_at("spec.leases", {"renewIntervalMs": 1500, "renewDeadlineMs": 1500}),
        ["spec.leases.renewIntervalMs", "less than renewDeadlineMs"],
    ),
    ("node-name-not-dns", ("HACluster", "mail"), set_at("spec.nodes.0.name", "Mail_1"), ["spec.nodes[0].name"]),
    (
        "service-without-unit",
        ("HACluster", "mail"),
        set_at("spec.chain.services", [{"name": "postfix"}]),
        ["spec.chain.services[0].unit", "Required value"],
    ),
    (
        "duplicate-service",
        ("HACluster", "mail"),
        set_at("spec.chain.services", [{"name": "a", "unit": "a.service"}, {"name": "a", "unit": "b.service"}]),
        ["spec.chain.services", "must be unique"],
    ),
    (
        "unit-without-suffix",
        ("HACluster", "mail"),
        set_at("spec.chain.services.0.unit", "postfix"),
        ["spec.chain.services[0].unit", "must be a systemd unit name"],
    ),
    (
        "unit-like-an-option",
        ("HACluster", "mail"),
        set_at("spec.chain.services.1.unit", "--all.service"),
        ["spec.chain.services[1].unit", "not starting with -"],
    ),
    (
        "replication-user-keyword",
        ("HACluster", "mail"),
        set_at("spec.chain.postgres.replicationUser", "all"),
        ["spec.chain.postgres.replicationUser", "not one of all, replication"],
    ),
    (
        "client-access-without-prefix",
        ("HACluster", "mail"),
        set_at("spec.chain.postgres.clientAccess", [{"database": "mail", "user": "webmail", "address": "198.18.0.7"}]),
        ["spec.chain.postgres.clientAccess[0].address", "IPv4 or IPv6 network"],
    ),
    (
        "relative-bind-mount",
        ("HACluster", "groupware"),
        set_at("spec.chain.bindMounts.0.source", "srv/groupware/mysql"),
        ["spec.chain.bindMounts[0].source"],
    ),
    (
        "dotdot-bind-mount",
        ("HACluster", "groupware"),
        set_at("spec.chain.bindMounts.0.target", "/var/lib/../../etc"),
        ["spec.chain.bindMounts[0].target", "without '..'"],
    ),
    ("unknown-field", ("HACluster", "mail"), set_at("spec.primaryNode", "mail1"), ['unknown field "spec.primaryNode"']),
    (
        "bad-replication-address",
        ("HACluster", "mail"),
        set_at("spec.nodes.0.replicationAddress", "2001:db8::zz"),
        ["spec.nodes[0].replicationAddress", "valid IPv4 or IPv6"],
    ),
    (
        "too-many-failover-restarts",
        ("HACluster", "mail"),
        set_at("spec.failover.restartLimit", 1000),
        ["spec.failover.restartLimit"],
    ),
    (
        "bad-ipv4",
        ("FloatingIP", "mail-vips"),
        set_at("spec.addresses.0.start", "198.18.0.300"),
        ["spec.addresses[0].start", "valid IPv4 or IPv6"],
    ),
    (
        "mixed-family-range",
        ("FloatingIP", "mail-vips"),
        set_at("spec.addresses.0.end", "2001:db8::10"),
        ["spec.addresses[0].end", "both be IPv4"],
    ),
    (
        "ipv4-prefix-33",
        ("FloatingIP", "mail-vips"),
        set_at("spec.prefixLength", 33),
        ["spec.prefixLength", "at most 32"],
    ),
    ("interface-with-space", ("FloatingIP", "mail-vips"), set_at("spec.interface", "eth 0"), ["spec.interface"]),
    (
        "interface-too-long",
        ("FloatingIP", "mail-vips"),
        set_at("spec.interface", "a-very-long-interface"),
        ["spec.interface"],
    ),
    ("port-out-of-range", ("DRBDVolume", "mail-store"), set_at("spec.port", 70000), ["spec.port"]),
    ("protocol-d", ("DRBDVolume", "mail-store"), set_at("spec.protocol", "D"), ["spec.protocol", "Unsupported value"]),
    (
        "tiebreaker-is-a-data-node",
        ("DRBDVolume", "groupware-data"),
        set_at("spec.tiebreaker.name", "gw1"),
        ["spec.tiebreaker.name", "witness holds no data"],
    ),
    (
        "duplicate-node-id",
        ("DRBDVolume", "mail-store"),
        set_at("spec.nodes.1.nodeId", 0),
        ["spec.nodes", "must be distinct"],
    ),
    (
        "tiebreaker-without-quorum",
        ("DRBDVolume", "groupware-data"),
        set_at("spec.quorum.mode", "off"),
        ["spec.quorum.mode", "majority or all"],
    ),
    (
        "bad-resource-name",
        ("DRBDVolume", "mail-store"),
        set_at("spec.resourceName", "mail store"),
        ["spec.resourceName"],
    ),
    # Issue 13: values that would become code where the agent renders them.
    (
        "drbd-disk-adds-a-handler",
        ("DRBDVolume", "mail-store"),
        set_at("spec.nodes.0.disk", HOSTILE_DISK),
        ["spec.nodes[0].disk", "no spaces, quotes, backslashes or control characters"],
    ),
    (
        "replication-user-with-space",
        ("HACluster", "mail"),
        set_at("spec.chain.postgres.replicationUser", "repl user"),
        ["spec.chain.postgres.replicationUser", "must be a lower-case PostgreSQL name"],
    ),
    (
        "data-directory-with-line-break",
        ("HACluster", "mail"),
        set_at("spec.chain.postgres.dataDirectory", "/var/lib/pg'\narchive_command = 'id"),
        ["spec.chain.postgres.dataDirectory", "must be an absolute path of letters"],
    ),
    (
        "mount-option-list-in-one",
        ("HACluster", "mail"),
        set_at("spec.chain.mounts.0.options", ["noatime,exec"]),
        ["spec.chain.mounts[0].options[0]", "one mount option"],
    ),
    # Issue 12: explicit stop timeouts must fit the tear-down's budget; health checks.
    (
        "service-stop-timeout-over-the-default-budget",
        ("HACluster", "mail"),
        set_at("spec.chain.services.0.stopTimeoutSeconds", 1),
        STOP_BUDGET,
    ),
    (
        "service-and-postgres-stop-timeouts-over-the-budget",
        ("HACluster", "mail"),
        _all(
            set_at("spec.leases", ROOMY_LEASES),
            set_at("spec.chain.services.0.stopTimeoutSeconds", 5),
            set_at("spec.chain.postgres.stopTimeoutSeconds", 6),
        ),
        STOP_BUDGET,
    ),
    (
        "postgres-stop-timeout-alone-over-the-budget",
        ("HACluster", "mail"),
        set_at("spec.chain.postgres.stopTimeoutSeconds", 1),
        STOP_BUDGET,
    ),
    (
        "service-stop-timeouts-without-postgres-over-the-budget",
        ("HACluster", "groupware"),
        _all(
            set_at("spec.leases", ROOMY_LEASES),
            set_at("spec.chain.services.0.stopTimeoutSeconds", 6),
            set_at("spec.chain.services.1.stopTimeoutSeconds", 5),
        ),
        STOP_BUDGET,
    ),
    (
        "health-check-without-a-probe",
        ("HACluster", "mail"),
        _health_check(0, {"periodSeconds": 5}),
        ["spec.chain.services[0].healthCheck", "must set exactly one of exec, tcp or http"],
    ),
    (
        "health-check-with-two-probes",
        ("HACluster", "mail"),
        _health_check(1, {"exec": {"command": ["/usr/bin/doveadm", "who"]}, "tcp": {"port": 143}}),
        ["spec.chain.services[1].healthCheck", "must set exactly one of exec, tcp or http"],
    ),
    (
        "health-check-with-every-probe",
        ("HACluster", "mail"),
        _health_check(
            0, {"exec": {"command": ["/bin/true"]}, "tcp": {"port": 25}, "http": {"url": "http://127.0.0.1:11334/ping"}}
        ),
        ["spec.chain.services[0].healthCheck", "must set exactly one of exec, tcp or http"],
    ),
    (
        "exec-health-check-as-root",
        ("HACluster", "mail"),
        _health_check(0, {"exec": {"command": ["/usr/sbin/postfix", "status"], "user": "root"}}),
        ["spec.chain.services[0].healthCheck.exec.user", "must be a login name", "not root"],
    ),
    (
        "exec-health-check-user-with-shell-characters",
        ("HACluster", "mail"),
        _health_check(0, {"exec": {"command": ["/bin/true"], "user": "nobody;id"}}),
        ["spec.chain.services[0].healthCheck.exec.user", "must be a login name"],
    ),
    (
        "http-health-check-with-credentials",
        ("HACluster", "mail"),
        _health_check(2, {"http": {"url": "http://admin:secret@127.0.0.1:11334/ping"}}),
        ["spec.chain.services[2].healthCheck.http.url", "must be a plain http:// URL", "no credentials"],
    ),
    (
        "https-health-check",
        ("HACluster", "mail"),
        _health_check(2, {"http": {"url": "https://127.0.0.1:11334/ping"}}),
        ["spec.chain.services[2].healthCheck.http.url", "must be a plain http:// URL"],
    ),
    (
        "http-health-check-with-a-quote",
        ("HACluster", "mail"),
        _health_check(2, {"http": {"url": "http://127.0.0.1/ping' -o /etc/passwd"}}),
        ["spec.chain.services[2].healthCheck.http.url", "must be a plain http:// URL"],
    ),
]


@pytest.mark.parametrize(("obj", "mutate", "expected"), [(o, m, e) for _, o, m, e in BAD], ids=[b[0] for b in BAD])
def test_bad_spec_is_refused_naming_the_field(
    api: Kubectl, obj: tuple[str, str], mutate: Mutation, expected: list[str]
) -> None:
    doc = sample(*obj)
    mutate(doc)
    code, stderr = apply(api, doc)
    assert code != 0, f"accepted a bad {obj[0]}"
    for fragment in expected:
        assert fragment in stderr, f"{fragment!r} missing from: {stderr}"


# Issue 12: the good counterparts, each checked in what the API server stored.
GOOD: list[tuple[str, tuple[str, str], Mutation, Callable[[dict[str, Any]], bool]]] = [
    (
        "stop-timeouts-exactly-filling-the-budget",
        ("HACluster", "mail"),
        _all(
            set_at("spec.leases", ROOMY_LEASES),
            set_at("spec.chain.services.0.stopTimeoutSeconds", 5),
            set_at("spec.chain.postgres.stopTimeoutSeconds", 5),
        ),
        lambda spec: spec["chain"]["postgres"]["stopTimeoutSeconds"] == 5,
    ),
    (
        "stop-timeouts-without-postgres-within-the-budget",
        ("HACluster", "groupware"),
        _all(
            set_at("spec.leases", ROOMY_LEASES),
            set_at("spec.chain.services.0.stopTimeoutSeconds", 4),
            set_at("spec.chain.services.1.stopTimeoutSeconds", 6),
        ),
        lambda spec: spec["chain"]["services"][1]["stopTimeoutSeconds"] == 6,
    ),
    (
        "no-stop-timeouts-leave-the-budget-to-the-demotion",
        ("HACluster", "mail"),
        lambda doc: None,
        lambda spec: "stopTimeoutSeconds" not in spec["chain"]["postgres"],
    ),
    (
        "exec-health-check-runs-as-nobody-by-default",
        ("HACluster", "mail"),
        _health_check(0, {"exec": {"command": ["/usr/sbin/postfix", "status"]}}),
        lambda spec: (
            spec["chain"]["services"][0]["healthCheck"]["exec"]["user"] == "nobody"
            and spec["chain"]["services"][0]["healthCheck"]["failureThreshold"] == 3
        ),
    ),
    (
        "exec-health-check-as-a-service-user",
        ("HACluster", "mail"),
        _health_check(1, {"exec": {"command": ["/usr/bin/doveadm", "who"], "user": "dovecot"}}),
        lambda spec: spec["chain"]["services"][1]["healthCheck"]["exec"]["user"] == "dovecot",
    ),
    (
        "tcp-health-check",
        ("HACluster", "mail"),
        _health_check(0, {"tcp": {"port": 25}, "periodSeconds": 5}),
        lambda spec: spec["chain"]["services"][0]["healthCheck"]["tcp"] == {"host": "127.0.0.1", "port": 25},
    ),
    (
        "http-health-check",
        ("HACluster", "mail"),
        _health_check(2, {"http": {"url": "http://[::1]:11334/ping?full=1"}}),
        lambda spec: spec["chain"]["services"][2]["healthCheck"]["http"]["expectedStatus"] == 200,
    ),
]


@pytest.mark.parametrize(("obj", "mutate", "stored_ok"), [(o, m, c) for _, o, m, c in GOOD], ids=[g[0] for g in GOOD])
def test_good_spec_is_accepted(
    api: Kubectl, obj: tuple[str, str], mutate: Mutation, stored_ok: Callable[[dict[str, Any]], bool]
) -> None:
    doc = sample(*obj)
    mutate(doc)
    doc["metadata"]["namespace"] = NAMESPACE
    doc["metadata"]["name"] = f"good-{next(_names)}"
    proc = api.run(["apply", "-f", "-"], stdin=yaml.safe_dump(doc), check=False)
    assert proc.returncode == 0, proc.stderr
    stored = api.json(["get", obj[0].lower(), doc["metadata"]["name"], "-n", NAMESPACE])
    assert stored_ok(stored["spec"]), stored["spec"]


HOSTILE_UPDATES = ("drbd-disk-adds-a-handler", "replication-user-with-space")


@pytest.mark.parametrize(("obj", "mutate"), [(o, m) for n, o, m, _ in BAD if n in HOSTILE_UPDATES], ids=HOSTILE_UPDATES)
def test_a_refused_value_changes_nothing(api: Kubectl, obj: tuple[str, str], mutate: Mutation) -> None:
    """Refusing the hostile update of a stored object leaves the stored object as it was."""
    doc = sample(*obj)
    doc["metadata"]["namespace"] = NAMESPACE
    doc["metadata"]["name"] = f"unchanged-{next(_names)}"
    api.run(["apply", "-f", "-"], stdin=yaml.safe_dump(doc))
    before = api.json(["get", obj[0].lower(), doc["metadata"]["name"], "-n", NAMESPACE])
    mutate(doc)
    assert api.run(["apply", "-f", "-"], stdin=yaml.safe_dump(doc), check=False).returncode != 0
    after = api.json(["get", obj[0].lower(), doc["metadata"]["name"], "-n", NAMESPACE])
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_a_mount_of_a_volume_outside_the_chain_is_accepted_and_the_agents_refuse_it(api: Kubectl) -> None:
    """A gap the CRD leaves (no rule across spec.chain.mounts and spec.chain.volumes): the API
    server stores it, the operator's cross-object check and the agents refuse it. The e2e
    test_invalid_cluster_leaves_the_other_serving relies on it to have a cluster the agents
    cannot act on."""
    doc = sample("HACluster", "mail")
    doc["spec"]["chain"].update(volumes=[], floatingIPs=[])
    doc["metadata"]["namespace"] = NAMESPACE
    doc["metadata"]["name"] = f"gap-{next(_names)}"
    api.run(["apply", "-f", "-"], stdin=yaml.safe_dump(doc))
    stored = api.json(["get", "hac", doc["metadata"]["name"], "-n", NAMESPACE])
    assert stored["spec"]["chain"]["mounts"][0]["volume"] == "mail-store"
    world: dict[str, list[dict[str, Any]]] = {"haclusters": [stored], "drbdvolumes": [], "floatingips": []}
    with pytest.raises(
        InvalidSpec,
        match=r"^spec\.chain\.mounts\[0\]\.volume: DRBDVolume "
        "mail-store is not in spec.chain.volumes",
    ):
        resolve(stored, world)


def test_at_least_fifteen_distinct_refusals() -> None:
    assert len({name for name, *_ in BAD}) >= 15


@pytest.mark.parametrize(("field", "value"), [("resourceName", "renamed"), ("minor", 7)], ids=["resourceName", "minor"])
def test_drbd_identity_is_immutable(api: Kubectl, field: str, value: Any) -> None:
    doc = sample("DRBDVolume", "mail-store")
    doc["metadata"]["namespace"] = NAMESPACE
    doc["metadata"]["name"] = f"immutable-{field.lower()}"
    api.run(["apply", "-f", "-"], stdin=yaml.safe_dump(doc))
    doc["spec"][field] = value
    proc = api.run(["apply", "-f", "-"], stdin=yaml.safe_dump(doc), check=False)
    assert proc.returncode != 0
    assert f"spec.{field}" in proc.stderr and "immutable" in proc.stderr, proc.stderr
    stored = api.json(["get", "drbdvol", doc["metadata"]["name"], "-n", NAMESPACE])
    assert stored["spec"][field] != value, "a refused update changed the object"
