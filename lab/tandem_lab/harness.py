"""What every end-to-end scenario and benchmark needs around a lab cluster.

- `Client`: the lab client (tandem_lab.client) in the client namespace, writing through the
  floating IP as the application role `ensure_app_role` creates, and logging every
  acknowledgement.
- `Observer`: samples, many times a second, which nodes hold the floating IP and which
  PostgreSQL accepts writes, and counts instants with more than one.
- `missing_acks`: every acknowledged write must be on the final primary.
- `missing_files`: every file the client saw stored must be on the final primary's mount with
  the sha256 it was acknowledged with.
- `judge` / `checked`: the whole verdict of a run, reported (chaos) or asserted (scenarios).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import kubernetes
import psycopg
from psycopg import sql

from tandem.kube.connect import load_client
from tandem.kube.lease import parse_lease
from tandem_agent.drivers import addresses
from tandem_agent.drivers.postgres import scram_verifier
from tandem_lab.client import APP_USER, TABLE, read_log
from tandem_lab.cluster import NODE_PYTHON, POSTGRES_DATA, LabCluster
from tandem_lab.echo import data_dir

ETH_P_ARP = 0x0806


class Client:
    """The lab client process; `records()` reads what it logged so far."""

    def __init__(
        self,
        cluster: LabCluster,
        vip: str,
        log: Path,
        pg_port: int = 5432,
        interval: float = 0.02,
        *,
        file_port: int = 8080,
        file_interval: float = 0.25,
    ) -> None:
        self.log = log
        ensure_app_role(cluster)
        argv = [
            "ip",
            "netns",
            "exec",
            cluster.client_netns,
            sys.executable,
            "-m",
            "tandem_lab.client",
            "--vip",
            vip,
            "--log",
            str(log),
            "--pg-port",
            str(pg_port),
            "--interval",
            str(interval),
            "--file-port",
            str(file_port),
            "--file-interval",
            str(file_interval),
        ]
        env = os.environ | {"PGPASSWORD": cluster.password(APP_USER)}
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

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

    def acked_files(self) -> dict[str, str]:
        """Every file the echo service acknowledged: name -> sha256."""
        return {r["file"]: r["sha256"] for r in self.records() if "file" in r}

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
        return float(self.wait_for(lambda r: r.get("http") == node, timeout, f"an HTTP answer from {node}")["t"])

    def acked_by(self, node: str, timeout: float = 30.0) -> float:
        return float(
            self.wait_for(lambda r: r.get("node") == node and "ack" in r, timeout, f"a write acknowledged by {node}")[
                "t"
            ]
        )

    def file_stored_by(self, node: str, timeout: float = 30.0) -> float:
        return float(
            self.wait_for(lambda r: r.get("node") == node and "file" in r, timeout, f"a file stored by {node}")["t"]
        )

    def http_gap(self, after: float) -> float:
        """Longest time without an HTTP answer after `after` (the client-visible gap)."""
        answered = [r["t"] for r in self.records() if r.get("http") and r["t"] >= after]
        return max((b - a for a, b in zip(answered, answered[1:], strict=False)), default=0.0)


def pg_socket_dir(cluster: LabCluster, node: str) -> Path:
    """The directory of the node's PostgreSQL socket, as the host sees the node's disk."""
    return cluster.node_path(node, POSTGRES_DATA + ".run")


def ensure_app_role(cluster: LabCluster, timeout: float = 120) -> None:
    """The lab client's role, made once on a primary as a DBA makes an application's role
    (streaming replication carries it to the standbys): LOGIN with the lab's password (set as
    a SCRAM verifier) and the right to create its table in the postgres database."""
    state = cluster.state()
    assert state is not None
    nodes = [n.name for n in state.nodes if n.data]
    verifier = scram_verifier(cluster.password(APP_USER))

    def made() -> bool:
        for node in nodes:
            try:
                with psycopg.connect(
                    host=str(pg_socket_dir(cluster, node)),
                    port=5432,
                    user="postgres",
                    dbname="postgres",
                    autocommit=True,
                    connect_timeout=1,
                ) as conn:
                    row = conn.execute(
                        "SELECT pg_is_in_recovery(), EXISTS (SELECT FROM pg_roles WHERE rolname = %s)", (APP_USER,)
                    ).fetchone()
                    assert row is not None
                    if row[1]:
                        return True
                    if not row[0]:
                        conn.execute("SET synchronous_commit = local")
                        conn.execute(
                            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                                sql.Identifier(APP_USER), sql.Literal(verifier)
                            )
                        )
                        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(APP_USER)))
                        return True
            except psycopg.Error:
                continue
        return False

    wait_until(made, timeout, f"a PostgreSQL primary to create the role {APP_USER} on")


def writable(cluster: LabCluster, node: str) -> bool:
    """Does this node's PostgreSQL accept writes right now (a primary, not in recovery)?"""
    try:
        with psycopg.connect(
            host=str(pg_socket_dir(cluster, node)), port=5432, user="postgres", dbname="postgres", connect_timeout=1
        ) as conn:
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


