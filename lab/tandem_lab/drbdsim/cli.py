"""Command-line entry points: `drbdsetup` and `drbdmeta` stand-ins, and the lab's `drbdsim`
(tandem-lab's console scripts `tandem-lab-drbdsetup`, `tandem-lab-drbdmeta`, `tandem-lab-drbdsim`).

The first two are thin: they forward their argument list to the node's daemon (found through
`$DRBDSIM_STATE_DIR`) and print what it answers, with its exit status. If no daemon answers,
they start one in the current network namespace, detached. Imports are kept light because
`drbdadm up` runs about ten of these per node.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

SOCKET_NAME = "kernel.sock"
STATE_ENV = "DRBDSIM_STATE_DIR"


class NotRunning(Exception):
    pass


def request(state_dir: Path, req: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """One request to the daemon of `state_dir`; raises NotRunning when nothing listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(state_dir / SOCKET_NAME))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotRunning(str(exc)) from exc
        sock.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        sock.close()
    if not buf:
        raise NotRunning("the daemon closed the connection without an answer")
    answer: dict[str, Any] = json.loads(buf)
    return answer


def spawn_daemon(state_dir: Path, extra: list[str] | None = None) -> None:
    """Start a detached daemon in the current network namespace and wait for its socket."""
    import subprocess

    state_dir.mkdir(parents=True, exist_ok=True)
    repo = str(Path(__file__).resolve().parents[2])  # holds tandem_lab
    env = dict(os.environ)
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with (state_dir / "daemon.out").open("ab") as out:
        subprocess.Popen(  # detached on purpose: the "kernel" outlives this command
            [sys.executable, "-m", "tandem_lab.drbdsim.kernel", "--state-dir", str(state_dir), *(extra or [])],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            request(state_dir, {"op": "ping"}, timeout=2)
            return
        except NotRunning:
            time.sleep(0.05)
    raise SystemExit(f"drbdsim: the kernel daemon for {state_dir} did not start; see {state_dir / 'daemon.out'}")


def _state_dir() -> Path:
    value = os.environ.get(STATE_ENV)
    if not value:
        sys.stderr.write(f"drbdsim: ${STATE_ENV} is not set: which lab node is this?\n")
        raise SystemExit(20)
    return Path(value)


def forward(program: str, argv: list[str]) -> int:
    state_dir = _state_dir()
    req = {"op": program, "argv": argv}
    try:
        answer = request(state_dir, req)
    except NotRunning:
        spawn_daemon(state_dir)
        answer = request(state_dir, req)
    sys.stdout.write(answer.get("stdout", ""))
    sys.stderr.write(answer.get("stderr", ""))
    return int(answer.get("rc", 20))


def drbdsetup_main() -> int:
    return forward("drbdsetup", sys.argv[1:])


def drbdmeta_main() -> int:
    return forward("drbdmeta", sys.argv[1:])


def drbdsim_main(argv: list[str] | None = None) -> int:
    """`drbdsim {start,stop,write,digest,log} ...`: lab controls that no DRBD command has."""
    import argparse

    from tandem_lab.drbdsim import control

    parser = argparse.ArgumentParser(prog="drbdsim", description="Lab controls of the DRBD stand-in")
    parser.add_argument("--state-dir", type=Path, default=os.environ.get(STATE_ENV))
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the node's kernel daemon (in the current namespace)")
    start.add_argument("--netns", default=None)
    start.add_argument("--ping-timeout", type=float, default=1.0)
    start.add_argument("--resync-rate", type=int, default=200)
    start.add_argument("--fresh", action="store_true")
    sub.add_parser("stop", help="stop the node's kernel daemon")
    write = sub.add_parser("write", help="write N blocks to a Primary device")
    write.add_argument("resource")
    write.add_argument("blocks", type=int)
    digest = sub.add_parser("digest", help="print a digest of the node's data for a resource")
    digest.add_argument("resource")
    sub.add_parser("log", help="print the stand-in's kernel log")
    args = parser.parse_args(argv)
    if args.state_dir is None:
        parser.error(f"--state-dir or ${STATE_ENV} is required")
    state_dir = Path(args.state_dir)
    try:
        if args.command == "start":
            pid = control.start(
                state_dir,
                netns=args.netns,
                ping_timeout=args.ping_timeout,
                resync_rate=args.resync_rate,
                fresh=args.fresh,
            )
            print(pid)
        elif args.command == "stop":
            control.stop(state_dir)
        elif args.command == "write":
            print(control.write(state_dir, args.resource, args.blocks), end="")
        elif args.command == "digest":
            print(json.dumps(control.digest(state_dir, args.resource)))
        elif args.command == "log":
            print(control.kernel_log(state_dir), end="")
    except control.SimError as exc:
        sys.stderr.write(f"{exc}\n")
        return exc.rc
    return 0
