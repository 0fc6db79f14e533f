"""Issue 12: every member of the primary's chain is monitored and repaired in place.

Each test breaks one member behind the agent's back while writes flow through the floating
IP, and must see the agent notice it, repair it on the same node under the same epoch (no
failover), report the repair (status.nodes[].lastRecovery, resources back to Healthy), and
lose no acknowledged write with never two primaries (`checked`)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tandem.lab.cluster import LabCluster
from tandem.lab.drbdsim import control
from tandem.lab.harness import Client, checked, lease_holder, node_report, wait_until
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

HTTP_UNIT = "lab-echo@8080.service"
# Where the lab's agents keep the DRBD stand-in's state (tandem.lab.cluster's agent flags).
DRBD_STATE = Path("/var/lib/tandem-lab/drbd")


def drbdadm(lab: LabCluster, node: str, *args: str) -> str:
    """drbdadm on `node`, driving the stand-in as the node's agent does."""
    env = [f"{k}={v}" for k, v in control.lab_env(DRBD_STATE).items()]
    return lab.machine(node).exec(["env", *env, "drbdadm", f"--drbdsetup={control.DRBDSETUP}",
                                   *args]).stdout


def edit_manifests(docs: list[dict[str, Any]]) -> None:
    """Room for every test's repair in one restart window: this module is about repairs."""
    for doc in docs:
        if doc["kind"] == "HACluster":
            doc["spec"]["failover"]["restartLimit"] = 20


def last_recovery(lab: LabCluster, node: str = "mail1") -> dict[str, Any]:
    recovery: dict[str, Any] = node_report(lab, "mail", node).get("lastRecovery") or {}
    return recovery


def resources(lab: LabCluster, node: str = "mail1") -> dict[str, dict[str, Any]]:
    return {f"{r['kind']}/{r['name']}": r
            for r in node_report(lab, "mail", node).get("resources", [])}


def repaired_in_place(lab: LabCluster, client: Client, kind: str, name: str, *, epoch: int,
                      after: str | None, fault_at: float) -> None:
    """The member was repaired on mail1 under `epoch`, and writes are acknowledged again."""
    def repaired() -> bool:
        recovery = last_recovery(lab)
        return (recovery.get("kind"), recovery.get("resource"), recovery.get("action")) == (
            kind, name, "Repaired") and recovery.get("time") != after
    wait_until(repaired, 60, f"{kind} {name} repaired in place on mail1")
    acked = client.acked_by("mail1", timeout=30)
    print(f"{kind} {name}: writes acknowledged again {acked - fault_at:.2f}s after the fault; "
          f"{last_recovery(lab)['message']}")
    wait_until(lambda: resources(lab).get(f"{kind}/{name}", {}).get("state") == "Healthy", 30,
               f"{kind} {name} Healthy again")
    assert lease_holder(lab, "mail") == ("mail1", epoch), "a repair in place is no failover"


def mail1_primary(lab: LabCluster) -> tuple[int, str | None]:
    wait_until(lambda: lease_holder(lab, "mail")[0] == "mail1"
               and resources(lab) and all(r["state"] == "Healthy"
                                          for r in resources(lab).values()),
               120, "mail1 primary with every member Healthy")
    return lease_holder(lab, "mail")[1], last_recovery(lab).get("time")


def test_killed_postmaster_is_restarted_in_place(lab: LabCluster, client: Client) -> None:
    epoch, before = mail1_primary(lab)
    with checked(lab, client, vip()):
        fault = time.monotonic()
        lab.kill_postgres("mail1")
        repaired_in_place(lab, client, "PostgreSQL", "postgresql", epoch=epoch, after=before, fault_at=fault)


def test_hung_postgres_is_restarted_in_place(lab: LabCluster, client: Client) -> None:
    epoch, before = mail1_primary(lab)
    with checked(lab, client, vip()):
        pid = lab.postgres_pid("mail1")
        assert pid is not None
        fault = time.monotonic()
        os.kill(pid, signal.SIGSTOP)  # alive, but it accepts no connection any more
        try:
            repaired_in_place(lab, client, "PostgreSQL", "postgresql", epoch=epoch, after=before, fault_at=fault)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    message = last_recovery(lab)["message"]
    assert "no answer within" in message or "timeout expired" in message, message


def test_deleted_floating_ip_is_added_back_and_announced(lab: LabCluster,
                                                          client: Client) -> None:
    epoch, before = mail1_primary(lab)
    with checked(lab, client, vip()):
        fault = time.monotonic()
        lab.machine("mail1").exec(["ip", "address", "del", f"{vip()}/24", "dev", "mgmt"])
        repaired_in_place(lab, client, "FloatingIP", "mail-vips", epoch=epoch, after=before, fault_at=fault)
        shown = lab.machine("mail1").exec(["ip", "-o", "address", "show", "dev", "mgmt"])
        assert f" {vip()}/24 " in shown.stdout


def test_lazily_unmounted_data_mount_is_mounted_again(lab: LabCluster, client: Client) -> None:
    epoch, before = mail1_primary(lab)
    with checked(lab, client, vip()):
        fault = time.monotonic()
        lab.machine("mail1").exec(["umount", "--lazy", "/srv/mail"])
        repaired_in_place(lab, client, "Mount", "/srv/mail", epoch=epoch, after=before, fault_at=fault)
        found = lab.machine("mail1").exec(["findmnt", "--noheadings", "--output", "TARGET",
                                           "--mountpoint", "/srv/mail"], check=False)
        assert found.stdout.strip() == "/srv/mail"


def test_drbd_demoted_behind_the_agent_is_promoted_again(lab: LabCluster,
                                                          client: Client) -> None:
    epoch, before = mail1_primary(lab)
    with checked(lab, client, vip()):
        fault = time.monotonic()
        drbdadm(lab, "mail1", "secondary", "mail-store")
        repaired_in_place(lab, client, "Volume", "mail-store", epoch=epoch, after=before, fault_at=fault)
        assert drbdadm(lab, "mail1", "role", "mail-store").strip().startswith("Primary")


def test_running_service_failing_its_health_check_is_restarted(lab: LabCluster,
                                                               client: Client) -> None:
    epoch, before = mail1_primary(lab)
    with checked(lab, client, vip()):
        pid = lab.main_pid("mail1", HTTP_UNIT)
        fault = time.monotonic()
        os.kill(pid, signal.SIGSTOP)  # its unit stays active; only the probe can tell
        try:
            repaired_in_place(lab, client, "Service", "http", epoch=epoch, after=before, fault_at=fault)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        assert lab.main_pid("mail1", HTTP_UNIT) != pid
        client.served_by("mail1")
