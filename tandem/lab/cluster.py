"""A whole HA pair in the lab: node namespaces, supervisors, agents, DRBD, PostgreSQL, operator.

`LabCluster.up(manifests)` reads HAClusters, DRBDVolumes and FloatingIPs (the lab samples in
deploy/samples/lab/), builds one network namespace per node at the addresses the manifests
give (198.18.<s>.<i> management, 198.19.<s>.<i> replication), gives every data node a loop
device per volume (the local replica to mount: the lab's DRBD moves no blocks), bootstraps
each DRBD volume once (as an administrator does: `primary --force` on one node, full sync),
creates the Secrets the HAClusters name as spec.chain.postgres.credentialsSecret (a random
password each, kept in `passwords/`), applies the manifests, and starts the operator and one
supervisor per node that runs the node's DRBD stand-in and agent. Everything started is
recorded in `cluster.json` so `down()` from any process removes it all.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tandem.api.common import LAST_HANDLED_ANNOTATION
from tandem.api.drbdvolume import DRBDVolumeSpec
from tandem.lab import fakeclock
from tandem.lab.controlplane import ControlPlane
from tandem.lab.drbdsim import control as drbdsim
from tandem.lab.netns import LabNetwork, run_ip
from tandem.lab.processes import ManagedProcess, spawn, terminate

CLIENT_INDEX = 250
REPO = Path(__file__).resolve().parents[2]
LAB_SAMPLES = REPO / "deploy" / "samples" / "lab"


class LabClusterError(RuntimeError):
    pass


@dataclass
class NodeRecord:
    name: str
    index: int
    data: bool  # False: a DRBD tiebreaker (witness) that runs no agent
    devices: dict[str, str] = field(default_factory=dict)


@dataclass
class ClusterState:
    prefix: str
    subnet: int
    namespace: str
    nodes: list[NodeRecord]
    processes: list[ManagedProcess]
    loops: list[str]


def lab_manifests(paths: list[Path], subnet: int) -> list[dict[str, Any]]:
    """Load manifests, moving the lab addresses 198.18.0.x / 198.19.0.x to subnet `subnet`."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        text = path.read_text()
        if subnet:
            text = text.replace("198.18.0.", f"198.18.{subnet}.").replace(
                "198.19.0.", f"198.19.{subnet}.")
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


