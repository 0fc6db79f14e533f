"""A Pacemaker pair, imported, runs in the lab: `tandem import` turns a crm configuration and a
DRBD 9 resource file (tests/e2e/import_fixtures/: a DRBD volume, an ext4 mount, a VIP, a pgsql
promotable clone with synchronous replication, a systemd service) into manifests that the lab
applies unchanged. The pair elects the preferred node, streams to the other, and fails over
when the primary's agent is killed and the primary is cut off."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem_lab.cluster import LabCluster, keep_logs
from tandem_lab.controlplane import ControlPlane
from tandem_lab.harness import holds, lease_holder, wait_replicating, wait_until, writable
from tests.e2e.conftest import LOGS, SUBNET, vip

pytestmark = pytest.mark.lab

FIXTURES = Path(__file__).resolve().parent / "import_fixtures"
NAMESPACE = "e2e-imported-pacemaker-pair"


@pytest.fixture(scope="module")
def lab(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    out = tmp_path_factory.mktemp("imported")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tandem.cli",
            "import",
            "--crm",
            str(FIXTURES / "web.crm"),
            "--drbd",
            str(FIXTURES / "web-store.res"),
            "--namespace",
            NAMESPACE,
            "--out",
            str(out),
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Not carried over" in proc.stdout  # the report: monitors, STONITH and quorum settings
    manifests = sorted(out.glob("*.yaml"))
    assert [m.name for m in manifests] == ["web.yaml"]
    work = Path(tempfile.mkdtemp(prefix="tandem-e2e-"))
    cluster = LabCluster(control_plane, work, prefix="tde", subnet=SUBNET, namespace=NAMESPACE)
    try:
        cluster.up(manifests)
        yield cluster
    finally:
        cluster.down()
        keep_logs(work, LOGS / "imported-pacemaker-pair")
        shutil.rmtree(work, ignore_errors=True)


def test_the_imported_pair_elects_replicates_and_fails_over(lab: LabCluster) -> None:
    wait_replicating(lab, "web", "web1", ["web2"], timeout=180)
    assert holds(lab, "web1", vip()) and writable(lab, "web1")
    _, epoch = lease_holder(lab, "web")
    lab.kill_agent("web1")
    lab.cut("web1")
    wait_until(
        lambda: holds(lab, "web2", vip()) and writable(lab, "web2"),
        30,
        "web2 holding the VIP with a writable PostgreSQL",
    )
    assert lease_holder(lab, "web") == ("web2", epoch + 1)
    assert lab.machine("web2").unit_state("lab-echo@8080.service") == "active"
