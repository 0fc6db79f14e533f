"""Scale benchmark: N HAClusters (a floating IP and one echo service each, no data) on M lab
nodes.

    tandem bench scale --clusters 50 --nodes 3 --json bench/results/scale-50.json

Cluster i runs on the pair (node i mod M, node i+1 mod M), spec.primary the first, with the
floating IP 198.18.74.(2+i) and the lab's echo service on port 10000+i (lab-echo@<port>).
The lab enables the agents one after another, and at the first election a node gives the
preferred primary only leaseDuration to take a free Lease, so the first node up usually
starts as primary of every cluster it is in (about 2N/3 with M = 3). Once every cluster
serves and is settled (holder Primary, every other node an eligible Standby), the benchmark
measures:

1. The steady state over --window seconds: requests per second per cluster from the API
   server's own `apiserver_request_total`, by verb and resource, reads (GET, LIST, WATCH)
   apart from writes (every other verb), less what the API server does on its own (its
   rates over the same window before the lab came up); CPU (seconds per second) and memory
   (RSS and its peak) of the operator, each node's agent, the API server and etcd, from
   /proc.
2. Unplanned: the node holding the most primaries (by the Leases) is powered off; per
   affected cluster, the time from the power-off until its floating IP answers from another
   node.
3. Planned: the node is powered on again and every cluster settled; then the node now holding
   the most primaries is cordoned, which makes the operator switch each of its clusters over;
   per affected cluster, the time from the cordon until its floating IP answers from another
   node. Then it is uncordoned.

Throughout 2 and 3 the floating IPs on every node are sampled: an address seen on two nodes at
once counts as a double-primary instant. At the end every cluster must be settled with its
floating IP on its Lease holder only. The exit status is 0 only with no double primary, every
affected cluster served again and the end state single-primary; the targets (issue 16) are
reported, not enforced.

The benchmark makes no API request inside the steady window except its two reads of /metrics,
which are non-resource requests and so never counted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import kubernetes
import yaml

from bench.apiserver import RequestKey, by_verb_and_resource, is_read, rates
from bench.report import lab_work_dir, percentiles, write_json
from tandem.api.common import GROUP, VERSION
from tandem.kube.connect import load_client
from tandem.kube.lease import LeaseRecord, parse_lease
from tandem_agent.drivers.addresses import entered, present
from tandem_lab.cluster import REPO, LabCluster, keep_logs
from tandem_lab.controlplane import ControlPlane
from tandem_lab.processes import process_start_time

SUBNET = 74  # 198.18.74.0/24: no test, lab or other benchmark uses it
PREFIX = "tds"
NAMESPACE = "scale"
FIRST_VIP = 2  # cluster i's floating IP is .(2+i)
FIRST_NODE = 241  # node k (1-based) is .(240+k); the lab's client is .250
MAX_NODES = 9
MAX_CLUSTERS = FIRST_NODE - FIRST_VIP  # .2 to .240
FIRST_PORT = 10000
QUIET_SECONDS = 10.0  # no takeover for this long before the steady window opens
PROBE_INTERVAL = 0.1  # each cluster's floating IP is asked at most this often
# Issue 16's targets on the 2-core lab machine, reported next to what was measured.
TARGETS = {
    "writes_per_s_per_cluster": 1.0,
    "reads_per_s_per_cluster": 0.2,
    "power_off_p99_s": 5.0,
    "agent_rss_mib": 200.0,
}


# ------------------------------------------------------------------------------ the clusters


def node_names(nodes: int) -> list[str]:
    return [f"scale{k}" for k in range(1, nodes + 1)]


def nodes_used(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The lab nodes the clusters name, in order: fewer than asked for when there are too few
    clusters to reach them all (one cluster uses two nodes)."""
    names = {n["name"] for d in docs if d["kind"] == "HACluster" for n in d["spec"]["nodes"]}
    return sorted(names, key=lambda name: int(name.removeprefix("scale")))


def cluster_name(index: int) -> str:
    return f"s{index:03d}"


