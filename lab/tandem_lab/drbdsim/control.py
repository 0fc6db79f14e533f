"""Python API of the DRBD stand-in for the lab and the tests.

    from tandem_lab.drbdsim import control
    pid = control.start(state_dir, netns="tdd-alpha")   # the node's "kernel", in its namespace
    env = control.lab_env(state_dir)                      # for drbdadm: finds the daemon
    drbdadm --drbdsetup=control.DRBDSETUP --drbdmeta=control.DRBDMETA ... (with env)
    control.write(state_dir, "r0", 10)                    # an application write on the Primary
    control.digest(state_dir, "r0")                       # compare data between nodes
    control.stop(state_dir)                               # ends the daemon (state is kept)

A daemon keeps its state in `state_dir` (kernel.json, md/*.json, kernel.log); `start(...,
fresh=True)` is a reboot: the resources are gone, the "disks" (md/) stay.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tandem_lab.drbdsim.cli import STATE_ENV, NotRunning, request

# The stand-in's programs are tandem-lab's console scripts (lab/pyproject.toml): pip writes them
# into the bin/ of the venv this interpreter runs from (/opt/tandem/bin on a lab node), each
# starting with that venv's interpreter, so drbdadm can run them and they import this package.
# Not resolved: a venv's python is a symlink to the base interpreter, whose bin/ has no scripts.
BIN = Path(sys.executable).parent
DRBDSETUP = BIN / "tandem-lab-drbdsetup"
DRBDMETA = BIN / "tandem-lab-drbdmeta"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # holds tandem_lab: lab/ of a checkout, or site-packages
# drbdadm asks `modinfo drbd` for the module version; there is no module in the lab.
DRIVER_VERSION = "9.2.8"

_children: dict[Path, subprocess.Popen[bytes]] = {}


class SimError(RuntimeError):
    def __init__(self, message: str, rc: int = 1) -> None:
        super().__init__(message)
        self.rc = rc


def lab_env(state_dir: Path) -> dict[str, str]:
    """Environment for drbdadm (and so for the stand-ins it runs) on the node of `state_dir`."""
    return {STATE_ENV: str(state_dir), "DRBD_DRIVER_VERSION_OVERRIDE": DRIVER_VERSION}


def is_running(state_dir: Path) -> bool:
    try:
        request(state_dir, {"op": "ping"}, timeout=2)
    except (NotRunning, OSError):
        return False
    return True


def pid_of(state_dir: Path) -> int | None:
    try:
        return int((state_dir / "kernel.pid").read_text())
    except (OSError, ValueError):
        return None


def start(
    state_dir: Path,
    *,
    netns: str | None = None,
    ping_interval: float = 0.2,
    ping_timeout: float = 1.0,
    resync_rate: int = 200,
    fresh: bool = False,
    io_socket: Path | None = None,
    timeout: float = 10.0,
) -> int:
    """Start the node's daemon (inside `netns` if given) and wait until it answers; returns its pid.

    With `io_socket` it also serves its devices' block I/O there (io.py), for `blockdev.py`.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    if is_running(state_dir):
        raise SimError(f"a kernel daemon already runs for {state_dir} (pid {pid_of(state_dir)})")
    argv = [
        sys.executable,
        "-m",
        "tandem_lab.drbdsim.kernel",
        "--state-dir",
        str(state_dir),
        "--ping-interval",
        str(ping_interval),
        "--ping-timeout",
        str(ping_timeout),
        "--resync-rate",
        str(resync_rate),
    ]
    if fresh:
        argv.append("--fresh")
    if io_socket is not None:
        argv += ["--io-socket", str(io_socket)]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]  # ip execs the daemon: same pid
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with (state_dir / "daemon.out").open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, env=env)
    _children[state_dir.resolve()] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (state_dir / "daemon.out").read_text()[-2000:]
            raise SimError(f"kernel daemon for {state_dir} exited with {proc.returncode}:\n{tail}")
        if is_running(state_dir):
            return proc.pid
        time.sleep(0.05)
    stop(state_dir)
    raise SimError(f"kernel daemon for {state_dir} did not answer within {timeout:.0f}s")


def stop(state_dir: Path, timeout: float = 10.0) -> None:
    """Stop the node's daemon (politely, then by its pid); a no-op when none runs."""
    proc = _children.pop(state_dir.resolve(), None)
    pid = pid_of(state_dir) or (proc.pid if proc else None)
    with contextlib.suppress(NotRunning, OSError):
        request(state_dir, {"op": "shutdown"}, timeout=5)
    deadline = time.monotonic() + timeout
    while pid is not None and time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        if proc is None and not _alive(pid):
            break
        time.sleep(0.05)
    else:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    (state_dir / "kernel.sock").unlink(missing_ok=True)
    (state_dir / "kernel.pid").unlink(missing_ok=True)


def kill(state_dir: Path) -> None:
    """A hard crash of the node's "kernel" (SIGKILL): the state written so far stays."""
    proc = _children.pop(state_dir.resolve(), None)
    pid = pid_of(state_dir) or (proc.pid if proc else None)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=5)
    (state_dir / "kernel.sock").unlink(missing_ok=True)
    (state_dir / "kernel.pid").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1].split()[0] != "Z"
    except OSError:
        return False


def _call(state_dir: Path, req: dict[str, Any]) -> str:
    try:
        answer = request(state_dir, req)
    except NotRunning as exc:
        raise SimError(f"no kernel daemon runs for {state_dir}: {exc}", 20) from exc
    if answer["rc"] != 0:
        raise SimError(answer["stderr"].strip(), int(answer["rc"]))
    return str(answer["stdout"])


def drbdsetup(state_dir: Path, *argv: str) -> tuple[int, str, str]:
    """What `drbdsetup <argv>` would print on this node, without starting a process.

    For watching fast transitions (a resync) closely; everything else should go through
    drbdadm and the `tandem-lab-drbdsetup` stand-in. Returns (exit status, stdout, stderr).
    """
    try:
        answer = request(state_dir, {"op": "drbdsetup", "argv": list(argv)})
    except NotRunning as exc:
        raise SimError(f"no kernel daemon runs for {state_dir}: {exc}", 20) from exc
    return int(answer["rc"]), str(answer["stdout"]), str(answer["stderr"])


def write(state_dir: Path, resource: str, blocks: int) -> str:
    """An application write of `blocks` 4 KiB blocks to the resource's device on this node.

    Raises SimError as the write would fail: "Wrong medium type" on a Secondary, an I/O error
    without quorum (on-no-quorum io-error) or "I/O suspended" (suspend-io).
    """
    return _call(state_dir, {"op": "write", "resource": resource, "blocks": blocks})


def digest(state_dir: Path, resource: str) -> dict[str, Any]:
    """sha256 of the node's data blocks, and how many blocks each node-id wrote last."""
    data: dict[str, Any] = json.loads(_call(state_dir, {"op": "digest", "resource": resource}))
    return data


def kernel_log(state_dir: Path) -> str:
    path = state_dir / "kernel.log"
    return path.read_text() if path.exists() else ""
