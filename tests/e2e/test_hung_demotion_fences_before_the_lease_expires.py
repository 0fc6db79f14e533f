"""Scenario 15: a process keeps the primary's mount busy, so the tear-down cannot finish, and
the primary is cut off. The hard self-fence fires at renewDeadline + demotionTimeout after the
last successful renew, before the Lease can expire; only then may the standby take over."""

from __future__ import annotations

import time

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, checked, fence_and_takeover, lease_holder, wait_replicating
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

LEASE_SECONDS = 3.0


def test_hung_demotion_fences_before_the_lease_expires(lab: LabCluster, client: Client) -> None:
    with checked(lab, client, vip()):
        _, epoch = lease_holder(lab, "mail")
        holder = lab.hold_mount("mail1", "/srv/mail")
        try:
            time.sleep(0.5)
            assert holder.poll() is None, "the process holding the mount did not start"
            cut_at = time.time()
            lab.cut("mail1")
            client.acked_by("mail2", timeout=30)
            assert lease_holder(lab, "mail") == ("mail2", epoch + 1)
            fenced_at, taken_at = fence_and_takeover(lab, "mail1")
            print(
                f"hung demotion: fenced {fenced_at - cut_at:.2f}s after the cut "
                f"({lab.fences('mail1')[0].split(' ', 1)[1]}); "
                f"mail2 took the Lease after {taken_at - cut_at:.2f}s"
            )
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
