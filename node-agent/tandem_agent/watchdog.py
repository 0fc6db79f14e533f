"""The watchdog: fences the node when the agent stops petting it while its chain is up.

It covers what the agent's own fence cannot: an agent that was killed or frozen (SIGSTOP)
while its node served as primary. The agent pets it after every successful renew (and when it
starts bringing its chain up) with the time left until its own fence deadline,
`last renew sent + renewDeadline + demotionTimeout`, and disarms it once the chain is
completely down. So the watchdog fires exactly when the agent itself would have fenced.

- `DeviceWatchdog`: the Linux watchdog device (/dev/watchdog); its timeout is the device's
  (set it to renewDeadline + demotionTimeout, rounded down, with the driver's options);
  closing it after writing the magic character 'V' disarms it.
- a plugin's (tandem_agent.plugins), by `--watchdog KIND:ARGUMENT`: the lab's power controller.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class Watchdog(Protocol):
    def pet(self, remaining: float) -> None: ...
    def disarm(self) -> None: ...
    def fence(self, reason: str) -> bool: ...


class NoWatchdog:
    def pet(self, remaining: float) -> None:
        return None

    def disarm(self) -> None:
        return None

    def fence(self, reason: str) -> bool:
        return False


class DeviceWatchdog:
    def __init__(self, device: Path) -> None:
        self.device = device
        self._fd: int | None = None

    def pet(self, remaining: float) -> None:
        if self._fd is None:
            self._fd = os.open(self.device, os.O_WRONLY)
        os.write(self._fd, b"\0")

    def disarm(self) -> None:
        if self._fd is not None:
            os.write(self._fd, b"V")
            os.close(self._fd)
            self._fd = None

    def fence(self, reason: str) -> bool:
        return False


class SharedWatchdog:
    """The node's one watchdog, shared by the agent's clusters (a node may run several, e.g.
    the dependent-groups sample). /dev/watchdog opens once (a second open gets EBUSY), and one
    cluster's disarm must not disarm a watchdog another cluster's chain still needs.

    Each cluster pets with its own deadline through its `handle`. The watchdog stays armed
    while any cluster's is, and is petted only while every armed deadline lies ahead: a cluster
    whose agent thread hangs past its deadline gets the node fenced even while the others keep
    petting, exactly as when it had the watchdog to itself."""

    def __init__(self, inner: Watchdog, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self._clock = clock
        self._lock = threading.Lock()
        self._deadlines: dict[str, float] = {}

    def handle(self, cluster: str) -> ClusterWatchdog:
        return ClusterWatchdog(self, cluster)

    def pet(self, cluster: str, remaining: float) -> None:
        with self._lock:
            now = self._clock()
            self._deadlines[cluster] = now + remaining
            earliest = min(self._deadlines.values())
            if earliest > now:
                self.inner.pet(earliest - now)

    def disarm(self, cluster: str) -> None:
        with self._lock:
            if self._deadlines.pop(cluster, None) is None:
                return
            if not self._deadlines:
                self.inner.disarm()


class ClusterWatchdog:
    """One cluster's view of the shared watchdog (the Watchdog protocol)."""

    def __init__(self, shared: SharedWatchdog, cluster: str) -> None:
        self.shared, self.cluster = shared, cluster

    def pet(self, remaining: float) -> None:
        self.shared.pet(self.cluster, remaining)

    def disarm(self) -> None:
        self.shared.disarm(self.cluster)

    def fence(self, reason: str) -> bool:
        return self.shared.inner.fence(reason)
