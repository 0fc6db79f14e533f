"""The operator against the real API server (etcd + kube-apiserver from tests/conftest.py).

The operator runs as a subprocess (`python -m tandem_operator --kubeconfig ...`), exactly as
deployed. The agents are simulated the way the contract says they act: each writes only its
own `status.nodes` entry by server-side apply under field manager `tandem-agent-<node>`, and
takes, renews, hands over or releases the Lease with updates guarded by resourceVersion.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tandem.kube.lease import parse_lease
from tandem_lab.controlplane import ControlPlane
from tests.conftest import Kubectl

pytestmark = pytest.mark.apiserver

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "tandem-operator-test"
GROUP, VERSION = "tandem.dev", "v1alpha1"
T = TypeVar("T")


# --- the operator process -----------------------------------------------------------------------


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "operator"), str(REPO), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tandem_operator",
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--namespace",
                    NAMESPACE,
                    "--teardown-timeout",
                    "30",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env=env,
                start_new_session=True,
            )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def api(crds_installed: Kubectl) -> Kubectl:
    if crds_installed.run(["get", "namespace", NAMESPACE], check=False).returncode != 0:
        crds_installed.run(["create", "namespace", NAMESPACE])
    return crds_installed


@pytest.fixture(scope="module")
def k8s(control_plane: ControlPlane) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(control_plane.kubeconfig))


@pytest.fixture(scope="module")
def operator(
    api: Kubectl, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(control_plane.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
    assert not proc.running()


# --- helpers --------------------------------------------------------------------------------------


def eventually(fn: Callable[[], T | None], what: str, timeout: float = 20.0, op: OperatorProcess | None = None) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (ApiException, KeyError, StopIteration, TypeError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.3)
    tail = ("\noperator log:\n" + op.log()[-3000:]) if op else ""
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}{tail}")


def now() -> datetime:
    return datetime.now(UTC)


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class World:
    """One HACluster with its volume and FloatingIP, and its simulated agents."""

    def __init__(self, api: Kubectl, k8s: client.ApiClient, op: OperatorProcess, name: str, *, address: str) -> None:
        self.api, self.op, self.name = api, op, name
        self.nodes = (f"{name}1", f"{name}2")
        self.custom = client.CustomObjectsApi(k8s)
        self.leases = client.CoordinationV1Api(k8s)
        self.core = client.CoreV1Api(k8s)
        docs = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "DRBDVolume",
                "metadata": {"name": f"{name}-data", "namespace": NAMESPACE},
                "spec": {
                    "cluster": name,
                    "resourceName": f"{name}-data",
                    "minor": 0,
                    "quorum": {"mode": "off"},
                    "nodes": [
                        {"name": n, "disk": "/dev/vg0/data", "address": f"198.19.0.{i + 1}", "nodeId": i}
                        for i, n in enumerate(self.nodes)
                    ],
                },
            },
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "FloatingIP",
                "metadata": {"name": f"{name}-vip", "namespace": NAMESPACE},
                "spec": {"cluster": name, "addresses": [{"start": address}], "prefixLength": 24, "interface": "mgmt"},
            },
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "HACluster",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "nodes": [{"name": n} for n in self.nodes],
                    "primary": self.nodes[0],
                    "chain": {"volumes": [f"{name}-data"], "floatingIPs": [f"{name}-vip"], "postgres": {}},
                    "failover": {"maxLagSeconds": 5},
                },
            },
        ]
        api.run(["apply", "-f", "-"], stdin=yaml.safe_dump_all(docs))

    # reading
    def get(self) -> dict[str, Any]:
        body: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "haclusters", self.name
        )
        return body

    def status(self) -> dict[str, Any]:
        return self.get().get("status") or {}

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status().get("conditions", []) if c["type"] == type_)

    def ready(self) -> tuple[str, str]:
        c = self.condition("Ready")
        return c["status"], c["reason"]

    def wait_ready(self, status: str, reason: str, timeout: float = 20.0) -> dict[str, Any]:
        eventually(lambda: self.ready() == (status, reason), f"{self.name} Ready={status} {reason}", timeout, self.op)
        return self.condition("Ready")

    def row(self) -> list[str]:
        table = self.api.run(["get", "hac", self.name, "-n", NAMESPACE]).stdout.splitlines()
        assert table[0].split()[:8] == ["NAME", "PRIMARY", "READY", "STATUS", "EPOCH", "DESIRED", "PREFERRED", "AGE"]
        return table[1].split()

    def events(self) -> list[dict[str, Any]]:
        """core/v1 Events about this HACluster (what `kubectl describe` and `get events` show)."""
        items = self.core.list_namespaced_event(
            NAMESPACE, field_selector=f"involvedObject.name={self.name},involvedObject.kind=HACluster"
        ).items
        return [{"type": e.type, "reason": e.reason, "message": e.message} for e in items]

    def wait_event(self, reason: str, contains: str = "", timeout: float = 20.0) -> dict[str, Any]:
        return eventually(
            lambda: next((e for e in self.events() if e["reason"] == reason and contains in e["message"]), None),
            f"Event {reason} {contains!r} on {self.name}",
            timeout,
            self.op,
        )

    def lease(self) -> client.V1Lease:
        return self.leases.read_namespaced_lease(f"{self.name}-primary", NAMESPACE)

    # acting as the agents
    def report(self, node: str, role: str, epoch: int, lag: int = 0, eligible: bool = True) -> None:
        entry: dict[str, Any] = {
            "name": node,
            "role": role,
            "epoch": epoch,
            "heartbeatTime": stamp(now()),
            "eligible": eligible,
            **({} if eligible else {"ineligibleReason": "LagTooHigh", "ineligibleMessage": "behind"}),
            "drbd": [
                {
                    "name": f"{self.name}-data",
                    "diskState": "UpToDate",
                    "connectionState": "Connected",
                    "role": "Primary" if role == "Primary" else "Secondary",
                    "peerDiskState": "UpToDate",
                    "replicationState": "Established",
                }
            ],
            "postgres": {
                "role": "Primary" if role == "Primary" else "Standby",
                **({} if role == "Primary" else {"lagSeconds": lag}),
            },
        }
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "HACluster",
            "metadata": {"name": self.name, "namespace": NAMESPACE},
            "status": {"nodes": [entry]},
        }
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            NAMESPACE,
            "haclusters",
            self.name,
            body,
            field_manager=f"tandem-agent-{node}",
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    def write_lease(
        self, holder: str | None, bump: bool, acquired: datetime | None = None, renewed: datetime | None = None
    ) -> int:
        lease = self.lease()
        spec = lease.spec
        spec.holder_identity = holder
        if bump:
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
            spec.acquire_time = acquired or now()
        spec.renew_time = renewed or acquired or now()
        updated = self.leases.replace_namespaced_lease(f"{self.name}-primary", NAMESPACE, lease)
        return parse_lease(updated).epoch

    def healthy(self, holder: int = 0) -> int:
        """The first node takes the Lease and both report a healthy pair."""
        primary, standby = self.nodes[holder], self.nodes[1 - holder]
        epoch = self.write_lease(primary, bump=True)
        self.report(primary, "Primary", epoch)
        self.report(standby, "Standby", epoch)
        self.wait_ready("True", "Replicating")
        return epoch


def world(api: Kubectl, k8s: client.ApiClient, op: OperatorProcess, name: str, address: str) -> World:
    w = World(api, k8s, op, name, address=address)
    eventually(w.lease, f"Lease {name}-primary", 20, op)
    return w


def patch_spec(w: World, spec: dict[str, Any]) -> None:
    w.api.run(["patch", "hac", w.name, "-n", NAMESPACE, "--type=merge", "-p", json.dumps({"spec": spec})])


# --- tests ----------------------------------------------------------------------------------------


def test_lease_is_created_without_a_holder_and_status_is_pending(
    api: Kubectl, k8s: client.ApiClient, operator: OperatorProcess
) -> None:
    w = world(api, k8s, operator, "alpha", "198.18.0.10")
    lease = w.lease()
    assert lease.metadata.labels == {"tandem.dev/cluster": "alpha"}
    owner = lease.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("HACluster", "alpha", w.get()["metadata"]["uid"])
    record = parse_lease(lease)
    assert record.holder is None and record.epoch == 0 and record.duration_seconds == 3
    # The member list the admission policy reads (docs/security.md), kept current: a Lease
    # without it (made before the operator stamped it) or with a stale one gets it back.
    assert lease.metadata.annotations == {"tandem.dev/members": "alpha1,alpha2"}
    api.run(
        ["annotate", "lease", "alpha-primary", "-n", NAMESPACE, "--overwrite", "tandem.dev/members=alpha1,intruder"]
    )
    eventually(lambda: parse_lease(w.lease()).members == "alpha1,alpha2", "the member list stamped again", op=operator)
    ready = w.wait_ready("False", "Pending")
    assert "alpha1" in ready["message"], "the preferred initial holder is named"
    assert w.status()["epoch"] == 0 and "switchover" not in w.status()
    w.wait_event("LeaseCreated")
    assert "tandem.dev/teardown" in w.get()["metadata"]["finalizers"]


def test_healthy_pair_shows_in_columns_and_the_steady_state_writes_nothing(
    api: Kubectl, k8s: client.ApiClient, operator: OperatorProcess
) -> None:
    w = world(api, k8s, operator, "bravo", "198.18.0.11")
    epoch = w.healthy()
    assert w.row()[:5] == ["bravo", "bravo1", "True", "Replicating", str(epoch)]
    for type_, expected in (
        ("Replicating", ("True", "InSync")),
        ("Degraded", ("False", "Healthy")),
        ("SplitBrain", ("False", "NotDetected")),
        ("SwitchoverInProgress", ("False", "NoSwitchover")),
    ):
        c = w.condition(type_)
        assert (c["status"], c["reason"]) == expected, c
        assert c["observedGeneration"] == w.get()["metadata"]["generation"]
    w.wait_event("PrimaryElected", "bravo1 took the Lease at epoch 1")
    w.wait_event("Replicating")

    before = w.get()["metadata"]["resourceVersion"]
    time.sleep(5)  # two and a half reconcile periods
    assert w.get()["metadata"]["resourceVersion"] == before, "the operator wrote in the steady state"

    managed = api.json(["get", "hac", "bravo", "-n", NAMESPACE, "--show-managed-fields"])
    fields = {m["manager"]: m for m in managed["metadata"]["managedFields"] if m.get("subresource") == "status"}
    ours = json.dumps(fields["tandem-operator"]["fieldsV1"])
    assert fields["tandem-operator"]["operation"] == "Apply"
    assert all(f"f:{k}" in ours for k in ("primary", "epoch", "conditions", "observedGeneration"))
    assert "f:nodes" not in ours, "the operator must not own the agents' entries"
    assert 'k:{\\"name\\":\\"bravo1\\"}' in json.dumps(fields["tandem-agent-bravo1"]["fieldsV1"])


READ_VERBS = ("GET", "LIST")
WATCHED = ("haclusters", "drbdvolumes", "floatingips", "leases", "nodes")
REQUEST_TOTAL = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)


def api_reads(api: Kubectl) -> dict[str, float]:
    """GET and LIST requests the API server has answered so far, by resource, for the kinds the
    operator reads (its `apiserver_request_total`; subresources such as status excluded)."""
    out = dict.fromkeys(WATCHED, 0.0)
    for match in REQUEST_TOTAL.finditer(api.run(["get", "--raw", "/metrics"]).stdout):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("verb") in READ_VERBS and labels.get("resource") in WATCHED and not labels.get("subresource"):
            out[labels["resource"]] += float(match["value"])
    return out


def test_steady_state_reads_nothing_from_the_api_server(
    api: Kubectl, k8s: client.ApiClient, operator: OperatorProcess
) -> None:
    """The operator decides from its watch-fed cache: with every cluster healthy and the test
    itself quiet, it makes no GET or LIST of the kinds it reads (issue 16: <= 0.2 reads per
    second per cluster for agents and operator together; the operator's share is 0)."""
    w = world(api, k8s, operator, "hotel", "198.18.0.50")
    w.healthy()
    clusters = len(w.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "haclusters")["items"])
    time.sleep(3)  # the Events and writes of becoming Replicating are over
    before, started = api_reads(api), time.monotonic()
    time.sleep(10)  # five reconcile periods of every cluster
    after, seconds = api_reads(api), time.monotonic() - started
    reads = {r: after[r] - before[r] for r in WATCHED}
    per_cluster = sum(reads.values()) / clusters / seconds
    print(f"operator reads: {per_cluster:.3f}/s per cluster ({clusters} clusters, {seconds:.1f} s): {reads}")
    assert per_cluster < 0.2, (per_cluster, reads)


