"""packaging/tandem-agent.service and agent.env agree with the agent and with docs/install.md."""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "tandem-agent.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_runs_the_console_script_and_keeps_the_workload_alive() -> None:
    service = unit()["Service"]
    scripts = tomllib.loads((REPO / "node-agent" / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tandem-agent"] == "tandem_agent.__main__:main"
    assert service["ExecStart"].split()[0] == "/opt/tandem/bin/tandem-agent"
    assert service["EnvironmentFile"] == "/etc/tandem/agent.env"
    assert service["Restart"] == "always"
    assert service["KillMode"] == "process"
    assert int(service["TimeoutStopSec"]) >= 60
    assert service["Type"] == "exec"
    assert unit()["Unit"]["After"] == "network-online.target"


def test_no_directive_that_would_hide_the_agents_mounts_or_devices() -> None:
    text = "\n".join(line for line in UNIT.read_text().splitlines() if not line.startswith("#"))
    for directive in (
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "PrivateMounts",
        "ReadOnlyPaths",
        "DevicePolicy",
        "DeviceAllow",
        "ProtectClock",
        "ProtectKernelModules",
        "CapabilityBoundingSet",
        "MountFlags",
        "WatchdogSec",
        "Type=notify",
    ):
        assert directive not in text, directive


def test_the_agent_reads_every_variable_agent_env_sets() -> None:
    source = (REPO / "node-agent" / "tandem_agent" / "__main__.py").read_text()
    keys = re.findall(r"^#?([A-Z_]+)=", (REPO / "packaging" / "agent.env").read_text(), re.M)
    assert {"NODE_NAME", "KUBECONFIG", "TANDEM_SCOPE_DAEMONS", "TANDEM_WATCHDOG"} <= set(keys)
    for key in keys:
        if key == "TANDEM_AGENT_ARGS":  # expanded by systemd in ExecStart
            assert "$TANDEM_AGENT_ARGS" in unit()["Service"]["ExecStart"]
        else:
            assert f'"{key}"' in source, f"agent.env sets {key}, which the agent does not read"
