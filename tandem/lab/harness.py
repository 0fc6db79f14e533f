"""What every end-to-end scenario and benchmark needs around a lab cluster.

- `Client`: the lab client (tandem.lab.client) in the client namespace, writing through the
  floating IP and logging every acknowledgement.
- `Observer`: samples, many times a second, which nodes hold the floating IP and which
  PostgreSQL accepts writes, and counts instants with more than one.
- `missing_acks`: every acknowledged write must be on the final primary.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tandem.lab.client import TABLE, read_log
from tandem.lab.cluster import LabCluster
from tandem_agent.drivers import addresses


class Client:
    """The lab client process; `records()` reads what it logged so far."""

    def __init__(self, cluster: LabCluster, vip: str, log: Path, pg_port: int = 5432,
                 interval: float = 0.02) -> None:
        self.log = log
        argv = ["ip", "netns", "exec", cluster.client_netns, sys.executable, "-m",
                "tandem.lab.client", "--vip", vip, "--log", str(log), "--pg-port", str(pg_port),
                "--interval", str(interval)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def records(self) -> list[dict[str, Any]]:
        return read_log(self.log)

    def acked(self) -> list[int]:
        return [r["ack"] for r in self.records() if "ack" in r]

    def wait_for(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        """The first new record (after now) matching `predicate`, or AssertionError."""
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            for record in self.records():
                if record["t"] >= start and predicate(record):
                    return record
            time.sleep(0.05)
        raise AssertionError(f"client never saw {what} within {timeout:.0f}s")

    def served_by(self, node: str, timeout: float = 30.0) -> float:
        """Monotonic time of the first HTTP answer from `node` after now."""
        return float(self.wait_for(lambda r: r.get("http") == node, timeout,
                                   f"an HTTP answer from {node}")["t"])

    def acked_by(self, node: str, timeout: float = 30.0) -> float:
        return float(self.wait_for(lambda r: r.get("node") == node and "ack" in r, timeout,
                                   f"a write acknowledged by {node}")["t"])

    def http_gap(self, after: float) -> float:
        """Longest time without an HTTP answer after `after` (the client-visible gap)."""
        answered = [r["t"] for r in self.records() if r.get("http") and r["t"] >= after]
        return max((b - a for a, b in zip(answered, answered[1:], strict=False)), default=0.0)


def pg_socket_dir(cluster: LabCluster, node: str) -> Path:
    return cluster.node_dir(node) / "pg" / "data.run"


def writable(cluster: LabCluster, node: str) -> bool:
    """Does this node's PostgreSQL accept writes right now (a primary, not in recovery)?"""
    try:
        with psycopg.connect(host=str(pg_socket_dir(cluster, node)), port=5432,
                             user="postgres", dbname="postgres", connect_timeout=1) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            return row is not None and not row[0]
    except psycopg.Error:
        return False


def holds(cluster: LabCluster, node: str, vip: str) -> bool:
    try:
        present = addresses.present(cluster.netns(node), "mgmt")
    except Exception:
        return False
    return any(str(iface.ip) == vip for iface in present)


@dataclass
class Observer:
    """Samples VIP holders and writable PostgreSQL servers on every data node."""

    cluster: LabCluster
    nodes: list[str]
    vip: str
    interval: float = 0.05
    samples: int = 0
    double_vip: list[tuple[float, list[str]]] = field(default_factory=list)
    double_writable: list[tuple[float, list[str]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Observer:
        self._thread = threading.Thread(target=self._run, daemon=True, name="observer")
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            vip = [n for n in self.nodes if holds(self.cluster, n, self.vip)]
            rw = [n for n in self.nodes if writable(self.cluster, n)]
            self.samples += 1
            if len(vip) > 1:
                self.double_vip.append((now, vip))
            if len(rw) > 1:
                self.double_writable.append((now, rw))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def double_primary_instants(self) -> int:
        return len({t for t, _ in self.double_vip} | {t for t, _ in self.double_writable})


def missing_acks(cluster: LabCluster, primary: str, acked: list[int]) -> list[int]:
    """Acknowledged ids absent from the final primary's table."""
    with psycopg.connect(host=str(pg_socket_dir(cluster, primary)), port=5432, user="postgres",
                         dbname="postgres", connect_timeout=5) as conn:
        present = {row[0] for row in conn.execute(f"SELECT id FROM {TABLE}")}  # noqa: S608
    return sorted(set(acked) - present)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = predicate()
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def lease_holder(cluster: LabCluster, name: str) -> tuple[str | None, int]:
    spec = cluster.lease(name)
    return spec.get("holderIdentity"), int(spec.get("leaseTransitions", 0))


def node_report(cluster: LabCluster, name: str, node: str) -> dict[str, Any]:
    status = cluster.hacluster(name).get("status") or {}
    return next((n for n in status.get("nodes", []) if n["name"] == node), {})


def pids_in(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                         check=False).stdout
    return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]