LeaseKey = tuple[str | None, int]


class LeaseReader:
    """Reads a Lease from the host with a short timeout (the observer's view of the epoch)."""

    def __init__(self, cluster: LabCluster, name: str) -> None:
        self.api = kubernetes.client.CoordinationV1Api(load_client(str(cluster.plane.kubeconfig)))
        self.namespace, self.name = cluster.namespace, f"{name}-primary"

    def read(self) -> LeaseKey | None:
        """(holder, epoch), or None when the API server does not answer."""
        try:
            lease = parse_lease(self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=0.5))
        except Exception:
            return None
        return lease.holder, lease.epoch


@dataclass
class Sample:
    t: float
    vip: list[str]
    writable: list[str]
    lease: LeaseKey | None  # None: the Lease changed during the sample, or the API was down

    @property
    def primaries(self) -> set[str]:
        return set(self.vip) | set(self.writable)


@dataclass
class Observer:
    """Samples, many times a second, which nodes hold the floating IP, which PostgreSQL
    accepts writes, and (around them) the Lease's holder and epoch.

    The verdicts: `double_primary_instants` (two nodes primary in one sample),
    `primary_without_lease` (a node primary while a stable Lease names another holder or
    nobody), and `epoch_overlaps` (an epoch in which two different nodes were seen primary).
    """

    cluster: LabCluster
    nodes: list[str]
    vip: str
    interval: float = 0.05
    lease_name: str = "mail"
    history: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Observer:
        self._reader = LeaseReader(self.cluster, self.lease_name)
        self._thread = threading.Thread(target=self._run, daemon=True, name="observer")
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.history.append(self.sample())
            self._stop.wait(self.interval)

    def sample(self) -> Sample:
        before = self._reader.read()
        now = time.monotonic()
        vip = [n for n in self.nodes if holds(self.cluster, n, self.vip)]
        rw = [n for n in self.nodes if writable(self.cluster, n)]
        after = self._reader.read()
        return Sample(now, vip, rw, before if before == after else None)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def samples(self) -> int:
        return len(self.history)

    @property
    def double_vip(self) -> list[tuple[float, list[str]]]:
        return [(s.t, s.vip) for s in self.history if len(s.vip) > 1]

    @property
    def double_writable(self) -> list[tuple[float, list[str]]]:
        return [(s.t, s.writable) for s in self.history if len(s.writable) > 1]

    @property
    def double_primary_instants(self) -> int:
        return sum(1 for s in self.history if len(s.primaries) > 1)

    @property
    def primary_without_lease(self) -> list[tuple[float, list[str], LeaseKey]]:
        return [
            (s.t, sorted(s.primaries), s.lease)
            for s in self.history
            if s.lease is not None and s.primaries - {s.lease[0]}
        ]

    @property
    def epoch_overlaps(self) -> dict[int, list[str]]:
        seen: dict[int, set[str]] = {}
        for s in self.history:
            if s.lease is not None:
                seen.setdefault(s.lease[1], set()).update(s.primaries)
        return {epoch: sorted(nodes) for epoch, nodes in seen.items() if len(nodes) > 1}

    def assert_single_primary(self) -> None:
        """The checker's safety verdict: raises AssertionError naming the first violations."""
        assert self.samples > 10, f"the observer took only {self.samples} samples"
        doubles = [(s.t, sorted(s.primaries)) for s in self.history if len(s.primaries) > 1]
        assert doubles == [], f"two primaries at once: {doubles[:5]}"
        assert self.primary_without_lease == [], f"primary without the Lease: {self.primary_without_lease[:5]}"
        assert self.epoch_overlaps == {}, f"epochs with two primaries: {self.epoch_overlaps}"


