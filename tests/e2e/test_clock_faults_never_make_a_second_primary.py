"""Scenario 6: clock faults in one agent's process only. Debian's libfaketime is preloaded into
mail2's agent (tandem_lab.fakeclock; the machine's clock is never touched) and fakes its wall
clock: steps of +60 s and -60 s, then a clock running at double and at half speed. First while
mail2 is the standby (a standby that judged the Lease by its own wall clock would take it
over), then, after a switchover, while mail2 is the primary (a primary that judged its lease by
its wall clock would serve past it, or give it up). Lease timing is monotonic, so no fault
moves the Lease, fences a node or makes a second primary."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, checked, lease_holder, wait_replicating, wait_until
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

LEASE_SECONDS = 3.0
STEPS = {"+60s": 60.0, "-60s": -60.0}
RATES = ("+0 x2", "+0 x0.5")


def renew_offset(lab: LabCluster) -> float:
    """How far the holder's clock is from the true one, read from its latest renewTime (the
    holder renews about every second, so a true clock gives about -1 to 0)."""
    lease = lab.lease("mail")
    assert lease is not None and lease.renew_time is not None, "the Lease was never renewed"
    return (lease.renew_time - dt.datetime.now(dt.UTC)).total_seconds()


def hold_and_check(lab: LabCluster, spec: str, primary: str, epoch: int) -> None:
    lab.fake_clock("mail2", spec)
    time.sleep(2 * LEASE_SECONDS)
    assert lease_holder(lab, "mail") == (primary, epoch), f"the Lease moved under {spec!r}"
    assert lab.fences("mail1") == [] and lab.fences("mail2") == [], f"a fence under {spec!r}"


def test_clock_faults_never_make_a_second_primary(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    lab.fake_clock("mail2", "+0")
    with checked(lab, client, vip()) as observer:
        _, epoch = lease_holder(lab, "mail")
        for spec in (*STEPS, *RATES):
            hold_and_check(lab, spec, "mail1", epoch)
            client.acked_by("mail1")

        lab.fake_clock("mail2", "+0")
        lab.set_primary("mail", "mail2")
        wait_replicating(lab, "mail", "mail2", ["mail1"])
        _, epoch = lease_holder(lab, "mail")
        for spec, offset in STEPS.items():
            hold_and_check(lab, spec, "mail2", epoch)
            measured = renew_offset(lab)
            print(f"mail2 primary with its clock at {spec}: renewTime {measured:+.1f}s off")
            assert abs(measured - offset) < 5, "the fault did not reach mail2's agent"
            client.acked_by("mail2")
        for spec in RATES:
            hold_and_check(lab, spec, "mail2", epoch)
            client.acked_by("mail2")
        lab.fake_clock("mail2", "+0")
        wait_until(lambda: abs(renew_offset(lab)) < 5, 10, "mail2's clock back to true")
    print(f"{observer.samples} samples, no second primary under any clock fault")
