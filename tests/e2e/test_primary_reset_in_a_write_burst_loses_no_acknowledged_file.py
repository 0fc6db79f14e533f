"""The primary is reset (its power controller cuts the power, then boots it) in the middle of a
burst of file writes. DRBD's protocol C acknowledged each file only once the standby's disk had
it, so mail2 takes over with every acknowledged file; mail1 comes back as a crashed primary,
is resynced from mail2 (its unreplicated blocks are overwritten) and holds every file too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, checked, missing_files, node_report, replicating, wait_until
from tests.e2e.conftest import kubectl_tandem, vip
from tests.e2e.test_replication_cut_resyncs_the_volume import kernel_log, peer_device

pytestmark = pytest.mark.lab


@pytest.fixture
def burst(lab: LabCluster, tmp_path: Path) -> Iterator[Client]:
    """A client storing a file every 20 ms (the usual client stores one every 250 ms)."""
    client = Client(lab, vip(), tmp_path / "burst.log", file_interval=0.02)
    try:
        yield client
    finally:
        client.stop()


def wait_eligible_standby(lab: LabCluster, primary: str, standby: str) -> None:
    """Until `standby` may take over from `primary`: listed as synchronous and eligible."""
    wait_until(
        lambda: (
            replicating(lab, "mail", primary, [standby]) and node_report(lab, "mail", standby).get("eligible") is True
        ),
        60,
        f"{standby} an eligible synchronous standby",
    )


def test_a_reset_in_a_write_burst_loses_no_acknowledged_file(lab: LabCluster, burst: Client) -> None:
    with checked(lab, burst, vip()):
        wait_until(lambda: len(burst.acked_files()) >= 100, 60, "a burst of files under way")
        # checked() saw the pair replicating, but a standby still rejoining can look so for a
        # moment and then restart its PostgreSQL: reset only once mail2 may take over.
        wait_eligible_standby(lab, "mail1", "mail2")
        reset = time.monotonic()
        # Off for 5 s, longer than the 3 s lease: back sooner, mail1 would keep its Lease.
        lab.reset("mail1", "e2e: power cut in a write burst", off_seconds=5.0)
        stored = [r["t"] for r in burst.records() if "file" in r and r["t"] < reset]
        burst.file_stored_by("mail2", timeout=60)
        taken = time.monotonic()
        print(
            f"reset: last file acknowledged by mail1 {reset - max(stored):.3f}s before the reset; "
            f"mail2 stores files {taken - reset:.2f}s after it"
        )
        assert reset - max(stored) < 0.5, "the reset did not come in the middle of the burst"
        wait_until(
            lambda: "was Primary when it went down" in kernel_log(lab, "mail1"),
            120,
            "mail1 attaching its disk again as a crashed primary",
        )
        wait_until(
            lambda: (
                peer_device(lab, "mail2")["out-of-sync"] == 0
                and peer_device(lab, "mail2")["peer-disk-state"] == "UpToDate"
            ),
            120,
            "mail1's disk resynced from mail2",
        )
        assert missing_files(lab, "mail2", burst.acked_files()) == []
        # A switchover needs mail1 listed as a synchronous standby on the Lease, which comes
        # after its PostgreSQL caught up, not with the volume's resync.
        wait_eligible_standby(lab, "mail2", "mail1")
        result = kubectl_tandem(lab, "switchover", "mail", "--to", "mail1", "--wait")
        assert result.returncode == 0, result.stdout + result.stderr
        burst.file_stored_by("mail1", timeout=30)