def test_lagging_target_is_refused_then_retried_once_it_caught_up(
    api: Kubectl, k8s: client.ApiClient, operator: OperatorProcess
) -> None:
    w = world(api, k8s, operator, "charlie", "198.18.0.12")
    one, two = w.nodes
    epoch = w.healthy()
    w.report(two, "Standby", epoch, lag=7)
    degraded = w.wait_ready("True", "Degraded")
    assert "maxLagSeconds (5 s)" in degraded["message"]
    assert w.condition("Degraded")["reason"] == "StandbyLagging"

    patch_spec(w, {"primary": two})
    sw = eventually(
        lambda: (w.status().get("switchover") or {}).get("phase") == "Refused" and w.status()["switchover"],
        "switchover refused",
        op=operator,
    )
    assert (sw["target"], sw["reason"]) == (two, "TargetLagging") and "lag is 7 s" in sw["message"]
    refused = w.wait_event("SwitchoverRefused", "lag is 7 s")
    assert refused["type"] == "Warning"
    assert parse_lease(w.lease()).holder == one, "a refused switchover leaves the Lease alone"

    assert w.condition("PreferredPrimary")["reason"] == "SwitchoverRetrying"

    # the standby catches up: the refused move is retried by itself, no second edit needed
    w.report(two, "Standby", epoch, lag=0)
    w.wait_ready("False", "SwitchingOver")
    sw = w.status()["switchover"]
    assert (sw["target"], sw["fromEpoch"], sw["phase"], sw["reason"]) == (two, epoch, "Pending", "Requested")
    assert w.condition("SwitchoverInProgress")["status"] == "True"
    w.wait_event("SwitchoverRequested", f"from {one} to {two}")

    # the holder demotes fully, then hands the Lease over; the target promotes
    w.report(one, "Standby", epoch)
    new_epoch = w.write_lease(two, bump=True)
    w.wait_event("LeaseHandedOver", f"{one} handed the Lease to {two}")
    assert w.status()["switchover"]["phase"] == "Pending", "complete only when the target is Primary"
    w.report(two, "Primary", new_epoch)
    w.report(one, "Standby", new_epoch)
    w.wait_ready("True", "Replicating")
    status = w.status()
    assert status["switchover"]["phase"] == "Completed"
    rec = status["lastFailover"]
    assert (rec["from"], rec["to"], rec["planned"], rec["reason"]) == (one, two, True, "Requested")
    assert rec["durationMs"] >= 0
    w.wait_event("SwitchoverCompleted", f"from {one} to {two} completed")
    assert w.row()[:5] == ["charlie", two, "True", "Replicating", str(new_epoch)]
    assert not [e for e in w.events() if e["reason"] == "FailedOver"]


