"""Thin kopf handlers: look at the cached world, ask the pure core, write one status patch, post Events.

- kopf indexes (`tandem_clusters`, `tandem_volumes`, `tandem_floating_ips`, `tandem_leases`,
  `tandem_nodes`) keep the HAClusters, DRBDVolumes, FloatingIPs, the Leases labelled
  `tandem.dev/cluster` and the Nodes as kopf's watches deliver them (cache.py); a reconcile
  reads them, not the API server, so the steady state sends no request at all;
- a timer (every 2 s) per HACluster re-aggregates from that cache, so Lease renewals and agents'
  reports are acted on within 2 s; it writes only when the status changed, its own and its
  DRBDVolumes' and FloatingIPs' (from the nodes' reports), and its next decision waits until
  the watches have shown those writes;
- `spec.primary` changes (kopf remembers the last handled spec, also across restarts) become
  planned switchover requests;
- a handler on the Leases' watch events records each epoch's holder and last renewTime in
  memory, so failover durations are exact, and reconciles at once when the holder moves;
- a change of spec.primary, a new tandem.dev/switchover or force-failover request, and the
  teardown GET the HACluster and its Lease instead of trusting the cache (docs/operator.md,
  "Watches and stale data");
- deleting an HACluster waits (finalizer `tandem.dev/teardown`) for the agents to tear the chain
  down and release the Lease, then deletes the Lease.

Every path that reads and writes one HACluster holds that cluster's lock, so the timer and the
change handlers never decide on each other's half-written state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import kopf

from tandem.api.common import CLUSTER_LABEL, GROUP, LAST_HANDLED_KEY, VERSION
from tandem.api.drbdvolume import DRBDVolume
from tandem.api.floatingip import FloatingIP
from tandem.api.hacluster import HACluster
from tandem.kube.connect import load_client, load_configuration
from tandem.kube.lease import LeaseRecord, parse_lease
from tandem.kube.watch import resource_version
from tandem_operator import core, deletion
from tandem_operator.cache import (
    Behind,
    Cache,
    Catchup,
    ClusterEntry,
    ClusterKey,
    Entry,
    ObjectKey,
    fresh_read_needed,
    slim,
)
from tandem_operator.kube import Kube, parse_cluster, parse_member, parse_node
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
from tandem_operator.snapshot import NodeInfo, PrimaryChange, Snapshot

log = logging.getLogger("tandem_operator")
T = TypeVar("T")

INTERVAL = 2.0
FINALIZER = "tandem.dev/teardown"


@dataclass
class Runtime:
    kubeconfig: str | None = None
    teardown_timeout: float = 60.0
    kube: Kube | None = None
    cache: Cache | None = None  # set by `startup`, from kopf's indexes
    catchup: Catchup = field(default_factory=Catchup)
    locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    histories: dict[tuple[str, str], dict[int, EpochRecord]] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def api(self) -> Kube:
        if self.kube is None:
            self.kube = Kube(load_client(self.kubeconfig, retries=None, default_kubeconfig=True))
        return self.kube

    def view(self) -> Cache:
        if self.cache is None:
            raise RuntimeError("the cache is set up by the startup handler")
        return self.cache

    def seen(self, plural: str, body: Mapping[str, Any], value: T) -> Entry[T]:
        """An index function's entry for `body`; tells `catchup` the version has arrived."""
        meta = body["metadata"]
        entry = Entry(meta["name"], resource_version(body), value)
        self.catchup.seen((plural, meta.get("namespace") or "", entry.name), entry.version)
        return entry

    def wrote(self, cluster: ClusterKey, key: ObjectKey, version: str) -> None:
        """The cluster's decision wrote `key`: its next one waits for the watch to show it."""
        self.catchup.wrote(cluster, key, version, self.view().version(key))

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
        self.catchup.forget((namespace, name))


RUNTIME = Runtime()


