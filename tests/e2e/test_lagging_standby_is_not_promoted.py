"""Scenario 7: the standby's replay is paused, so it falls further behind than
spec.failover.maxLagSeconds. When the primary is then cut off, the standby does not take over,
and the HACluster says why (LagTooHigh). Once the old primary returns it serves again and the
standby catches up."""

from __future__ import annotations

import json
import time

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import (
    Client,
    checked,
    lease_holder,
    node_report,
    wait_replicating,
    wait_until,
    wal_replay,
    writable,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

LEASE_SECONDS = 3.0


def conditions(lab: LabCluster) -> str:
    return json.dumps(lab.hacluster("mail")["status"].get("conditions", []))


def test_lagging_standby_is_not_promoted(lab: LabCluster, client: Client) -> None:
    with checked(lab, client, vip()):
        _, epoch = lease_holder(lab, "mail")
        try:
            wal_replay(lab, "mail2", "pause")
            wait_until(
                lambda: node_report(lab, "mail", "mail2").get("ineligibleReason") == "LagTooHigh",
                60,
                "mail2 reporting LagTooHigh",
            )
            lab.cut("mail1")
            time.sleep(3 * LEASE_SECONDS)
            assert not writable(lab, "mail2"), "a lagging standby was promoted"
            assert lease_holder(lab, "mail") == ("mail1", epoch)
            text = conditions(lab)
            print(f"conditions while mail1 is cut off: {text}")
            assert "LagTooHigh" in text
            lab.heal("mail1")
            client.acked_by("mail1", timeout=60)
            wal_replay(lab, "mail2", "resume")
            wait_replicating(lab, "mail", "mail1", ["mail2"])
        finally:
            lab.heal("mail1")
