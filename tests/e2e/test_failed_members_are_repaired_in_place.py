"""Issue 12: every member of the primary's chain is monitored and repaired in place.

Each test breaks one member behind the agent's back while writes flow through the floating
IP (tandem_lab.member_faults), and must see the agent notice it, repair it on the same node
under the same epoch (no failover), report the repair (status.nodes[].lastRecovery, the
member Healthy again), and lose no acknowledged write with never two primaries (`checked`)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tandem_lab import member_faults
from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, checked, lease_holder, node_report, wait_until
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab


def edit_manifests(docs: list[dict[str, Any]]) -> None:
    """Room for every test's repair in one restart window, and a window longer than the
    module, so that each member's repair count only grows: this module is about repairs."""
    for doc in docs:
        if doc["kind"] == "HACluster":
            doc["spec"]["failover"]["restartLimit"] = 20
            doc["spec"]["failover"]["restartWindowSeconds"] = 3600


def last_recovery(lab: LabCluster, node: str = "mail1") -> dict[str, Any]:
    recovery: dict[str, Any] = node_report(lab, "mail", node).get("lastRecovery") or {}
    return recovery


def resources(lab: LabCluster, node: str = "mail1") -> dict[str, dict[str, Any]]:
    return {f"{r['kind']}/{r['name']}": r for r in node_report(lab, "mail", node).get("resources", [])}


def healthy_primary(lab: LabCluster) -> None:
    wait_until(
        lambda: (
            lease_holder(lab, "mail")[0] == "mail1"
            and resources(lab)
            and all(r["state"] == "Healthy" for r in resources(lab).values())
        ),
        120,
        "mail1 primary with every member Healthy",
    )


def repaired_in_place(lab: LabCluster, client: Client, fault: str) -> str:
    """Inject `fault` on the steady primary mail1 and wait until its member was repaired
    there under the same epoch, writes are acknowledged again and the member is Healthy.
    Returns the member's message after its repair.

    The member's own repair count tells, not lastRecovery: a fault can break a member above
    the one it hits (a DRBD volume demoted under a mounted filesystem makes ext4 abort its
    journal), whose repair right after is the last one."""
    kind, name = member_faults.MEMBERS[fault]
    key = f"{kind}/{name}"
    healthy_primary(lab)
    epoch, before = lease_holder(lab, "mail")[1], resources(lab)[key]["repairs"]
    with checked(lab, client, vip()):
        injected = time.monotonic()
        heal = member_faults.inject(lab, "mail1", fault)
        try:
            wait_until(
                lambda: resources(lab).get(key, {}).get("repairs", 0) > before,
                60,
                f"{kind} {name} repaired in place on mail1",
            )
        finally:
            heal()
        acked = client.acked_by("mail1", timeout=30)
        client.served_by("mail1", timeout=30)
        message: str = resources(lab)[key]["message"]
        print(f"{fault}: writes acknowledged again {acked - injected:.2f}s after the fault; {message}")
        print(f"last recovery: {last_recovery(lab).get('message')}")
        wait_until(
            lambda: resources(lab).get(f"{kind}/{name}", {}).get("state") == "Healthy",
            30,
            f"{kind} {name} Healthy again",
        )
        assert lease_holder(lab, "mail") == ("mail1", epoch), "a repair in place is no failover"
    return message


def test_killed_postmaster_is_restarted_in_place(lab: LabCluster, client: Client) -> None:
    message = repaired_in_place(lab, client, "postgres-kill")
    # The kill is seen either by the next check (no postmaster) or by one in flight (its
    # connection dropped): both are this fault, repaired the same way.
    assert "restarted in place" in message, message
    assert "the postmaster is not running" in message or "server closed the connection unexpectedly" in message, message


def test_hung_postgres_is_restarted_in_place(lab: LabCluster, client: Client) -> None:
    message = repaired_in_place(lab, client, "postgres-hang")
    assert "no answer within" in message or "timeout expired" in message, message


def test_deleted_floating_ip_is_added_back_and_announced(lab: LabCluster, client: Client) -> None:
    message = repaired_in_place(lab, client, "vip-delete")
    assert "address added again and announced" in message
    shown = lab.machine("mail1").exec(["ip", "-o", "address", "show", "dev", "mgmt"])
    assert f" {vip()}/24 " in shown.stdout


def test_lazily_unmounted_data_mount_is_mounted_again(lab: LabCluster, client: Client) -> None:
    repaired_in_place(lab, client, "mount-lost")
    found = lab.machine("mail1").exec(
        ["findmnt", "--noheadings", "--output", "TARGET", "--mountpoint", member_faults.MAIL_MOUNT], check=False
    )
    assert found.stdout.strip() == member_faults.MAIL_MOUNT


def test_aborted_filesystem_is_mounted_again_with_what_stands_on_it(lab: LabCluster, client: Client) -> None:
    before = lab.main_pid("mail1", member_faults.HTTP_UNIT)
    message = repaired_in_place(lab, client, "mount-abort")
    assert "Read-only file system" in message and "unmounted and mounted again" in message, message
    # The services hold files on the mount: they were stopped for the unmount and started again.
    assert lab.main_pid("mail1", member_faults.HTTP_UNIT) != before
    probe = lab.machine("mail1").exec(["touch", f"{member_faults.MAIL_MOUNT}/.written-after-repair"], check=False)
    assert probe.returncode == 0, probe.stderr


def test_drbd_demoted_behind_the_agent_is_promoted_again(lab: LabCluster, client: Client) -> None:
    repaired_in_place(lab, client, "drbd-demote")
    role = member_faults.drbdadm(lab, "mail1", "role", member_faults.MAIL_VOLUME)
    assert role.strip().startswith("Primary")


def test_running_service_failing_its_health_check_is_restarted(lab: LabCluster, client: Client) -> None:
    healthy_primary(lab)  # the unit runs once mail1 is primary
    before = lab.main_pid("mail1", member_faults.HTTP_UNIT)
    message = repaired_in_place(lab, client, "service-hang")
    # The probe's own timeout or the monitor's, whichever answers first.
    assert "http http://127.0.0.1:8080/" in message or "no answer within 2s" in message, message
    assert lab.main_pid("mail1", member_faults.HTTP_UNIT) != before
