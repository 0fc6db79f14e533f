"""Scenario 5: the API server goes down (SIGKILL) for longer than a lease. The policy
(docs/failover-protocol.md, "API server outage") is Demote: the primary cannot prove it still
holds the Lease, so it stops serving by renewDeadline + demotionTimeout, and no node is
promoted while the API server is away. When it returns, one node takes the Lease and serves
again; nothing acknowledged is lost."""

from __future__ import annotations

import time

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, checked, lease_holder
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

OUTAGE_SECONDS = 10.0
STOPPED_WITHIN = 1.8 + 0.6 + 0.3  # renewDeadline + demotionTimeout + the observer's sampling


def test_api_server_outage_promotes_nothing(lab: LabCluster, client: Client) -> None:
    with checked(lab, client, vip()) as observer:
        _, epoch = lease_holder(lab, "mail")
        try:
            lab.plane.stop_apiserver()
            down = time.monotonic()
            time.sleep(OUTAGE_SECONDS)
            restarting = time.monotonic()  # agents may reach it before it reports ready
        finally:
            lab.plane.start_apiserver()
        during = [s for s in observer.history if down + STOPPED_WITHIN < s.t < restarting]
        assert len(during) > 20, f"only {len(during)} samples during the outage"
        serving = [(round(s.t - down, 2), sorted(s.primaries)) for s in during if s.primaries]
        assert serving == [], f"a node served without the API server: {serving[:5]}"
        last = max((s.t for s in observer.history if s.t < restarting and s.primaries), default=down)
        record = client.wait_for(lambda r: "ack" in r, 90, "a write acknowledged after the outage")
        holder, new_epoch = lease_holder(lab, "mail")
        print(
            f"API server killed for {OUTAGE_SECONDS:.0f}s: last primary seen "
            f"{last - down:.2f}s after the kill; {holder} acknowledged again "
            f"{record['t'] - restarting:.2f}s after the restart began (epoch {new_epoch})"
        )
        assert holder in ("mail1", "mail2") and new_epoch in (epoch, epoch + 1)
