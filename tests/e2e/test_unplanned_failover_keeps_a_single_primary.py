"""kill -9 of the primary's agent plus cutting its namespace off: the standby takes the Lease
once it expires and serves; the old node has demoted (its restarted agent tears the chain
down, or its watchdog fences it at the agent's own deadline) and, once the cut
heals, rejoins as a standby through pg_rewind. Never two primaries; no acknowledged write lost."""

from __future__ import annotations

import time

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import (
    Client,
    Observer,
    holds,
    lease_holder,
    missing_acks,
    missing_files,
    node_report,
    wait_replicating,
    wait_until,
    writable,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab


def test_failover_after_the_primary_dies_and_is_cut_off(lab: LabCluster, client: Client) -> None:
    # Listed as a synchronous standby on the Lease, not only streaming: otherwise mail2
    # rightly refuses to take over (it may lack acknowledged writes).
    wait_replicating(lab, "mail", "mail1", ["mail2"], timeout=90)
    client.acked_by("mail1")
    _, epoch = lease_holder(lab, "mail")
    observer = Observer(lab, ["mail1", "mail2"], vip()).start()
    try:
        fault = time.monotonic()
        lab.kill_agent("mail1")
        lab.cut("mail1")
        served = client.served_by("mail2", timeout=30)
        acked = client.acked_by("mail2", timeout=30)
        print(f"failover: VIP from mail2 after {served - fault:.2f}s, first write after {acked - fault:.2f}s")
        assert lease_holder(lab, "mail") == ("mail2", epoch + 1)
        assert not holds(lab, "mail1", vip()) and not writable(lab, "mail1")
        lab.heal("mail1")
        wait_until(
            lambda: node_report(lab, "mail", "mail1").get("postgres", {}).get("role") == "Standby",
            90,
            "mail1 back as a PostgreSQL standby",
        )
        wait_until(
            lambda: node_report(lab, "mail", "mail1").get("postgres", {}).get("lagSeconds") == 0,
            60,
            "mail1 streaming from mail2",
        )
    finally:
        observer.stop()
    assert observer.samples > 20
    assert observer.double_vip == [], observer.double_vip
    assert observer.double_writable == [], observer.double_writable
    status = lab.hacluster("mail")["status"]
    assert status["lastFailover"]["to"] == "mail2" and status["lastFailover"]["planned"] is False
    client.stop()
    assert missing_acks(lab, "mail2", client.acked()) == []
    files = client.acked_files()
    assert files, "no file was acknowledged"
    assert missing_files(lab, "mail2", files) == []
    events = lab.kubectl("get", "events", "-n", lab.namespace)
    assert "failed over from mail1 to mail2" in events
