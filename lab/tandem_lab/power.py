"""A lab node's power controller and watchdog: what the BMC and the watchdog chip are on a
real node.

Runs on the host, one per node. It serves the watchdog socket that the node's agent reaches
at /run/tandem-lab/watchdog.sock (`--watchdog lab:<path>`): each pet says how long until the
agent's own fence deadline; if that passes without a new pet (or a disarm), or the agent asks
to be fenced, the controller resets the node: every address but the node's own goes, its init
gets SIGKILL (everything on the node dies at once), and after a second the node boots again
from its disk, where systemd starts the DRBD stand-in (resources down, disks kept) and the
agent as on any boot. The lab resets a node the same way (`LabCluster.reset`, verb `reset`),
keeping it off for as long as it asks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import socket
import sys
import time
from pathlib import Path

from tandem_lab.machine import Machine, MachineSpec
from tandem_lab.netns import run_ip

log = logging.getLogger("tandem_lab.power")

REBOOT_DELAY = 1.0
SPEC_FILE = "machine.json"
SOCKET_DIR = "watchdog"  # on the host, in the node directory; /run/tandem-lab in the node
NODE_SOCKET = "/run/tandem-lab/watchdog.sock"


def save_spec(spec: MachineSpec, own: dict[str, str]) -> None:
    """Record the node's machine and its own addresses for the controller (another process)."""
    raw = {
        "name": spec.name,
        "machine": spec.machine,
        "netns": spec.netns,
        "directory": str(spec.directory),
        "lower": [str(p) for p in spec.lower],
        "binds": list(spec.binds),
        "read_only_binds": list(spec.read_only_binds),
        "capabilities": list(spec.capabilities),
        "options": list(spec.options),
        "own": own,
    }
    (spec.directory / SPEC_FILE).write_text(json.dumps(raw, indent=2))


def load(directory: Path) -> tuple[Machine, dict[str, str]]:
    raw = json.loads((directory / SPEC_FILE).read_text())
    own = raw.pop("own")
    spec = MachineSpec(
        name=raw["name"],
        machine=raw["machine"],
        netns=raw["netns"],
        directory=Path(raw["directory"]),
        lower=tuple(map(Path, raw["lower"])),
        binds=tuple(raw["binds"]),
        read_only_binds=tuple(raw["read_only_binds"]),
        capabilities=tuple(raw["capabilities"]),
        options=tuple(raw.get("options", ())),
    )
    return Machine(spec), own


def drop_addresses(netns: str, own: dict[str, str]) -> None:
    """A node that loses power loses every address it had taken on; its own come back with
    its configuration at boot (here: at once, since the lab configures them from outside)."""
    for link, address in own.items():
        run_ip(["-n", netns, "addr", "flush", "dev", link], check=False)
        run_ip(["-n", netns, "addr", "add", address, "dev", link], check=False)


class Controller:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.machine, self.own = load(directory)
        self.fence_at: float | None = None
        self.stopping = False
        sockets = directory / SOCKET_DIR
        sockets.mkdir(exist_ok=True)
        path = sockets / "watchdog.sock"
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)

    def fence(self, reason: str, off_seconds: float = REBOOT_DELAY) -> None:
        log.critical("RESET: %s", reason)
        with (self.directory / "fences.log").open("a") as fences:
            fences.write(f"{time.time():.3f} {reason}\n")
        self.fence_at = None
        drop_addresses(self.machine.spec.netns, self.own)
        self.machine.power_off()
        drop_addresses(self.machine.spec.netns, self.own)
        time.sleep(off_seconds)
        self.machine.boot()
        log.info("booted again")

    def handle(self, message: str) -> None:
        verb, _, rest = message.partition(" ")
        if verb == "pet":
            self.fence_at = time.monotonic() + float(rest)
        elif verb == "disarm":
            self.fence_at = None
        elif verb == "fence":
            self.fence(f"requested by the agent: {rest}")
        elif verb == "reset":  # the lab's own: "reset <seconds off> <reason>"
            seconds, _, reason = rest.partition(" ")
            self.fence(reason, off_seconds=float(seconds))

    def run(self) -> None:
        while not self.stopping:
            with contextlib.suppress(TimeoutError, BlockingIOError):
                self.handle(self.sock.recv(4096).decode(errors="replace"))
            now = time.monotonic()
            if self.fence_at is not None and now > self.fence_at:
                self.fence(f"watchdog: no pet {now - self.fence_at:.3f}s past the agent's fence deadline")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--node-dir", type=Path, required=True)
    args = p.parse_args(argv)
    controller = Controller(args.node_dir)
    logging.basicConfig(level="INFO", format=f"%(asctime)s power {controller.machine.spec.name} %(message)s")

    def stop(*_: object) -> None:
        controller.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    controller.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
