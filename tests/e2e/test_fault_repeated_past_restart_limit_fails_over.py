"""Issue 12: a member that keeps failing is repaired in place spec.failover.restartLimit
times; the next failure within restartWindowSeconds makes the primary step down and the
standby take over, with no acknowledged write lost; the old primary is eligible again once
the window has passed."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import (
    Client,
    checked,
    lease_holder,
    node_report,
    wait_replicating,
    wait_until,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

# Long enough that two repairs, the standby's return to the synchronous list and the third
# fault all fall within one window even on a loaded CI machine (20 s did not: the first repair
# left the window and the third fault was repaired in place as "2 of 2").
WINDOW = 60


def edit_manifests(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["kind"] == "HACluster":
            doc["spec"]["failover"] |= {"restartLimit": 2, "restartWindowSeconds": WINDOW}


def recovery(lab: LabCluster, node: str) -> dict[str, Any]:
    found: dict[str, Any] = node_report(lab, "mail", node).get("lastRecovery") or {}
    return found


def test_postgres_killed_past_the_restart_limit_fails_over(lab: LabCluster, client: Client) -> None:
    wait_until(lambda: lease_holder(lab, "mail")[0] == "mail1", 120, "mail1 primary")
    _, epoch = lease_holder(lab, "mail")
    with checked(lab, client, vip(), primary="mail1", standbys=("mail2",)):
        first_fault = time.monotonic()
        for attempt in (1, 2):
            lab.kill_postgres("mail1")
            wait_until(
                lambda attempt=attempt: f"({attempt} of 2)" in recovery(lab, "mail1").get("message", ""),
                60,
                f"PostgreSQL restarted in place ({attempt} of 2)",
            )
            client.acked_by("mail1", timeout=30)
            assert lease_holder(lab, "mail") == ("mail1", epoch)
        # A primary steps down only to a standby that can take over: mail2 back on the
        # synchronous list after the restarts, and saying it is eligible.
        wait_replicating(lab, "mail", "mail1", ["mail2"])
        wait_until(lambda: node_report(lab, "mail", "mail2").get("eligible") is True, 30, "mail2 eligible")
        # mail1's agent reads the reports every 0.5 s (longer on a loaded machine): let it see
        # mail2 eligible before the fault, or it rightly repairs in place once more (CI saw a
        # fault 0.6 s after mail2 became eligible repaired as "3, past restartLimit 2").
        time.sleep(3)
        wait_replicating(lab, "mail", "mail1", ["mail2"])
        assert node_report(lab, "mail", "mail2").get("eligible") is True
        elapsed = time.monotonic() - first_fault
        assert elapsed < WINDOW - 5, (
            f"the third fault came {elapsed:.0f}s after the first, "
            f"outside restartWindowSeconds={WINDOW}: the test cannot prove the limit"
        )
        lab.kill_postgres("mail1")
        try:
            client.acked_by("mail2", timeout=60)
        except AssertionError as missing:
            raise AssertionError(f"{missing}; mail1's last recovery: {recovery(lab, 'mail1')}") from None
    holder, new_epoch = lease_holder(lab, "mail")
    assert (holder, new_epoch) == ("mail2", epoch + 1)
    stepped = recovery(lab, "mail1")
    assert stepped["action"] == "SteppedDown" and stepped["kind"] == "PostgreSQL", stepped
    assert "restartLimit 2" in stepped["message"]
    wait_until(
        lambda: node_report(lab, "mail", "mail1").get("ineligibleReason") == "RestartBackoff",
        30,
        "mail1 in restart back-off",
    )
    backoff_seen = time.monotonic()
    wait_until(
        lambda: node_report(lab, "mail", "mail1").get("eligible") is True,
        WINDOW + 30,
        "mail1 eligible again after restartWindowSeconds",
    )
    print(f"mail1 eligible again {time.monotonic() - backoff_seen:.1f}s after its back-off was seen (window {WINDOW}s)")


def test_with_no_standby_to_take_over_it_keeps_repairing_in_place(lab: LabCluster, client: Client) -> None:
    """Past restartLimit, but the other node may not take over (here: in standby mode, so its
    report says ineligible): releasing the Lease would leave no primary at all, so the primary
    repairs again in place."""
    holder, epoch = lease_holder(lab, "mail")
    assert holder == "mail2"
    wait_replicating(lab, "mail", "mail2", ["mail1"])
    standby_mode(lab, ["mail1"])
    try:
        wait_until(
            lambda: node_report(lab, "mail", "mail1").get("ineligibleReason") == "StandbyMode",
            30,
            "mail1 in standby mode",
        )
        for attempt in (1, 2, 3):
            lab.kill_postgres("mail2")
            wait_until(
                lambda attempt=attempt: f"({attempt}" in recovery(lab, "mail2").get("message", ""),
                60,
                f"mail2's PostgreSQL restarted in place ({attempt})",
            )
            client.acked_by("mail2", timeout=30)
        message = recovery(lab, "mail2")["message"]
        assert "past restartLimit 2: no standby could take over" in message, message
        assert lease_holder(lab, "mail") == ("mail2", epoch)
    finally:
        standby_mode(lab, [])


def standby_mode(lab: LabCluster, nodes: list[str]) -> None:
    lab.kubectl(
        "patch",
        "hacluster",
        "mail",
        "-n",
        lab.namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"standbyNodes": nodes}}),
    )
