"""The lab control plane alone under the write load of N clusters: how fast it answers.

`tandem bench controlplane --leases 50 --applies 30 --seconds 40 [--fork-loops 6]` starts a lab
control plane of its own (etcd and kube-apiserver, as `tandem lab up`), applies the CRDs, and
creates the HAClusters and FloatingIPs that `tandem bench scale` would at N = `--leases` on
three nodes (`scale.manifests`), and a Lease for each cluster. Then, for `--seconds`:

- one thread per Lease renews it every 1.2 s with a PUT, as a holder does at the default
  `renewIntervalMs`;
- ten threads apply `--applies` times a second one node's entry of `status.nodes` of a random
  HACluster (server-side apply, field manager `tandem-agent-<node>`), as the agents report.

What the lab adds can be added one at a time:

- `--as-agents`: the renewals and applies carry each node's own credential, as an agent's do
  (deploy/base's RBAC and agent admission policy applied, a ServiceAccount token per node by
  `scripts/node-credential.sh`, the Leases stamped with their members), instead of admin's;
- `--watchers K`: K clients keep the agent's own watch-fed mirrors (`AgentWatches`: the
  three tandem kinds and the Leases, cluster-wide), as the three agents and the operator are
  four watching clients;
- `--fork-loops K`: K shell loops that only fork `true`, each in a session of its own, as the
  lab nodes' agents and systemd fork.

It reports the percentiles of each kind of request as the client saw them, the events the
watchers received, and the CPU the API server and etcd used. Comparing them with
`tandem bench scale` at the same N tells whether the API server's latency there is its own or
comes from what the lab adds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes

from bench import scale
from bench.report import emit, lab_work_dir, percentiles
from tandem.api.common import GROUP, VERSION
from tandem.kube.connect import load_client
from tandem_agent.kube import KINDS, LEASES, AgentWatches
from tandem_lab.controlplane import ControlPlane
from tandem_lab.install import node_credential
from tandem_operator.kube import parse_cluster
from tandem_operator.lease import lease_manifest, lease_name

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "load"
NODES = 3  # as `tandem bench scale --nodes 3`
RENEW_INTERVAL = 1.2
APPLIERS = 10


def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_entry(node: str, epoch: int) -> dict[str, Any]:
    """One node's report, of the size an agent writes for a cluster with one service and one
    floating IP."""
    checked = {"state": "Healthy", "consecutiveFailures": 0, "lastCheckTime": stamp()}
    return {
        "name": node,
        "role": "Standby",
        "epoch": epoch,
        "drbd": [],
        "services": [{"name": "echo", "state": "Stopped", "restarts": 0}],
        "resources": [{"kind": "Service", "name": "echo", **checked}, {"kind": "FloatingIP", "name": "vip", **checked}],
        "eligible": True,
        "message": f"standby at epoch {epoch}",
        "appliedGeneration": 1,
        "pendingChange": "",
        "heartbeatTime": stamp(),
    }


def held_lease(doc: dict[str, Any], uid: str) -> dict[str, Any]:
    """The Lease the operator creates for the HACluster `doc` (`lease_manifest`: labelled,
    owned, stamped with its members, which the agent admission policy checks), taken at epoch
    1 by the first node of its pair, as an agent takes it."""
    body = lease_manifest(doc["metadata"]["name"], NAMESPACE, uid, parse_cluster(doc))
    body["spec"] |= {"holderIdentity": doc["spec"]["nodes"][0]["name"], "leaseTransitions": 1}
    return body


class Load:
    """The HAClusters and FloatingIPs of `tandem bench scale` at N = `clusters` on three nodes,
    a Lease for each, and the threads that renew and report on them."""

    def __init__(self, api: kubernetes.client.ApiClient, clusters: int) -> None:
        self.leases = kubernetes.client.CoordinationV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.docs = scale.manifests(clusters, NODES)
        # cluster -> its two nodes
        self.pairs = {
            d["metadata"]["name"]: [n["name"] for n in d["spec"]["nodes"]]
            for d in self.docs
            if d["kind"] == "HACluster"
        }
        # node -> the client its writes go through (admin's unless `as_agents`)
        self.writers = dict.fromkeys(scale.node_names(NODES), api)
        self.until = 0.0
        self.lock = threading.Lock()
        self.seen: dict[str, list[float]] = {"PUT lease": [], "APPLY status": []}
        self.errors: dict[str, int] = {"PUT lease": 0, "APPLY status": 0}
        self.first_error: dict[str, str] = {}  # kind -> what the API answered to the first refused request
        self.events = 0

    def as_agents(self, clients: dict[str, kubernetes.client.ApiClient]) -> None:
        """Each node's renewals and applies go through its own client."""
        self.writers = clients

    def create(self) -> None:
        kubernetes.client.CoreV1Api(self.leases.api_client).create_namespace(
            kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE))
        )
        for doc in self.docs:
            plural = doc["kind"].lower() + "s"
            created = self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, doc)
            assert isinstance(created, dict)
            if doc["kind"] != "HACluster":
                continue
            # The operator writes a status before any agent reports; the admission policy lets
            # an agent add no status field beside status.nodes (the schema's defaults included).
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, NAMESPACE, "haclusters", doc["metadata"]["name"], {"status": {"observedGeneration": 1}}
            )
            lease = held_lease(doc, created["metadata"]["uid"])
            self.leases.create_namespaced_lease(NAMESPACE, lease)  # type: ignore[arg-type]  # a dict body is sent as is

    def timed(self, kind: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`call(*args, **kwargs)`, its time kept under `kind`; None when the API refused it."""
        start = time.monotonic()
        try:
            return call(*args, **kwargs)
        except kubernetes.client.ApiException as exc:
            with self.lock:
                self.errors[kind] += 1
                self.first_error.setdefault(kind, f"{exc.status} {exc.reason}: {exc.body}"[:500])
            return None
        finally:
            with self.lock:
                self.seen[kind].append(time.monotonic() - start)

    def renew(self, cluster: str) -> None:
        """Renew the cluster's Lease as its holder, the first node of its pair."""
        name = lease_name(cluster)
        leases = kubernetes.client.CoordinationV1Api(self.writers[self.pairs[cluster][0]])
        body = leases.read_namespaced_lease(name, NAMESPACE)
        while time.monotonic() < self.until:
            assert body.spec is not None
            body.spec.renew_time = dt.datetime.now(dt.UTC)
            sent = time.monotonic()
            renewed = self.timed(
                "PUT lease", leases.replace_namespaced_lease, name, NAMESPACE, body, _request_timeout=10
            )
            body = renewed or leases.read_namespaced_lease(name, NAMESPACE)
            time.sleep(max(0.0, RENEW_INTERVAL - (time.monotonic() - sent)))

    def apply(self, per_second: float) -> None:
        rng, epoch, clusters = random.Random(), 0, list(self.pairs)
        custom = {node: kubernetes.client.CustomObjectsApi(api) for node, api in self.writers.items()}
        while time.monotonic() < self.until:
            cluster, epoch = rng.choice(clusters), epoch + 1
            node = rng.choice(self.pairs[cluster])
            body: dict[str, Any] = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "HACluster",
                "metadata": {"name": cluster, "namespace": NAMESPACE},
                "status": {"nodes": [node_entry(node, epoch)]},
            }
            sent = time.monotonic()
            self.timed(
                "APPLY status",
                custom[node].patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                NAMESPACE,
                "haclusters",
                cluster,
                body,
                field_manager=f"tandem-agent-{node}",
                force=True,
                _content_type="application/apply-patch+yaml",
                _request_timeout=10,
            )
            time.sleep(max(0.0, 1 / per_second - (time.monotonic() - sent)))

    def run(self, applies: float, seconds: float, watchers: int = 0) -> None:
        self.until = time.monotonic() + seconds
        threads = [threading.Thread(target=self.renew, args=(cluster,)) for cluster in self.pairs]
        if applies > 0:
            threads += [threading.Thread(target=self.apply, args=(applies / APPLIERS,)) for _ in range(APPLIERS)]
        clients = list(self.writers.values())
        watches = [AgentWatches(clients[i % len(clients)], None).start() for i in range(watchers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for watch in watches:
            self.events += sum(sum(watch.changes(kind)) for kind in (*KINDS, LEASES))
            watch.stop()


def agent_clients(plane: ControlPlane, server: str, work: Path) -> dict[str, kubernetes.client.ApiClient]:
    """Each node's own client, as a host-installed agent has it (docs/install.md): deploy/base's
    namespace, RBAC and agent admission policy, then a token per node."""
    base = REPO / "deploy" / "base"
    files = [f"--filename={base / name}" for name in ("namespace.yaml", "agent-rbac.yaml", "agent-admission.yaml")]
    subprocess.run(
        [str(plane.kubectl()), f"--kubeconfig={plane.kubeconfig}", "apply", "--server-side", *files],
        check=True,
        capture_output=True,
    )
    clients = {}
    for node in scale.node_names(NODES):
        path = work / f"{node}.kubeconfig"
        path.write_text(node_credential(plane.kubectl(), plane.kubeconfig, node, server))
        clients[node] = load_client(str(path), retries=None)
    return clients


def fork_loops(count: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(["sh", "-c", "while :; do true; done"], start_new_session=True)  # noqa: S607
        for _ in range(count)
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="tandem bench controlplane", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--leases", type=int, default=50, help="clusters: one Lease and one HACluster each (default 50)")
    p.add_argument("--applies", type=float, default=30.0, help="status applies per second in all (default 30)")
    p.add_argument("--seconds", type=float, default=40.0, help="how long the load runs (default 40)")
    p.add_argument("--fork-loops", type=int, default=0, help="shell loops forking beside it (default 0)")
    p.add_argument("--as-agents", action="store_true", help="write with each node's own credential, not admin's")
    p.add_argument("--watchers", type=int, default=0, help="clients watching Leases and HAClusters (default 0)")
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)
    if (
        not 1 <= args.leases <= scale.MAX_CLUSTERS
        or args.applies < 0
        or args.seconds <= 0
        or args.fork_loops < 0
        or args.watchers < 0
    ):
        p.error(f"--leases 1 to {scale.MAX_CLUSTERS}, --applies >= 0, --seconds > 0, --fork-loops and --watchers >= 0")
    with lab_work_dir() as work:
        plane = ControlPlane(work / "plane")
        state = plane.start()
        forks: list[subprocess.Popen[bytes]] = []
        try:
            kubectl = [str(plane.kubectl()), f"--kubeconfig={plane.kubeconfig}"]
            subprocess.run(
                [*kubectl, "apply", "--server-side", "-k", str(REPO / "crds")], check=True, capture_output=True
            )
            subprocess.run(
                [*kubectl, "wait", "--for=condition=Established", f"crd/haclusters.{GROUP}", "--timeout=60s"],
                check=True,
                capture_output=True,
            )
            load = Load(load_client(str(plane.kubeconfig), retries=None), args.leases)
            load.create()
            if args.as_agents:
                load.as_agents(agent_clients(plane, state.server, work))
            forks = fork_loops(args.fork_loops)
            before = {p.name: scale.ProcessReading.of(p.pid, p.start_time) for p in state.processes}
            load.run(args.applies, args.seconds, args.watchers)
            cpu = {
                name: scale.usage(reading, scale.ProcessReading.of(reading.pid))["cpu_s_per_s"]
                for name, reading in before.items()
                if reading is not None
            }
        finally:
            for fork in forks:
                fork.kill()
                fork.wait()
            plane.stop()
    results: dict[str, Any] = {
        kind: {**percentiles(seen), "per_s": len(seen) / args.seconds, "errors": load.errors[kind]}
        for kind, seen in load.seen.items()
        if seen
    }
    results |= {
        "leases": args.leases,
        "applies_per_s": args.applies,
        "fork_loops": args.fork_loops,
        "as_agents": args.as_agents,
        "watchers": args.watchers,
        "watch_events_per_s": round(load.events / args.seconds, 1),
        "cpu_s_per_s": cpu,
        "first_error": load.first_error,
    }
    emit("controlplane", results, args.json_path)
    return 0 if not any(load.errors.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