def test_unplanned_failover_is_recorded_and_caught_up_after_an_operator_restart(
    api: Kubectl, k8s: client.ApiClient, operator: OperatorProcess
) -> None:
    w = world(api, k8s, operator, "delta", "198.18.0.13")
    one, two = w.nodes
    w.healthy()
    renewed = now().replace(microsecond=123456)  # MicroTime: the client drops a zero fraction
    w.write_lease(one, bump=False, renewed=renewed)
    time.sleep(2.5)  # the Lease watch sees the renewal at once; the 2 s tick reads it too
    epoch = w.write_lease(two, bump=True, acquired=renewed + timedelta(milliseconds=4200))
    w.report(two, "Primary", epoch)
    rec = eventually(
        lambda: (w.status().get("lastFailover") or {}).get("to") == two and w.status()["lastFailover"],
        "failover record",
        op=operator,
    )
    assert (rec["from"], rec["to"], rec["reason"], rec["planned"], rec["durationMs"]) == (
        one,
        two,
        "LeaseExpired",
        False,
        4200,
    )
    event = w.wait_event("FailedOver", f"failed over from {one} to {two}")
    assert event["message"] == f"failed over from {one} to {two}: lease expired; 4.2 s"
    assert event["type"] == "Warning"
    assert w.row()[1] == two and w.row()[4] == str(epoch)
    listed = api.run(["get", "events", "-n", NAMESPACE, "--field-selector=involvedObject.name=delta"]).stdout
    assert "FailedOver" in listed and "lease expired; 4.2 s" in listed

    # failover works while the operator is down; it catches up, once, when it returns
    operator.stop()
    back = w.write_lease(one, bump=True)
    w.report(one, "Primary", back)
    operator.start()
    rec = eventually(
        lambda: (w.status().get("lastFailover") or {}).get("to") == one and w.status()["lastFailover"],
        "catch-up failover record",
        30,
        operator,
    )
    assert (rec["from"], rec["planned"], rec["reason"]) == (two, False, "LeaseExpired")
    w.wait_event("FailedOver", f"failed over from {two} to {one}")
    time.sleep(3)  # a tick and a half more
    said = [e for e in w.events() if e["reason"] == "FailedOver" and f"from {two} to {one}" in e["message"]]
    assert len(said) == 1, said
    assert w.status()["epoch"] == back


