"""Scenario 5: the API server goes down for longer than a lease. The policy (docs/failover-
protocol.md, "API server outage") is Demote: the primary cannot prove it still holds the
Lease, so it tears down at renewDeadline, and no node is promoted while the API server is
away. When it returns, one node takes the Lease and serves again; nothing acknowledged is lost.
"""

from __future__ import annotations

import time

import pytest

from tandem.lab.cluster import LabCluster
from tandem.lab.harness import Client, Observer, lease_holder, missing_acks, wait_replicating
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

OUTAGE_SECONDS = 10.0
DEMOTED_WITHIN = 1.8 + 0.6 + 0.5  # renewDeadline + demotionTimeout + the observer's slack


def test_api_server_outage_promotes_nothing(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    client.acked_by("mail1")
    _, epoch = lease_holder(lab, "mail")
    observer = Observer(lab, ["mail1", "mail2"], vip()).start()
    try:
        lab.plane.stop_apiserver()
        down = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        lab.plane.start_apiserver()
        back = time.monotonic()
        during = [s for s in observer.history if down + DEMOTED_WITHIN < s.t < back]
        assert during, "no sample during the outage"
        serving = [(round(s.t - down, 2), sorted(s.primaries)) for s in during if s.primaries]
        assert serving == [], f"a node served without the API server: {serving[:5]}"
        record = client.wait_for(lambda r: "ack" in r, 60, "a write acknowledged after the outage")
        holder, new_epoch = lease_holder(lab, "mail")
        print(f"API server back after {OUTAGE_SECONDS:.0f}s; {holder} acknowledged again "
              f"{record['t'] - back:.2f}s later at epoch {new_epoch}")
        assert holder in ("mail1", "mail2") and new_epoch in (epoch, epoch + 1)
        other = "mail2" if holder == "mail1" else "mail1"
        wait_replicating(lab, "mail", holder, [other])
    finally:
        lab.plane.start_apiserver()
        observer.stop()
    observer.assert_single_primary()
    client.stop()
    assert missing_acks(lab, holder, client.acked()) == []
