"""Issue 14 item 7: the quick start's demo repeats. `tandem lab demo` (what `make demo` runs)
twice in a row on the same lab directory, then `tandem lab down` (`make demo-down`) and the
demo once more: each run elects mail1, fails over to mail2 and acknowledges a write through
the VIP there, whatever the previous run left behind."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab


def lab_command(lab_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tandem.cli", "lab", "--lab-dir", str(lab_dir), *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def assert_demo_failed_over(run: subprocess.CompletedProcess[str]) -> None:
    said = run.stdout + run.stderr
    assert run.returncode == 0, said[-4000:]
    for line in (
        "mail2 took the Lease",
        "answers from mail2",
        "PostgreSQL on mail2 acknowledged a write through the VIP",
    ):
        assert line in run.stdout, said[-4000:]


def test_the_demo_runs_twice_and_again_after_demo_down() -> None:
    # Not pytest's tmp_path: PostgreSQL on the nodes runs as its own user and must be able to
    # traverse every directory above the lab.
    lab_dir = Path(tempfile.mkdtemp(prefix="tandem-demo-"))
    lab_dir.chmod(0o755)
    try:
        assert_demo_failed_over(lab_command(lab_dir, "demo"))
        assert_demo_failed_over(lab_command(lab_dir, "demo"))
        down = lab_command(lab_dir, "down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert_demo_failed_over(lab_command(lab_dir, "demo"))
    finally:
        final = lab_command(lab_dir, "down")
        shutil.rmtree(lab_dir, ignore_errors=True)
    assert final.returncode == 0, final.stdout + final.stderr