def manifests(clusters: int, nodes: int) -> list[dict[str, Any]]:
    """A FloatingIP and an HACluster per cluster, in the lab samples' addresses (198.18.0.x,
    moved to the lab's subnet when loaded): cluster i on the pair (node i mod M, node i+1 mod
    M), preferring the first, with its own floating IP and its own echo unit, so that no two
    clusters share a unit on a node."""
    if not 2 <= nodes <= MAX_NODES:
        raise ValueError(
            f"--nodes {nodes}: give 2 to {MAX_NODES} (each pair needs two nodes; "
            f"the lab's subnet has room for {MAX_NODES})"
        )
    if not 1 <= clusters <= MAX_CLUSTERS:
        raise ValueError(f"--clusters {clusters}: give 1 to {MAX_CLUSTERS} (one floating IP each in the lab's /24)")
    names = node_names(nodes)
    docs: list[dict[str, Any]] = []
    for i in range(clusters):
        name, pair = cluster_name(i), [names[i % nodes], names[(i + 1) % nodes]]
        docs.append(
            {
                "apiVersion": "tandem.dev/v1alpha1",
                "kind": "FloatingIP",
                "metadata": {"name": f"{name}-vip"},
                "spec": {
                    "cluster": name,
                    "addresses": [{"start": f"198.18.0.{FIRST_VIP + i}"}],
                    "prefixLength": 24,
                    "interface": "mgmt",
                },
            }
        )
        docs.append(
            {
                "apiVersion": "tandem.dev/v1alpha1",
                "kind": "HACluster",
                "metadata": {"name": name},
                "spec": {
                    "nodes": [
                        {"name": n, "replicationAddress": f"198.19.0.{FIRST_NODE + names.index(n)}"} for n in pair
                    ],
                    "primary": pair[0],
                    "chain": {
                        "floatingIPs": [f"{name}-vip"],
                        "services": [{"name": "echo", "unit": f"lab-echo@{FIRST_PORT + i}.service"}],
                    },
                },
            }
        )
    return docs


@dataclass(frozen=True)
class Target:
    """Where a cluster's echo service answers: its floating IP and its unit's port."""

    address: str
    port: int


def targets(lab: LabCluster, clusters: int) -> dict[str, Target]:
    return {cluster_name(i): Target(lab.address(FIRST_VIP + i), FIRST_PORT + i) for i in range(clusters)}


# ------------------------------------------------------------------------ who is primary


def most_primaries(holders: Mapping[str, str | None]) -> str:
    """The node holding the most Leases (cluster -> holder); the first by name on a tie."""
    counts: dict[str, int] = {}
    for holder in holders.values():
        if holder is not None:
            counts[holder] = counts.get(holder, 0) + 1
    if not counts:
        raise ValueError("no Lease has a holder: no node is primary of anything")
    return min(counts, key=lambda node: (-counts[node], node))


def unsettled(
    haclusters: Iterable[Mapping[str, Any]],
    holders: Mapping[str, str | None],
    fresh_since: Mapping[str, datetime] | None = None,
) -> dict[str, str]:
    """cluster -> why it is not settled yet: settled is its Lease held by one of its nodes,
    which reports Primary, and every other node reporting an eligible Standby. `fresh_since`
    (node -> time): that node's reports count only with a heartbeat at or after it (a node
    powered on again, whose reports from before it went off are stale)."""
    found: dict[str, str] = {}
    fresh_since = fresh_since or {}
    for obj in haclusters:
        name = obj["metadata"]["name"]
        holder = holders.get(name)
        reports = {r.get("name"): r for r in (obj.get("status") or {}).get("nodes") or []}
        for node in (n["name"] for n in obj["spec"]["nodes"]):
            report = reports.get(node) or {}
            since = fresh_since.get(node)
            beat = report.get("heartbeatTime")
            if not report:
                found[name] = f"{node} has not reported"
            elif since is not None and (not beat or _parse_time(beat) < since.replace(microsecond=0)):
                found[name] = f"{node} has not reported since {since:%H:%M:%S}"
            elif node == holder and report.get("role") != "Primary":
                found[name] = f"{node} holds the Lease but reports {report.get('role')}"
            elif node != holder and (report.get("role") != "Standby" or report.get("eligible") is not True):
                found[name] = f"{node} reports {report.get('role')}, eligible {report.get('eligible')}"
            else:
                continue
            break
        if name not in found and holder not in {n["name"] for n in obj["spec"]["nodes"]}:
            found[name] = f"Lease held by {holder}"
    return found


def _parse_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@functools.cache
def api_client(kubeconfig: str) -> kubernetes.client.ApiClient:
    """One client, with its connections kept, for every read the benchmark makes while it
    waits: a kubectl per read (two a second while it waits for the clusters to settle, 0.17 s
    of CPU at N = 50) took a sixth of a core from the 2-core machine it measures."""
    return load_client(kubeconfig, retries=None)


