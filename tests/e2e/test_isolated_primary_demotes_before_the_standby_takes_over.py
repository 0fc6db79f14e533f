"""Scenario 3: the primary's namespace is cut off from the API server and from its peer while
its agent keeps running. It cannot renew, so it tears its chain down on its own before the
Lease expires; only then does the standby take the Lease and promote. Once the cut heals the
old primary rejoins as a standby through pg_rewind."""

from __future__ import annotations

import time

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, checked, lease_holder, wait_replicating
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab


def test_isolated_primary_demotes_before_the_standby_takes_over(lab: LabCluster, client: Client) -> None:
    with checked(lab, client, vip()) as observer:
        _, epoch = lease_holder(lab, "mail")
        try:
            cut = time.monotonic()
            lab.cut("mail1")
            acked = client.acked_by("mail2", timeout=30)
            assert lease_holder(lab, "mail") == ("mail2", epoch + 1)
            promoted = next(s.t for s in observer.history if "mail2" in s.primaries)
            released = max(s.t for s in observer.history if "mail1" in s.primaries)
            print(
                f"isolated: mail1 down {released - cut:.2f}s after the cut, mail2 primary after "
                f"{promoted - cut:.2f}s, first write after {acked - cut:.2f}s"
            )
            assert released < promoted
            lab.heal("mail1")
            wait_replicating(lab, "mail", "mail2", ["mail1"])
        finally:
            lab.heal("mail1")
