"""The lab control plane alone under the write load of N clusters: how fast it answers.

`tandem bench controlplane --leases 50 --applies 30 --seconds 40 [--fork-loops 6]` starts a lab
control plane of its own (etcd and kube-apiserver, as `tandem lab up`), applies the CRDs, and
creates the HAClusters and FloatingIPs that `tandem bench scale` would at N = `--leases` on
three nodes (`scale.manifests`), and a Lease for each cluster. Then, for `--seconds`:

- one thread per Lease renews it every 1.2 s with a PUT, as a holder does at the default
  `renewIntervalMs`;
- ten threads apply `--applies` times a second one node's entry of `status.nodes` of a random
  HACluster (server-side apply, field manager `tandem-agent-<node>`), as the agents report.

`--fork-loops K` runs K shell loops that only fork `true`, each in a session of its own, as
the lab nodes' agents and systemd fork. It reports the percentiles of each kind of request
as the client saw them. Comparing them with `tandem bench scale` at the same N tells whether
the API server's latency there is its own or comes from what the lab adds. Admin credentials:
neither the Node authorizer nor the agent admission policy takes part.
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
from tandem_lab.controlplane import ControlPlane

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
        self.until = 0.0
        self.lock = threading.Lock()
        self.seen: dict[str, list[float]] = {"PUT lease": [], "APPLY status": []}
        self.errors: dict[str, int] = {"PUT lease": 0, "APPLY status": 0}

    def create(self) -> None:
        meta = kubernetes.client.V1ObjectMeta
        kubernetes.client.CoreV1Api(self.leases.api_client).create_namespace(
            kubernetes.client.V1Namespace(metadata=meta(name=NAMESPACE))
        )
        for doc in self.docs:
            plural = doc["kind"].lower() + "s"
            self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, doc)
        for cluster, pair in self.pairs.items():
            lease = kubernetes.client.V1Lease(
                metadata=meta(name=f"{cluster}-primary"), spec=kubernetes.client.V1LeaseSpec(holder_identity=pair[0])
            )
            self.leases.create_namespaced_lease(NAMESPACE, lease)

    def timed(self, kind: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`call(*args, **kwargs)`, its time kept under `kind`; None when the API refused it."""
        start = time.monotonic()
        try:
            return call(*args, **kwargs)
        except kubernetes.client.ApiException:
            with self.lock:
                self.errors[kind] += 1
            return None
        finally:
            with self.lock:
                self.seen[kind].append(time.monotonic() - start)

    def renew(self, cluster: str) -> None:
        name = f"{cluster}-primary"
        body = self.leases.read_namespaced_lease(name, NAMESPACE)
        while time.monotonic() < self.until:
            assert body.spec is not None
            body.spec.renew_time = dt.datetime.now(dt.UTC)
            sent = time.monotonic()
            renewed = self.timed(
                "PUT lease", self.leases.replace_namespaced_lease, name, NAMESPACE, body, _request_timeout=10
            )
            body = renewed or self.leases.read_namespaced_lease(name, NAMESPACE)
            time.sleep(max(0.0, RENEW_INTERVAL - (time.monotonic() - sent)))

    def apply(self, per_second: float) -> None:
        rng, epoch, clusters = random.Random(), 0, list(self.pairs)
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
                self.custom.patch_namespaced_custom_object_status,
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

    def run(self, applies: float, seconds: float) -> None:
        self.until = time.monotonic() + seconds
        threads = [threading.Thread(target=self.renew, args=(cluster,)) for cluster in self.pairs]
        if applies > 0:
            threads += [threading.Thread(target=self.apply, args=(applies / APPLIERS,)) for _ in range(APPLIERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


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
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)
    if not 1 <= args.leases <= scale.MAX_CLUSTERS or args.applies < 0 or args.seconds <= 0 or args.fork_loops < 0:
        p.error(f"--leases 1 to {scale.MAX_CLUSTERS}, --applies >= 0, --seconds > 0, --fork-loops >= 0")
    with lab_work_dir() as work:
        plane = ControlPlane(work / "plane")
        plane.start()
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
            forks = fork_loops(args.fork_loops)
            load.run(args.applies, args.seconds)
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
    results |= {"leases": args.leases, "applies_per_s": args.applies, "fork_loops": args.fork_loops}
    emit("controlplane", results, args.json_path)
    return 0 if all(row["errors"] == 0 for row in results.values() if isinstance(row, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
