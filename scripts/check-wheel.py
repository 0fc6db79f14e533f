"""Check a built tandem wheel: the three packages, the lab's stand-in programs, the console
scripts, and nothing from the repository that is not part of the product (tests, bench).

Usage: python scripts/check-wheel.py dist/tandem-<version>-py3-none-any.whl
"""

from __future__ import annotations

import configparser
import sys
import zipfile

REQUIRED = [
    "tandem/cli.py",
    "tandem/plugin/command.py",
    "tandem/api/hacluster.py",
    "tandem_agent/__main__.py",
    "tandem_agent/host.py",
    "tandem_agent/drivers/base.py",
    "tandem_operator/__main__.py",
    "tandem/lab/drbdsim/bin/drbdsetup",
]
SCRIPTS = {
    "tandem": "tandem.cli:main",
    "tandem-agent": "tandem_agent.__main__:main",
    "tandem-operator": "tandem_operator.__main__:main",
    "kubectl-tandem": "tandem.plugin.command:main",
}
FORBIDDEN_TOP = {"tests", "bench", "operator", "node-agent", "deploy", "crds"}


def check(path: str) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        for required in REQUIRED:
            if required not in names:
                problems.append(f"missing {required}")
        tops = {n.split("/", 1)[0] for n in names}
        problems += [f"ships {t}/ (not part of the product)" for t in sorted(tops & FORBIDDEN_TOP)]
        stand_in = (
            wheel.getinfo("tandem/lab/drbdsim/bin/drbdsetup") if "tandem/lab/drbdsim/bin/drbdsetup" in names else None
        )
        if stand_in is not None and not (stand_in.external_attr >> 16) & 0o111:
            problems.append("tandem/lab/drbdsim/bin/drbdsetup is not executable in the wheel")
        entry = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        scripts: dict[str, str] = {}
        if entry is None:
            problems.append("no entry_points.txt")
        else:
            parser = configparser.ConfigParser()
            parser.read_string(wheel.read(entry).decode())
            scripts = dict(parser["console_scripts"]) if "console_scripts" in parser else {}
        for name, target in SCRIPTS.items():
            if scripts.get(name) != target:
                problems.append(f"console script {name} is {scripts.get(name)!r}, expected {target!r}")
    return problems


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(sys.argv[1])
    for problem in problems:
        print(f"check-wheel: {sys.argv[1]}: {problem}", file=sys.stderr)
    if not problems:
        print(
            f"check-wheel: {sys.argv[1]}: tandem, tandem_agent, tandem_operator and the console "
            f"scripts {', '.join(SCRIPTS)} are in place"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
