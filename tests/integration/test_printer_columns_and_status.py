"""kubectl get/describe show what an operator reads: printer columns fed by the status subresource."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from tandem.kube.connect import load_client
from tandem.kube.lease import LeaseRecord
from tandem_operator import core
from tandem_operator.kube import Kube as OperatorKube
from tandem_operator.kube import parse_cluster
from tandem_operator.snapshot import Snapshot
from tests.conftest import Kubectl, remove_tenant_limits

pytestmark = pytest.mark.apiserver

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "tandem-columns"

HAC_STATUS = {
    "primary": "mail1",
    "epoch": 7,
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Replicating",
            "message": "mail1 primary, mail2 streaming 0 s behind",
            "lastTransitionTime": "2026-11-22T03:00:00Z",
            "observedGeneration": 1,
        }
    ],
    "nodes": [
        {
            "name": "mail1",
            "role": "Primary",
            "epoch": 7,
            "drbd": [
                {
                    "name": "mail-store",
                    "role": "Primary",
                    "diskState": "UpToDate",
                    "connectionState": "Connected",
                    "peerRole": "Secondary",
                    "peerDiskState": "UpToDate",
                    "replicationState": "Established",
                }
            ],
            "postgres": {"role": "Primary", "timeline": 3, "streamingStandbys": 1},
        },
        {
            "name": "mail2",
            "role": "Standby",
            "epoch": 7,
            "postgres": {"role": "Standby", "timeline": 3, "lagSeconds": 0},
        },
    ],
    "lastFailover": {
        "from": "mail2",
        "to": "mail1",
        "reason": "LeaseExpired",
        "durationMs": 4200,
        "time": "2026-11-22T02:59:00Z",
    },
}


@pytest.fixture(scope="module")
def api(crds_installed: Kubectl) -> Kubectl:
    crds_installed.run(["create", "namespace", NAMESPACE])
    docs = [d for d in yaml.safe_load_all((REPO / "deploy/samples/mail.yaml").read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = NAMESPACE
    crds_installed.run(["apply", "-f", "-"], stdin=yaml.safe_dump_all(docs))
    return crds_installed


def patch_status(api: Kubectl, resource: str, status: dict) -> None:
    api.run(
        [
            "patch",
            resource,
            "-n",
            NAMESPACE,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        ]
    )


def row(table: str, name: str) -> list[str]:
    for line in table.splitlines():
        if line.split() and line.split()[0].endswith(name):
            return line.split()
    raise AssertionError(f"no row {name} in:\n{table}")


def test_hac_columns_show_the_status_written_through_the_subresource(api: Kubectl) -> None:
    patch_status(api, "hac/mail", HAC_STATUS)
    table = api.run(["get", "hac", "-n", NAMESPACE]).stdout
    assert table.split()[:8] == ["NAME", "PRIMARY", "READY", "STATUS", "EPOCH", "DESIRED", "PREFERRED", "AGE"]
    assert row(table, "mail")[1:5] == ["mail1", "True", "Replicating", "7"]


def test_status_is_not_writable_through_the_main_resource(api: Kubectl) -> None:
    api.run(["patch", "hac/mail", "-n", NAMESPACE, "--type=merge", "-p", json.dumps({"status": {"primary": "mail2"}})])
    assert api.json(["get", "hac/mail", "-n", NAMESPACE])["status"]["primary"] == "mail1"


def test_status_is_validated_too(api: Kubectl) -> None:
    proc = api.run(
        [
            "patch",
            "hac/mail",
            "-n",
            NAMESPACE,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(
                {
                    "status": {
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "Maybe",
                                "reason": "X",
                                "lastTransitionTime": "2026-11-22T03:00:00Z",
                            }
                        ]
                    }
                }
            ),
        ],
        check=False,
    )
    assert proc.returncode != 0 and "status.conditions[0].status" in proc.stderr, proc.stderr


def _node_report(api: Kubectl, report: dict) -> tuple[int, str, dict | None]:
    """Write mail2's entry as its agent would; the exit code, stderr, and the entry as the
    operator then parses it."""
    entry = {"name": "mail2", "role": "Standby", "epoch": 7, "eligible": False} | report
    proc = api.run(
        [
            "patch",
            "hac/mail",
            "-n",
            NAMESPACE,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"nodes": [entry]}}),
        ],
        check=False,
    )
    parsed = parse_cluster(api.json(["get", "hac/mail", "-n", NAMESPACE])).status
    mail2 = next((r for r in parsed.nodes if r.name == "mail2"), None) if parsed else None
    return proc.returncode, proc.stderr, mail2.model_dump() if mail2 else None


def test_a_node_report_gives_its_reason_as_one_of_the_words(api: Kubectl) -> None:
    """ineligibleReason is one of IneligibleReason, the details in ineligibleMessage; the
    previous agent's "<Reason>: <details>" is still accepted (a rolling upgrade) and the
    operator reads it as the same two fields."""
    current = {"ineligibleReason": "LagTooHigh", "ineligibleMessage": "lag 12 s > 5 s"}
    code, err, parsed = _node_report(api, current)
    assert code == 0, err
    assert parsed and (parsed["ineligible_reason"], parsed["ineligible_message"]) == ("LagTooHigh", "lag 12 s > 5 s")
    code, err, legacy = _node_report(api, {"ineligibleReason": "LagTooHigh: lag 12 s > 5 s", "ineligibleMessage": ""})
    assert code == 0, err
    assert legacy == parsed
    code, err, _ = _node_report(api, {"ineligibleReason": "SomethingElse: no"})
    assert code != 0 and "status.nodes[0].ineligibleReason" in err, err
    code, err, _ = _node_report(api, {"ineligibleReason": "lagtoohigh"})
    assert code != 0 and "status.nodes[0].ineligibleReason" in err, err


def test_get_tandem_category_lists_every_kind(api: Kubectl) -> None:
    patch_status(
        api,
        "drbdvol/mail-store",
        {"roles": "Primary/Secondary", "disks": "UpToDate/UpToDate", "connection": "Connected"},
    )
    patch_status(
        api, "fip/mail-vips", {"holder": "mail1", "summary": "99 addresses 198.18.0.2-198.18.0.100", "addressCount": 99}
    )
    table = api.run(["get", "tandem", "-n", NAMESPACE]).stdout
    assert row(table, "hacluster.tandem.dev/mail")[1:5] == ["mail1", "True", "Replicating", "7"]
    assert row(table, "drbdvolume.tandem.dev/mail-store")[1:6] == [
        "mail",
        "mail-store",
        "Primary/Secondary",
        "UpToDate/UpToDate",
        "Connected",
    ]
    fip = row(table, "floatingip.tandem.dev/mail-vips")
    assert fip[1] == "mail" and "198.18.0.2-198.18.0.100" in " ".join(fip) and fip[-2] == "mail1"


def test_short_names(api: Kubectl) -> None:
    for short, name in (("hac", "mail"), ("drbdvol", "mail-store"), ("fip", "mail-vips")):
        assert name in api.run(["get", short, "-n", NAMESPACE, "-o", "name"]).stdout


def test_describe_shows_per_node_reports_and_conditions(api: Kubectl) -> None:
    patch_status(api, "hac/mail", HAC_STATUS)
    text = api.run(["describe", "hac", "mail", "-n", NAMESPACE]).stdout
    for fragment in (
        "Primary:",
        "mail1",
        "Epoch:",
        "7",
        "Replicating",
        "Streaming Standbys:",
        "Lag Seconds:",
        "Disk State:",
        "UpToDate",
        "LeaseExpired",
    ):
        assert fragment in text, f"{fragment!r} missing from describe:\n{text}"


def test_deploy_base_applies_to_the_real_api_server(crds_installed: Kubectl) -> None:
    try:
        crds_installed.run(["apply", "--server-side", "-k", str(REPO / "deploy")])
        dry = crds_installed.run(["apply", "--server-side", "--dry-run=server", "-k", str(REPO / "deploy")])
    finally:
        # Later tests in this session share the API server and have no TenantPolicy entry:
        # leave no tenant limits behind (tests/integration/test_tenant_policy.py tries them).
        remove_tenant_limits(crds_installed)
    assert "daemonset.apps/tandem-agent" in dry.stdout
    ds = crds_installed.json(["get", "ds/tandem-agent", "-n", "tandem-system"])
    pod = ds["spec"]["template"]["spec"]
    # The host's work in the host's namespaces (docs/install.md; tests/integration/test_deploy.py
    # checks every setting against the documented table).
    assert pod["containers"][0]["securityContext"]["privileged"] is True
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    for kind, name in (("clusterrole", "tandem-agent"), ("clusterrole", "tandem-operator")):
        rules = crds_installed.json(["get", kind, name])["rules"]
        for rule in rules:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule


def test_the_operators_status_with_announced_repairs_round_trips(api: Kubectl) -> None:
    """The agents' resources and lastRecovery and the operator's status.announced pass the real
    API server's schema, and what it stores decides the same again: no second write, no
    Event posted twice."""
    ns = f"{NAMESPACE}-announced"
    api.run(["create", "namespace", ns])
    docs = [d for d in yaml.safe_load_all((REPO / "deploy/samples/mail.yaml").read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = ns
    api.run(["apply", "-f", "-"], stdin=yaml.safe_dump_all(docs))
    now = dt.datetime(2026, 11, 22, 3, 0, 5, tzinfo=dt.UTC)
    drbd = {
        "name": "mail-store",
        "diskState": "UpToDate",
        "connectionState": "Connected",
        "replicationState": "Established",
    }
    nodes = [
        {
            "name": "mail1",
            "role": "Primary",
            "epoch": 7,
            "heartbeatTime": "2026-11-22T03:00:04Z",
            "drbd": [{**drbd, "role": "Primary"}],
            "postgres": {"role": "Primary"},
            "resources": [
                {"name": "mail-store", "kind": "Volume", "state": "Healthy"},
                {
                    "name": "postgres",
                    "kind": "PostgreSQL",
                    "state": "Failing",
                    "consecutiveFailures": 2,
                    "lastCheckTime": "2026-11-22T03:00:04.5Z",
                    "message": "no answer within 2 s",
                },
            ],
            "lastRecovery": {
                "time": "2026-11-22T03:00:01.25Z",
                "resource": "postfix",
                "kind": "Service",
                "action": "Repaired",
                "message": "postfix on mail1 failed; restarted in place (1 of 3)",
            },
        },
        {
            "name": "mail2",
            "role": "Standby",
            "epoch": 7,
            "heartbeatTime": "2026-11-22T03:00:04Z",
            "drbd": [{**drbd, "role": "Secondary"}],
            "postgres": {"role": "Standby", "lagSeconds": 0},
            "eligible": True,
        },
    ]
    api.run(
        [
            "patch",
            "hac/mail",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"nodes": nodes}}),
        ]
    )
    kube = OperatorKube(load_client(str(api.kubeconfig), retries=None))

    def snapshot() -> Snapshot:
        body = kube.get_cluster(ns, "mail")
        assert body is not None
        return Snapshot(
            name="mail",
            namespace=ns,
            generation=int(body["metadata"]["generation"]),
            cluster=parse_cluster(body),
            lease=LeaseRecord("mail1", 7, now, now, 3),
            now=now,
            volumes=kube.volumes(ns),
            floating_ips=kube.floating_ips(ns),
            clusters=kube.clusters(ns),
        )

    first = core.reconcile(snapshot())
    assert first.patch is not None and "announced" in first.patch
    assert [(e.reason, e.type) for e in first.events][-2:] == [("ResourceFailed", "Warning"), ("Repaired", "Normal")]
    kube.apply_status(ns, "mail", first.patch)
    stored = api.json(["get", "hac/mail", "-n", ns])["status"]
    assert stored["announced"]["recoveries"][0]["node"] == "mail1"
    assert stored["announced"]["unhealthy"] == [{"node": "mail1", "kind": "PostgreSQL", "name": "postgres"}]
    healthy = next(c for c in stored["conditions"] if c["type"] == "ResourcesHealthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "ResourceFailed")
    assert len(stored["nodes"]) == 2, "the operator's apply leaves the agents' entries alone"
    again = core.reconcile(snapshot())
    assert again.patch is None and again.events == ()