class LabCluster:
    def __init__(self, plane: ControlPlane, work_dir: Path, prefix: str = "tdl",
                 subnet: int = 0, namespace: str = "tandem-lab") -> None:
        self.plane = plane
        self.work_dir = work_dir.resolve()
        self.state_file = self.work_dir / "cluster.json"
        self.prefix, self.subnet, self.namespace = prefix, subnet, namespace
        self.network = LabNetwork(prefix, subnet)
        self.docs: list[dict[str, Any]] = []
        existing = self.state()
        if existing is not None:
            self.network = LabNetwork(existing.prefix, existing.subnet)
            self.prefix, self.subnet, self.namespace = (existing.prefix, existing.subnet,
                                                        existing.namespace)
            for node in existing.nodes:
                self.network.describe_host(node.name, node.index)
            self.network.describe_host("client", CLIENT_INDEX, replication=False)

    # --- bookkeeping ----------------------------------------------------------------------
    def state(self) -> ClusterState | None:
        if not self.state_file.exists():
            return None
        raw = json.loads(self.state_file.read_text())
        raw["nodes"] = [NodeRecord(**n) for n in raw["nodes"]]
        raw["processes"] = [ManagedProcess(**p) for p in raw["processes"]]
        return ClusterState(**raw)

    def _save(self, state: ClusterState) -> None:
        self.state_file.write_text(json.dumps(asdict(state), indent=2))

    def node_dir(self, name: str) -> Path:
        return self.work_dir / "nodes" / name

    def netns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def address(self, index: int, link: str = "mgmt") -> str:
        return f"198.{18 if link == 'mgmt' else 19}.{self.subnet}.{index}"

    @property
    def client_netns(self) -> str:
        return self.netns("client")

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        argv = [str(self.plane.kubectl()), f"--kubeconfig={self.plane.kubeconfig}", *args]
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60,
                              check=False)
        if check and proc.returncode != 0:
            raise LabClusterError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    # --- up -------------------------------------------------------------------------------
    def up(self, manifests: list[Path], operator: bool = True,
           fake_clocks: bool = False, credentials: bool = True) -> ClusterState:
        """Bring the lab up. `fake_clocks`: every agent starts under libfaketime at the true
        time, so `fake_clock` changes its clock without restarting it. `credentials` False: the
        Secrets the clusters name are not created (a misconfiguration to observe)."""
        if self.state() is not None:
            self.down()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work_dir, 0o755)  # PostgreSQL runs as its own user below it
        for parent in self.work_dir.parents:
            if not parent.stat().st_mode & 0o001:
                raise LabClusterError(
                    f"{parent} is not searchable by other users, so PostgreSQL (which runs as "
                    f"its own user) cannot reach {self.work_dir}: chmod o+x {parent} or put "
                    "the lab elsewhere")
        shutil.rmtree(self.work_dir / "nodes", ignore_errors=True)  # a new lab starts empty
        self.docs = lab_manifests(manifests, self.subnet)
        nodes = self._nodes()
        state = ClusterState(self.prefix, self.subnet, self.namespace, nodes, [], [])
        self._save(state)
        try:
            self._network(state)
            self._kubernetes(state)
            self._volumes(state)
            self.apply(credentials)
            if operator:
                self.start_operator(state)
            for node in nodes:
                if fake_clocks and node.data:
                    clock = self.node_dir(node.name) / fakeclock.NODE_CLOCK_FILE
                    clock.parent.mkdir(parents=True, exist_ok=True)
                    clock.write_text("+0\n")
                state.processes.append(self._supervisor(node))
                self._save(state)
        except BaseException:
            self.down()
            raise
        return state

    def _nodes(self) -> list[NodeRecord]:
        nodes: dict[str, NodeRecord] = {}
        for doc in self.docs:
            if doc["kind"] == "HACluster":
                for n in doc["spec"]["nodes"]:
                    if "replicationAddress" not in n:
                        raise LabClusterError(f"lab sample: HACluster {doc['metadata']['name']} "
                                              f"node {n['name']} needs a replicationAddress")
                    index = int(ipaddress.ip_address(n["replicationAddress"]).packed[-1])
                    nodes.setdefault(n["name"], NodeRecord(n["name"], index, True))
            elif doc["kind"] == "DRBDVolume" and doc["spec"].get("tiebreaker"):
                tb = doc["spec"]["tiebreaker"]
                index = int(ipaddress.ip_address(tb["address"]).packed[-1])
                nodes.setdefault(tb["name"], NodeRecord(tb["name"], index, False))
        return list(nodes.values())

    def _network(self, state: ClusterState) -> None:
        cleanup_namespaces(self.prefix)
        self.network.create()
        for node in state.nodes:
            self.network.add_host(node.name, node.index, replication=True)
        self.network.add_host("client", CLIENT_INDEX, replication=False)
        api = self.plane.state()
        assert api is not None
        forwarder = spawn("forwarder", [
            sys.executable, "-m", "tandem.lab.forward", "--listen", self.network.mgmt_gateway,
            "--port", str(api.api_port), "--target-port", str(api.api_port)],
            self.work_dir / "forwarder.log")
        state.processes.append(forwarder)
        self._save(state)
        self.plane.write_kubeconfig(self.agent_kubeconfig,
                                    f"https://{self.network.mgmt_gateway}:{api.api_port}")

    @property
    def agent_kubeconfig(self) -> Path:
        return self.work_dir / "agent-kubeconfig"

    def _kubernetes(self, state: ClusterState) -> None:
        self.kubectl("apply", "--server-side", "-k", str(REPO / "crds"))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     "crd/haclusters.tandem.dev", "crd/drbdvolumes.tandem.dev",
                     "crd/floatingips.tandem.dev")
        nodes = [{"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": n.name, "labels": {"tandem.dev/agent": "true"}}} for n in state.nodes]
        namespace = {"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": self.namespace}}
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([namespace, *nodes]))

    def _volumes(self, state: ClusterState) -> None:
        volumes = {d["metadata"]["name"]: DRBDVolumeSpec.model_validate(d["spec"])
                   for d in self.docs if d["kind"] == "DRBDVolume"}
        preferred = {d["metadata"]["name"]: d["spec"].get("primary")
                     for d in self.docs if d["kind"] == "HACluster"}
        for node in state.nodes:
            drbdsim.start(self.node_dir(node.name) / "drbd", netns=self.netns(node.name))
            for name, spec in volumes.items():
                if node.name in {n.name for n in spec.nodes}:
                    node.devices[name] = self._loop_device(state, node.name, name)
            self._save(state)
        for spec in volumes.values():
            self._bootstrap(spec, preferred.get(spec.cluster) or spec.nodes[0].name)
        self._save(state)

    def _bind_sources(self, volume: str) -> list[str]:
        """Directories the chains bind-mount from `volume`, relative to its mount point: the
        lab creates them on the new file system, as an administrator would once."""
        found = []
        for doc in self.docs:
            if doc["kind"] != "HACluster":
                continue
            chain = doc["spec"].get("chain", {})
            for mount in chain.get("mounts", []):
                if mount["volume"] != volume:
                    continue
                root = mount["mountPoint"].rstrip("/") + "/"
                found += [b["source"][len(root):] for b in chain.get("bindMounts", [])
                          if b["source"].startswith(root)]
        return found

    def _loop_device(self, state: ClusterState, node: str, volume: str) -> str:
        image = self.node_dir(node) / f"{volume}.img"
        image.parent.mkdir(parents=True, exist_ok=True)
        with image.open("wb") as f:
            f.truncate(32 * 1024 * 1024)
        template = self.node_dir(node) / f"{volume}.template"
        for directory in self._bind_sources(volume):
            (template / directory).mkdir(parents=True, exist_ok=True)
        template.mkdir(exist_ok=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(template), str(image)], check=True,
                       capture_output=True)
        device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                                capture_output=True, text=True).stdout.strip()
        state.loops.append(device)
        return device

    def drbd(self, node: str) -> Any:
        from tandem_agent.drivers.drbd import Drbd

        return Drbd(self.node_dir(node) / "drbd.d", node_name=node, netns=self.netns(node),
                    drbdsetup=drbdsim.DRBDSETUP, drbdmeta=drbdsim.DRBDMETA,
                    env=drbdsim.lab_env(self.node_dir(node) / "drbd"))

    def _bootstrap(self, spec: DRBDVolumeSpec, first: str) -> None:
        """The one-time initial sync an administrator does when creating a DRBD resource."""
        members = [n.name for n in spec.nodes] + ([spec.tiebreaker.name] if spec.tiebreaker else [])
        for node in members:
            drbd = self.drbd(node)
            drbd.apply_config(spec)
            drbd.create_md(spec.resource_name)
            drbd.up(spec.resource_name)
        source = self.drbd(first)
        source.primary(spec.resource_name, force=True)
        deadline = time.monotonic() + 60
        while True:
            status = source.status(spec.resource_name)
            peers = status.data_peers if status else ()
            if peers and all(p.disk_state == "UpToDate" for p in peers):
                break
            if time.monotonic() > deadline:
                raise LabClusterError(f"initial sync of {spec.resource_name} did not finish")
            time.sleep(0.1)
        source.secondary(spec.resource_name)

    def password(self, name: str) -> str:
        """The lab's password called `name`: random, made once per lab directory, mode 0600."""
        path = self.work_dir / "passwords" / name
        if not path.exists():
            path.parent.mkdir(mode=0o700, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24))
        return path.read_text()

    def credentials(self) -> list[dict[str, Any]]:
        """A Secret for each credentialsSecret the HAClusters name, as an administrator makes
        them before applying the clusters."""
        names = sorted({doc["spec"]["chain"]["postgres"]["credentialsSecret"]
                        for doc in self.docs if doc["kind"] == "HACluster"
                        and (doc["spec"].get("chain", {}).get("postgres") or {})
                        .get("credentialsSecret")})
        return [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                 "metadata": {"name": name, "namespace": self.namespace},
                 "stringData": {"password": self.password(name)}} for name in names]

    def apply(self, credentials: bool = True) -> None:
        for doc in self.docs:
            doc["metadata"]["namespace"] = self.namespace
        secrets = self.credentials() if credentials else []
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([*secrets, *self.docs]))

    def start_operator(self, state: ClusterState | None = None) -> None:
        state = state or self.state()
        assert state is not None
        proc = spawn("operator", [sys.executable, "-m", "tandem_operator",
                                  "--kubeconfig", str(self.plane.kubeconfig),
                                  "--namespace", self.namespace],
                     self.work_dir / "operator.log")
        state.processes.append(proc)
        self._save(state)

    def stop_operator(self, kill: bool = False) -> None:
        self._stop_named("operator", kill)

    def operator_running(self) -> bool:
        state = self.state()
        return state is not None and any(p.name == "operator" and p.alive()
                                         for p in state.processes)

    def _stop_named(self, name: str, kill: bool) -> None:
        state = self.state()
        assert state is not None
        for proc in [p for p in state.processes if p.name == name]:
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
            terminate(proc, 15)
            state.processes.remove(proc)
        self._save(state)

    def _supervisor(self, node: NodeRecord) -> ManagedProcess:
        directory = self.node_dir(node.name)
        directory.mkdir(parents=True, exist_ok=True)
        agent: list[str] = []
        if node.data:
            agent = [
                sys.executable, "-m", "tandem_agent", "--node", node.name,
                "--namespace", self.namespace, "--kubeconfig", str(self.agent_kubeconfig),
                "--state-dir", str(directory / "agent"), "--services", "process",
                "--fence", "lab-kill", "--watchdog", f"lab:{directory / 'watchdog.sock'}",
                "--drbd-config-dir", str(directory / "drbd.d"),
                "--drbd-sim-state", str(directory / "drbd"),
                "--pg-data-dir", str(directory / "pg" / "data"),
                *[arg for vol, dev in node.devices.items() for arg in ("--device", f"{vol}={dev}")],
            ]
        argv = ["ip", "netns", "exec", self.netns(node.name), sys.executable, "-m",
                "tandem.lab.node", "--name", node.name, "--netns", self.netns(node.name),
                "--state-dir", str(directory), "--mgmt-address", self.address(node.index),
                "--repl-address", self.address(node.index, "repl"), "--", *agent]
        return spawn(f"node-{node.name}", argv, directory / "supervisor.log")

    # --- faults and observation -----------------------------------------------------------
    def agent_pid(self, node: str) -> int:
        return int((self.node_dir(node) / "agent.pid").read_text())

    def kill_agent(self, node: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.agent_pid(node), 9)

    def freeze_agent(self, node: str, timeout: float = 10.0) -> None:
        """SIGSTOP the agent; one that is just being restarted (after a fence, say) is frozen
        as soon as its successor has written its pid."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.kill(self.agent_pid(node), signal.SIGSTOP)
                return
            except (ProcessLookupError, FileNotFoundError, ValueError):
                if time.monotonic() > deadline:
                    raise LabClusterError(f"{node}'s agent did not run for {timeout:.0f}s, "
                                          "nothing to freeze") from None
                time.sleep(0.1)

    def thaw_agent(self, node: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.agent_pid(node), signal.SIGCONT)

    def fake_clock(self, node: str, spec: str) -> None:
        """Fake the wall clock of `node`'s agent process only: `+60s`, `-60s`, `+0 x2` (the
        libfaketime offset and rate, relative to the true clock). The first call restarts the
        agent under libfaketime (tandem.lab.fakeclock); later ones change its clock at once."""
        clock = self.node_dir(node) / fakeclock.NODE_CLOCK_FILE
        partial = clock.with_suffix(".new")
        partial.write_text(fakeclock.clock_spec(spec) + "\n")
        partial.replace(clock)
        if not self.clock_faked(node):
            old = self.agent_pid(node)
            self.kill_agent(node)
            deadline = time.monotonic() + 30
            while not (self.agent_pid(node) != old and self.clock_faked(node)):
                if time.monotonic() > deadline:
                    raise LabClusterError(f"{node}'s agent did not restart under libfaketime")
                time.sleep(0.1)

    def clock_faked(self, node: str) -> bool:
        try:
            environ = Path(f"/proc/{self.agent_pid(node)}/environ").read_bytes()
        except (OSError, ValueError):
            return False
        return b"FAKETIME_TIMESTAMP_FILE=" in environ

    def postgres_pid(self, node: str) -> int | None:
        pidfile = self.node_dir(node) / "pg" / "data" / "postmaster.pid"
        try:
            return int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def kill_postgres(self, node: str) -> None:
        pid = self.postgres_pid(node)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def hold_mount(self, node: str, path: str) -> subprocess.Popen[bytes]:
        """A process of the node with its working directory under `path` (in the agent's mount
        namespace), so that unmounting it fails as busy."""
        return subprocess.Popen(
            ["nsenter", f"--target={self.agent_pid(node)}", "--mount", "--net", f"--wd={path}",
             "sleep", "3600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def set_primary(self, cluster: str, node: str) -> None:
        """Request a planned switchover, as an administrator does: patch spec.primary."""
        self.kubectl("patch", "hac", cluster, "-n", self.namespace, "--type=merge",
                     "-p", json.dumps({"spec": {"primary": node}}))

    def switch_over(self, cluster: str, node: str, timeout: float = 30.0) -> None:
        """Request a planned switchover to `node` whatever `spec.primary` says now. After an
        unplanned failover it may already name `node`, and only a change requests a switchover
        (docs/runbook.md), so first name the current holder and wait until the operator has
        handled that change: kopf compares against the last spec it handled, and two quick
        patches would look to it like no change at all."""
        if self.hacluster(cluster)["spec"].get("primary") == node:
            holder = self.lease(cluster).get("holderIdentity")
            if holder and holder != node:
                self.set_primary(cluster, holder)
                deadline = time.monotonic() + timeout
                while self._handled_primary(cluster) != holder:
                    if time.monotonic() > deadline:
                        raise LabClusterError(f"the operator did not handle spec.primary "
                                              f"{holder} within {timeout:.0f}s")
                    time.sleep(0.2)
        self.set_primary(cluster, node)

    def _handled_primary(self, cluster: str) -> str | None:
        annotations = self.hacluster(cluster)["metadata"].get("annotations", {})
        handled = json.loads(annotations.get(LAST_HANDLED_ANNOTATION, "{}"))
        primary: str | None = handled.get("spec", {}).get("primary")
        return primary

    def cordon(self, node: str) -> None:
        self.kubectl("cordon", node)

    def uncordon(self, node: str) -> None:
        self.kubectl("uncordon", node)

    def cut(self, node: str, *links: str) -> None:
        for link in links or ("mgmt", "repl"):
            self.network.cut(node, link)

    def heal(self, node: str, *links: str) -> None:
        for link in links or ("mgmt", "repl"):
            self.network.heal(node, link)

    def power_off(self, node: str) -> None:
        """Hard power-off: the node's supervisor and every process of the node die at once, and
        the node drops off both networks and loses every address it had taken on."""
        self.cut(node)
        state = self.state()
        assert state is not None
        for proc in [p for p in state.processes if p.name == f"node-{node}"]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
        for _ in range(100):
            pids = run_ip(["netns", "pids", self.netns(node)], check=False).stdout.split()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
            time.sleep(0.05)
        else:
            raise LabClusterError(f"processes of {node} survived SIGKILL")
        index = next(n.index for n in state.nodes if n.name == node)
        for link in ("mgmt", "repl"):
            run_ip(["-n", self.netns(node), "addr", "flush", "dev", link], check=False)
            run_ip(["-n", self.netns(node), "addr", "add", f"{self.address(index, link)}/24",
                    "dev", link], check=False)

    def lease(self, cluster: str) -> dict[str, Any]:
        """The spec of the cluster's `<cluster>-primary` Lease ({} while it does not exist)."""
        spec: dict[str, Any] = self.lease_object(cluster).get("spec", {})
        return spec

    def lease_object(self, cluster: str) -> dict[str, Any]:
        """The whole Lease, annotations included ({} while it does not exist)."""
        out = self.kubectl("get", "lease", f"{cluster}-primary", "-n", self.namespace,
                           "-o", "json", check=False)
        lease: dict[str, Any] = json.loads(out) if out else {}
        return lease

    def hacluster(self, cluster: str) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(
            self.kubectl("get", "hac", cluster, "-n", self.namespace, "-o", "json"))
        return obj

    def fences(self, node: str) -> list[str]:
        path = self.node_dir(node) / "fences.log"
        return path.read_text().splitlines() if path.exists() else []

    # --- down -----------------------------------------------------------------------------
    def down(self) -> None:
        state = self.state()
        if state is None:
            return
        self.network = LabNetwork(state.prefix, state.subnet)
        for proc in state.processes:
            with contextlib.suppress(Exception):
                terminate(proc, 20)
        cleanup_namespaces(state.prefix)
        for device in state.loops:
            subprocess.run(["losetup", "-d", device], check=False, capture_output=True)
        for bridge in (self.network.mgmt_bridge, self.network.repl_bridge):
            run_ip(["link", "del", bridge], check=False)
        if self.plane.running():
            names = [n.name for n in state.nodes]
            self.kubectl("delete", "node", "--ignore-not-found", "--wait=false", *names,
                         check=False)
        self.state_file.unlink()


