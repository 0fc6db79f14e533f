"""Scenario 2: the primary's agent is frozen (SIGSTOP) for twice the lease duration, then
thawed. Its watchdog fences the node at the agent's own deadline, before the standby may take
the Lease; the standby takes it at the next epoch; nothing is ever written at the stale epoch
again, and the old node comes back as a standby."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tandem.lab.cluster import LabCluster
from tandem.lab.harness import (
    Client,
    Observer,
    lease_holder,
    missing_acks,
    node_report,
    wait_replicating,
    wait_until,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

LEASE_SECONDS = 3.0


def test_frozen_agent_never_acts_on_a_stale_epoch(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    client.acked_by("mail1")
    _, epoch = lease_holder(lab, "mail")
    observer = Observer(lab, ["mail1", "mail2"], vip()).start()
    try:
        frozen_at = time.time()
        lab.freeze_agent("mail1")
        time.sleep(2 * LEASE_SECONDS)
        lab.thaw_agent("mail1")
        client.acked_by("mail2", timeout=30)
        assert lease_holder(lab, "mail") == ("mail2", epoch + 1)
        fences = lab.fences("mail1")
        assert fences, "the watchdog never fenced the frozen primary"
        fenced_at = float(fences[0].split()[0])
        taken_at = datetime.fromisoformat(lab.lease("mail")["acquireTime"]).timestamp()
        print(f"frozen at 0; fenced after {fenced_at - frozen_at:.2f}s; "
              f"mail2 took the Lease after {taken_at - frozen_at:.2f}s")
        assert fenced_at < taken_at, "the standby took the Lease before the old node was fenced"
        assert fenced_at - frozen_at < LEASE_SECONDS
        time.sleep(LEASE_SECONDS)
        assert lease_holder(lab, "mail") == ("mail2", epoch + 1), "a stale write moved the Lease"
        wait_until(lambda: node_report(lab, "mail", "mail1").get("epoch", 0) >= epoch + 1, 120,
                   "mail1 reporting at the new epoch")
        wait_replicating(lab, "mail", "mail2", ["mail1"])
    finally:
        lab.thaw_agent("mail1")
        observer.stop()
    observer.assert_single_primary()
    client.stop()
    assert missing_acks(lab, "mail2", client.acked()) == []
