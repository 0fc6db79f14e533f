"""Scenario 1: kill -9 of the primary's agent and its PostgreSQL at once. Whichever node serves
afterwards (the restarted agent may reclaim its Lease and recover in place, or the standby
takes over once the Lease expires), there is one primary at a time and every acknowledged
write is on it."""

from __future__ import annotations

import time

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, checked, lease_holder
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab


def test_primary_crash_loses_no_acknowledged_write(lab: LabCluster, client: Client) -> None:
    with checked(lab, client, vip()):
        crash = time.monotonic()
        lab.kill_postgres("mail1")
        lab.kill_agent("mail1")
        record = client.wait_for(lambda r: "ack" in r, 60, "a write acknowledged after the crash")
        holder, epoch = lease_holder(lab, "mail")
        print(f"crash: {holder} acknowledged again after {record['t'] - crash:.2f}s (epoch {epoch})")
        assert holder in ("mail1", "mail2")