def leases(lab: LabCluster) -> dict[str, LeaseRecord]:
    """cluster -> its `<cluster>-primary` Lease, one LIST."""
    api = kubernetes.client.CoordinationV1Api(api_client(str(lab.plane.kubeconfig)))
    named = {
        str(item.metadata.name if item.metadata else ""): item
        for item in api.list_namespaced_lease(lab.namespace).items
    }
    return {
        name.removesuffix("-primary"): parse_lease(item) for name, item in named.items() if name.endswith("-primary")
    }


def lease_holders(lab: LabCluster) -> dict[str, str | None]:
    """cluster -> the holder of its Lease (None: nobody)."""
    return {cluster: lease.holder for cluster, lease in leases(lab).items()}


def takeovers(before: Mapping[str, LeaseRecord], after: Mapping[str, LeaseRecord]) -> int:
    """How many times the clusters' Leases changed hands between two readings (epochs
    gained): a steady-state window with any is no steady state."""
    return sum(max(0, lease.epoch - before[c].epoch) for c, lease in after.items() if c in before)


def wait_quiet(
    read: Callable[[], Mapping[str, LeaseRecord]],
    quiet: float,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Until no Lease changed hands for `quiet` seconds, so that the steady window opens on a
    steady state and not on the last elections of the bring-up; the seconds waited."""
    started = since = clock()
    last = {c: lease.epoch for c, lease in read().items()}
    while clock() - since < quiet:
        if clock() - started > timeout:
            raise TimeoutError(f"the Leases still changed hands after {timeout:.0f}s")
        sleep(1.0)
        now = {c: lease.epoch for c, lease in read().items()}
        if now != last:
            last, since = now, clock()
    return clock() - started


def haclusters(lab: LabCluster) -> list[dict[str, Any]]:
    api = kubernetes.client.CustomObjectsApi(api_client(str(lab.plane.kubeconfig)))
    listed = api.list_namespaced_custom_object(GROUP, VERSION, lab.namespace, "haclusters")
    found: list[dict[str, Any]] = listed["items"]  # type: ignore[index]
    return found


def wait_settled(lab: LabCluster, timeout: float, fresh_since: Mapping[str, datetime] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        problems = unsettled(haclusters(lab), lease_holders(lab), fresh_since)
        if not problems:
            return
        if time.monotonic() > deadline:
            first = "; ".join(f"{k}: {v}" for k, v in sorted(problems.items())[:5])
            raise TimeoutError(f"{len(problems)} clusters not settled after {timeout:.0f}s: {first}")
        time.sleep(1.0)


# -------------------------------------------------------------------------------- probing


@dataclass
class _Attempt:
    sock: socket.socket
    started: float
    received: bytearray = field(default_factory=bytearray)
    sent: bool = False


REQUEST = b"GET / HTTP/1.0\r\n\r\n"


def _answer(raw: bytes) -> str | None:
    """The node an echo service's HTTP answer names (None unless it is a 200)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        return None
    return body.decode(errors="replace").strip() or None


class Prober:
    """Asks many echo services at once which node serves them: one thread, non-blocking
    sockets opened in network namespace `netns` (the lab's client; None: this one). Each
    target gets a new connection at most every `interval` seconds, each given `timeout`."""

    def __init__(self, netns: str | None, interval: float = 0.1, timeout: float = 0.5) -> None:
        self.netns, self.interval, self.timeout = netns, interval, timeout

    def first_accepted(
        self, targets: Mapping[str, Target], accept: Callable[[str | None], bool], deadline: float
    ) -> dict[str, float]:
        """name -> monotonic time of its first answer that `accept` (given the node it names,
        None for no answer) takes; targets never accepted by `deadline` are left out."""
        done: dict[str, float] = {}
        attempts: dict[str, _Attempt] = {}
        next_start = dict.fromkeys(targets, 0.0)
        with entered(self.netns), selectors.DefaultSelector() as selector:
            try:
                while len(done) < len(targets) and time.monotonic() < deadline:
                    now = time.monotonic()
                    for name, target in targets.items():
                        if name not in done and name not in attempts and now >= next_start[name]:
                            attempts[name] = self._connect(selector, name, target, now)
                            next_start[name] = now + self.interval
                    for key, _events in selector.select(timeout=0.01):
                        name = key.data
                        answer = self._progress(selector, attempts[name])
                        if answer is not None:
                            del attempts[name]
                            if accept(answer[0]):
                                done[name] = time.monotonic()
                    now = time.monotonic()
                    for name in [n for n, a in attempts.items() if now - a.started > self.timeout]:
                        self._close(selector, attempts.pop(name))
                        if accept(None):
                            done[name] = now
            finally:
                for attempt in attempts.values():
                    self._close(selector, attempt)
        return done

    def _connect(self, selector: selectors.BaseSelector, name: str, target: Target, now: float) -> _Attempt:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        attempt = _Attempt(sock, now)
        code = sock.connect_ex((target.address, target.port))
        if code not in (0, errno.EINPROGRESS):
            attempt.sent = True  # nothing to send: the next event reads the error
        selector.register(sock, selectors.EVENT_WRITE | selectors.EVENT_READ, name)
        return attempt

    def _progress(self, selector: selectors.BaseSelector, attempt: _Attempt) -> tuple[str | None] | None:
        """Advance one connection; (node,) when it is over, node None for a failure."""
        sock = attempt.sock
        try:
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, os.strerror(error))
            if not attempt.sent:
                sock.sendall(REQUEST)
                attempt.sent = True
                selector.modify(sock, selectors.EVENT_READ, selector.get_key(sock).data)
                return None
            chunk = sock.recv(4096)
        except BlockingIOError:
            return None
        except OSError:
            self._close(selector, attempt)
            return (None,)
        if chunk:
            attempt.received += chunk
            return None
        self._close(selector, attempt)
        return (_answer(bytes(attempt.received)),)

    @staticmethod
    def _close(selector: selectors.BaseSelector, attempt: _Attempt) -> None:
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(attempt.sock)
        attempt.sock.close()


