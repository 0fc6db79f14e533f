"""kill -9 of one service on the primary: the agent restarts it in place; once it has failed
more often than spec.failover.restartLimit allows, the primary gives the Lease up and the
other node takes over."""

from __future__ import annotations

import os
import signal

import pytest

from tandem_lab.cluster import LabCluster, LabClusterError
from tandem_lab.harness import Client, lease_holder, node_report, wait_until

pytestmark = pytest.mark.lab


HTTP_UNIT = "lab-echo@8080.service"


def service_pid(lab: LabCluster, node: str) -> int | None:
    try:
        return lab.main_pid(node, HTTP_UNIT)
    except LabClusterError:
        return None


def kill_http(lab: LabCluster, node: str) -> int:
    pid = service_pid(lab, node)
    assert pid is not None, f"{HTTP_UNIT} is not running on {node}"
    os.kill(pid, signal.SIGKILL)
    return pid


def restarts(lab: LabCluster, node: str) -> int:
    services = node_report(lab, "mail", node).get("services", [])
    return next((s.get("restarts", 0) for s in services if s["name"] == "http"), 0)


def test_service_is_restarted_in_place_then_the_primary_steps_down(lab: LabCluster, client: Client) -> None:
    wait_until(
        lambda: (
            lease_holder(lab, "mail")[0] == "mail1"
            and node_report(lab, "mail", "mail2").get("postgres", {}).get("lagSeconds") == 0
        ),
        90,
        "mail1 primary, mail2 in sync",
    )
    client.served_by("mail1")
    _, epoch = lease_holder(lab, "mail")
    limit = lab.hacluster("mail")["spec"]["failover"]["restartLimit"]

    for attempt in range(1, limit + 1):
        old = kill_http(lab, "mail1")
        wait_until(
            lambda old=old: service_pid(lab, "mail1") not in (None, old),
            30,
            f"http restarted in place (kill {attempt})",
        )
        client.served_by("mail1", timeout=30)
        wait_until(lambda attempt=attempt: restarts(lab, "mail1") >= attempt, 30, f"{attempt} restarts reported")
        assert lease_holder(lab, "mail") == ("mail1", epoch), "a restart in place is no failover"

    kill_http(lab, "mail1")
    client.served_by("mail2", timeout=60)
    holder, new_epoch = lease_holder(lab, "mail")
    assert holder == "mail2" and new_epoch == epoch + 1
    report = node_report(lab, "mail", "mail1")
    wait_until(
        lambda: node_report(lab, "mail", "mail1").get("ineligibleReason") == "RestartBackoff",
        30,
        "mail1 in restart back-off",
    )
    assert report["name"] == "mail1"
