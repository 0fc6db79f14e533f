"""A split brain made by hand, as an administrator makes one: the cluster is paused, mail2's
replication link is cut, and mail2 is promoted with drbdadm and written to while mail1 keeps
serving. The stand-in refuses what DRBD refuses (demoting a mounted device), and when the link
is back it detects the split brain and both sides drop to StandAlone (two Primaries: DRBD never
resolves that; mail2 is then demoted by hand). Paused, the agents leave it
so; resumed, mail2 (not the Lease holder) reconnects with --discard-my-data as DRBD's manual
recovery says, mail1 reconnects, the resync carries mail1's data over mail2's, the recovery is
reported (DRBDVolume condition SplitBrain, a Warning Event, the node's splitBrainRecoveries),
and after a switchover mail2 has every acknowledged file and not the one written by hand."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tandem_lab.cluster import DRBD_STATE, NODE_PYTHON, LabCluster
from tandem_lab.harness import Client, checked, missing_files, node_report, wait_replicating, wait_until
from tests.e2e.conftest import kubectl_tandem, vip
from tests.e2e.test_replication_cut_resyncs_the_volume import VOLUME, drbd_status, kernel_log, peer_device

pytestmark = pytest.mark.lab

ROGUE = "/run/rogue"
# drbdadm as an administrator runs it on a lab node: the stand-in's drbdsetup and drbdmeta.
DRBDADM = (
    "import os, subprocess, sys; from pathlib import Path; from tandem_lab.drbdsim import control; "
    "from tandem_agent.drivers.drbd import TOP_CONFIG; "
    f"env = os.environ | control.lab_env(Path({DRBD_STATE!r})) | {{'__DRBD_NODE__': sys.argv[1]}}; "
    "argv = ['drbdadm', '-c', '/etc/drbd.d/' + TOP_CONFIG, f'--drbdsetup={control.DRBDSETUP}', "
    "f'--drbdmeta={control.DRBDMETA}', *sys.argv[2:]]; "
    "proc = subprocess.run(argv, env=env, capture_output=True, text=True); "
    "sys.stdout.write(proc.stdout); sys.stderr.write(proc.stderr); sys.exit(proc.returncode)"
)


def edit_manifests(docs: list[dict[str, Any]]) -> None:
    """No automatic recovery: every split brain goes to the agents (docs/failover-protocol.md)."""
    for doc in docs:
        if doc["kind"] == "DRBDVolume":
            doc["spec"]["splitBrain"] = {"afterSb0pri": "disconnect", "afterSb1pri": "disconnect"}


def drbdadm(lab: LabCluster, node: str, *args: str, check: bool = True) -> Any:
    return lab.machine(node).exec([NODE_PYTHON, "-c", DRBDADM, node, *args], check=check)


def split_brain_condition(lab: LabCluster) -> dict[str, Any]:
    volume = json.loads(lab.kubectl("get", "drbdvolume", VOLUME, "-n", lab.namespace, "-o", "json"))
    found: dict[str, Any] = next(
        (c for c in volume.get("status", {}).get("conditions", []) if c["type"] == "SplitBrain"), {}
    )
    return found


def connection(lab: LabCluster, node: str) -> str:
    state: str = drbd_status(lab, node)["connections"][0]["connection-state"]
    return state


def test_a_split_brain_made_by_hand_is_recovered_from_the_lease_holder(lab: LabCluster, client: Client) -> None:
    with checked(lab, client, vip()):
        assert kubectl_tandem(lab, "pause", "mail").returncode == 0
        wait_until(lambda: "Paused" in lab.kubectl("get", "hac", "mail", "-n", lab.namespace), 30, "the cluster paused")
        try:
            lab.cut("mail1", "repl")
            wait_until(
                lambda: (
                    connection(lab, "mail2") == "Connecting"
                    and drbd_status(lab, "mail2")["devices"][0]["disk-state"] == "UpToDate"
                ),
                30,
                "mail2 disconnected with its data UpToDate",
            )
            drbdadm(lab, "mail2", "primary", VOLUME)
            machine = lab.machine("mail2")
            machine.exec(["mkdir", "-p", ROGUE])
            machine.exec(["mount", "-w", "/dev/drbd0", ROGUE])
            machine.exec(["sh", "-c", f"echo written-by-hand > {ROGUE}/rogue && sync"])
            refused = drbdadm(lab, "mail2", "secondary", VOLUME, check=False)
            assert refused.returncode == 11 and "Device is held open by someone" in refused.stderr, refused
            lab.heal("mail1", "repl")
            wait_until(
                lambda: (
                    "Split-Brain detected but unresolved" in kernel_log(lab, "mail2")
                    and connection(lab, "mail1") == "StandAlone"
                    and connection(lab, "mail2") == "StandAlone"
                ),
                30,
                "the split brain detected on connect, both StandAlone",
            )
            assert "after-sb-2pri disconnect" in kernel_log(lab, "mail1")  # two Primaries: DRBD never resolves
            machine.exec(["umount", ROGUE])
            drbdadm(lab, "mail2", "secondary", VOLUME)
            time.sleep(3)  # paused: nobody recovers it
            assert connection(lab, "mail2") == "StandAlone"
            wait_until(
                lambda: split_brain_condition(lab).get("reason") == "Detected",
                30,
                "the DRBDVolume reporting the split brain",
            )
        finally:
            lab.heal("mail1", "repl")
            kubectl_tandem(lab, "resume", "mail")
        wait_until(
            lambda: (
                peer_device(lab, "mail1")["peer-disk-state"] == "UpToDate"
                and peer_device(lab, "mail1")["out-of-sync"] == 0
            ),
            60,
            "mail2 resynced from mail1",
        )
        recoveries = node_report(lab, "mail", "mail2").get("splitBrainRecoveries", [])
        assert [(r["volume"], r["peer"]) for r in recoveries] == [(VOLUME, "mail1")], recoveries
        assert recoveries[0]["discardedBytes"] > 0
        wait_until(
            lambda: split_brain_condition(lab).get("reason") == "Recovered", 30, "the DRBDVolume reporting the recovery"
        )
        events = lab.kubectl(
            "get", "events", "-n", lab.namespace, "--field-selector", "reason=SplitBrainRecovery", "-o", "name"
        ).split()
        assert len(events) == 1, events
        print(
            f"split brain: mail2 discarded {recoveries[0]['discardedBytes']} bytes; "
            f"{split_brain_condition(lab)['message']}"
        )

        wait_replicating(lab, "mail", "mail1", ["mail2"])
        result = kubectl_tandem(lab, "switchover", "mail", "--to", "mail2", "--wait")
        assert result.returncode == 0, result.stdout + result.stderr
        client.file_stored_by("mail2")
        assert missing_files(lab, "mail2", client.acked_files()) == []
        mounted = json.loads(lab.kubectl("get", "hac", "mail", "-n", lab.namespace, "-o", "json"))
        root = mounted["spec"]["chain"]["mounts"][0]["mountPoint"]
        rogue = lab.machine("mail2").exec(["ls", "-a", root]).stdout.split()
        assert "rogue" not in rogue, rogue
