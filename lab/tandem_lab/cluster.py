"""A whole HA pair in the lab: booted node machines with tandem installed, DRBD, PostgreSQL,
the operator.

`LabCluster.up(manifests)` reads HAClusters, DRBDVolumes and FloatingIPs (the lab samples in
deploy/samples/lab/), builds one network namespace per node at the addresses the manifests
give (198.18.<s>.<i> management, 198.19.<s>.<i> replication) and boots a machine in each
(lab/tandem_lab/machine.py: Debian 12, systemd as PID 1). Every data node gets a backing disk per
volume (a file, `<node>/drbd-md/` seen in the node as the stand-in's metadata directory) and a
loop device per volume, seen in the node as `/dev/drbd<minor>`, over a file that the host's
`blockdev` process serves through FUSE from the node's DRBD stand-in, so every block the node
writes is replicated as DRBD would (docs/drbd-standin.md); the lab's units (lab/tandem_lab/units:
the DRBD stand-in, the echo services) and tandem by the host install (tandem_lab.install).
Each DRBD volume is bootstrapped once on the nodes (as an administrator does: `primary --force`
on one node, full sync), the Secrets
the HAClusters name as spec.chain.postgres.credentialsSecret are created (a random password
each, kept in `passwords/`) and the manifests applied, the operator starts, and each node's
agent is enabled as the node's own `tandem-agent.service` with its own credential
(scripts/node-credential.sh). A power controller per node (tandem_lab.power) serves the
watchdog. Everything started is recorded in `cluster.json` so `down()` from any process removes it all.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tandem.api.common import LAST_HANDLED_ANNOTATION
from tandem.api.drbdvolume import DRBDVolumeSpec
from tandem.kube.lease import LeaseRecord, parse_lease
from tandem_lab import echo, fakeclock, install, kubelet, power
from tandem_lab.controlplane import ControlPlane, build_binaries
from tandem_lab.drbdsim import blockdev
from tandem_lab.drbdsim import io as drbd_io
from tandem_lab.drbdsim import kernel as drbd_kernel
from tandem_lab.machine import Machine, MachineError, MachineSpec, node_root
from tandem_lab.netns import LabNetwork, run_ip
from tandem_lab.processes import ManagedProcess, process_start_time, spawn, terminate

CLIENT_INDEX = 250
POSTGRES_DATA = "/var/lib/postgresql/15/main"
REPO = Path(__file__).resolve().parents[2]
LAB_SAMPLES = REPO / "deploy" / "samples" / "lab"
LAB_UNITS = Path(__file__).resolve().parent / "units"
NODE_PYTHON = "/opt/tandem/bin/python"
DRBD_STATE = "/var/lib/tandem-lab/drbd"  # the stand-in's state directory in a node
DISK_BYTES = 32 * 1024 * 1024  # each backing disk (and DRBD device) of the lab
AGENT_UNIT = "tandem-agent.service"
# What the agent runs with on a lab node, beyond the host install's defaults: the DRBD
# stand-in, and the lab's fence: the power controller resets the node (tandem_lab.power).
AGENT_ARGS = (
    "--fence lab-kill --watchdog lab:"
    + power.NODE_SOCKET
    + " --drbd-sim-state /var/lib/tandem-lab/drbd --log-level INFO"
)


class LabClusterError(RuntimeError):
    pass


@dataclass
class NodeRecord:
    name: str
    index: int
    data: bool  # False: a DRBD tiebreaker (witness) that runs no agent
    devices: dict[str, str] = field(default_factory=dict)
    # True: a kubelet node (tandem_lab.kubelet), whose agent is deploy/'s DaemonSet
    daemonset: bool = False


@dataclass
class ClusterState:
    prefix: str
    subnet: int
    namespace: str
    nodes: list[NodeRecord]
    processes: list[ManagedProcess]
    loops: list[str]
    # The FUSE servers under the loop devices: stopped after the loops are detached.
    blockdevs: list[ManagedProcess] = field(default_factory=list)


def lab_manifests(paths: list[Path], subnet: int) -> list[dict[str, Any]]:
    """Load manifests, moving the lab addresses 198.18.0.x / 198.19.0.x to subnet `subnet`."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        text = path.read_text()
        if subnet:
            text = text.replace("198.18.0.", f"198.18.{subnet}.").replace("198.19.0.", f"198.19.{subnet}.")
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


