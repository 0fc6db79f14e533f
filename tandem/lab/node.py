"""A lab node's supervisor: what the kubelet, the kernel and the watchdog are on a real node.

Runs inside the node's network namespace. It starts the node's DRBD stand-in ("the kernel")
and the agent, restarts the agent when it exits (as the kubelet restarts a DaemonSet pod), and
serves the watchdog socket: each pet says how long until the agent's own fence deadline; if
that passes without a new pet (or disarm), or the agent asks to be fenced, the node is
powered off: every address but the node's own goes away and every process of the namespace
gets SIGKILL. Then the node
"reboots": a fresh DRBD stand-in (resources down, disks kept) and a new agent.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tandem.lab import fakeclock
from tandem.lab.drbdsim import control

log = logging.getLogger("tandem.lab.node")

RESTART_DELAY = 0.5
REBOOT_DELAY = 1.0


class Supervisor:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state_dir: Path = args.state_dir
        self.agent: subprocess.Popen[bytes] | None = None
        self.agent_exited_at: float | None = None
        self.fence_at: float | None = None  # armed: monotonic deadline on our own clock
        self.stopping = False
        self.fences = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = self.state_dir / "watchdog.sock"
        path.unlink(missing_ok=True)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)

    # --- processes ------------------------------------------------------------------------
    def start_kernel(self, fresh: bool) -> None:
        drbd_state = self.state_dir / "drbd"
        if control.is_running(drbd_state):
            return
        control.start(drbd_state, fresh=fresh)

    def start_agent(self) -> None:
        if not self.args.agent:
            return
        argv, env = self.args.agent, None
        clock = self.state_dir / fakeclock.NODE_CLOCK_FILE
        if clock.exists():
            argv = fakeclock.command(argv)
            env = os.environ | fakeclock.environment(clock)
        log_file = (self.state_dir / "agent.log").open("ab")
        self.agent = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        log_file.close()
        (self.state_dir / "agent.pid").write_text(str(self.agent.pid))
        self.agent_exited_at = None
        log.info("agent started (pid %d%s)", self.agent.pid,
                 f", wall clock faked from {clock}" if env else "")

    def _namespace_pids(self) -> list[int]:
        listed = subprocess.run(["ip", "netns", "pids", self.args.netns], capture_output=True,
                                text=True, check=False)
        return [int(p) for p in listed.stdout.split() if p.isdigit() and int(p) != os.getpid()]

    def kill_everything(self) -> None:
        """SIGKILL every process of this node but the supervisor, until none is left."""
        for _ in range(50):
            pids = self._namespace_pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._reap()
            time.sleep(0.05)
        self.agent = None

    def _reap(self) -> None:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass

    def drop_addresses(self) -> None:
        """Remove every address but the node's own from its links (a power-off loses them)."""
        for link, own in (("mgmt", self.args.mgmt_address), ("repl", self.args.repl_address)):
            if own is None:
                continue
            subprocess.run(["ip", "addr", "flush", "dev", link], check=False, capture_output=True)
            subprocess.run(["ip", "addr", "add", f"{own}/24", "dev", link], check=False,
                           capture_output=True)

    def fence(self, reason: str) -> None:
        self.fences += 1
        log.critical("FENCE #%d: %s", self.fences, reason)
        (self.state_dir / "fences.log").open("a").write(f"{time.time():.3f} {reason}\n")
        self.fence_at = None
        self.drop_addresses()
        self.kill_everything()
        self.drop_addresses()
        time.sleep(REBOOT_DELAY)
        log.info("rebooted")
        self.start_kernel(fresh=True)
        self.start_agent()

    # --- main loop ------------------------------------------------------------------------
    def handle(self, message: str) -> None:
        verb, _, rest = message.partition(" ")
        if verb == "pet":
            self.fence_at = time.monotonic() + float(rest)
        elif verb == "disarm":
            self.fence_at = None
        elif verb == "fence":
            self.fence(f"requested by the agent: {rest}")

    def run(self) -> None:
        self.start_kernel(fresh=False)
        self.start_agent()
        while not self.stopping:
            with contextlib.suppress(TimeoutError, BlockingIOError):
                data = self.sock.recv(4096)
                self.handle(data.decode(errors="replace"))
            now = time.monotonic()
            if self.fence_at is not None and now > self.fence_at:
                self.fence(f"watchdog: no pet {now - self.fence_at:.3f}s past the agent's "
                           "fence deadline")
                continue
            if self.agent is not None and self.agent.poll() is not None:
                if self.agent_exited_at is None:
                    self.agent_exited_at = now
                    log.warning("agent exited with %s", self.agent.returncode)
                elif now - self.agent_exited_at >= RESTART_DELAY:
                    self.start_agent()
        self.shutdown()

    def shutdown(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.agent.wait(timeout=15)
        self.kill_everything()
        control.stop(self.state_dir / "drbd")
        log.info("node stopped")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--netns", required=True)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--mgmt-address", required=True)
    p.add_argument("--repl-address", default=None)
    p.add_argument("agent", nargs=argparse.REMAINDER, help="-- the agent's argument list")
    args = p.parse_args(argv)
    if args.agent and args.agent[0] == "--":
        args.agent = args.agent[1:]
    logging.basicConfig(level="INFO", format=f"%(asctime)s node {args.name} %(message)s")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(args)

    def stop(*_: object) -> None:
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    supervisor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