def missing_acks(cluster: LabCluster, primary: str, acked: list[int]) -> list[int]:
    """Acknowledged ids absent from the final primary's table."""
    with psycopg.connect(
        host=str(pg_socket_dir(cluster, primary)), port=5432, user="postgres", dbname="postgres", connect_timeout=5
    ) as conn:
        present = {row[0] for row in conn.execute(f"SELECT id FROM {TABLE}")}  # noqa: S608
    return sorted(set(acked) - present)


def files_mount(cluster: LabCluster, name: str) -> str | None:
    """The mount point below which the echo services of HACluster `name` store files (its
    chain's first mount, tandem_lab.echo.environment_files), None when it has no mount."""
    mounts = cluster.hacluster(name)["spec"]["chain"].get("mounts") or []
    return str(mounts[0]["mountPoint"]) if mounts else None


# Run in the node, where the mount is: name -> sha256 of every stored file (temporary files,
# named with a leading dot, left out); fails when the mount point is not mounted.
STORED_FILES = """
import hashlib, json, os, sys
from pathlib import Path
mount_point, directory = sys.argv[1], Path(sys.argv[2])
if not os.path.ismount(mount_point):
    sys.exit(f"{mount_point} is not mounted")
files = directory.iterdir() if directory.is_dir() else []
print(json.dumps({f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files
                  if not f.name.startswith(".")}))
"""


def stored_files(cluster: LabCluster, node: str, mount_point: str) -> dict[str, str]:
    """name -> sha256 of every file stored on `node`'s mount at `mount_point`: one command in
    the node (the mount exists in its mount namespace only)."""
    out = (
        cluster.machine(node)
        .exec([NODE_PYTHON, "-c", STORED_FILES, mount_point, data_dir(mount_point)], timeout=120)
        .stdout
    )
    found: dict[str, str] = json.loads(out)
    return found


def lost_files(acked: Mapping[str, str], stored: Mapping[str, str]) -> list[str]:
    """One line per acknowledged file not stored as acknowledged, in the order written:
    "f7 missing" or "f7 has sha256 <stored>, acknowledged <acked>"."""
    lost = []
    for name in sorted(acked, key=_sequence):
        if name not in stored:
            lost.append(f"{name} missing")
        elif stored[name] != acked[name]:
            lost.append(f"{name} has sha256 {stored[name][:12]}..., acknowledged {acked[name][:12]}...")
    return lost


def _sequence(name: str) -> tuple[int, str]:
    digits = name.removeprefix("f")
    return (int(digits), name) if digits.isdigit() else (-1, name)


def missing_files(cluster: LabCluster, primary: str, acked_files: Mapping[str, str], name: str = "mail") -> list[str]:
    """Acknowledged files (name -> sha256) not on `primary`'s mount as acknowledged
    (`lost_files`); nothing to check, and no command run, when none was acknowledged."""
    if not acked_files:
        return []
    mount_point = files_mount(cluster, name)
    if mount_point is None:
        raise AssertionError(
            f"{len(acked_files)} files acknowledged, but HACluster {name} has no mount to store them on"
        )
    return lost_files(acked_files, stored_files(cluster, primary, mount_point))


def wait_until(
    predicate: Any, timeout: float, what: str, interval: float = 0.1, context: Callable[[], Any] | None = None
) -> Any:
    """The first truthy value of `predicate`; on timeout an AssertionError with its last value
    and, when given, what `context` says then (the state that explains the failure)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = predicate()
            if last:
                return last
        time.sleep(interval)
    seen = ""
    if context is not None:
        try:
            seen = f"; then: {context()!r}"
        except Exception as exc:  # the failure is the timeout; the context is a bonus
            seen = f"; context unavailable: {exc}"
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r}{seen})")


def lease_holder(cluster: LabCluster, name: str) -> tuple[str | None, int]:
    lease = cluster.lease(name)
    return (lease.holder, lease.epoch) if lease else (None, 0)


def node_report(cluster: LabCluster, name: str, node: str) -> dict[str, Any]:
    status = cluster.hacluster(name).get("status") or {}
    return next((n for n in status.get("nodes", []) if n["name"] == node), {})


def switchover_status(cluster: LabCluster, name: str) -> dict[str, Any]:
    """The HACluster's status.switchover ({} when there is none)."""
    status = cluster.hacluster(name).get("status") or {}
    switchover: dict[str, Any] = status.get("switchover") or {}
    return switchover


