"""Processes the lab starts: recorded by pid and start time, so a reused pid is never killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class ProcessError(RuntimeError):
    """A lab process could not be started or stopped."""


def process_start_time(pid: int) -> str | None:
    """Start time of a live process from /proc, to tell it from a later one with the same pid.

    A zombie counts as gone: it has exited and only waits to be reaped.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else fields[19]


@dataclass
class ManagedProcess:
    name: str
    pid: int
    start_time: str

    def alive(self) -> bool:
        return process_start_time(self.pid) == self.start_time


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    before_exec: Callable[[], None] | None = None,
) -> ManagedProcess:
    """Start `argv` in its own session with output appended to `log`; `before_exec` runs in
    the child between fork and exec (e.g. to enter a cgroup)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            preexec_fn=before_exec,  # noqa: PLW1509
        )
    start_time = None
    for _ in range(50):
        start_time = process_start_time(proc.pid)
        if start_time:
            break
        time.sleep(0.01)
    if start_time is None:
        raise ProcessError(f"{name} exited at once; see {log}")
    return ManagedProcess(name, proc.pid, start_time)


def terminate(proc: ManagedProcess, timeout: float) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not gone within `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(proc.pid)
            if not proc.alive():
                return
            time.sleep(0.05)
    raise ProcessError(f"{proc.name} (pid {proc.pid}) survived SIGKILL")


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