class LabCluster:
    def __init__(
        self, plane: ControlPlane, work_dir: Path, prefix: str = "tdl", subnet: int = 0, namespace: str = "tandem-lab"
    ) -> None:
        self.plane = plane
        self.work_dir = work_dir.resolve()
        self.state_file = self.work_dir / "cluster.json"
        self.prefix, self.subnet, self.namespace = prefix, subnet, namespace
        self.network = LabNetwork(prefix, subnet)
        self.docs: list[dict[str, Any]] = []
        existing = self.state()
        if existing is not None:
            self.network = LabNetwork(existing.prefix, existing.subnet)
            self.prefix, self.subnet, self.namespace = (existing.prefix, existing.subnet, existing.namespace)
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
        raw["blockdevs"] = [ManagedProcess(**p) for p in raw.get("blockdevs", [])]
        return ClusterState(**raw)

    def _save(self, state: ClusterState) -> None:
        self.state_file.write_text(json.dumps(asdict(state), indent=2))

    def node_dir(self, name: str) -> Path:
        return self.work_dir / "nodes" / name

    def node_path(self, name: str, path: str) -> Path:
        """A path on a node's disk, as the host sees it (the node's overlay root)."""
        return self.node_dir(name) / "root" / path.lstrip("/")

    def netns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def address(self, index: int, link: str = "mgmt") -> str:
        return f"198.{18 if link == 'mgmt' else 19}.{self.subnet}.{index}"

    @property
    def client_netns(self) -> str:
        return self.netns("client")

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        argv = [str(self.plane.kubectl()), f"--kubeconfig={self.plane.kubeconfig}", *args]
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, check=False)
        if check and proc.returncode != 0:
            raise LabClusterError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    # --- up -------------------------------------------------------------------------------
    def up(
        self,
        manifests: list[Path],
        operator: bool = True,
        fake_clocks: bool = False,
        credentials: bool = True,
        kubelet_nodes: Collection[str] = (),
        *,
        edit: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> ClusterState:
        """Bring the lab up. `fake_clocks`: every agent starts under libfaketime at the true
        time, so `fake_clock` changes its clock without restarting it. `credentials` False: the
        Secrets the clusters name are not created (a misconfiguration to observe).
        `kubelet_nodes`: these nodes (one at most: tandem_lab.kubelet) run a kubelet instead of
        the host install; `kubectl apply -k` of deploy/ then starts their agent. `edit` changes
        the loaded manifests in place before anything uses them (a test's own policy)."""
        if self.state() is not None:
            self.down()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work_dir, 0o755)  # PostgreSQL runs as its own user below it
        for parent in self.work_dir.parents:
            if not parent.stat().st_mode & 0o001:
                raise LabClusterError(
                    f"{parent} is not searchable by other users, so PostgreSQL (which runs as "
                    f"its own user) cannot reach {self.work_dir}: chmod o+x {parent} or put "
                    "the lab elsewhere"
                )
        shutil.rmtree(self.work_dir / "nodes", ignore_errors=True)  # a new lab starts empty
        self.docs = lab_manifests(manifests, self.subnet)
        if edit is not None:
            edit(self.docs)
        nodes = self._nodes()
        unknown = set(kubelet_nodes) - {n.name for n in nodes if n.data}
        if unknown or len(kubelet_nodes) > 1:
            raise LabClusterError(
                f"kubelet_nodes {sorted(kubelet_nodes)}: name one data node of the samples (one kubelet node per host)"
            )
        for node in nodes:
            node.daemonset = node.name in kubelet_nodes
        state = ClusterState(self.prefix, self.subnet, self.namespace, nodes, [], [])
        self._save(state)
        try:
            self._network(state)
            self._kubernetes(state)
            self._machines(state, fake_clocks)
            self._volumes(state)
            self.apply(credentials)
            if operator:
                self.start_operator(state)
            for node in nodes:
                if node.daemonset:
                    self._start_kubelet(state, node)
                elif node.data:
                    self._enable_agent(node)
                state.processes.append(self._power_controller(node))
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
                        raise LabClusterError(
                            f"lab sample: HACluster {doc['metadata']['name']} "
                            f"node {n['name']} needs a replicationAddress"
                        )
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
        forwarder = spawn(
            "forwarder",
            [
                sys.executable,
                "-m",
                "tandem_lab.forward",
                "--listen",
                self.network.mgmt_gateway,
                "--port",
                str(api.api_port),
                "--target-port",
                str(api.api_port),
            ],
            self.work_dir / "forwarder.log",
        )
        state.processes.append(forwarder)
        self._save(state)

    @property
    def api_server_for_nodes(self) -> str:
        """The API server as the nodes reach it: through the forwarder on their bridge."""
        api = self.plane.state()
        assert api is not None
        return f"https://{self.network.mgmt_gateway}:{api.api_port}"

    def _kubernetes(self, state: ClusterState) -> None:
        self.kubectl("apply", "--server-side", "-k", str(REPO / "crds"))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/haclusters.tandem.dev",
            "crd/drbdvolumes.tandem.dev",
            "crd/floatingips.tandem.dev",
        )
        self._forget_earlier_lab()
        # The label that selects the DaemonSet's nodes goes on the kubelet node only: the
        # others run the host install (docs/install.md). Under node-restriction.kubernetes.io/,
        # so a kubelet cannot set it on its own Node.
        nodes = [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": n.name,
                    "labels": {"node-restriction.kubernetes.io/tandem-agent": "true"} if n.daemonset else {},
                },
            }
            for n in state.nodes
        ]
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        # The agents' RBAC and admission policy as deploy/ ships them, and what
        # docs/postgres.md asks of every namespace with clusters: the agents may get the
        # Secrets its clusters name (the Role, made with those Secrets in `apply`).
        credentials = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "tandem-agent-secrets", "namespace": self.namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tandem-agent-secrets"},
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": "tandem-agent",  # the DaemonSet's
                    "namespace": "tandem-system",
                }
            ]
            + [
                {"kind": "ServiceAccount", "name": f"tandem-agent-{n.name}", "namespace": "tandem-system"}
                for n in state.nodes
                if n.data and not n.daemonset
            ],
        }
        # Server-side, as docs/install.md applies deploy/ (the kubelet node's test applies all
        # of it again); forced, so that a control plane an older lab filled is taken over.
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(REPO / "deploy" / "base" / "namespace.yaml"),
            "-f",
            str(REPO / "deploy" / "base" / "agent-rbac.yaml"),
            "-f",
            str(REPO / "deploy" / "base" / "agent-admission.yaml"),
        )
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([namespace, *nodes, credentials]))

    def _forget_earlier_lab(self) -> None:
        """A new lab starts empty in Kubernetes too: the objects and Leases an earlier lab
        left in this namespace (the control plane outlives `down`) would name a primary and an
        epoch that the fresh nodes never had. Their finalizers go first: no operator runs yet
        to release them, and no agent of theirs is left to tear anything down."""
        kinds = "haclusters.tandem.dev,drbdvolumes.tandem.dev,floatingips.tandem.dev"
        names = self.kubectl("get", kinds, "-n", self.namespace, "-o", "name", check=False).split()
        for name in names:
            self.kubectl(
                "patch",
                name,
                "-n",
                self.namespace,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
        if names:
            self.kubectl("delete", kinds, "--all", "-n", self.namespace, "--wait=true")
        self.kubectl("delete", "leases", "--all", "-n", self.namespace, check=False)

    def _machines(self, state: ClusterState, fake_clocks: bool) -> None:
        """Boot every node with tandem installed (the package half of the host install, in a
        layer shared by all nodes) and the lab's units; Debian's own PostgreSQL cluster is
        kept from starting, so only tandem starts it (docs/install.md)."""
        root = node_root()
        layer = install.package_layer(root, install.build_wheels(self.work_dir / "dist"))
        volumes = {
            d["metadata"]["name"]: DRBDVolumeSpec.model_validate(d["spec"])
            for d in self.docs
            if d["kind"] == "DRBDVolume"
        }
        machines = []
        for node in state.nodes:
            binds = []
            mine = {name: spec for name, spec in volumes.items() if node.name in {n.name for n in spec.nodes}}
            if mine:
                binds += self._disks(state, node, mine)
            directory = self.node_dir(node.name)
            (directory / power.SOCKET_DIR).mkdir(parents=True, exist_ok=True)
            binds.append(f"{directory / power.SOCKET_DIR}:/run/tandem-lab")
            read_only: list[str] = []
            if node.daemonset:
                more, read_only = kubelet.nspawn_extras(directory, build_binaries(node=True))
                binds += more
            machine_spec = MachineSpec(
                name=node.name,
                machine=f"{self.prefix}-{node.name}",
                netns=self.netns(node.name),
                directory=directory,
                lower=(layer, root),
                binds=tuple(binds),
                read_only_binds=tuple(read_only),
                options=kubelet.NSPAWN_OPTIONS if node.daemonset else (),
            )
            power.save_spec(machine_spec, {link: f"{self.address(node.index, link)}/24" for link in ("mgmt", "repl")})
            machine = Machine(machine_spec)
            machine.attach_disk()
            units = machine.root / "etc" / "systemd" / "system"
            for unit in LAB_UNITS.iterdir():
                shutil.copy(unit, units / unit.name)
            wants = units / "multi-user.target.wants"
            wants.mkdir(exist_ok=True)
            (wants / "tandem-lab-drbd.service").symlink_to("../tandem-lab-drbd.service")
            for path, content in echo.environment_files(self.docs, node.name).items():
                environment = machine.root / path.lstrip("/")
                environment.parent.mkdir(parents=True, exist_ok=True)
                environment.write_text(content)
            if fake_clocks and node.data:
                self._write_clock(node.name, "+0")
            if node.daemonset:
                kubelet.prepare(machine, self.plane, self.api_server_for_nodes, self.address(node.index))
            self._save(state)
            machine.power_on()
            machines.append(machine)
        for machine in machines:
            machine.wait_booted()
            for command in install.POSTGRES_HANDOVER:
                machine.exec(command)

    def machine(self, name: str) -> Machine:
        return power.load(self.node_dir(name))[0]

    def _volumes(self, state: ClusterState) -> None:
        for doc in self.docs:
            if doc["kind"] == "DRBDVolume":
                spec = DRBDVolumeSpec.model_validate(doc["spec"])
                self._bootstrap(spec, self._first_node(spec))

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
                found += [b["source"][len(root) :] for b in chain.get("bindMounts", []) if b["source"].startswith(root)]
        return found

    def _disks(self, state: ClusterState, node: NodeRecord, volumes: dict[str, DRBDVolumeSpec]) -> list[str]:
        """The node's DRBD disks: a backing file per volume (the bootstrap's first node gets
        the file system, the others zeros until the initial sync), the FUSE device server,
        and a loop device per volume over it. Returns the machine's binds."""
        md_dir = self.node_dir(node.name) / "drbd-md"
        md_dir.mkdir(parents=True, exist_ok=True)
        devices = []
        for name, spec in volumes.items():
            disk = next(n.disk for n in spec.nodes if n.name == node.name)
            image = md_dir / drbd_kernel.data_name(disk)
            with image.open("wb") as f:
                f.truncate(DISK_BYTES)
            if node.name == self._first_node(spec):
                template = self.node_dir(node.name) / f"{name}.template"
                for directory in self._bind_sources(name):
                    (template / directory).mkdir(parents=True, exist_ok=True)
                template.mkdir(exist_ok=True)
                # 1 KiB blocks and 16384 inodes: room for the lab client's small files (one
                # every 0.25 s) for hours, where the defaults would fill up in half an hour.
                subprocess.run(
                    ["mkfs.ext4", "-q", "-F", "-b", "1024", "-N", "16384", "-d", str(template), str(image)],
                    check=True,
                    capture_output=True,
                )
            devices.append(blockdev.Device(f"drbd{spec.minor}", DISK_BYTES, spec.minor))
        mount = self.node_dir(node.name) / "blockdev"
        io_socket = self.node_dir(node.name) / power.SOCKET_DIR / drbd_io.SOCKET_NAME
        io_socket.parent.mkdir(parents=True, exist_ok=True)
        blockdev.unmount(mount)  # a blockdev killed with an earlier lab leaves a dead mount
        proc = blockdev.start(mount, io_socket, devices, log_path=self.node_dir(node.name) / "blockdev.log")
        state.blockdevs.append(ManagedProcess(f"blockdev-{node.name}", proc.pid, process_start_time(proc.pid) or ""))
        self._save(state)
        binds = [f"{md_dir}:{DRBD_STATE}/md"]
        for (name, spec), device in zip(volumes.items(), devices, strict=True):
            loop = blockdev.attach_loop(mount / device.name)
            state.loops.append(loop)
            self._save(state)
            node.devices[name] = loop
            binds.append(f"{loop}:/dev/drbd{spec.minor}")
        return binds

    def _first_node(self, spec: DRBDVolumeSpec) -> str:
        """Where the initial sync starts: the cluster's preferred primary, else the first node."""
        for doc in self.docs:
            if doc["kind"] == "HACluster" and doc["metadata"]["name"] == spec.cluster:
                return str(doc["spec"].get("primary") or spec.nodes[0].name)
        return spec.nodes[0].name

    def _bootstrap(self, spec: DRBDVolumeSpec, first: str) -> None:
        """The one-time initial sync an administrator does when creating a DRBD resource,
        run on the nodes themselves (tandem_lab.drbdsim.bootstrap)."""
        members = [n.name for n in spec.nodes] + ([spec.tiebreaker.name] if spec.tiebreaker else [])
        body = spec.model_dump_json(by_alias=True, exclude_none=True)
        for step, nodes in (("prepare", members), ("sync", [first])):
            for node in nodes:
                self.machine(node).exec(
                    [NODE_PYTHON, "-m", "tandem_lab.drbdsim.bootstrap", step, "--node", node], input=body, timeout=90
                )

    def password(self, name: str) -> str:
        """The lab's password called `name`: random, made once per lab directory, mode 0600."""
        path = self.work_dir / "passwords" / name
        if not path.exists():
            path.parent.mkdir(mode=0o700, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24))
        return path.read_text()

    def credentials(self, secrets: bool = True) -> list[dict[str, Any]]:
        """The Role that lets the agents get the Secrets the HAClusters name as
        credentialsSecret and no other, and (`secrets`) those Secrets, as an administrator makes
        them before applying the clusters."""
        names = sorted(
            {
                doc["spec"]["chain"]["postgres"]["credentialsSecret"]
                for doc in self.docs
                if doc["kind"] == "HACluster"
                and (doc["spec"].get("chain", {}).get("postgres") or {}).get("credentialsSecret")
            }
        )
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "tandem-agent-secrets", "namespace": self.namespace},
            # No names, no rule: an empty resourceNames would allow every Secret.
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": names, "verbs": ["get"]}]
            if names
            else [],
        }
        return [role] + [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": name, "namespace": self.namespace},
                "stringData": {"password": self.password(name)},
            }
            for name in names
            if secrets
        ]

    def apply(self, credentials: bool = True) -> None:
        for doc in self.docs:
            doc["metadata"]["namespace"] = self.namespace
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([*self.credentials(credentials), *self.docs]))

    def start_operator(self, state: ClusterState | None = None) -> None:
        state = state or self.state()
        assert state is not None
        proc = spawn(
            "operator",
            [
                sys.executable,
                "-m",
                "tandem_operator",
                "--kubeconfig",
                str(self.plane.kubeconfig),
                "--namespace",
                self.namespace,
            ],
            self.work_dir / "operator.log",
        )
        state.processes.append(proc)
        self._save(state)

    def stop_operator(self, kill: bool = False) -> None:
        self._stop_named("operator", kill)

    def operator_running(self) -> bool:
        state = self.state()
        return state is not None and any(p.name == "operator" and p.alive() for p in state.processes)

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

    def _enable_agent(self, node: NodeRecord) -> None:
        """The node half of the host install: credential, agent.env, `enable --now`."""
        kubeconfig = install.node_credential(
            self.plane.kubectl(), self.plane.kubeconfig, node.name, self.api_server_for_nodes
        )
        install.configure_agent(
            self.machine(node.name),
            kubeconfig,
            {
                "NODE_NAME": node.name,
                "KUBECONFIG": "/etc/tandem/kubeconfig",
                "TANDEM_NAMESPACE": self.namespace,
                "TANDEM_SCOPE_DAEMONS": "1",
                "TANDEM_AGENT_ARGS": AGENT_ARGS,
            },
        )

    def _start_kubelet(self, state: ClusterState, node: NodeRecord) -> None:
        """The kubelet node: the controllers its DaemonSet pod needs, kube-proxy's forwarding
        of the `kubernetes` Service, then containerd with the images and the kubelet."""
        state.processes += kubelet.controllers(self.plane, build_binaries(node=True), self.work_dir)
        api = self.plane.state()
        assert api is not None
        state.processes.append(
            kubelet.service_forwarder(
                self.netns(node.name), self.network.mgmt_gateway, api.api_port, self.work_dir / "service-forwarder.log"
            )
        )
        self._save(state)
        machine = self.machine(node.name)
        kubelet.start(machine, [kubelet.pause_image(), kubelet.tandem_image()])
        kubelet.wait_registered(machine, [str(self.plane.kubectl()), f"--kubeconfig={self.plane.kubeconfig}"])

    def apply_daemonset(self) -> None:
        """`kubectl apply -k` of deploy/ through the lab's overlay (lab/tandem_lab/daemonset), the
        agent limited to this lab's namespace (other labs' objects share the API server)."""
        overlay = kubelet.daemonset_overlay(self.work_dir / "daemonset", self.namespace)
        # Forced: earlier tests of a session may have applied parts of deploy/ client-side.
        self.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(overlay))
        # The DaemonSet updates OnDelete: a pod an earlier DaemonSet of the session (deploy/
        # as it ships, which cannot run on a lab node) made here first is replaced by hand.
        generation = self.kubectl(
            "get", "daemonset", "tandem-agent", "-n", "tandem-system", "-o", "jsonpath={.metadata.generation}"
        ).strip()
        state = self.state()
        for node in (n for n in (state.nodes if state else []) if n.daemonset):
            self.kubectl(
                "delete",
                "pods",
                "-n",
                "tandem-system",
                "--wait=false",
                "-l",
                f"app.kubernetes.io/name=tandem-agent,pod-template-generation!={generation}",
                "--field-selector",
                f"spec.nodeName={node.name}",
            )

    def _power_controller(self, node: NodeRecord) -> ManagedProcess:
        directory = self.node_dir(node.name)
        return spawn(
            f"power-{node.name}",
            [sys.executable, "-m", "tandem_lab.power", "--node-dir", str(directory)],
            directory / "power.log",
        )

    # --- faults and observation -----------------------------------------------------------
    def agent_pid(self, node: str) -> int:
        """Host pid of the node's agent (the main process of tandem-agent.service)."""
        return self.main_pid(node, AGENT_UNIT)

    def main_pid(self, node: str, unit: str) -> int:
        """Host pid of the main process of one of the node's units."""
        pid = self.machine(node).main_pid(unit)
        if pid is None:
            raise LabClusterError(f"{unit} is not running on {node}")
        return pid

    def agent_log(self, node: str) -> str:
        return (
            self.machine(node)
            .exec(["journalctl", "-u", AGENT_UNIT, "--no-pager", "-o", "short-precise"], check=False)
            .stdout
        )

    def kill_agent(self, node: str) -> None:
        with contextlib.suppress(ProcessLookupError, LabClusterError):
            os.kill(self.agent_pid(node), 9)

    def freeze_agent(self, node: str, timeout: float = 10.0) -> None:
        """SIGSTOP the agent; one that is just being restarted (after a fence, say) is frozen
        as soon as its successor has written its pid."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.kill(self.agent_pid(node), signal.SIGSTOP)
                return
            except (ProcessLookupError, LabClusterError):
                if time.monotonic() > deadline:
                    raise LabClusterError(f"{node}'s agent did not run for {timeout:.0f}s, nothing to freeze") from None
                time.sleep(0.1)

    def thaw_agent(self, node: str) -> None:
        """SIGCONT the agent; a node its watchdog powered off meanwhile has none to thaw."""
        with contextlib.suppress(ProcessLookupError, LabClusterError, MachineError):
            os.kill(self.agent_pid(node), signal.SIGCONT)

    def fake_clock(self, node: str, spec: str) -> None:
        """Fake the wall clock of `node`'s agent process only: `+60s`, `-60s`, `+0 x2` (the
        libfaketime offset and rate, relative to the true clock). The first call restarts the
        agent under libfaketime (a drop-in of its unit, tandem_lab.fakeclock); later ones
        change its clock at once."""
        self._write_clock(node, spec)
        if not self.clock_faked(node):
            machine = self.machine(node)
            machine.systemctl("daemon-reload")
            machine.systemctl("restart", AGENT_UNIT)
            deadline = time.monotonic() + 30
            while not self.clock_faked(node):
                if time.monotonic() > deadline:
                    raise LabClusterError(f"{node}'s agent did not restart under libfaketime")
                time.sleep(0.1)

    def _write_clock(self, node: str, spec: str) -> None:
        """The clock file and the agent's drop-in that preloads libfaketime (node disk)."""
        root = self.machine(node).root
        clock = root / fakeclock.NODE_CLOCK_PATH.lstrip("/")
        clock.parent.mkdir(parents=True, exist_ok=True)
        partial = clock.with_suffix(".new")
        partial.write_text(fakeclock.clock_spec(spec) + "\n")
        partial.replace(clock)
        dropin = root / "etc" / "systemd" / "system" / f"{AGENT_UNIT}.d" / "fake-clock.conf"
        if not dropin.exists():
            dropin.parent.mkdir(parents=True, exist_ok=True)
            dropin.write_text(fakeclock.unit_dropin(NODE_PYTHON, root))

    def clock_faked(self, node: str) -> bool:
        try:
            environ = Path(f"/proc/{self.agent_pid(node)}/environ").read_bytes()
        except (OSError, LabClusterError):
            return False
        return b"FAKETIME_TIMESTAMP_FILE=" in environ

    def postgres_pid(self, node: str) -> int | None:
        """Host pid of the node's postmaster, None while it has none."""
        pidfile = self.node_path(node, POSTGRES_DATA) / "postmaster.pid"
        try:
            inside = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return self.machine(node).host_pid(inside)

    def kill_postgres(self, node: str) -> None:
        pid = self.postgres_pid(node)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def hold_mount(self, node: str, path: str) -> subprocess.Popen[bytes]:
        """A process of the node with its working directory under `path`, so that unmounting
        it fails as busy. nsenter opens `--wd` before it enters the node's namespaces, so the
        directory is named through the node's root (/proc/<init>/root): the host has no
        `path` of its own (a fresh CI machine had none). If nsenter fails anyway, its error
        is raised instead of a silent exit."""
        init = self.machine(node).init_pid()
        proc = subprocess.Popen(
            [
                "nsenter",
                f"--target={init}",
                "--mount",
                "--net",
                "--pid",
                f"--wd=/proc/{init}/root{path}",
                "sleep",
                "3600",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return proc  # still running: it holds the mount
        said = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        raise LabClusterError(f"cannot hold {path} on {node}: nsenter exited {proc.returncode}: {said}")

    def set_primary(self, cluster: str, node: str) -> None:
        """Request a planned switchover, as an administrator does: patch spec.primary."""
        self.kubectl(
            "patch", "hac", cluster, "-n", self.namespace, "--type=merge", "-p", json.dumps({"spec": {"primary": node}})
        )

    def switch_over(self, cluster: str, node: str, timeout: float = 30.0) -> None:
        """Request a planned switchover to `node` whatever `spec.primary` says now. After an
        unplanned failover it may already name `node`, and only a change requests a switchover
        (docs/runbook.md), so first name the current holder and wait until the operator has
        handled that change: kopf compares against the last spec it handled, and two quick
        patches would look to it like no change at all."""
        if self.hacluster(cluster)["spec"].get("primary") == node:
            lease = self.lease(cluster)
            holder = lease.holder if lease else None
            if holder and holder != node:
                self.set_primary(cluster, holder)
                deadline = time.monotonic() + timeout
                while self._handled_primary(cluster) != holder:
                    if time.monotonic() > deadline:
                        raise LabClusterError(
                            f"the operator did not handle spec.primary {holder} within {timeout:.0f}s"
                        )
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
        """Hard power-off: the node's init and so everything on it dies at once, the node
        drops off both networks and loses every address it had taken on; it stays off."""
        self.cut(node)
        state = self.state()
        assert state is not None
        for proc in [p for p in state.processes if p.name == f"power-{node}"]:
            terminate(proc, 5)
            state.processes.remove(proc)
        self._save(state)
        machine, own = power.load(self.node_dir(node))
        machine.power_off()
        power.drop_addresses(machine.spec.netns, own)

    def power_on(self, node: str, timeout: float = 90.0) -> None:
        """Undo `power_off`: the node's links come back, its power controller serves the
        watchdog again (before the agent can pet it) and the node boots from its disk, where
        systemd starts the DRBD stand-in and the agent as on any boot."""
        state = self.state()
        assert state is not None
        record = next(n for n in state.nodes if n.name == node)
        if any(p.name == f"power-{node}" for p in state.processes):
            raise LabClusterError(f"{node} is not powered off (its power controller runs)")
        self.heal(node)
        state.processes.append(self._power_controller(record))
        self._save(state)
        self.machine(node).boot(timeout)

    def reset(self, node: str, reason: str = "reset by the lab", off_seconds: float = power.REBOOT_DELAY) -> None:
        """Hard reset, as a BMC does it: the node's power controller powers it off (everything
        on it dies at once, unflushed) and boots it again `off_seconds` later. A real server
        is off for minutes; a lab node back within the lease duration keeps its Lease, as a
        restarted agent does."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(
                f"reset {off_seconds:g} {reason}".encode(),
                str(self.node_dir(node) / power.SOCKET_DIR / Path(power.NODE_SOCKET).name),
            )

    def lease(self, cluster: str) -> LeaseRecord | None:
        """The cluster's `<cluster>-primary` Lease (None while it does not exist)."""
        out = self.kubectl("get", "lease", f"{cluster}-primary", "-n", self.namespace, "-o", "json", check=False)
        return parse_lease(json.loads(out)) if out else None

    def hacluster(self, cluster: str) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(self.kubectl("get", "hac", cluster, "-n", self.namespace, "-o", "json"))
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
        for node in state.nodes:
            if not (self.node_dir(node.name) / power.SPEC_FILE).exists():
                continue
            machine = self.machine(node.name)
            if machine.running():
                with contextlib.suppress(Exception):
                    (self.node_dir(node.name) / "agent.log").write_text(self.agent_log(node.name))
            machine.destroy()
        cleanup_namespaces(state.prefix)
        if any(node.daemonset for node in state.nodes):
            kubelet.remove_pod_cgroups()
        for device in state.loops:
            with contextlib.suppress(blockdev.BlockdevError):
                blockdev.detach_loop(device)
        for proc in state.blockdevs:
            with contextlib.suppress(Exception):
                terminate(proc, 10)
        for node in state.nodes:
            blockdev.unmount(self.node_dir(node.name) / "blockdev")
        for bridge in (self.network.mgmt_bridge, self.network.repl_bridge):
            run_ip(["link", "del", bridge], check=False)
        if self.plane.running() and any(node.daemonset for node in state.nodes):
            # No garbage collector runs: the DaemonSet's pods go by name, at once (their node
            # is off, no kubelet confirms).
            self.kubectl(
                "delete",
                "daemonset",
                "-n",
                "tandem-system",
                "-l",
                "app.kubernetes.io/part-of=tandem",
                "--ignore-not-found",
                check=False,
            )
            self.kubectl(
                "delete",
                "deployment",
                "-n",
                "tandem-operator",
                "-l",
                "app.kubernetes.io/part-of=tandem",
                "--ignore-not-found",
                check=False,
            )
            self.kubectl(
                "delete",
                "pods",
                "-n",
                "tandem-system",
                "-l",
                "app.kubernetes.io/name=tandem-agent",
                "--force",
                "--grace-period=0",
                "--ignore-not-found",
                check=False,
            )
        if self.plane.running():
            names = [n.name for n in state.nodes]
            self.kubectl("delete", "node", "--ignore-not-found", "--wait=false", *names, check=False)
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
    """Copy the logs of a lab run under `work` (agents' journals as saved by `down`, power
    controllers, boots, operator, DRBD stand-in, control plane, client) to `target`, for a
    post-mortem after `work` is removed. PostgreSQL's own logs are left out: they are large and
    rarely the story."""
    shutil.rmtree(target, ignore_errors=True)
    for log in work.rglob("*.log"):
        if "postgresql" in log.parts or "pg" in log.parts or log.is_symlink():
            continue
        dest = target / log.relative_to(work)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, dest)
