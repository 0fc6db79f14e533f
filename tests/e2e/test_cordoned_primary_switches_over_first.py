"""Scenario 14: cordoning the primary's Node (maintenance) makes the operator start a planned
switchover to the fit standby before anyone drains the node: no acknowledged write is lost,
one primary at a time, and the failover record says it was planned for maintenance. Uncordoning
does not move the primary back (no surprise second interruption)."""

from __future__ import annotations

import time

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, checked, lease_holder, wait_replicating
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab


def test_cordoned_primary_switches_over_first(lab: LabCluster, client: Client) -> None:
    with checked(lab, client, vip()):
        _, epoch = lease_holder(lab, "mail")
        try:
            started = time.monotonic()
            lab.cordon("mail1")
            client.acked_by("mail2", timeout=60)
            print(
                f"cordon: mail2 acknowledged after {time.monotonic() - started:.2f}s, "
                f"client-visible gap {client.http_gap(after=started):.2f}s"
            )
            assert lease_holder(lab, "mail") == ("mail2", epoch + 1)
            record = lab.hacluster("mail")["status"]["lastFailover"]
            assert record["planned"] is True and record["to"] == "mail2"
            assert "aintenance" in record["reason"]
            wait_replicating(lab, "mail", "mail2", ["mail1"])
            lab.uncordon("mail1")
            time.sleep(5)
            assert lease_holder(lab, "mail") == ("mail2", epoch + 1)
        finally:
            lab.uncordon("mail1")
