"""Scenario 12: for a minute the primary's management link flaps: cuts shorter than the lease
duration with short gaps between them (a seeded random pattern). There are never two
primaries, and takeovers are rate-limited: no two come closer together than
spec.failover.minFailoverIntervalSeconds (5 s in the lab sample)."""

from __future__ import annotations

import random
import time

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import (
    Client,
    checked,
    lease_holder,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

FLAPPING_SECONDS = 60.0
MIN_FAILOVER_INTERVAL = 5.0
SAMPLING_SLACK = 0.3


def test_flapping_partitions_never_make_two_primaries(lab: LabCluster, client: Client) -> None:
    rng = random.Random(12)
    cuts = 0
    with checked(lab, client, vip(), settle=180) as observer:
        try:
            end = time.monotonic() + FLAPPING_SECONDS
            while time.monotonic() < end:
                holder = lease_holder(lab, "mail")[0] or "mail1"
                lab.cut(holder, "mgmt")
                time.sleep(rng.uniform(0.5, 2.8))
                lab.heal(holder, "mgmt")
                cuts += 1
                time.sleep(rng.uniform(0.5, 3.0))
        finally:
            for node in ("mail1", "mail2"):
                lab.heal(node, "mgmt")
    changes = [
        (s.t, s.lease)
        for a, s in zip(observer.history, observer.history[1:], strict=False)
        if s.lease and a.lease and s.lease[1] > a.lease[1] and s.lease[0] is not None
    ]
    gaps = [round(b[0] - a[0], 2) for a, b in zip(changes, changes[1:], strict=False)]
    print(f"{cuts} cuts in {FLAPPING_SECONDS:.0f}s; {len(changes)} takeovers, gaps {gaps}")
    assert all(g >= MIN_FAILOVER_INTERVAL - SAMPLING_SLACK for g in gaps), gaps