def wal_replay(cluster: LabCluster, node: str, action: Literal["pause", "resume"]) -> None:
    """Pause or resume WAL replay on `node`'s standby (a lagging standby, scenario 7).
    psycopg.Error when its PostgreSQL does not run or is not a standby."""
    with psycopg.connect(
        host=str(pg_socket_dir(cluster, node)),
        port=5432,
        user="postgres",
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    ) as conn:
        conn.execute(f"SELECT pg_wal_replay_{action}()")


def fence_and_takeover(cluster: LabCluster, node: str, name: str = "mail") -> tuple[float, float]:
    """Wall-clock times of `node`'s first fence and of the Lease's current acquireTime (both
    on the machine's one clock), for "fenced before anyone took over" checks."""
    fences = cluster.fences(node)
    assert fences, f"{node} was never fenced"
    lease = cluster.lease(name)
    assert lease is not None and lease.acquire_time is not None, f"nobody ever took the Lease of {name}"
    return float(fences[0].split()[0]), lease.acquire_time.timestamp()


def pids_in(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]


def sync_standbys(cluster: LabCluster, name: str) -> list[str]:
    """The synchronous standbys the holder lists on the Lease."""
    lease = cluster.lease(name)
    return list(lease.sync_standbys or ()) if lease else []


def replicating(cluster: LabCluster, name: str, primary: str, standbys: list[str]) -> bool:
    """`primary` holds the Lease and reports Primary; every standby streams with lag 0 and is
    listed as synchronous (so it may take over without losing an acknowledged write). One
    read of the Lease gives both its holder and its list."""
    lease = cluster.lease(name)
    return (
        lease is not None
        and lease.holder == primary
        and node_report(cluster, name, primary).get("role") == "Primary"
        and all(node_report(cluster, name, s).get("postgres", {}).get("lagSeconds") == 0 for s in standbys)
        and set(standbys) <= set(lease.sync_standbys or ())
    )


def wait_replicating(cluster: LabCluster, name: str, primary: str, standbys: list[str], timeout: float = 120) -> None:
    wait_until(
        lambda: replicating(cluster, name, primary, standbys),
        timeout,
        f"{primary} primary of {name} with {', '.join(standbys)} in sync",
        context=lambda: replication_seen(cluster, name),
    )


def replication_seen(cluster: LabCluster, name: str) -> dict[str, Any]:
    """What a wait for replication looks at, for its timeout message: the Lease's holder, epoch
    and synchronous list, and each node's role, eligibility, PostgreSQL report and message."""
    lease = cluster.lease(name)
    status = cluster.hacluster(name).get("status") or {}
    keys = ("role", "eligible", "ineligibleReason", "postgres", "message")
    return {
        "lease": (lease.holder, lease.epoch, lease.sync_standbys) if lease else None,
        "nodes": {n["name"]: {k: n.get(k) for k in keys} for n in status.get("nodes", [])},
    }


def link_mac(netns: str, ifname: str = "mgmt") -> str:
    out = subprocess.run(
        ["ip", "-n", netns, "-j", "link", "show", "dev", ifname], capture_output=True, text=True, check=True
    ).stdout
    return str(json.loads(out)[0]["address"])


