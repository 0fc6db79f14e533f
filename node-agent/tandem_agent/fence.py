"""Hard self-fencing: the last resort when a demotion cannot finish before the Lease expires.

After the fence nothing on this node may still serve: the other node is about to promote.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from tandem.api.hacluster import FencePolicy
from tandem_agent.chain import ChainRunner
from tandem_agent.plugins import Fence
from tandem_agent.watchdog import Watchdog

log = logging.getLogger(__name__)

SYSRQ = Path("/proc/sysrq-trigger")


def fencer(policy: FencePolicy) -> Callable[[str], None]:
    """The fence function of spec.failover.fence."""
    if policy.method == "SysrqReboot":
        return _sysrq_reboot
    if policy.method == "Watchdog":
        return lambda reason: _watchdog(reason, Path(policy.watchdog_device))
    raise ValueError(f"unknown fence method {policy.method!r}: use SysrqReboot or Watchdog")


def current_fencer(runner: ChainRunner, watchdog: Watchdog, override: Fence | None = None) -> Callable[[str], None]:
    """The fence of the spec the runner runs when it fires (spec.failover.fence changes live);
    `override` (an agent plugin's, tandem_agent.plugins) replaces it: the lab's power-off."""

    def fence(reason: str) -> None:
        if override is not None:
            override(reason, runner, watchdog)
        else:
            fencer(runner.cluster.spec.failover.fence)(reason)

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