# ------------------------------------------------------------------ double-primary sampling


def doubly_held(first: Sequence[tuple[str, set[str]]], second: Mapping[str, set[str]]) -> set[str]:
    """Addresses two nodes held at the same instant. `first` is one pass over the nodes (in
    the order read), `second` a later pass: an address read on node A, then on a node read
    after A, and on A again in the second pass was on both at once (A did not drop and
    re-take it in between); one merely moving from A to B in the first pass is not."""
    doubles = set()
    for i, (node, held) in enumerate(first):
        for _later, later_held in first[i + 1 :]:
            doubles |= held & later_held & second.get(node, set())
    return doubles


class VipSampler:
    """Samples, every `interval` seconds in a thread of its own, the addresses on every node's
    management link, and counts the instants with an address on two nodes (`doubly_held`)."""

    def __init__(self, lab: LabCluster, nodes: Sequence[str], interval: float = 0.25) -> None:
        self.lab, self.nodes, self.interval = lab, list(nodes), interval
        self.samples = 0
        self.double_instants = 0
        self.doubles: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="vip-sampler")

    def start(self) -> VipSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def held(self, node: str) -> set[str]:
        try:
            return {str(iface.ip) for iface in present(self.lab.netns(node), "mgmt")}
        except Exception:  # a namespace being rebuilt: nothing held there
            return set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            first = [(node, self.held(node)) for node in self.nodes]
            candidates = [(n, h) for n, h in first if any(h & other for m, other in first if m != n)]
            doubles = doubly_held(first, {n: self.held(n) for n, _ in candidates}) if candidates else set()
            self.samples += 1
            if doubles:
                self.double_instants += 1
                self.doubles |= doubles


def single_primary_problems(
    holders: Mapping[str, str | None], vips: Mapping[str, str], held: Mapping[str, set[str]]
) -> dict[str, str]:
    """cluster -> what is wrong with its end state: its floating IP (`vips`: cluster ->
    address) must be held by its Lease holder and no other node (`held`: node -> addresses)."""
    problems = {}
    for cluster, address in vips.items():
        on = sorted(node for node, addresses in held.items() if address in addresses)
        holder = holders.get(cluster)
        if holder is None or on != [holder]:
            problems[cluster] = f"Lease holder {holder}, {address} on {on}"
    return problems


# -------------------------------------------------------------------------- processes


