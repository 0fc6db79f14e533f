"""DRBD moves real blocks: a replication cut leaves the standby's disk behind, the primary keeps
acknowledging files (DRBD tracks the blocks it could not send in its bitmap), and when the link
returns the primary resyncs them (SyncSource, out-of-sync down to 0). A switchover to the
standby then finds every acknowledged file on its disk, and so does the switchover back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tandem_lab.cluster import DRBD_STATE, NODE_PYTHON, LabCluster
from tandem_lab.harness import Client, checked, missing_files, wait_replicating, wait_until
from tests.e2e.conftest import kubectl_tandem, vip

pytestmark = pytest.mark.lab

VOLUME = "mail-store"


def drbd_status(lab: LabCluster, node: str) -> dict[str, Any]:
    """`drbdsetup status --json` of the volume on `node`, as the node's stand-in answers it."""
    code = (
        "import sys; from pathlib import Path; from tandem_lab.drbdsim import control; "
        f"rc, out, err = control.drbdsetup(Path({DRBD_STATE!r}), 'status', '--json', {VOLUME!r}); "
        "sys.stdout.write(out); sys.exit(rc)"
    )
    status: list[dict[str, Any]] = json.loads(lab.machine(node).exec([NODE_PYTHON, "-c", code]).stdout)
    return status[0]


def peer_device(lab: LabCluster, node: str) -> dict[str, Any]:
    device: dict[str, Any] = drbd_status(lab, node)["connections"][0]["peer_devices"][0]
    return device


def reported(lab: LabCluster, node: str) -> dict[str, Any]:
    """The node's entry of the DRBDVolume's status (what `kubectl get drbdvolume` shows)."""
    volume = json.loads(lab.kubectl("get", "drbdvolume", VOLUME, "-n", lab.namespace, "-o", "json"))
    return next(n for n in volume.get("status", {}).get("nodes", []) if n["name"] == node)


def kernel_log(lab: LabCluster, node: str) -> str:
    return lab.node_path(node, f"{DRBD_STATE}/kernel.log").read_text()


def switch_to(lab: LabCluster, client: Client, node: str) -> None:
    other = "mail1" if node == "mail2" else "mail2"
    wait_replicating(lab, "mail", other, [node])
    result = kubectl_tandem(lab, "switchover", "mail", "--to", node, "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    client.acked_by(node, timeout=30)
    client.file_stored_by(node)


def test_a_cut_standby_is_resynced_and_holds_every_acknowledged_file(lab: LabCluster, client: Client) -> None:
    with checked(lab, client, vip()):
        try:
            lab.cut("mail1", "repl")
            wait_until(lambda: peer_device(lab, "mail1")["out-of-sync"] > 0, 60, "mail1 tracking blocks mail2 missed")
            acked_during_cut = len(client.acked_files())
            wait_until(
                lambda: len(client.acked_files()) > acked_during_cut + 20,
                60,
                "files acknowledged by mail1 while mail2 is cut off",
            )
            wait_until(
                lambda: reported(lab, "mail1").get("outOfSyncBytes", 0) > 0,
                30,
                "the DRBDVolume status showing the out-of-sync bytes",
            )
            assert drbd_status(lab, "mail2")["devices"][0]["disk-state"] in ("Outdated", "UpToDate")
            behind = peer_device(lab, "mail1")["out-of-sync"]
        finally:
            lab.heal("mail1", "repl")
        wait_until(
            lambda: (
                peer_device(lab, "mail1")["out-of-sync"] == 0
                and peer_device(lab, "mail1")["peer-disk-state"] == "UpToDate"
            ),
            60,
            "the resync to finish",
        )
        log = kernel_log(lab, "mail1")
        assert "repl( Off -> SyncSource )" in log and "Resync done" in log, log[-2000:]
        wait_until(
            lambda: reported(lab, "mail1").get("outOfSyncBytes", 0) == 0,
            30,
            "the DRBDVolume status showing nothing out of sync",
        )
        print(f"mail1 was {behind} KiB ahead of mail2 at the heal; resynced")

        switch_to(lab, client, "mail2")
        acked = client.acked_files()
        assert missing_files(lab, "mail2", acked) == []
        switch_to(lab, client, "mail1")
    assert missing_files(lab, "mail1", client.acked_files()) == []
