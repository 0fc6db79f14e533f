"""The operator is not on the unplanned-failover path: with it stopped, the agents still fail
over; when it returns it records the failover and posts the Event it missed."""

from __future__ import annotations

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, lease_holder, missing_acks, missing_files, node_report, wait_until

pytestmark = pytest.mark.lab


def test_failover_without_the_operator_then_catch_up(lab: LabCluster, client: Client) -> None:
    wait_until(
        lambda: (
            lease_holder(lab, "mail")[0] == "mail1"
            and node_report(lab, "mail", "mail2").get("postgres", {}).get("lagSeconds") == 0
            and "Replicating" in lab.kubectl("get", "hac", "mail", "-n", lab.namespace)
        ),
        120,
        "mail1 primary, mail2 in sync, operator reporting",
    )
    client.acked_by("mail1")
    _, epoch = lease_holder(lab, "mail")
    lab.stop_operator(kill=True)
    assert "operator" not in [p.name for p in lab.state().processes]  # type: ignore[union-attr]

    lab.kill_agent("mail1")
    lab.cut("mail1")
    client.served_by("mail2", timeout=60)
    client.acked_by("mail2", timeout=30)
    assert lease_holder(lab, "mail") == ("mail2", epoch + 1)
    assert lab.hacluster("mail")["status"]["primary"] == "mail1", "nobody updated it yet"

    lab.heal("mail1")
    lab.start_operator()
    wait_until(
        lambda: (
            lab.hacluster("mail")["status"].get("primary") == "mail2"
            and lab.hacluster("mail")["status"].get("epoch") == epoch + 1
        ),
        60,
        "the operator catching up with the new primary",
    )
    record = lab.hacluster("mail")["status"]["lastFailover"]
    assert (record["from"], record["to"], record["planned"]) == ("mail1", "mail2", False)
    wait_until(
        lambda: "failed over from mail1 to mail2" in lab.kubectl("get", "events", "-n", lab.namespace),
        30,
        "the failover Event",
    )
    client.stop()
    wait_until(
        lambda: node_report(lab, "mail", "mail1").get("postgres", {}).get("role") == "Standby",
        120,
        "mail1 back as a standby",
    )
    assert missing_acks(lab, "mail2", client.acked()) == []
    files = client.acked_files()
    assert files, "no file was acknowledged"
    assert missing_files(lab, "mail2", files) == []
