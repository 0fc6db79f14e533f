"""Issue 12: a member that keeps failing is repaired in place spec.failover.restartLimit
times; the next failure within restartWindowSeconds makes the primary step down and the
standby take over, with no acknowledged write lost; the old primary is eligible again once
the window has passed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tandem.lab.cluster import LabCluster
from tandem.lab.harness import Client, checked, lease_holder, node_report, wait_until
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

WINDOW = 20


def edit_manifests(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["kind"] == "HACluster":
            doc["spec"]["failover"] |= {"restartLimit": 2, "restartWindowSeconds": WINDOW}


def recovery(lab: LabCluster, node: str) -> dict[str, Any]:
    found: dict[str, Any] = node_report(lab, "mail", node).get("lastRecovery") or {}
    return found


def test_postgres_killed_past_the_restart_limit_fails_over(lab: LabCluster,
                                                           client: Client) -> None:
    wait_until(lambda: lease_holder(lab, "mail")[0] == "mail1", 120, "mail1 primary")
    _, epoch = lease_holder(lab, "mail")
    with checked(lab, client, vip(), primary="mail1", standbys=("mail2",)):
        for attempt in (1, 2):
            lab.kill_postgres("mail1")
            wait_until(lambda attempt=attempt: f"({attempt} of 2)" in
                       recovery(lab, "mail1").get("message", ""), 60,
                       f"PostgreSQL restarted in place ({attempt} of 2)")
            client.acked_by("mail1", timeout=30)
            assert lease_holder(lab, "mail") == ("mail1", epoch)
        lab.kill_postgres("mail1")
        client.acked_by("mail2", timeout=60)
    holder, new_epoch = lease_holder(lab, "mail")
    assert (holder, new_epoch) == ("mail2", epoch + 1)
    stepped = recovery(lab, "mail1")
    assert stepped["action"] == "SteppedDown" and stepped["kind"] == "PostgreSQL", stepped
    assert "restartLimit 2" in stepped["message"]
    wait_until(lambda: "RestartBackoff" in node_report(lab, "mail", "mail1")
               .get("ineligibleReason", ""), 30, "mail1 in restart back-off")
    backoff_seen = time.monotonic()
    wait_until(lambda: node_report(lab, "mail", "mail1").get("eligible") is True,
               WINDOW + 30, "mail1 eligible again after restartWindowSeconds")
    print(f"mail1 eligible again {time.monotonic() - backoff_seen:.1f}s after its back-off "
          f"was seen (window {WINDOW}s)")
