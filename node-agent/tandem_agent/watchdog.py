"""The watchdog: fences the node when the agent stops petting it while its chain is up.

It covers what the agent's own fence cannot: an agent that was killed or frozen (SIGSTOP)
while its node served as primary. The agent pets it after every successful renew (and when it
starts bringing its chain up) with the time left until its own fence deadline,
`last renew sent + renewDeadline + demotionTimeout`, and disarms it once the chain is
completely down. So the watchdog fires exactly when the agent itself would have fenced.

- `DeviceWatchdog`: the Linux watchdog device (/dev/watchdog); its timeout is the device's
  (set it to renewDeadline + demotionTimeout, rounded down, with the driver's options);
  closing it after writing the magic character 'V' disarms it.
- `LabWatchdog`: the lab node's supervisor (tandem.lab.node), over a Unix datagram socket; it
  measures time on its own clock, so a faked clock in the agent cannot fool it.
"""

from __future__ import annotations

import contextlib
import os
import socket
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
