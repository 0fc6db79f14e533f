"""Scenario 2: the primary's agent is frozen (SIGSTOP) for twice the lease duration, then
thawed. Its watchdog fences the node at the agent's own deadline, before the standby may take
the Lease; the standby takes it at the next epoch; nothing is ever written at the stale epoch
again, and the old node comes back as a standby."""

from __future__ import annotations

import time

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import (
    Client,
    checked,
    fence_and_takeover,
    lease_holder,
    node_report,
    wait_replicating,
    wait_until,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

LEASE_SECONDS = 3.0


def test_frozen_agent_never_acts_on_a_stale_epoch(lab: LabCluster, client: Client) -> None:
    with checked(lab, client, vip()):
        _, epoch = lease_holder(lab, "mail")
        try:
            frozen_at = time.time()
            lab.freeze_agent("mail1")
            time.sleep(2 * LEASE_SECONDS)
            lab.thaw_agent("mail1")
            client.acked_by("mail2", timeout=30)
            assert lease_holder(lab, "mail") == ("mail2", epoch + 1)
            fenced_at, taken_at = fence_and_takeover(lab, "mail1")
            print(
                f"frozen at 0; fenced after {fenced_at - frozen_at:.2f}s; "
                f"mail2 took the Lease after {taken_at - frozen_at:.2f}s"
            )
            assert fenced_at < taken_at, "the standby took the Lease before the old node was fenced"
            assert fenced_at - frozen_at < LEASE_SECONDS
            time.sleep(LEASE_SECONDS)
            assert lease_holder(lab, "mail") == ("mail2", epoch + 1), "a stale write moved the Lease"
            wait_until(
                lambda: node_report(lab, "mail", "mail1").get("epoch", 0) >= epoch + 1,
                120,
                "mail1 reporting at the new epoch",
            )
            wait_replicating(lab, "mail", "mail2", ["mail1"])
        finally:
            lab.thaw_agent("mail1")
