"""The randomized chaos run, short: `tandem chaos` exactly as a user runs it (its own control
plane and lab pair), two minutes of mixed faults. It must pass the checker and its JSON must
hold what the docs promise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tandem_lab.chaos import KINDS

pytestmark = pytest.mark.lab

SEED = 20261122
DURATION = "2m"


def test_chaos_run_keeps_a_single_primary(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "chaos", "--seed", str(SEED), "--duration", DURATION, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, f"chaos run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(out.read_text())
    faults = result["faults_injected"]
    assert faults["total"] == sum(v for k, v in faults.items() if k != "total") >= 5
    assert set(faults) - {"total"} <= set(KINDS)
    assert result["lost_acked_writes"] == 0
    assert result["double_primary_instants"] == 0
    assert result["acked_writes"] > 100
    assert result["failovers"] >= 1
    assert result["seed"] == SEED
    assert "PASSED" in proc.stdout
