"""Failure isolation: a second HACluster on the mail pair, `spare`, whose spec the API server
accepts but the agents cannot act on. It mounts the mail cluster's DRBDVolume without naming it
in its own spec.chain.volumes: the CRD has no rule across those two fields (its validation test
shows the API server accepting it), so only the operator's cross-object check and the agents
see it. Acted on, it would mount mail's device from outside mail's chain.

Both nodes refuse `spare` with InvalidSpec naming spec.chain.mounts[0].volume, its Ready
condition and a Warning Event name the nodes and the field, nothing of it ever runs (no Lease
holder, address, unit or mount), and neither agent restarts. The mail cluster beside it keeps
acknowledging writes, fails over when its primary's agent is killed and the node cut off,
takes the old primary back as a standby, and loses no acknowledged write."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from tandem.api.common import API_VERSION
from tandem_lab.cluster import LabCluster
from tandem_lab.harness import (
    Client,
    checked,
    holds,
    lease_holder,
    node_report,
    wait_replicating,
    wait_until,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

SAMPLES = ["mail.yaml"]
NODES = ("mail1", "mail2")
SPARE = "spare"
SPARE_VIP = vip(150)
SPARE_UNIT = "lab-echo@8090.service"
FIELD = "spec.chain.mounts[0].volume"
PROBLEM = f"{FIELD}: DRBDVolume mail-store is not in spec.chain.volumes: add it there"


def edit_manifests(docs: list[dict[str, Any]]) -> None:
    """`spare` beside the mail sample, on the same nodes (its addresses already moved to the
    lab's subnet): a floating IP, a service, and a mount of mail-store, which is not its own."""
    mail = next(d for d in docs if d["kind"] == "HACluster" and d["metadata"]["name"] == "mail")
    docs += [
        {
            "apiVersion": API_VERSION,
            "kind": "FloatingIP",
            "metadata": {"name": "spare-vip"},
            "spec": {"cluster": SPARE, "addresses": [{"start": SPARE_VIP}], "prefixLength": 24, "interface": "mgmt"},
        },
        {
            "apiVersion": API_VERSION,
            "kind": "HACluster",
            "metadata": {"name": SPARE},
            "spec": {
                "nodes": copy.deepcopy(mail["spec"]["nodes"]),
                "primary": "mail1",
                "chain": {
                    "mounts": [{"volume": "mail-store", "mountPoint": "/srv/spare", "fsType": "ext4"}],
                    "floatingIPs": ["spare-vip"],
                    "services": [{"name": "web", "unit": SPARE_UNIT}],
                },
            },
        },
    ]


def refused(lab: LabCluster, node: str) -> bool:
    report = node_report(lab, SPARE, node)
    return (
        report.get("ineligibleReason") == "InvalidSpec"
        and report.get("ineligibleMessage", "").startswith(f"{FIELD}: ")
        and report.get("eligible") is False
    )


def ready(lab: LabCluster, name: str) -> dict[str, Any]:
    conditions = (lab.hacluster(name).get("status") or {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Ready"), {})


def events(lab: LabCluster, name: str, reason: str) -> list[dict[str, Any]]:
    listed = json.loads(
        lab.kubectl(
            "get",
            "events",
            "-n",
            lab.namespace,
            "-o",
            "json",
            "--field-selector",
            f"involvedObject.name={name},reason={reason}",
        )
    )
    items: list[dict[str, Any]] = listed["items"]
    return items


def assert_nothing_of_spare_runs(lab: LabCluster, nodes: tuple[str, ...] = NODES) -> None:
    assert lease_holder(lab, SPARE)[0] is None
    for node in nodes:
        assert node_report(lab, SPARE, node).get("role") != "Primary"
        assert not holds(lab, node, SPARE_VIP), f"{node} holds {SPARE_VIP}"
        machine = lab.machine(node)
        assert machine.unit_state(SPARE_UNIT) != "active", f"{SPARE_UNIT} runs on {node}"
        mounted = machine.exec(["findmnt", "-n", "--mountpoint", "/srv/spare"], check=False).stdout
        assert mounted.strip() == "", f"/srv/spare is mounted on {node}: {mounted}"


def test_both_nodes_refuse_the_invalid_cluster_naming_the_field(lab: LabCluster, client: Client) -> None:
    wait_until(
        lambda: all(refused(lab, n) for n in NODES),
        90,
        f"both nodes refusing {SPARE}",
        context=lambda: {n: node_report(lab, SPARE, n) for n in NODES},
    )
    for node in NODES:
        report = node_report(lab, SPARE, node)
        assert report["role"] == "Unknown"
        assert report["message"].startswith(PROBLEM), report["message"]
        assert f"{lab.namespace}/{SPARE}: not started: InvalidSpec: {PROBLEM}" in lab.agent_log(node)

    said = f"mail1 and mail2 refuse the spec: {PROBLEM}"
    condition = wait_until(
        lambda: said in ready(lab, SPARE).get("message", "") and ready(lab, SPARE),
        60,
        f"{SPARE}'s Ready naming the nodes",
        context=lambda: ready(lab, SPARE),
    )
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
    warning = wait_until(
        lambda: [e for e in events(lab, SPARE, "InvalidSpec") if said in e["message"]],
        60,
        "an InvalidSpec Event",
        context=lambda: events(lab, SPARE, "InvalidSpec"),
    )
    assert warning[0]["type"] == "Warning"

    # The mail cluster beside it serves as if spare were not there.
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    client.acked_by("mail1")
    wait_until(lambda: ready(lab, "mail").get("status") == "True", 30, "mail Ready", context=lambda: ready(lab, "mail"))

    agents = {n: lab.agent_pid(n) for n in NODES}
    time.sleep(5)
    assert {n: lab.agent_pid(n) for n in NODES} == agents, "an agent restarted"
    assert_nothing_of_spare_runs(lab)


def test_the_cluster_beside_it_fails_over_and_loses_no_acknowledged_write(lab: LabCluster, client: Client) -> None:
    wait_until(lambda: refused(lab, "mail1"), 90, f"mail1 refusing {SPARE}")
    with checked(lab, client, vip(), settle=180):
        _, epoch = lease_holder(lab, "mail")
        fault = time.monotonic()
        lab.kill_agent("mail1")
        lab.cut("mail1")
        before = node_report(lab, SPARE, "mail1")["heartbeatTime"]  # the killed agent's last
        served = client.served_by("mail2", timeout=30)
        acked = client.acked_by("mail2", timeout=30)
        print(
            f"failover beside a refused cluster: VIP from mail2 after {served - fault:.2f}s, "
            f"first write after {acked - fault:.2f}s"
        )
        assert lease_holder(lab, "mail") == ("mail2", epoch + 1)
        assert refused(lab, "mail2")
        assert_nothing_of_spare_runs(lab, ("mail2",))
        lab.heal("mail1")
    # On a clean exit `checked` has waited for mail2 primary with mail1 back in sync, one
    # primary at a time throughout, and every acknowledged write on mail2.
    failover = lab.hacluster("mail")["status"]["lastFailover"]
    assert (failover["to"], failover["planned"]) == ("mail2", False)
    # mail1's new agent (restarted, or its node fenced and booted again) refuses spare again
    # (ISO times of whole seconds compare as text); still nothing of it runs anywhere.
    wait_until(
        lambda: refused(lab, "mail1") and node_report(lab, SPARE, "mail1")["heartbeatTime"] > before,
        90,
        f"mail1 refusing {SPARE} again after the failover",
    )
    assert refused(lab, "mail2")
    assert_nothing_of_spare_runs(lab)
