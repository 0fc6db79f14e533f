"""Scenario 12: for a minute the primary's management link flaps: cuts shorter than the lease
duration with short gaps between them (a seeded random pattern). There are never two
primaries, and takeovers are rate-limited: no two come closer together than
spec.failover.minFailoverIntervalSeconds (5 s in the lab sample)."""

from __future__ import annotations

import random
import time

import pytest

from tandem.lab.cluster import LabCluster
from tandem.lab.harness import (
    Client,
    Observer,
    lease_holder,
    missing_acks,
    wait_replicating,
    wait_until,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

FLAPPING_SECONDS = 60.0
MIN_FAILOVER_INTERVAL = 5.0
SAMPLING_SLACK = 0.3


def test_flapping_partitions_never_make_two_primaries(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    client.acked_by("mail1")
    rng = random.Random(12)
    observer = Observer(lab, ["mail1", "mail2"], vip()).start()
    cuts = 0
    try:
        end = time.monotonic() + FLAPPING_SECONDS
        while time.monotonic() < end:
            holder = lease_holder(lab, "mail")[0] or "mail1"
            lab.cut(holder, "mgmt")
            time.sleep(rng.uniform(0.5, 2.8))
            lab.heal(holder, "mgmt")
            cuts += 1
            time.sleep(rng.uniform(0.5, 3.0))
        wait_until(lambda: lease_holder(lab, "mail")[0] is not None, 30, "a Lease holder")
        holder = lease_holder(lab, "mail")[0]
        assert holder is not None
        other = "mail2" if holder == "mail1" else "mail1"
        wait_replicating(lab, "mail", holder, [other], timeout=180)
    finally:
        for node in ("mail1", "mail2"):
            lab.heal(node, "mgmt")
        observer.stop()
    observer.assert_single_primary()
    changes = [(s.t, s.lease) for a, s in zip(observer.history, observer.history[1:], strict=False)
               if s.lease and a.lease and s.lease[1] > a.lease[1] and s.lease[0] is not None]
    gaps = [round(b[0] - a[0], 2) for a, b in zip(changes, changes[1:], strict=False)]
    print(f"{cuts} cuts in {FLAPPING_SECONDS:.0f}s; {len(changes)} takeovers, gaps {gaps}")
    assert all(g >= MIN_FAILOVER_INTERVAL - SAMPLING_SLACK for g in gaps), gaps
    client.stop()
    assert missing_acks(lab, holder, client.acked()) == []
