"""The wheels `make package` builds: each distribution its own package, dependencies and console
scripts, the lab only in tandem-lab; and the checker notices what is wrong."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROJECTS = {"tandem": REPO, "tandem_agent": REPO / "node-agent", "tandem_operator": REPO / "operator"}
PROJECTS["tandem_lab"] = REPO / "lab"


def _checker():  # scripts/ is not a package
    spec = importlib.util.spec_from_file_location("check_wheel", REPO / "scripts" / "check-wheel.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_each_wheel_ships_its_own_package_dependencies_and_scripts(tmp_path: Path) -> None:
    for name, project in PROJECTS.items():
        subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(project)],
            check=True,
            capture_output=True,
            cwd=tmp_path,
        )
        wheels = list(tmp_path.glob(f"{name}-*-py3-none-any.whl"))
        assert len(wheels) == 1, name
        assert _checker().check(str(wheels[0])) == [], name


def _wheel(path: Path, metadata: str, entry_points: str, files: list[str]) -> str:
    with zipfile.ZipFile(path, "w") as wheel:
        for name in files:
            wheel.writestr(name, "")
        info = path.name.split("-")[0] + "-0.dist-info"
        wheel.writestr(f"{info}/METADATA", metadata)
        wheel.writestr(f"{info}/entry_points.txt", entry_points)
    return str(path)


def test_the_checker_names_what_is_wrong(tmp_path: Path) -> None:
    operator = _wheel(
        tmp_path / "tandem_operator-0-py3-none-any.whl",
        "Name: tandem-operator\nRequires-Dist: tandem==0\nRequires-Dist: kopf>=1\nRequires-Dist: pyroute2>=0.7\n",
        "[console_scripts]\ntandem-operator = tandem_operator.__main__:main\n",
        ["tandem_operator/__main__.py", "tandem_lab/agent_plugin.py", "tests/test_x.py"],
    )
    problems = _checker().check(operator)
    assert "requires pyroute2, which is not a dependency of tandem-operator" in problems
    assert "missing tandem_operator/kubectl/command.py" in problems
    assert "ships tandem_lab/ (not part of tandem-operator)" in problems
    assert "ships tests/ (not part of tandem-operator)" in problems
    assert any(p.startswith("console scripts are {'tandem-operator'") for p in problems)
    product = _wheel(
        tmp_path / "tandem-0-py3-none-any.whl",
        "Name: tandem\nRequires-Dist: kubernetes\nRequires-Dist: pydantic\nRequires-Dist: PyYAML\n"
        "Requires-Dist: prometheus_client\nRequires-Dist: pytest; extra == 'dev'\n",
        "[console_scripts]\ntandem = tandem.cli:main\n[tandem.cli.commands]\nlab = tandem_lab.commands:add_lab\n",
        ["tandem/cli.py", "tandem/api/hacluster.py", "tandem/kube/lease.py", "tandem/importer/command.py"],
    )
    assert _checker().check(product) == ["entry points of tandem.cli.commands are ['lab'], expected []"]
