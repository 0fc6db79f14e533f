"""What every driver shares: the result of an operation, typed errors, running commands."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tandem_agent import host


class DriverError(Exception):
    """A driver could not do what it was asked; the message says why and what to do."""


class CommandError(DriverError):
    """A command exited non-zero; keeps the argument list, exit status and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(self.argv)} exited {returncode}: {self.stderr}")


class CommandTimeout(DriverError):
    """A command did not finish within its timeout (and was killed): callers that allow a
    slow command a fallback, such as a stop that becomes a kill, tell it from other errors."""

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        super().__init__(f"{' '.join(self.argv)} did not finish within {timeout:g}s")


@dataclass(frozen=True)
class Outcome:
    """Result of an idempotent operation: whether it changed anything, and what."""

    changed: bool
    detail: str = ""


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """Prefix `argv` so that it runs in network namespace `netns` (None: the current one)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run an argument list (never a shell string); raise CommandError when it fails.

    The command runs on the host as `host.current()` says (directly, or through nsenter from
    the DaemonSet's container; see tandem_agent.host)."""
    full = host.current().command(in_netns(netns, argv))
    try:
        proc = subprocess.run(full, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise DriverError(f"{full[0]} not found: install it or put it on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandTimeout(full, timeout) from exc
    if check and proc.returncode != 0:
        raise CommandError(full, proc.returncode, proc.stderr or proc.stdout)
    return proc