def test_address_in_two_floating_ips_and_a_volume_without_a_disk_are_refused(
    api: Kubectl, k8s: client.ApiClient, operator: OperatorProcess
) -> None:
    w = world(api, k8s, operator, "echo", "198.18.0.20")
    w.wait_ready("False", "Pending")
    api.run(
        ["apply", "-f", "-"],
        stdin=yaml.safe_dump_all(
            [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "FloatingIP",
                    "metadata": {"name": "echo-clash", "namespace": NAMESPACE},
                    "spec": {
                        "cluster": "elsewhere",
                        "addresses": [{"start": "198.18.0.15", "end": "198.18.0.25"}],
                        "prefixLength": 24,
                        "interface": "mgmt",
                    },
                },
            ]
        ),
    )
    ready = w.wait_ready("False", "InvalidSpec")
    assert "198.18.0.20 is in FloatingIP echo-clash and FloatingIP echo-vip" in ready["message"]
    warning = w.wait_event("InvalidSpec", "echo-clash")
    assert warning["type"] == "Warning"

    api.run(
        [
            "patch",
            "drbdvolume",
            "echo-data",
            "-n",
            NAMESPACE,
            "--type=json",
            "-p",
            json.dumps([{"op": "replace", "path": "/spec/nodes/1/name", "value": "someone-else"}]),
        ]
    )
    eventually(
        lambda: "DRBDVolume echo-data has no disk for node echo2" in w.condition("Ready")["message"],
        "missing-disk message",
        op=operator,
    )
    w.wait_event("InvalidSpec", "no disk for node echo2")

    api.run(["delete", "fip", "echo-clash", "-n", NAMESPACE])
    api.run(
        [
            "patch",
            "drbdvolume",
            "echo-data",
            "-n",
            NAMESPACE,
            "--type=json",
            "-p",
            json.dumps([{"op": "replace", "path": "/spec/nodes/1/name", "value": "echo2"}]),
        ]
    )
    w.wait_ready("False", "Pending")


