"""`tandem lab up` / `down` from the command line: ready when it returns, nothing left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tandem_lab.controlplane import CONTROL_PLANE_NICE

pytestmark = pytest.mark.apiserver


def tandem(lab_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tandem.cli", "lab", "--lab-dir", str(lab_dir), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_up_is_ready_and_idempotent_and_down_leaves_nothing(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    try:
        up = tandem(lab, "up")
        assert up.returncode == 0, up.stderr
        kubeconfig = tandem(lab, "kubeconfig").stdout.strip()
        assert Path(kubeconfig).is_file()
        kubectl = tandem(lab, "kubectl-path").stdout.strip()
        ready = subprocess.run(
            [kubectl, f"--kubeconfig={kubeconfig}", "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert ready.stdout.strip() == "ok", ready.stderr
        pids = [p["pid"] for p in json.loads((lab / "state.json").read_text())["processes"]]
        assert len(pids) == 2 and all(alive(p) for p in pids)
        # Each in a session of its own with the weight of a separate machine (see
        # CONTROL_PLANE_NICE), its threads at that nice value too.
        for pid in pids:
            assert Path(f"/proc/{pid}/autogroup").read_text().split()[-2:] == ["nice", str(CONTROL_PLANE_NICE)]
            assert os.getpriority(os.PRIO_PROCESS, pid) == CONTROL_PLANE_NICE

        again = tandem(lab, "up")
        assert again.returncode == 0
        again_pids = [p["pid"] for p in json.loads((lab / "state.json").read_text())["processes"]]
        assert again_pids == pids, "a second `lab up` must reuse the running control plane"
    finally:
        down = tandem(lab, "down")
    assert down.returncode == 0, down.stderr
    assert "kube-apiserver" in down.stdout and "etcd" in down.stdout
    assert not any(alive(p) for p in pids), "lab down left a process behind"
    assert tandem(lab, "status").returncode == 3
    assert tandem(lab, "down").stdout.strip() == "stopped: nothing was running"


def test_kubeconfig_without_a_lab_is_a_clear_error(tmp_path: Path) -> None:
    result = tandem(tmp_path / "none", "kubeconfig")
    assert result.returncode == 1
    assert "run `tandem lab up` first" in result.stderr
    assert os.listdir(tmp_path) == []
