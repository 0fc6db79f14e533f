"""Without the Secret spec.chain.postgres.credentialsSecret names, no node takes the Lease:
each reports InvalidSpec naming the field, its agent keeps running, and once the Secret is
created a primary comes up, a write through the VIP is acknowledged and the other node
streams from it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, lease_holder, node_report, wait_until
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

CREDENTIALS = False  # the lab fixture applies the sample without its Secret
NODES = ("mail1", "mail2")


def test_no_node_takes_the_lease_and_each_says_why(lab: LabCluster) -> None:
    field = "spec.chain.postgres.credentialsSecret"
    said = f"{field}: Secret mail-postgres-replication does not exist"

    def reported() -> bool:
        return all(
            node_report(lab, "mail", n).get("ineligibleReason") == "InvalidSpec"
            and node_report(lab, "mail", n).get("ineligibleMessage", "").startswith(said)
            for n in NODES
        )

    wait_until(reported, 60, "both nodes reporting the missing Secret")
    for node in NODES:
        report = node_report(lab, "mail", node)
        assert report["eligible"] is False
        # The message has it all, the fix included.
        assert report["message"].startswith(
            f"{field}: Secret mail-postgres-replication does not exist in namespace "
            f"{lab.namespace}: create it, e.g. kubectl -n {lab.namespace} create secret generic"
        )
    agents = {n: lab.agent_pid(n) for n in NODES}
    time.sleep(3)
    assert lease_holder(lab, "mail")[0] is None
    assert {n: lab.agent_pid(n) for n in NODES} == agents, "an agent exited"
    assert all(node_report(lab, "mail", n).get("role") != "Primary" for n in NODES)


def test_creating_the_secret_brings_the_chain_up(lab: LabCluster, tmp_path: Path) -> None:
    lab.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(lab.credentials()))
    # Both nodes read the Secret within a retry or two; whichever is eligible first may win.
    holder = wait_until(lambda: lease_holder(lab, "mail")[0], 60, "a Lease holder")
    assert holder in NODES
    client = Client(lab, vip(), tmp_path / "client.log")  # after the role could be made
    try:
        client.acked_by(holder, timeout=60)
    finally:
        client.stop()
    standby = next(n for n in NODES if n != holder)
    wait_until(
        lambda: node_report(lab, "mail", standby).get("postgres", {}).get("lagSeconds") == 0,
        90,
        f"{standby} streaming as a standby",
    )