def apply_settings(settings: kopf.OperatorSettings) -> None:
    """kopf settings: state in annotations under tandem.dev (the CRD status schema has no room
    for kopf's), our own finalizer name, and only the Events the core decides on."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="tandem.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key=LAST_HANDLED_KEY)
    settings.posting.enabled = True
    settings.posting.level = logging.CRITICAL  # kopf's own log lines are not posted as Events
    settings.posting.reporting_component = "tandem-operator"
    settings.posting.event_name_prefix = "tandem-"
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    """kopf passes its indexes (below) as kwargs named after them; they are live read-only
    views, kept here for every later handler (kopf fills them before it runs any resource
    handler: docs.kopf.dev, "In-memory indexing", Guarantees)."""
    apply_settings(settings)
    RUNTIME.cache = Cache(
        kwargs["tandem_clusters"],
        kwargs["tandem_volumes"],
        kwargs["tandem_floating_ips"],
        kwargs["tandem_leases"],
        kwargs["tandem_nodes"],
    )
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
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


# --- one reconcile ----------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _post(body: dict[str, Any], events: tuple[Event, ...] | list[Event]) -> None:
    meta = body["metadata"]
    for event in events:
        kopf.event(cast(kopf.Body, body), type=event.type, reason=event.reason, message=event.message)
        log.info("%s/%s %s %s: %s", meta.get("namespace"), meta["name"], event.type, event.reason, event.message)


@dataclass(frozen=True)
class Read:
    """An HACluster as read (its body for the metadata and kopf.event) and its Lease."""

    body: dict[str, Any]
    cluster: HACluster
    lease: LeaseRecord | None


def _read(kube: Kube, namespace: str, name: str, *, fresh: bool = False) -> Read | None:
    """The HACluster and its Lease: from the API server when `fresh` or when the cache shows a
    request that must not be acted on twice (cache.fresh_read_needed), else from the cache,
    which raises Behind while the watches have not shown the cluster's last writes."""
    if not fresh:
        waiting = RUNTIME.catchup.pending((namespace, name))
        if waiting:
            raise Behind(
                "waiting for the watches to show the operator's write of "
                + ", ".join(f"{plural} {obj}" for plural, _, obj in waiting)
            )
        cache = RUNTIME.view()
        entry = cache.cluster(namespace, name)
        if entry is None:
            return None
        why = fresh_read_needed(entry.value.body, entry.value.cluster)
        if why is None:
            return Read(entry.value.body, entry.value.cluster, cache.lease(namespace, lease_name(name)))
        log.debug("%s/%s: %s not handled yet: reading the HACluster and its Lease", namespace, name, why)
    body = kube.get_cluster(namespace, name)
    if body is None:
        return None
    return Read(body, parse_cluster(body), kube.get_lease(namespace, lease_name(name)))


def _snapshot(kube: Kube, read: Read, change: PrimaryChange | None = None) -> Snapshot:
    body, cluster, lease = read.body, read.cluster, read.lease
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    key = (namespace, name)
    deleting = bool(meta.get("deletionTimestamp"))
    if lease is None and not deleting:
        lease, created = kube.create_lease(lease_manifest(name, namespace, meta["uid"], cluster))
        RUNTIME.wrote(key, ("leases", namespace, lease_name(name)), lease.resource_version)
        if created:
            _post(body, [lease_created_event(name, cluster)])
    members = lease_members(cluster)
    if lease is not None and lease.members != members:
        # A Lease created before the operator stamped members, or spec.nodes changed: the
        # admission policy reads the member list from the Lease (docs/security.md).
        lease = kube.stamp_lease_members(namespace, lease_name(name), members)
        RUNTIME.wrote(key, ("leases", namespace, lease_name(name)), lease.resource_version)
    history = RUNTIME.remember(namespace, name, lease) if lease is not None else {}
    cache = RUNTIME.view()
    return Snapshot(
        name=name,
        namespace=namespace,
        generation=int(meta.get("generation") or 0),
        cluster=cluster,
        lease=lease,
        now=_now(),
        volumes=cache.volumes(namespace),
        floating_ips=cache.floating_ips(namespace),
        clusters=cache.clusters(namespace),
        nodes=cache.nodes(n.name for n in cluster.spec.nodes),
        deleting=deleting,
        history=history,
        primary_change=change,
        annotations=dict(meta.get("annotations") or {}),
    )


def _decide_and_write(kube: Kube, body: dict[str, Any], snap: Snapshot) -> core.Decision:
    decision = core.reconcile(snap)
    key = (snap.namespace, snap.name)
    if decision.patch is not None:
        version = kube.apply_status(snap.namespace, snap.name, decision.patch)
        RUNTIME.wrote(key, ("haclusters", snap.namespace, snap.name), version)
        log.info("%s/%s status: %s", snap.namespace, snap.name, decision.reason)
    _post(body, decision.events)
    METRICS.observe(snap.namespace, snap.name, decision)
    for member in decision.members:
        try:
            version = kube.apply_member_status(snap.namespace, member)
        except Exception as exc:  # shown again by the next tick; never blocks the cluster's status
            log.warning(
                "%s/%s: status of %s %s not written: %s", snap.namespace, snap.name, member.plural, member.name, exc
            )
        else:
            RUNTIME.wrote(key, (member.plural, snap.namespace, member.name), version)
    return decision


