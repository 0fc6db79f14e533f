"""The wheel `make package` builds: what it ships, and that the checker notices what is missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _checker():  # scripts/ is not a package
    spec = importlib.util.spec_from_file_location("check_wheel", REPO / "scripts" / "check-wheel.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_wheel_ships_the_three_packages_and_the_console_scripts(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    wheels = list(tmp_path.glob("tandem-*-py3-none-any.whl"))
    assert len(wheels) == 1
    assert _checker().check(str(wheels[0])) == []


def test_the_checker_names_what_is_missing(tmp_path: Path) -> None:
    broken = tmp_path / "tandem-0-py3-none-any.whl"
    with zipfile.ZipFile(broken, "w") as wheel:
        wheel.writestr("tandem/cli.py", "")
        wheel.writestr("tests/test_x.py", "")
        wheel.writestr("tandem-0.dist-info/entry_points.txt", "[console_scripts]\ntandem = tandem.cli:main\n")
    problems = _checker().check(str(broken))
    assert "missing tandem_agent/__main__.py" in problems
    assert "ships tests/ (not part of the product)" in problems
    assert any(p.startswith("console script tandem-agent is None") for p in problems)
