"""Hard self-fencing: the last resort when a demotion cannot finish before the Lease expires.

After the fence nothing on this node may still serve: the other node is about to promote.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tandem.api.hacluster import FencePolicy
from tandem_agent.chain import ChainRunner, floating_addresses
from tandem_agent.drivers import addresses
from tandem_agent.watchdog import Watchdog

log = logging.getLogger(__name__)

SYSRQ = Path("/proc/sysrq-trigger")


def fencer(method: str, runner: ChainRunner, policy: FencePolicy, watchdog: Watchdog) -> Callable[[str], None]:
    """The fence function for `method` (FencePolicy.method, or LabKill for the lab)."""
    if method == "SysrqReboot":
        return _sysrq_reboot
    if method == "Watchdog":
        return lambda reason: _watchdog(reason, Path(policy.watchdog_device))
    if method == "LabKill":
        return lambda reason: _lab_kill(reason, runner, watchdog)
    raise ValueError(f"unknown fence method {method!r}: use SysrqReboot, Watchdog or LabKill")


def current_fencer(runner: ChainRunner, watchdog: Watchdog, override: str | None = None) -> Callable[[str], None]:
    """The fence of the spec the runner runs when it fires (spec.failover.fence changes live);
    `override` (LabKill) replaces the method for the lab."""

    def fence(reason: str) -> None:
        policy = runner.cluster.spec.failover.fence
        fencer(override or policy.method, runner, policy, watchdog)(reason)

    return fence


def _sysrq_reboot(reason: str) -> None:
    log.critical("FENCING (sysrq reboot): %s", reason)
    SYSRQ.write_text("b")  # immediate reboot, no sync: the other node owns the data now


def _watchdog(reason: str, device: Path) -> None:
    log.critical("FENCING (watchdog %s): %s", device, reason)
    fd = os.open(device, os.O_WRONLY)
    os.write(fd, b"\0")  # arm it and never pet it again: the hardware resets the node
    while True:
        time.sleep(3600)


def _lab_kill(reason: str, runner: ChainRunner, watchdog: Watchdog) -> None:
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
    netns = _own_netns()
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


def _own_netns() -> str | None:
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