def cleanup_namespaces(prefix: str) -> None:
    """Kill every process in, then delete, each network namespace named `<prefix>-*`.

    Also removes the host-side veths and bridges of a lab that died without cleaning up.
    """
    listed = run_ip(["netns", "list"], check=False).stdout.split("\n")
    for line in listed:
        name = line.split(" ")[0]
        if not name.startswith(f"{prefix}-"):
            continue
        for _ in range(50):
            pids = run_ip(["netns", "pids", name], check=False).stdout.split()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            time.sleep(0.05)
        run_ip(["netns", "del", name], check=False)
    links = run_ip(["-o", "link", "show"], check=False).stdout.splitlines()
    for line in links:
        ifname = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if ifname.startswith(prefix):
            run_ip(["link", "del", ifname], check=False)


def keep_logs(work: Path, target: Path) -> None:
    """Copy the logs of a lab run under `work` (agents, supervisors, operator, DRBD stand-in,
    control plane, client) to `target`, for a post-mortem after `work` is removed. PostgreSQL's
    and the services' own logs are left out: they are large and rarely the story."""
    shutil.rmtree(target, ignore_errors=True)
    for log in work.rglob("*.log"):
        if "pg" in log.parts or "services" in log.parts:
            continue
        dest = target / log.relative_to(work)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, dest)
