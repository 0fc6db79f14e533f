"""Thin kopf handlers: read the world, ask the pure core, write one status patch, post Events.

- a timer (every 2 s) per HACluster re-aggregates, so Lease changes and agents' reports are
  noticed without watching them as owned resources; it writes only when the status changed,
  its own and its DRBDVolumes' and FloatingIPs' (from the nodes' reports);
- `spec.primary` changes (kopf remembers the last handled spec, also across restarts) become
  planned switchover requests;
- a watch on the Leases labelled `tandem.dev/cluster` only records each epoch's holder and last
  renewTime in memory, so failover durations are exact;
- deleting an HACluster waits (finalizer `tandem.dev/teardown`) for the agents to tear the chain
  down and release the Lease, then deletes the Lease.

Every path that reads and writes one HACluster holds that cluster's lock, so the timer and the
change handlers never decide on each other's half-written state.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf

from tandem.api.common import CLUSTER_LABEL, GROUP, LAST_HANDLED_KEY, VERSION
from tandem.kube.connect import load_client, load_configuration
from tandem.kube.lease import LeaseRecord, parse_lease
from tandem_operator import core, deletion
from tandem_operator.kube import Kube, parse_cluster
from tandem_operator.lease import (
    EpochRecord,
    lease_created_event,
    lease_manifest,
    lease_members,
    lease_name,
    remember,
)
from tandem_operator.messages import Event
from tandem_operator.metrics import METRICS
from tandem_operator.snapshot import PrimaryChange, Snapshot

log = logging.getLogger("tandem_operator")

INTERVAL = 2.0
FINALIZER = "tandem.dev/teardown"


@dataclass
class Runtime:
    kubeconfig: str | None = None
    teardown_timeout: float = 60.0
    kube: Kube | None = None
    locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    histories: dict[tuple[str, str], dict[int, EpochRecord]] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def api(self) -> Kube:
        if self.kube is None:
            self.kube = Kube(load_client(self.kubeconfig, retries=None, default_kubeconfig=True))
        return self.kube

    def lock(self, namespace: str, name: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault((namespace, name), threading.Lock())

    def remember(self, namespace: str, name: str, lease: LeaseRecord) -> dict[int, EpochRecord]:
        with self.guard:
            history = remember(self.histories.get((namespace, name), {}), lease)
            self.histories[(namespace, name)] = history
            return history

    def forget(self, namespace: str, name: str) -> None:
        with self.guard:
            self.histories.pop((namespace, name), None)
            self.locks.pop((namespace, name), None)


RUNTIME = Runtime()


def apply_settings(settings: kopf.OperatorSettings) -> None:
    """kopf settings: state in annotations under tandem.dev (the CRD status schema has no room
    for kopf's), our own finalizer name, and only the Events the core decides on."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="tandem.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key=LAST_HANDLED_KEY)
    settings.posting.enabled = True
    settings.posting.level = logging.CRITICAL  # kopf's own log lines are not posted as Events
    settings.posting.reporting_component = "tandem-operator"
    settings.posting.event_name_prefix = "tandem-"
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    apply_settings(settings)
    RUNTIME.api()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in with --kubeconfig when given, else in-cluster or the default kubeconfig."""
    if not RUNTIME.kubeconfig:
        return kopf.login_via_client(**kwargs)
    cfg = load_configuration(RUNTIME.kubeconfig)
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
        username=cfg.username or None, password=cfg.password or None, scheme=scheme, token=token,
        certificate_path=cfg.cert_file, private_key_path=cfg.key_file)


# --- one reconcile ----------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _post(body: dict[str, Any], events: tuple[Event, ...] | list[Event]) -> None:
    meta = body["metadata"]
    for event in events:
        kopf.event(cast(kopf.Body, body), type=event.type, reason=event.reason,
                   message=event.message)
        log.info("%s/%s %s %s: %s", meta.get("namespace"), meta["name"], event.type, event.reason,
                 event.message)


def _snapshot(kube: Kube, body: dict[str, Any], change: PrimaryChange | None = None) -> Snapshot:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    cluster = parse_cluster(body)
    deleting = bool(meta.get("deletionTimestamp"))
    lease = kube.get_lease(namespace, lease_name(name))
    if lease is None and not deleting:
        lease, created = kube.create_lease(lease_manifest(name, namespace, meta["uid"], cluster))
        if created:
            _post(body, [lease_created_event(name, cluster)])
    members = lease_members(cluster)
    if lease is not None and lease.members != members:
        # A Lease created before the operator stamped members, or spec.nodes changed: the
        # admission policy reads the member list from the Lease (docs/security.md).
        kube.stamp_lease_members(namespace, lease_name(name), members)
        lease = replace(lease, members=members)
    history = RUNTIME.remember(namespace, name, lease) if lease is not None else {}
    return Snapshot(
        name=name, namespace=namespace, generation=int(meta.get("generation") or 0),
        cluster=cluster, lease=lease, now=_now(),
        volumes=kube.volumes(namespace), floating_ips=kube.floating_ips(namespace),
        clusters=kube.clusters(namespace), nodes=kube.nodes(n.name for n in cluster.spec.nodes),
        deleting=deleting, history=history, primary_change=change,
        annotations=dict(meta.get("annotations") or {}),
    )


def _decide_and_write(kube: Kube, body: dict[str, Any], snap: Snapshot) -> core.Decision:
    decision = core.reconcile(snap)
    if decision.patch is not None:
        kube.apply_status(snap.namespace, snap.name, decision.patch)
        log.info("%s/%s status: %s", snap.namespace, snap.name, decision.reason)
    _post(body, decision.events)
    METRICS.observe(snap.namespace, snap.name, decision)
    for member in decision.members:
        try:
            kube.apply_member_status(snap.namespace, member)
        except Exception as exc:  # shown again by the next tick; never blocks the cluster's status
            log.warning("%s/%s: status of %s %s not written: %s", snap.namespace, snap.name,
                        member.plural, member.name, exc)
    return decision


def reconcile(namespace: str, name: str, change: PrimaryChange | None = None) -> core.Decision | None:
    kube = RUNTIME.api()
    with RUNTIME.lock(namespace, name):
        body = kube.get_cluster(namespace, name)
        if body is None:
            return None
        return _decide_and_write(kube, body, _snapshot(kube, body, change))


# --- handlers -----------------------------------------------------------------------------------


def namespaced(namespace: str | None) -> str:
    """HAClusters and Leases are namespaced: kopf passes None only for cluster-scoped kinds."""
    if namespace is None:
        raise kopf.PermanentError("a namespaced object came without a namespace")
    return namespace



@kopf.timer(GROUP, VERSION, "haclusters", id="reconcile", interval=INTERVAL, backoff=INTERVAL)
def tick(namespace: str | None, name: str, **_: Any) -> None:
    namespace = namespaced(namespace)
    try:
        reconcile(namespace, name)
    except Exception as exc:  # an API hiccup must not stretch the cadence to kopf's backoff
        METRICS.reconcile_failed()
        log.warning("%s/%s: reconcile failed, retrying in %.0f s: %s", namespace, name, INTERVAL,
                    str(exc).splitlines()[0] if str(exc) else repr(exc))


@kopf.on.field(GROUP, VERSION, "haclusters", field="spec.primary", id="primary", backoff=INTERVAL)
def primary_changed(namespace: str | None, name: str, old: Any, new: Any, **_: Any) -> None:
    decision = reconcile(namespaced(namespace), name, PrimaryChange(old=old, new=new))
    if decision is not None and decision.retry:
        raise kopf.TemporaryError(decision.retry, delay=INTERVAL)


@kopf.on.event("coordination.k8s.io", "v1", "leases", id="lease",
               labels={CLUSTER_LABEL: kopf.PRESENT})
def lease_seen(body: Any, namespace: str | None, labels: Any, type: str, **_: Any) -> None:
    """Record every renewal; reconcile at once when the holder or the epoch changed (a
    failover, hand-over or release), instead of waiting for the next tick."""
    namespace = namespaced(namespace)
    if type == "DELETED" or not body.get("spec"):
        return
    name = labels[CLUSTER_LABEL]
    lease = parse_lease(dict(body))
    with RUNTIME.guard:
        before = RUNTIME.histories.get((namespace, name), {})
        latest = before.get(max(before)) if before else None
        moved = latest is None or max(before) != lease.epoch or latest.holder != lease.holder or (
            lease.holder is None and not latest.released)
    RUNTIME.remember(namespace, name, lease)
    if moved and latest is not None:
        try:
            reconcile(namespace, name)
        except Exception as exc:  # the timer retries in a moment
            METRICS.reconcile_failed()
            log.warning("%s/%s: reconcile after a Lease change failed: %s", namespace, name, exc)


@kopf.on.delete(GROUP, VERSION, "haclusters", id="teardown", backoff=INTERVAL)
def teardown(namespace: str | None, name: str, meta: Any, **_: Any) -> None:
    namespace = namespaced(namespace)
    kube = RUNTIME.api()
    with RUNTIME.lock(namespace, name):
        body = kube.get_cluster(namespace, name)
        if body is None:
            return
        snap = _snapshot(kube, body)
        _decide_and_write(kube, body, snap)
        stamp = str(meta.get("deletionTimestamp") or "")
        deleted_at = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else snap.now
        verdict = deletion.teardown(snap, deleted_at, timedelta(seconds=RUNTIME.teardown_timeout))
        if not verdict.done:
            raise kopf.TemporaryError(verdict.message, delay=INTERVAL)
        if verdict.delete_lease:
            kube.delete_lease(namespace, lease_name(name))
        _post(body, verdict.events)
    RUNTIME.forget(namespace, name)
    METRICS.forget(namespace, name)