def neighbour_mac(netns: str, address: str, ifname: str = "mgmt") -> str | None:
    """The MAC the namespace's neighbour table holds for `address`, if any."""
    out = subprocess.run(
        ["ip", "-n", netns, "-j", "neigh", "show", "to", address, "dev", ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    entries = json.loads(out or "[]")
    return next((e["lladdr"] for e in entries if "lladdr" in e), None)


def arp_answers(netns: str, address: str, ifname: str = "mgmt", wait: float = 1.0) -> set[str]:
    """Send one ARP request for `address` from `netns` and return the MAC of every answer.

    Raw frames, so the kernel's own neighbour cache plays no part: whoever answers is a node
    that still claims the address."""
    target = ipaddress.IPv4Address(address)
    with addresses.entered(netns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    with sock:
        sock.bind((ifname, ETH_P_ARP))
        mac = bytes.fromhex(link_mac(netns, ifname).replace(":", ""))
        own = subprocess.run(
            ["ip", "-n", netns, "-j", "-4", "addr", "show", "dev", ifname], capture_output=True, text=True, check=True
        ).stdout
        sender = ipaddress.IPv4Address(json.loads(own)[0]["addr_info"][0]["local"])
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + sender.packed + b"\0" * 6 + target.packed
        sock.send(b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP) + arp)
        answers: set[str] = set()
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                frame = sock.recv(128)
            except TimeoutError:
                break
            op = struct.unpack("!H", frame[20:22])[0]
            if op == 2 and frame[28:32] == target.packed:
                answers.add(frame[22:28].hex(":"))
    return answers


def steady_primary(cluster: LabCluster, name: str, nodes: Sequence[str], timeout: float = 120) -> str:
    """Wait until some node is primary of `name` with every other node in sync; return it."""

    def settled() -> str | None:
        holder, _ = lease_holder(cluster, name)
        if holder not in nodes:
            return None
        assert holder is not None
        return holder if replicating(cluster, name, holder, [n for n in nodes if n != holder]) else None

    found: str = wait_until(
        settled,
        timeout,
        f"a primary of {name} with its standbys in sync",
        context=lambda: replication_seen(cluster, name),
    )
    return found


@dataclass(frozen=True)
class Verdict:
    """What a run proved: the single-primary checks and the acknowledged-write and -file
    checks (`acked_files` says how many files were checked: 0 proves nothing)."""

    final_primary: str
    acked_writes: int
    lost_acked_writes: list[int]
    acked_files: int
    lost_acked_files: list[str]
    double_primary_instants: int
    primary_without_lease: int
    epoch_overlaps: dict[int, list[str]]
    samples: int


def judge(cluster: LabCluster, observer: Observer, client: Client, name: str, final_primary: str) -> Verdict:
    """Stop the observer and the client, then check every acknowledged write and file is on
    `final_primary`."""
    observer.stop()
    client.stop()
    acked = client.acked()
    files = client.acked_files()
    return Verdict(
        final_primary,
        len(acked),
        missing_acks(cluster, final_primary, acked),
        len(files),
        missing_files(cluster, final_primary, files, name),
        observer.double_primary_instants,
        len(observer.primary_without_lease),
        observer.epoch_overlaps,
        observer.samples,
    )


@contextlib.contextmanager
def checked(
    cluster: LabCluster,
    client: Client,
    vip: str,
    *,
    primary: str = "mail1",
    standbys: Sequence[str] = ("mail2",),
    name: str = "mail",
    settle: float = 120,
    files: bool | None = None,
) -> Iterator[Observer]:
    """A scenario between a steady start and the checker's verdict.

    On entry: `primary` serves with `standbys` in sync, a write was acknowledged (and, with
    `files`, a file stored: so the file check never passes for having checked nothing), and
    the observer runs. On a clean exit: the cluster is waited back to a steady state within
    `settle` seconds (whoever is primary then is the final primary), and the run must have had
    one primary at a time and lost no acknowledged write or file. `files` defaults to whether
    the HACluster's chain has a mount (where its echo services store them)."""
    nodes = [primary, *standbys]
    if files is None:
        files = files_mount(cluster, name) is not None
    wait_replicating(cluster, name, primary, list(standbys))
    client.acked_by(primary)
    if files:
        client.file_stored_by(primary)
    observer = Observer(cluster, nodes, vip, lease_name=name).start()
    try:
        yield observer
        settling = time.monotonic()
        final = steady_primary(cluster, name, nodes, settle)
        print(f"steady on {final} {time.monotonic() - settling:.1f}s after the scenario")
    finally:
        observer.stop()
    observer.assert_single_primary()
    verdict = judge(cluster, observer, client, name, final)
    print(f"checked on {final}: {verdict.acked_writes} acknowledged writes, {verdict.acked_files} acknowledged files")
    assert verdict.lost_acked_writes == [], f"acknowledged writes missing on {final}: {verdict.lost_acked_writes[:20]}"
    assert verdict.lost_acked_files == [], (
        f"{len(verdict.lost_acked_files)} of {verdict.acked_files} acknowledged files not on "
        f"{final}'s mount as acknowledged: {'; '.join(verdict.lost_acked_files[:20])}"
    )
