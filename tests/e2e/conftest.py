"""End-to-end fixtures: a whole lab cluster on the session's real control plane.

Each test module gets its own cluster (its own Kubernetes namespace), torn down at the end of
the module even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem_lab.cluster import LAB_SAMPLES, LabCluster, keep_logs
from tandem_lab.controlplane import ControlPlane
from tandem_lab.harness import Client

SUBNET = 60


def vip(host: int = 2) -> str:
    return f"198.18.{SUBNET}.{host}"


@pytest.fixture(scope="module")
def lab(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[LabCluster]:
    samples = getattr(request.module, "SAMPLES", ["mail.yaml"])
    work = Path(tempfile.mkdtemp(prefix="tandem-e2e-"))
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    cluster = LabCluster(control_plane, work, prefix="tde", subnet=SUBNET, namespace=f"e2e-{name}"[:63])
    try:
        cluster.up(
            [LAB_SAMPLES / sample for sample in samples],
            credentials=getattr(request.module, "CREDENTIALS", True),
            kubelet_nodes=getattr(request.module, "KUBELET_NODES", ()),
            edit=getattr(request.module, "edit_manifests", None),
        )
        yield cluster
    finally:
        cluster.down()
        keep_logs(work, LOGS / name)
        shutil.rmtree(work, ignore_errors=True)


LOGS = Path(tempfile.gettempdir()) / "tandem-e2e-logs"
BIN = Path(sys.executable).parent  # the venv's bin/: kubectl-tandem is installed there


def kubectl_tandem(lab: LabCluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl tandem ...` as a user runs it: kubectl finds the plugin on PATH."""
    env = os.environ | {"PATH": f"{BIN}:{os.environ.get('PATH', '')}", "KUBECONFIG": str(lab.plane.kubeconfig)}
    return subprocess.run(
        [str(lab.plane.kubectl()), "tandem", *args, "-n", lab.namespace],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


@pytest.fixture
def client(lab: LabCluster, tmp_path: Path) -> Iterator[Client]:
    c = Client(lab, vip(), tmp_path / "client.log")
    try:
        yield c
    finally:
        c.stop()
