"""Scenario 13: the operator is killed right after it accepted a switchover. The agents finish
the hand-over without it, and an unplanned failover works while it is gone. When it returns
it catches up: the switchover is no longer Pending (Completed, or Refused as interrupted when
the Lease went elsewhere after it), status names the current primary and epoch, and there was
one primary at a time throughout."""

from __future__ import annotations

import json

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import (
    Client,
    checked,
    lease_holder,
    switchover_status,
    wait_replicating,
    wait_until,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab


def phase(lab: LabCluster) -> str | None:
    return switchover_status(lab, "mail").get("phase")


def test_operator_killed_mid_switchover_leaves_no_switchover_pending(lab: LabCluster, client: Client) -> None:
    with checked(lab, client, vip()):
        _, epoch = lease_holder(lab, "mail")
        try:
            lab.kubectl(
                "patch",
                "hac",
                "mail",
                "-n",
                lab.namespace,
                "--type=merge",
                "-p",
                json.dumps({"spec": {"primary": "mail2"}}),
            )
            wait_until(
                lambda: phase(lab) == "Pending",
                30,
                "the switchover accepted",
                context=lambda: switchover_status(lab, "mail"),
            )
            lab.stop_operator(kill=True)
            client.acked_by("mail2", timeout=60)
            assert lease_holder(lab, "mail") == ("mail2", epoch + 1)
            wait_replicating(lab, "mail", "mail2", ["mail1"])

            lab.kill_agent("mail2")
            lab.cut("mail2")
            client.acked_by("mail1", timeout=60)
            assert lease_holder(lab, "mail") == ("mail1", epoch + 2)
            assert phase(lab) == "Pending", "nobody should have touched the switchover yet"

            lab.start_operator()
            wait_until(
                lambda: (
                    phase(lab) in ("Completed", "Refused") and lab.hacluster("mail")["status"].get("epoch") == epoch + 2
                ),
                60,
                "the operator settling the switchover",
            )
            status = lab.hacluster("mail")["status"]
            print(
                f"after the operator returned: switchover {status['switchover']}, "
                f"lastFailover {status.get('lastFailover')}"
            )
            assert status["primary"] == "mail1" and status["epoch"] == epoch + 2
            lab.heal("mail2")
            wait_replicating(lab, "mail", "mail1", ["mail2"])
        finally:
            lab.heal("mail2")