def test_cordoned_primary_moves_away_by_a_planned_switchover(
    api: Kubectl, k8s: client.ApiClient, operator: OperatorProcess
) -> None:
    w = world(api, k8s, operator, "foxtrot", "198.18.0.30")
    one, two = w.nodes
    api.run(
        ["apply", "-f", "-"],
        stdin=yaml.safe_dump_all([{"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}} for n in w.nodes]),
    )
    try:
        w.healthy()
        api.run(["cordon", one])
        w.wait_ready("False", "SwitchingOver")
        sw = w.status()["switchover"]
        assert (sw["target"], sw["phase"], sw["reason"]) == (two, "Pending", "NodeMaintenance")
        assert w.condition("SwitchoverInProgress")["reason"] == "NodeMaintenance"
        w.wait_event("SwitchoverRequested", "the primary's Node is in maintenance")
    finally:
        api.run(["delete", "node", *w.nodes, "--ignore-not-found"])


def test_deletion_waits_for_the_chain_to_go_down_then_releases_the_lease(
    api: Kubectl, k8s: client.ApiClient, operator: OperatorProcess
) -> None:
    w = world(api, k8s, operator, "golf", "198.18.0.40")
    one, _ = w.nodes
    epoch = w.healthy()
    stop = threading.Event()

    def renew() -> None:  # the holder's agent keeps renewing while it tears down
        while not stop.wait(0.5):
            with contextlib.suppress(ApiException):
                w.write_lease(one, bump=False)

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        api.run(["delete", "hac", "golf", "-n", NAMESPACE, "--wait=false"])
        w.wait_ready("False", "Deleting")
        time.sleep(3)
        assert w.get()["metadata"].get("deletionTimestamp"), "still there: the finalizer holds it"
        assert parse_lease(w.lease()).holder == one, "the operator does not take a held Lease"
    finally:
        stop.set()
        renewer.join(timeout=5)
    # the agent tears the chain down and releases the Lease, as deletionTimestamp asks
    w.report(one, "Standby", epoch)
    w.write_lease(None, bump=False)

    def gone() -> bool:
        try:
            w.get()
        except ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone, "the HACluster to be deleted", 20, operator)
    with pytest.raises(ApiException) as missing:
        w.lease()
    assert missing.value.status == 404
    w.wait_event("TornDown", "Lease golf-primary deleted")


def test_operator_log_is_concise_and_clean(operator: OperatorProcess) -> None:
    log = operator.log()
    assert "Traceback" not in log, log[-4000:]
    assert " ERROR " not in log, log[-4000:]
    assert "waiting: waiting for golf1 to tear the chain down" in log
    assert "succeeded" not in log, "kopf's per-tick chatter should be off"
    assert "failed over from delta1 to delta2" in log
