"""The lab plugs into the product's command lines through entry points: without its plugins
`tandem-agent` and `tandem` have no lab flag or subcommand; with them the lab's flags choose
the stand-in's DRBD, the lab's power-off as the fence and the lab's watchdog."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tandem import cli
from tandem.api.drbdvolume import DRBDVolumeSpec
from tandem_agent.__main__ import Agent, parse_args, volume_factory
from tandem_agent.watchdog import DeviceWatchdog, NoWatchdog
from tandem_lab import commands
from tandem_lab.agent_plugin import LabAgentPlugin, LabWatchdog, lab_kill
from tandem_lab.drbdsim import control
from tandem_lab.drbdsim.cli import STATE_ENV

LAB_FLAGS = ("--fence", "lab-kill", "--drbd-sim-state", "--drbdsetup", "--drbdmeta", "lab:")
LAB_COMMANDS = ("lab", "bench", "chaos")


def _help(parser: argparse.ArgumentParser) -> str:
    return parser.format_help()


def _agent_help(capsys: pytest.CaptureFixture[str], plugins: tuple[LabAgentPlugin, ...]) -> str:
    with pytest.raises(SystemExit):
        parse_args(["--help"], plugins)
    return capsys.readouterr().out


def test_the_product_agent_has_no_lab_flag(capsys: pytest.CaptureFixture[str]) -> None:
    text = _agent_help(capsys, ())
    assert "--host-exec" in text
    assert [flag for flag in LAB_FLAGS if flag in text] == []
    for flags in (["--fence", "lab-kill"], ["--drbd-sim-state", "/tmp/x"], ["--drbdsetup", "/bin/true"]):
        with pytest.raises(SystemExit):
            parse_args(["--node", "n1", *flags], ())
        assert f"unrecognized arguments: {' '.join(flags)}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--node", "n1", "--watchdog", "lab:/run/w.sock"], ())
    assert "--watchdog 'lab:/run/w.sock': expected none, device or device:<path>" in capsys.readouterr().err


def test_the_product_cli_has_no_lab_command() -> None:
    text = _help(cli.build_parser([]))
    assert "gen-crds" in text and "import" in text
    assert [c for c in LAB_COMMANDS if f" {c} " in text or f",{c}" in text] == []
    with pytest.raises(SystemExit):
        cli.build_parser([]).parse_args(["chaos", "--seed", "1"])


def test_the_lab_cli_commands_come_from_the_plugin() -> None:
    parser = cli.build_parser([commands.add_lab, commands.add_bench, commands.add_chaos])
    assert parser.parse_args(["chaos", "--seed", "1"]).func is commands.cmd_chaos
    assert parser.parse_args(["lab", "status"]).func is commands.cmd_lab


def test_the_lab_plugin_adds_its_flags_and_chooses_the_lab_parts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plugins = (LabAgentPlugin(),)
    assert "--drbd-sim-state" in _agent_help(capsys, plugins)
    args = parse_args(
        [
            "--node",
            "n1",
            "--fence",
            "lab-kill",
            "--watchdog",
            "lab:/run/w.sock",
            "--drbd-sim-state",
            str(tmp_path),
        ],
        plugins,
    )
    assert plugins[0].fence(args) is lab_kill
    drbd = volume_factory(args)("v", _volume_spec()).drbd
    assert (drbd.drbdsetup, drbd.drbdmeta) == (str(control.DRBDSETUP), str(control.DRBDMETA))
    watchdog = Agent._node_watchdog(_with_args(args))
    assert isinstance(watchdog, LabWatchdog) and watchdog.path == "/run/w.sock"
    plain = parse_args(["--node", "n1"], plugins)
    assert plugins[0].fence(plain) is None
    assert volume_factory(plain)("v", _volume_spec()).drbd.drbdsetup is None
    assert isinstance(Agent._node_watchdog(_with_args(plain)), NoWatchdog)


def test_the_product_watchdogs_need_no_plugin() -> None:
    args = parse_args(["--node", "n1", "--watchdog", "device:/dev/watchdog1"], ())
    watchdog = Agent._node_watchdog(_with_args(args))
    assert isinstance(watchdog, DeviceWatchdog) and watchdog.device == Path("/dev/watchdog1")


def _with_args(args: argparse.Namespace) -> Agent:
    agent = Agent.__new__(Agent)  # no API client: only the watchdog choice is looked at
    agent.args = args
    return agent


def _volume_spec() -> DRBDVolumeSpec:
    return DRBDVolumeSpec.model_validate(
        {
            "cluster": "mail",
            "resourceName": "mail-store",
            "minor": 0,
            "nodes": [
                {"name": "n1", "disk": "/dev/vg0/mail", "address": "198.19.0.201", "nodeId": 0},
                {"name": "n2", "disk": "/dev/vg0/mail", "address": "198.19.0.202", "nodeId": 1},
            ],
        }
    )


def test_the_stand_in_programs_are_console_scripts_beside_the_interpreter() -> None:
    """drbdadm runs them as programs: installing tandem-lab into the venv (`make setup`, the
    lab nodes' pip install) writes them into its bin/, and they run this package's entry points."""
    assert Path(sys.executable).parent == control.BIN
    without_node = {key: value for key, value in os.environ.items() if key != STATE_ENV}
    unset = f"drbdsim: ${STATE_ENV} is not set: which lab node is this?"
    expected = {
        (control.DRBDSETUP, "status"): (20, unset),
        (control.DRBDMETA, "dump-md"): (20, unset),
        (control.BIN / "tandem-lab-drbdsim", "log"): (2, f"drbdsim: error: --state-dir or ${STATE_ENV} is required"),
    }
    for (program, command), (status, message) in expected.items():
        assert program.is_file(), f"{program} is missing: install tandem-lab into this venv (make setup)"
        proc = subprocess.run(
            [str(program), command], env=without_node, capture_output=True, text=True, timeout=60, check=False
        )
        assert (proc.returncode, proc.stderr.strip().splitlines()[-1]) == (status, message), program
