"""The lab's agent plugin (entry-point group `tandem.agent.plugins`): what a lab node's agent
needs beyond the product, with the flags the lab passes (lab/tandem_lab/cluster.py, the lab's
DaemonSet overlay):

- `--drbd-sim-state DIR`: the node's DRBD is the lab's stand-in (tandem_lab.drbdsim) with its
  state in DIR: drbdadm runs with the stand-in's drbdsetup and drbdmeta;
- `--fence lab-kill`: the fence is the lab's power-off instead of spec.failover.fence.method;
- `--watchdog lab:<socket>`: the watchdog is the lab node supervisor's (tandem_lab.power), which
  measures time on its own clock, so a faked clock in the agent cannot fool it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tandem_agent.chain import ChainRunner, floating_addresses
from tandem_agent.drivers import addresses
from tandem_agent.plugins import AgentPlugin, Fence, VolumeFactory
from tandem_agent.volumes import drbd_volume_factory
from tandem_agent.watchdog import Watchdog

log = logging.getLogger(__name__)


class LabAgentPlugin(AgentPlugin):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        lab = parser.add_argument_group("lab (tandem-lab's agent plugin)")
        lab.add_argument(
            "--fence",
            choices=["spec", "lab-kill"],
            default="spec",
            help="lab-kill: the lab's power-off instead of spec.failover.fence.method",
        )
        lab.add_argument(
            "--drbd-sim-state", type=Path, default=None, help="state directory of this node's DRBD stand-in"
        )

    def volume_factory(self, args: argparse.Namespace) -> VolumeFactory | None:
        if args.drbd_sim_state is None:
            return None
        from tandem_lab.drbdsim import control

        return drbd_volume_factory(
            args.node,
            args.drbd_config_dir,
            str(control.DRBDSETUP),
            str(control.DRBDMETA),
            control.lab_env(args.drbd_sim_state),
        )

    def fence(self, args: argparse.Namespace) -> Fence | None:
        return lab_kill if args.fence == "lab-kill" else None

    def watchdogs(self) -> Mapping[str, Callable[[str], Watchdog]]:
        return {"lab": lambda path: LabWatchdog(Path(path))}


class LabWatchdog:
    """Client of the lab node supervisor's watchdog socket."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def _send(self, message: str) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendto(message.encode(), self.path)

    def pet(self, remaining: float) -> None:
        self._send(f"pet {remaining:.3f}")

    def disarm(self) -> None:
        self._send("disarm")

    def fence(self, reason: str) -> bool:
        """Ask the supervisor to power the node off; True when the request was sent."""
        try:
            self._sock.sendto(f"fence {reason}".encode()[:4000], self.path)
        except OSError:
            return False
        return True


def lab_kill(reason: str, runner: ChainRunner, watchdog: Watchdog) -> None:
    """The lab's power-off: the node supervisor kills every process of the node and drops its
    addresses, then "reboots" it. Without a supervisor: drop the floating IPs, then kill every
    process of this node's network namespace (PostgreSQL, services, this agent)."""
    log.critical("FENCING (lab kill): %s", reason)
    if watchdog.fence(reason):
        while True:
            time.sleep(3600)  # the supervisor is killing us
    for fip in runner.cluster.floating_ips.values():
        try:
            addresses.ensure_absent(runner.env.address_netns, fip.interface, floating_addresses(fip))
        except Exception as exc:
            log.error("fence: could not remove %s: %s", fip.interface, exc)
    netns = own_netns()
    pids = []
    if netns:
        listed = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
        pids = [int(p) for p in listed.stdout.split() if p.isdigit()]
    me = os.getpid()
    for pid in pids:
        if pid != me:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    os.kill(me, signal.SIGKILL)


def own_netns() -> str | None:
    """Name of the network namespace this process runs in, if it is a named one."""
    mine = os.stat("/proc/self/ns/net")
    run = Path("/run/netns")
    if not run.is_dir():
        return None
    for entry in run.iterdir():
        st = os.stat(entry)
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            return entry.name
    return None
