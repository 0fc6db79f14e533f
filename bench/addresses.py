"""Benchmark: moving 1, 10 and 100 floating addresses between two lab namespaces.

    python -m bench.addresses --json bench/results/addresses.json [--runs 10]

Lab: LabNetwork(prefix="tda", subnet=10) with namespaces a and b (each runs a TCP server that
greets with its node name) and the client c, all on one bridge; addresses come from
198.18.10.100-198.18.10.199/24. Do not run it while tests/lab/test_addresses.py runs: both
use the same lab (the benchmark refuses to start if the lab's namespaces are in use).

Each run moves the set from the current holder to the other node, alternating direction:

* ``remove``: ensure_absent on the old holder.
* ``add``: ensure_present on the new holder, including every announcement round (with the
  defaults, 3 rounds 0.2 s apart, so about 0.4 s of deliberate spacing).
* ``move``: remove + add, i.e. until the last announcement has been sent.
* ``reach``: from the start of the move until a TCP client in c, which had the old holder's
  MAC cached for the last address of the set and retries every few milliseconds, gets the
  new holder's greeting on that address. It does not wait for the later rounds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.report import emit, percentiles
from tandem_agent.drivers import addresses as drv
from tandem_agent.drivers.base import run
from tandem_lab.netns import LabNetwork

PREFIX = "tda"
SUBNET = 10
PORT = 7071
IFNAME = "mgmt"
HOSTS = {"a": 2, "b": 3, "c": 4}
SIZES = (1, 10, 100)
PROBE_TIMEOUT = 0.005
REACH_DEADLINE = 10.0

SERVER = r"""
import socket, sys, threading
name, port = sys.argv[1].encode(), int(sys.argv[2])
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
srv.bind(("::", port))
srv.listen(512)

def serve(conn):
    with conn:
        conn.sendall(name + b"\n")

print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def ns(host: str) -> str:
    return f"{PREFIX}-{host}"


PROBER = r"""
import socket, sys, time
port, timeout, deadline_s = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])

def holder(address):
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            return sock.makefile("rb").readline().decode().strip()
    except OSError:
        return None

print("ready", flush=True)
for line in sys.stdin:
    address, expected = line.split()
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if holder(address) == expected:
            print("reached", time.monotonic(), flush=True)
            break
        time.sleep(0.001)
    else:
        print("timeout", flush=True)
"""


class Prober:
    """A process in namespace c that, on request, retries an address until `expected` answers.

    It is a separate process (not a thread) so that its retry loop does not compete with the
    move for the GIL. Times are CLOCK_MONOTONIC, which all processes share.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argument list
            [
                "ip",
                "netns",
                "exec",
                ns("c"),
                sys.executable,
                "-c",
                PROBER,
                str(PORT),
                str(PROBE_TIMEOUT),
                str(REACH_DEADLINE),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._line() != "ready":
            raise RuntimeError("the prober in the client namespace did not start")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def start(self, address: str, expected: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{address} {expected}\n")
        self.proc.stdin.flush()

    def wait(self) -> float | None:
        """Monotonic time the expected holder answered; None if it did not in time."""
        word, _, value = self._line().partition(" ")
        return float(value) if word == "reached" else None

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=REACH_DEADLINE + 2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def remove_stale_lab() -> None:
    listed = run(["ip", "netns", "list"], check=False)
    for host, index in HOSTS.items():
        if ns(host) not in listed.stdout.split():
            continue
        pids = run(["ip", "netns", "pids", ns(host)], check=False).stdout.split()
        if pids:
            raise SystemExit(
                f"{ns(host)} is in use by pids {pids}: wait for the running test, or kill"
                " those pids if a killed run left them behind"
            )
        run(["ip", "netns", "del", ns(host)], check=False)
        run(["ip", "link", "del", f"{PREFIX}{index}mgmt"], check=False)
    for bridge in (f"{PREFIX}-br-mgmt", f"{PREFIX}-br-repl"):
        run(["ip", "link", "del", bridge], check=False)


@contextmanager
def lab() -> Iterator[Prober]:
    remove_stale_lab()
    network = LabNetwork(prefix=PREFIX, subnet=SUBNET)
    servers: list[subprocess.Popen[str]] = []
    prober: Prober | None = None
    try:
        network.create()
        for host, index in HOSTS.items():
            network.add_host(host, index, replication=False)
        for host in ("a", "b"):
            proc = subprocess.Popen(  # noqa: S603 - fixed argument list
                ["ip", "netns", "exec", ns(host), sys.executable, "-c", SERVER, host, str(PORT)],
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(proc)
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the TCP server in {ns(host)} did not start")
        prober = Prober()
        yield prober
    finally:
        if prober is not None:
            prober.stop()
        for proc in servers:
            proc.terminate()
        for proc in servers:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        network.destroy()


def one_move(
    prober: Prober,
    addresses: tuple[drv.IPInterface, ...],
    src: str,
    dst: str,
    settings: drv.Announce,
) -> dict[str, float]:
    probe = str(addresses[-1].ip)
    prober.start(probe, src)  # c talks to src, so it has src's MAC cached for the address
    if prober.wait() is None:
        raise RuntimeError(f"before the move, c could not reach {src} on {probe}")
    t0 = time.monotonic()
    prober.start(probe, dst)
    gone = drv.ensure_absent(ns(src), IFNAME, addresses)
    t1 = time.monotonic()
    added = drv.ensure_present(ns(dst), IFNAME, addresses, announce=settings)
    t2 = time.monotonic()
    reached = prober.wait()
    if len(gone.removed) != len(addresses) or len(added.added) != len(addresses):
        raise RuntimeError(f"partial move: removed {gone.removed}, added {added.added}")
    if reached is None:
        raise RuntimeError(f"c never reached {dst} on {probe} within {REACH_DEADLINE}s")
    return {"remove": t1 - t0, "add": t2 - t1, "move": t2 - t0, "reach": reached - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--json", help="write the JSON results to this file (default: stdout)")
    parser.add_argument("--runs", type=int, default=10, help="moves per size (default 10)")
    parser.add_argument(
        "--count", type=int, default=drv.DEFAULT_ANNOUNCE.count, help="announcement rounds (default %(default)s)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=drv.DEFAULT_ANNOUNCE.interval,
        help="seconds between rounds (default %(default)s)",
    )
    args = parser.parse_args(argv)
    settings = drv.Announce(count=args.count, interval=args.interval)
    results: dict[str, dict[str, Any]] = {}
    with lab() as prober:
        for size in SIZES:
            addresses = drv.parse_addresses(f"198.18.10.100-198.18.10.{100 + size - 1}", 24)
            drv.ensure_present(ns("a"), IFNAME, addresses, announce=settings)
            holder, other = "a", "b"
            samples: dict[str, list[float]] = {"remove": [], "add": [], "move": [], "reach": []}
            for _ in range(args.runs):
                for key, value in one_move(prober, addresses, holder, other, settings).items():
                    samples[key].append(value)
                holder, other = other, holder
            drv.ensure_absent(ns(holder), IFNAME, addresses)
            for key in ("move", "reach", "remove", "add"):
                results[f"{key} {size} addr"] = {
                    **percentiles(samples[key]),
                    "announce": f"{settings.count}x{settings.interval:g}s",
                }
    emit("addresses: move floating IPs between namespaces", results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
