"""Scenario 15: a process keeps the primary's mount busy, so the tear-down cannot finish, and
the primary is cut off. The hard self-fence fires at renewDeadline + demotionTimeout after the
last successful renew, before the Lease can expire; only then may the standby take over."""

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
    wait_replicating,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

LEASE_SECONDS = 3.0


def test_hung_demotion_fences_before_the_lease_expires(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    client.acked_by("mail1")
    _, epoch = lease_holder(lab, "mail")
    holder = lab.hold_mount("mail1", "/srv/mail")
    observer = Observer(lab, ["mail1", "mail2"], vip()).start()
    try:
        time.sleep(0.5)
        assert holder.poll() is None, "the process holding the mount did not start"
        cut_at = time.time()
        lab.cut("mail1")
        client.acked_by("mail2", timeout=30)
        assert lease_holder(lab, "mail") == ("mail2", epoch + 1)
        fences = lab.fences("mail1")
        assert fences, "the hung demotion was never fenced"
        fenced_at = float(fences[0].split()[0])
        taken_at = datetime.fromisoformat(lab.lease("mail")["acquireTime"]).timestamp()
        print(f"hung demotion: fenced {fenced_at - cut_at:.2f}s after the cut "
              f"({fences[0].split(' ', 1)[1]}); mail2 took the Lease after {taken_at - cut_at:.2f}s")
        assert fenced_at - cut_at < LEASE_SECONDS
        assert fenced_at < taken_at
        holder.wait(timeout=10)  # the fence killed every process of the node
        lab.heal("mail1")
        wait_replicating(lab, "mail", "mail2", ["mail1"])
    finally:
        lab.heal("mail1")
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        observer.stop()
    observer.assert_single_primary()
    client.stop()
    assert missing_acks(lab, "mail2", client.acked()) == []
