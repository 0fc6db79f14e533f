"""Check tandem's built wheels: each distribution ships its own package and nothing else (no
lab in a product wheel, no tests or bench anywhere), requires exactly its own dependencies
(the operator not the agent's pyroute2 or psycopg), and has its console scripts; only the
development package tandem-lab registers the lab's plugins and the DRBD stand-in's programs
(console scripts, which pip writes into the venv's bin/).

Usage: python scripts/check-wheel.py dist/tandem-<version>-py3-none-any.whl [more wheels...]
"""

from __future__ import annotations

import configparser
import re
import sys
import zipfile
from dataclasses import dataclass, field
from email.parser import Parser

PLUGIN_GROUPS = ("tandem.agent.plugins", "tandem.cli.commands")


@dataclass(frozen=True)
class Expected:
    package: str  # the one top-level package
    requires: frozenset[str]  # distribution names of Requires-Dist, normalized
    scripts: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    plugins: dict[str, set[str]] = field(default_factory=dict)  # entry-point group -> names


EXPECTED = {
    "tandem": Expected(
        "tandem",
        frozenset({"kubernetes", "pydantic", "pyyaml", "prometheus-client"}),
        {"tandem": "tandem.cli:main"},
        ("tandem/cli.py", "tandem/api/hacluster.py", "tandem/kube/lease.py", "tandem/importer/command.py"),
    ),
    "tandem-agent": Expected(
        "tandem_agent",
        frozenset({"tandem", "pyroute2", "psycopg"}),
        {"tandem-agent": "tandem_agent.__main__:main"},
        ("tandem_agent/__main__.py", "tandem_agent/host.py", "tandem_agent/drivers/base.py"),
    ),
    "tandem-operator": Expected(
        "tandem_operator",
        frozenset({"tandem", "kopf"}),
        {"tandem-operator": "tandem_operator.__main__:main", "kubectl-tandem": "tandem_operator.kubectl.command:main"},
        ("tandem_operator/__main__.py", "tandem_operator/kubectl/command.py"),
    ),
    "tandem-lab": Expected(
        "tandem_lab",
        frozenset({"tandem", "tandem-agent"}),
        {
            "tandem-lab-drbdsetup": "tandem_lab.drbdsim.cli:drbdsetup_main",
            "tandem-lab-drbdmeta": "tandem_lab.drbdsim.cli:drbdmeta_main",
            "tandem-lab-drbdsim": "tandem_lab.drbdsim.cli:drbdsim_main",
        },
        (
            "tandem_lab/agent_plugin.py",
            "tandem_lab/commands.py",
            "tandem_lab/sim/engine.py",
            "tandem_lab/drbdsim/cli.py",
        ),
        {"tandem.agent.plugins": {"lab"}, "tandem.cli.commands": {"lab", "bench", "chaos"}},
    ),
}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check(path: str) -> list[str]:
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        meta_file = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        if meta_file is None:
            return ["no METADATA"]
        metadata = Parser().parsestr(wheel.read(meta_file).decode())
        name = normalized(metadata["Name"])
        expected = EXPECTED.get(name)
        if expected is None:
            return [f"unknown distribution {metadata['Name']!r}: expected one of {', '.join(EXPECTED)}"]
        problems = [f"missing {f}" for f in expected.files if f not in names]
        tops = {n.split("/", 1)[0] for n in names if ".dist-info/" not in n}
        problems += [f"ships {t}/ (not part of {name})" for t in sorted(tops - {expected.package})]
        requires = {
            normalized(re.split(r"[\[<>=!~ ;(]", r, maxsplit=1)[0])
            for r in metadata.get_all("Requires-Dist") or []
            if "extra ==" not in r
        }
        problems += [f"requires {r}, which is not a dependency of {name}" for r in sorted(requires - expected.requires)]
        problems += [f"does not require {r}" for r in sorted(expected.requires - requires)]
        entry = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        parser = configparser.ConfigParser()
        if entry is not None:
            parser.read_string(wheel.read(entry).decode())
        scripts = dict(parser["console_scripts"]) if "console_scripts" in parser else {}
        if scripts != expected.scripts:
            problems.append(f"console scripts are {scripts}, expected {expected.scripts}")
        for group in PLUGIN_GROUPS:
            found, wanted = set(parser[group]) if group in parser else set(), expected.plugins.get(group, set())
            if found != wanted:
                problems.append(f"entry points of {group} are {sorted(found)}, expected {sorted(wanted)}")
    return problems


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    failed = False
    for path in sys.argv[1:]:
        problems = check(path)
        for problem in problems:
            print(f"check-wheel: {path}: {problem}", file=sys.stderr)
        if not problems:
            print(f"check-wheel: {path}: its own package, dependencies, console scripts and entry points only")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