def cpu_seconds(stat: str) -> float:
    """utime + stime + cutime + cstime (the process's threads and its reaped children) of a
    /proc/<pid>/stat, in seconds."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def status_kib(status: str, key: str) -> int:
    """A `<key>: <n> kB` line of a /proc/<pid>/status (VmRSS, VmHWM)."""
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    raise ValueError(f"no {key} in the process's status")


@dataclass(frozen=True)
class ProcessReading:
    pid: int
    t: float
    cpu_s: float
    rss_kib: int
    peak_rss_kib: int

    @classmethod
    def of(cls, pid: int, start_time: str | None = None) -> ProcessReading | None:
        """A reading of `pid` now; None when it is gone (or, given the `start_time` it had,
        when the pid now names another process)."""
        try:
            if start_time is not None and process_start_time(pid) != start_time:
                return None
            stat = Path(f"/proc/{pid}/stat").read_text()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None
        return cls(pid, time.monotonic(), cpu_seconds(stat), status_kib(status, "VmRSS"), status_kib(status, "VmHWM"))


def usage(before: ProcessReading, after: ProcessReading | None) -> dict[str, Any]:
    """CPU seconds per second between two readings of one process, its RSS at the second and
    its peak RSS since it started; all None when it was gone at the second (an agent whose
    node was fenced, say)."""
    if after is None:
        return {"pid": before.pid, "cpu_s_per_s": None, "rss_mib": None, "peak_rss_mib": None}
    return {
        "pid": after.pid,
        "cpu_s_per_s": round((after.cpu_s - before.cpu_s) / (after.t - before.t), 4),
        "rss_mib": round(after.rss_kib / 1024, 1),
        "peak_rss_mib": round(after.peak_rss_kib / 1024, 1),
    }


def watched_pids(lab: LabCluster, nodes: Sequence[str]) -> dict[str, int]:
    """The processes whose CPU and memory are reported: the operator, each node's agent, the
    API server and etcd, and the forwarder every node's request to the API server goes through
    (a real network costs no CPU; the lab's costs the host's)."""
    state, plane = lab.state(), lab.plane.state()
    assert state is not None and plane is not None
    pids = {p.name: p.pid for p in state.processes if p.name in ("operator", "forwarder")}
    pids |= {f"agent {node}": lab.agent_pid(node) for node in nodes}
    pids |= {p.name: p.pid for p in plane.processes if p.name in ("kube-apiserver", "etcd")}
    return pids


# -------------------------------------------------------------------------- the phases


def request_counts(lab: LabCluster) -> dict[RequestKey, float]:
    return by_verb_and_resource(lab.kubectl("get", "--raw", "/metrics"))


def open_watches(lab: LabCluster) -> dict[str, float]:
    """Watches open at the API server now, by resource (apiserver_longrunning_requests)."""
    counts = by_verb_and_resource(lab.kubectl("get", "--raw", "/metrics"), "apiserver_longrunning_requests")
    return {resource: n for (verb, resource), n in sorted(counts.items()) if verb == "WATCH" and n}


def api_window(
    lab: LabCluster, seconds: float, pids: Mapping[str, int] | None = None
) -> tuple[dict[RequestKey, float], dict[str, Any]]:
    """Requests per second by (verb, resource) over `seconds`, and the usage of `pids` over
    the same window."""
    starts = {name: process_start_time(pid) for name, pid in (pids or {}).items()}
    readings = {name: ProcessReading.of(pid) for name, pid in (pids or {}).items()}
    before, started = request_counts(lab), time.monotonic()
    time.sleep(seconds)
    after, ended = request_counts(lab), time.monotonic()
    used = {}
    for name, reading in readings.items():
        if reading is None:
            raise RuntimeError(f"{name} (pid {(pids or {})[name]}) is not running")
        used[name] = usage(reading, ProcessReading.of(reading.pid, starts[name]))
    return rates(before, after, ended - started), used


def per_cluster(
    lab_rates: Mapping[RequestKey, float], baseline: Mapping[RequestKey, float], clusters: int
) -> dict[str, Any]:
    """The lab's request rates less the API server's own, per cluster: reads and writes, and
    each verb and resource ("GET leases")."""
    keys = sorted(set(lab_rates) | set(baseline), key=lambda k: (not is_read(k[0]), k[1], k[0]))
    each = {key: (lab_rates.get(key, 0.0) - baseline.get(key, 0.0)) / clusters for key in keys}
    return {
        "reads_per_s_per_cluster": round(sum(v for k, v in each.items() if is_read(k[0])), 4),
        "writes_per_s_per_cluster": round(sum(v for k, v in each.items() if not is_read(k[0])), 4),
        "by_request_per_s_per_cluster": {
            f"{verb} {resource}": round(v, 4) for (verb, resource), v in each.items() if abs(v) >= 0.00005
        },
    }


def recovery(started: float, recovered: Mapping[str, float], affected: Sequence[str], node: str) -> dict[str, Any]:
    """The times from `started` until each affected cluster served again: each, and as
    percentiles."""
    each = {c: round(recovered[c] - started, 3) for c in affected if c in recovered}
    times = sorted(each.values())
    found: dict[str, Any] = {
        "node": node,
        "clusters": len(affected),
        "unrecovered": len(affected) - len(times),
        "times_s": each,
    }
    if times:
        p = percentiles(times)
        found |= {k: round(p[k], 3) for k in ("p50_s", "p99_s", "max_s")}
    return found


def revision() -> str:
    """The checked-out commit, `+dirty` with uncommitted changes."""
    head = (
        subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or "unknown"
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return head + ("+dirty" if dirty else "")


def log(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    """One benchmark run in a started lab: the phases, each adding to `results`."""

    lab: LabCluster
    args: argparse.Namespace
    nodes: list[str]
    where: dict[str, Target]
    results: dict[str, Any]
    prober: Prober = field(init=False)

    def __post_init__(self) -> None:
        self.prober = Prober(self.lab.client_netns, interval=PROBE_INTERVAL)

    def bring_up(self, path: Path) -> None:
        """The lab with the clusters, until every cluster serves and is settled."""
        started = time.monotonic()
        self.lab.up([path])
        served = self.prober.first_accepted(
            self.where, lambda node: node is not None, started + self.args.settle_timeout
        )
        if len(served) < len(self.where):
            missing = sorted(set(self.where) - set(served))
            raise TimeoutError(f"{len(missing)} clusters never served: {missing[:10]}")
        self.results["all_served_s"] = round(max(served.values()) - started, 1)
        wait_settled(self.lab, self.args.settle_timeout)
        self.results["all_settled_s"] = round(time.monotonic() - started, 1)
        log(
            f"all served {self.results['all_served_s']}s after the lab started coming up, "
            f"settled after {self.results['all_settled_s']}s"
        )

    def steady(self, baseline: Mapping[RequestKey, float], baseline_watches: Mapping[str, float]) -> None:
        waited = wait_quiet(lambda: leases(self.lab), QUIET_SECONDS, self.args.settle_timeout)
        self.results["quiet_wait_s"] = round(waited, 1)
        log(f"no Lease changed hands for {QUIET_SECONDS:.0f}s; steady state for {self.args.window:.0f}s")
        before = leases(self.lab)  # outside the window: the benchmark's own reads never count
        lab_rates, used = api_window(self.lab, self.args.window, watched_pids(self.lab, self.nodes))
        self.results["window_takeovers"] = takeovers(before, leases(self.lab))
        watches = open_watches(self.lab)
        self.results["api"] = per_cluster(lab_rates, baseline, self.args.clusters) | {
            "api_server_alone_per_s": {
                f"{verb} {resource}": round(rate, 4) for (verb, resource), rate in sorted(baseline.items())
            },
            "open_watches": {
                resource: n - baseline_watches.get(resource, 0.0)
                for resource, n in watches.items()
                if n != baseline_watches.get(resource, 0.0)
            },
        }
        self.results["processes"] = used

    def power_off(self) -> str:
        """Power off the node with the most primaries; the time until each of its clusters
        serves from another node. Returns the node."""
        holders = lease_holders(self.lab)
        victim = most_primaries(holders)
        affected = sorted(c for c, h in holders.items() if h == victim)
        log(f"powering off {victim}, primary of {len(affected)} clusters")
        fault = time.monotonic()
        self.lab.power_off(victim)
        recovered = self.prober.first_accepted(
            {c: self.where[c] for c in affected},
            lambda node: node not in (None, victim),
            fault + self.args.recovery_timeout,
        )
        self.results["power_off"] = recovery(fault, recovered, affected, victim)
        log(f"power-off: {self.results['power_off']}")
        return victim

    def power_on(self, node: str) -> None:
        log(f"powering {node} on again")
        powered_on = datetime.now(UTC)
        started = time.monotonic()
        self.lab.power_on(node)
        wait_settled(self.lab, self.args.settle_timeout, {node: powered_on})
        self.results["power_on_settled_s"] = round(time.monotonic() - started, 1)

    def cordon(self) -> None:
        """Cordon the node with the most primaries; the time until each of its clusters
        serves from another node (the operator's planned switchovers). Uncordoned after."""
        holders = lease_holders(self.lab)
        cordoned = most_primaries(holders)
        affected = sorted(c for c, h in holders.items() if h == cordoned)
        log(f"cordoning {cordoned}, primary of {len(affected)} clusters")
        requested = time.monotonic()
        self.lab.cordon(cordoned)
        try:
            recovered = self.prober.first_accepted(
                {c: self.where[c] for c in affected},
                lambda node: node not in (None, cordoned),
                requested + self.args.recovery_timeout,
            )
        finally:
            self.lab.uncordon(cordoned)
        self.results["cordon"] = recovery(requested, recovered, affected, cordoned)
        log(f"cordon: {self.results['cordon']}")

    def end_state(self, sampler: VipSampler) -> None:
        """Once settled: every floating IP on its Lease holder only."""
        wait_settled(self.lab, self.args.settle_timeout)
        problems = single_primary_problems(
            lease_holders(self.lab),
            {c: t.address for c, t in self.where.items()},
            {node: sampler.held(node) for node in self.nodes},
        )
        self.results["end_state_problems"] = dict(sorted(problems.items())[:20])
        self.results["end_state_clusters_not_single_primary"] = len(problems)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The whole benchmark in a new control plane and lab, taken down at the end. A phase
    that fails ends the run with `error` in the results and what was measured until then."""
    docs = manifests(args.clusters, args.nodes)
    nodes = nodes_used(docs)
    results: dict[str, Any] = {
        "clusters": args.clusters,
        "nodes": len(nodes),
        "revision": revision(),
        "parameters": {
            "window_s": args.window,
            "recovery_timeout_s": args.recovery_timeout,
            "settle_timeout_s": args.settle_timeout,
            "probe_interval_s": PROBE_INTERVAL,
        },
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    plane = ControlPlane(work / "plane")
    plane.start()
    lab = LabCluster(plane, work / "lab", prefix=PREFIX, subnet=SUBNET, namespace=NAMESPACE)
    sampler = VipSampler(lab, nodes)
    try:
        log(f"the API server alone for {args.window:.0f}s")
        baseline, _ = api_window(lab, args.window)
        baseline_watches = open_watches(lab)
        path = work / "scale.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        log(f"bringing up {args.clusters} clusters on {len(nodes)} nodes")
        one = Run(lab, args, nodes, targets(lab, args.clusters), results)
        try:
            one.bring_up(path)
            one.steady(baseline, baseline_watches)
            sampler.start()
            one.power_on(one.power_off())
            one.cordon()
            one.end_state(sampler)
        except Exception as exc:
            results["error"] = f"{type(exc).__name__}: {exc}"
            log(f"stopped: {results['error']}")
        finally:
            sampler.stop()
            results["double_primary_instants"] = sampler.double_instants
            results["vip_samples"] = sampler.samples
    finally:
        log("taking the lab down")
        lab.down()
        plane.stop()
        if args.logs:
            keep_logs(work, Path(args.logs))
    results["targets"] = targets_met(results)
    return results


def targets_met(results: Mapping[str, Any]) -> dict[str, bool]:
    """Issue 16's targets, each with whether this run met it; one whose figure a failed run
    did not measure is not met, and so is the memory target when an agent was gone by the end
    of the steady window (fenced, say)."""
    api = results.get("api", {})
    power_off = results.get("power_off", {})
    agents = [u["peak_rss_mib"] for name, u in results.get("processes", {}).items() if name.startswith("agent ")]
    writes, reads, p99 = (
        api.get("writes_per_s_per_cluster"),
        api.get("reads_per_s_per_cluster"),
        power_off.get("p99_s"),
    )
    return {
        f"writes <= {TARGETS['writes_per_s_per_cluster']}/s per cluster": writes is not None
        and writes <= TARGETS["writes_per_s_per_cluster"],
        f"reads <= {TARGETS['reads_per_s_per_cluster']}/s per cluster": reads is not None
        and reads <= TARGETS["reads_per_s_per_cluster"],
        f"power-off p99 <= {TARGETS['power_off_p99_s']} s, every cluster served again": p99 is not None
        and p99 <= TARGETS["power_off_p99_s"]
        and power_off.get("unrecovered") == 0,
        "no double primary": results.get("double_primary_instants") == 0
        and results.get("end_state_clusters_not_single_primary") == 0,
        f"agent peak RSS <= {TARGETS['agent_rss_mib']:.0f} MiB": bool(agents)
        and all(a is not None and a <= TARGETS["agent_rss_mib"] for a in agents),
    }


def exit_status(results: Mapping[str, Any]) -> int:
    """0 only for a run that went through with no double primary, a single primary per
    cluster at the end and every affected cluster served again after the power-off and the
    cordon."""
    complete = "error" not in results and all(k in results for k in ("power_off", "cordon"))
    return (
        0
        if (
            complete
            and results["double_primary_instants"] == 0
            and results["end_state_clusters_not_single_primary"] == 0
            and results["power_off"]["unrecovered"] == 0
            and results["cordon"]["unrecovered"] == 0
        )
        else 1
    )


def table(results: Mapping[str, Any]) -> list[str]:
    """The results as lines: the steady state per cluster, the processes, the recoveries;
    what a failed run did not measure is left out and its error said."""
    lines = [f"{results['clusters']} clusters on {results['nodes']} nodes (revision {results['revision'][:12]})"]
    if "all_settled_s" in results:
        lines.append(
            f"all served {results['all_served_s']} s after the lab started coming up, "
            f"settled after {results['all_settled_s']} s"
        )
    if "api" in results:
        api = results["api"]
        lines += [
            "",
            f"steady state, requests per second per cluster ({results['parameters']['window_s']:.0f} s window)",
            f"  {'reads':<34}{api['reads_per_s_per_cluster']:>10.3f}",
            f"  {'writes':<34}{api['writes_per_s_per_cluster']:>10.3f}",
            "  by request:",
        ]
        lines += [f"    {name:<32}{rate:>10.3f}" for name, rate in api["by_request_per_s_per_cluster"].items()]
        watches = ", ".join(f"{resource} {n:g}" for resource, n in api["open_watches"].items())
        lines.append(f"  open watches (beyond the API server's own): {watches or 'none'}")
        if results.get("window_takeovers"):
            lines.append(
                f"  NOT A STEADY STATE: the Leases changed hands {results['window_takeovers']} times in the window"
            )
    if "processes" in results:
        lines += ["", f"  {'process':<22}{'CPU s/s':>10}{'RSS MiB':>10}{'peak MiB':>10}"]
        lines += [
            f"  {name:<22}"
            + _cell(u["cpu_s_per_s"], 10, 3)
            + _cell(u["rss_mib"], 10, 1)
            + _cell(u["peak_rss_mib"], 10, 1)
            for name, u in results["processes"].items()
        ]
    phases = [phase for phase in ("power_off", "cordon") if phase in results]
    if phases:
        lines += [
            "",
            f"  {'served again after':<22}{'node':>8}{'clusters':>10}{'p50 s':>8}{'p99 s':>8}{'max s':>8}{'never':>7}",
        ]
    for phase in phases:
        r = results[phase]
        cells = "".join(_cell(r.get(k), 8, 2) for k in ("p50_s", "p99_s", "max_s"))
        lines.append(f"  {phase.replace('_', '-'):<22}{r['node']:>8}{r['clusters']:>10}{cells}{r['unrecovered']:>7}")
    lines += [
        "",
        f"double-primary instants {results.get('double_primary_instants')} in "
        f"{results.get('vip_samples')} samples; clusters not single-primary at the end "
        f"{results.get('end_state_clusters_not_single_primary', '-')}",
    ]
    if "error" in results:
        lines.append(f"STOPPED: {results['error']}")
    lines += [f"target {'met' if met else 'NOT met'}: {name}" for name, met in results["targets"].items()]
    return lines


def _cell(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="tandem bench scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clusters", type=int, default=1, help=f"N HAClusters, 1 to {MAX_CLUSTERS} (default %(default)s)")
    p.add_argument("--nodes", type=int, default=3, help=f"M lab nodes, 2 to {MAX_NODES} (default %(default)s)")
    p.add_argument(
        "--window", type=float, default=30.0, help="seconds of the steady-state window (default %(default)s)"
    )
    p.add_argument(
        "--recovery-timeout",
        type=float,
        default=60.0,
        help="seconds a cluster may take to serve again after the power-off or "
        "the cordon before it counts as never served (default %(default)s)",
    )
    p.add_argument(
        "--settle-timeout",
        type=float,
        default=900.0,
        help="seconds for every cluster to serve and settle (default %(default)s)",
    )
    p.add_argument("--json", dest="json_path", default=None)
    p.add_argument(
        "--logs",
        default=None,
        help="copy the run's logs (operator, agents' journals, power controllers, "
        "control plane) to this directory at the end",
    )
    args = p.parse_args(argv)
    try:
        manifests(args.clusters, args.nodes)
    except ValueError as exc:
        p.error(str(exc))
    if os.geteuid() != 0:
        p.error("run as root: the lab needs network namespaces, machines and mounts")
    # SIGTERM takes the lab down like Ctrl-C does (the finally of `run`).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with lab_work_dir() as work:
        results = run(args, work)
    write_json(
        "scale",
        results,
        args.json_path,
        command=["tandem", "bench", "scale", *(sys.argv[1:] if argv is None else argv)],
    )
    out: TextIO = sys.stdout if args.json_path else sys.stderr
    print("\nscale", file=out)
    for line in table(results):
        print("  " + line, file=out)
    return exit_status(results)


if __name__ == "__main__":
    raise SystemExit(main())
