"""Scenario 4: only the replication link of the primary is cut; both nodes still reach the API
server. The primary keeps the Lease and keeps acknowledging writes once it has taken its peer
off the Lease's list of synchronous standbys; the standby is not synchronous any more, so even
when the primary then crashes it is not promoted (it could lack acknowledged writes). Once the
link heals the standby streams again, rejoins the list, and holds every acknowledged write:
no divergence."""

from __future__ import annotations

import time

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import (
    Client,
    checked,
    lease_holder,
    missing_acks,
    node_report,
    sync_standbys,
    wait_replicating,
    wait_until,
    writable,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

LEASE_SECONDS = 3.0


def test_replication_cut_alone_promotes_nothing(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    wait_until(lambda: sync_standbys(lab, "mail") == ["mail2"], 30, "mail2 listed as synchronous standby")
    with checked(lab, client, vip()):
        _, epoch = lease_holder(lab, "mail")
        try:
            cut = time.monotonic()
            lab.cut("mail1", "repl")
            wait_until(lambda: sync_standbys(lab, "mail") == [], 30, "mail2 taken off the synchronous list")
            dropped = time.monotonic()
            client.acked_by("mail1", timeout=30)
            print(f"repl cut: mail2 off the list after {dropped - cut:.2f}s")
            wait_until(
                lambda: node_report(lab, "mail", "mail2").get("ineligibleReason") == "NotSynchronous",
                30,
                "mail2 reporting why it may not take over",
            )
            time.sleep(2 * LEASE_SECONDS)
            assert lease_holder(lab, "mail") == ("mail1", epoch)
            lab.kill_postgres("mail1")
            lab.kill_agent("mail1")
            time.sleep(3 * LEASE_SECONDS)
            assert not writable(lab, "mail2"), "a standby that may lack acknowledged writes promoted"
            assert lease_holder(lab, "mail") == ("mail1", epoch)
            lab.heal("mail1", "repl")
            wait_until(lambda: sync_standbys(lab, "mail") == ["mail2"], 60, "mail2 back on the synchronous list")
        finally:
            lab.heal("mail1", "repl")
    assert lease_holder(lab, "mail") == ("mail1", epoch)
    acked = client.acked()
    wait_until(lambda: missing_acks(lab, "mail2", acked) == [], 30, "every acknowledged write replayed on mail2")