def reconcile(namespace: str, name: str, change: PrimaryChange | None = None) -> core.Decision | None:
    """One decision (None: the HACluster is gone): from the cache, Behind while the watches
    have not shown the cluster's last writes; a change of spec.primary, a one-off edge, from
    a fresh read."""
    kube = RUNTIME.api()
    with RUNTIME.lock(namespace, name):
        read = _read(kube, namespace, name, fresh=change is not None)
        if read is None:
            return None
        return _decide_and_write(kube, read.body, _snapshot(kube, read, change))


# --- handlers -----------------------------------------------------------------------------------


def namespaced(namespace: str | None) -> str:
    """HAClusters and Leases are namespaced: kopf passes None only for cluster-scoped kinds."""
    if namespace is None:
        raise kopf.PermanentError("a namespaced object came without a namespace")
    return namespace


# The indexes: each object as the watch delivered it, parsed once (kube.py), by namespace (by
# (namespace, name) for the Leases, by name for the Nodes). An object that does not parse is
# left out, as the reads before the cache left it out.


@kopf.index(GROUP, VERSION, "haclusters")
def tandem_clusters(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, Entry[ClusterEntry]]:
    return {namespaced(namespace): RUNTIME.seen("haclusters", body, ClusterEntry(slim(body), parse_cluster(body)))}


@kopf.index(GROUP, VERSION, "drbdvolumes")
def tandem_volumes(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, Entry[DRBDVolume]]:
    entry = RUNTIME.seen("drbdvolumes", body, parse_member(body, DRBDVolume))
    return {} if entry.value is None else {namespaced(namespace): cast(Entry[DRBDVolume], entry)}


@kopf.index(GROUP, VERSION, "floatingips")
def tandem_floating_ips(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, Entry[FloatingIP]]:
    entry = RUNTIME.seen("floatingips", body, parse_member(body, FloatingIP))
    return {} if entry.value is None else {namespaced(namespace): cast(Entry[FloatingIP], entry)}


@kopf.index("coordination.k8s.io", "v1", "leases", labels={CLUSTER_LABEL: kopf.PRESENT})
def tandem_leases(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[tuple[str, str], Entry[LeaseRecord]]:
    return {(namespaced(namespace), name): RUNTIME.seen("leases", body, parse_lease(dict(body)))}


@kopf.index("", "v1", "nodes")
def tandem_nodes(body: kopf.Body, name: str, **_: Any) -> dict[str, Entry[NodeInfo]]:
    return {name: RUNTIME.seen("nodes", body, parse_node(body))}


@kopf.timer(GROUP, VERSION, "haclusters", id="reconcile", interval=INTERVAL, backoff=INTERVAL)
def tick(namespace: str | None, name: str, **_: Any) -> None:
    namespace = namespaced(namespace)
    try:
        reconcile(namespace, name)
    except Behind as wait:  # the next tick decides, on a view that includes those writes
        log.debug("%s/%s: %s", namespace, name, wait)
    except Exception as exc:  # an API hiccup must not stretch the cadence to kopf's backoff
        METRICS.reconcile_failed()
        log.warning(
            "%s/%s: reconcile failed, retrying in %.0f s: %s",
            namespace,
            name,
            INTERVAL,
            str(exc).splitlines()[0] if str(exc) else repr(exc),
        )


@kopf.on.field(GROUP, VERSION, "haclusters", field="spec.primary", id="primary", backoff=INTERVAL)
def primary_changed(namespace: str | None, name: str, old: Any, new: Any, **_: Any) -> None:
    decision = reconcile(namespaced(namespace), name, PrimaryChange(old=old, new=new))
    if decision is not None and decision.retry:
        raise kopf.TemporaryError(decision.retry, delay=INTERVAL)


@kopf.on.event("coordination.k8s.io", "v1", "leases", id="lease", labels={CLUSTER_LABEL: kopf.PRESENT})
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
        moved = (
            latest is None
            or max(before) != lease.epoch
            or latest.holder != lease.holder
            or (lease.holder is None and not latest.released)
        )
    RUNTIME.remember(namespace, name, lease)
    if moved and latest is not None:
        try:
            reconcile(namespace, name)
        except Behind:  # the timer decides in a moment
            pass
        except Exception as exc:  # the timer retries in a moment
            METRICS.reconcile_failed()
            log.warning("%s/%s: reconcile after a Lease change failed: %s", namespace, name, exc)


@kopf.on.delete(GROUP, VERSION, "haclusters", id="teardown", backoff=INTERVAL)
def teardown(namespace: str | None, name: str, meta: Any, **_: Any) -> None:
    """Reads the HACluster and its Lease fresh: whether the holder still renews decides
    whether the Lease is deleted under it."""
    namespace = namespaced(namespace)
    kube = RUNTIME.api()
    with RUNTIME.lock(namespace, name):
        read = _read(kube, namespace, name, fresh=True)
        if read is None:
            return
        snap = _snapshot(kube, read)
        body = read.body
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
