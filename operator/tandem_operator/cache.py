"""The operator's view of the API server: kopf indexes, fed by kopf's watch streams.

A reconcile reads the HAClusters, DRBDVolumes, FloatingIPs, the Leases labelled
`tandem.dev/cluster` and the Nodes from kopf indexes (`@kopf.index` in handlers.py), not from
the API server: kopf lists each kind once, then watches it, re-lists after a watch error or an
expired resourceVersion, and fills the indexes before any other handler runs. A steady-state
reconcile therefore sends no request at all.

Two things a cache adds, and how they are kept harmless:

- The operator's own write shows in the cache only when its watch event arrives. `Catchup`
  holds a cluster's next decision until the watch has delivered every write of its last
  decision (at most `CATCHUP_TIMEOUT`), so the operator never decides twice on the view from
  before its own write (a second Lease, the same Event twice, a request handled twice).
- The cache can be stale (a stalled or broken watch). What the operator does then is in
  docs/operator.md, "Watches and stale data"; the decisions that must not be made on old data
  read the API server instead (`fresh_read_needed`, and the teardown in handlers.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tandem.api.drbdvolume import DRBDVolume
from tandem.api.floatingip import FloatingIP
from tandem.api.hacluster import HACluster, HAClusterStatus
from tandem.kube.lease import LeaseRecord
from tandem_operator.forced_failover import forced_failover_request
from tandem_operator.snapshot import NodeInfo
from tandem_operator.switchover import switchover_request

log = logging.getLogger("tandem_operator")

CATCHUP_TIMEOUT = 10.0  # seconds a decision waits for the watch to show the operator's write
RECENT = 1024  # versions the watches delivered lately, for a write answered after its event
REQUEST_ID_LENGTH = 63  # as the rules keep a request id (switchover.py, forced_failover.py)

T = TypeVar("T")
ClusterKey = tuple[str, str]  # (namespace, HACluster name)
ObjectKey = tuple[str, str, str]  # (plural, namespace or "" for Nodes, name)
Index = Mapping[Any, Collection[T]]  # what kopf passes as a kopf.Index: key -> its values


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One cached object: its name, the resourceVersion the watch delivered, the parsed value."""

    name: str
    version: str
    value: T


@dataclass(frozen=True)
class ClusterEntry:
    """A cached HACluster: the body (for its metadata and kopf.event) and the typed model."""

    body: dict[str, Any]
    cluster: HACluster


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body to keep: without metadata.managedFields, the bulk of every object."""
    meta = {k: v for k, v in dict(body.get("metadata") or {}).items() if k != "managedFields"}
    return {**{k: v for k, v in body.items() if k != "metadata"}, "metadata": meta}


def fresh_read_needed(body: Mapping[str, Any], cluster: HACluster) -> str | None:
    """Why this HACluster must be read from the API server before deciding, or None.

    A tandem.dev/switchover or tandem.dev/force-failover request that the stored status has not
    handled yet: acting on it is a one-off (a switchover, a forced failover that may lose
    data), so it must not be acted on again because the cache still shows the status from
    before it was handled."""
    annotations = dict((body.get("metadata") or {}).get("annotations") or {})
    status = cluster.status or HAClusterStatus()
    switchover = switchover_request(annotations)
    if switchover is not None and switchover[1][:REQUEST_ID_LENGTH] != status.handled_switchover_id:
        return f"switchover request {switchover[1][:REQUEST_ID_LENGTH]}"
    forced = forced_failover_request(annotations)
    handled = status.forced_failover.request_id if status.forced_failover else None
    if forced is not None and forced[1][:REQUEST_ID_LENGTH] != handled:
        return f"forced failover request {forced[1][:REQUEST_ID_LENGTH]}"
    return None


@dataclass
class Catchup:
    """The operator's writes that its watches have not delivered yet, by the cluster whose
    decision made them. The index functions report what they see (`seen`); a write reports its
    new resourceVersion (`wrote`); `pending` names what the cluster still waits for."""

    timeout: float = CATCHUP_TIMEOUT
    clock: Callable[[], float] = time.monotonic
    _awaited: dict[ObjectKey, tuple[str, float, ClusterKey]] = field(default_factory=dict)
    _recent: dict[tuple[ObjectKey, str], None] = field(default_factory=dict)  # oldest first
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, key: ObjectKey, version: str) -> None:
        with self._lock:
            awaited = self._awaited.get(key)
            if awaited is not None and awaited[0] == version:
                del self._awaited[key]
            self._recent[(key, version)] = None
            if len(self._recent) > RECENT:
                del self._recent[next(iter(self._recent))]

    def wrote(self, cluster: ClusterKey, key: ObjectKey, version: str, cached: str | None) -> None:
        """`cached`: the version the cache shows now (a write that changed nothing keeps the
        version). The watch may also have delivered the write before its answer came."""
        if not version or version == cached:
            return
        with self._lock:
            if (key, version) not in self._recent:
                self._awaited[key] = (version, self.clock() + self.timeout, cluster)

    def pending(self, cluster: ClusterKey) -> list[ObjectKey]:
        """The objects whose write of the cluster's last decision the watches have not shown
        yet; one awaited longer than `timeout` is given up on (logged: the watch is late)."""
        now = self.clock()
        out = []
        with self._lock:
            for key, (version, deadline, owner) in list(self._awaited.items()):
                if owner != cluster:
                    continue
                if now >= deadline:
                    del self._awaited[key]
                    log.warning(
                        "%s/%s: the watch has not shown the operator's write of %s %s "
                        "(resourceVersion %s) for %.0f s: deciding on the cached view",
                        cluster[0],
                        cluster[1],
                        key[0],
                        key[2],
                        version,
                        self.timeout,
                    )
                else:
                    out.append(key)
        return out

    def forget(self, cluster: ClusterKey) -> None:
        with self._lock:
            for key in [k for k, (_, _, owner) in self._awaited.items() if owner == cluster]:
                del self._awaited[key]


class Behind(Exception):
    """The cluster's last writes have not come back through the watches yet: decide later."""


@dataclass
class Cache:
    """Lookups over the kopf indexes (handlers.py): by namespace for the HAClusters,
    DRBDVolumes and FloatingIPs, by (namespace, name) for the Leases, by name for the Nodes."""

    clusters_index: Index[Entry[ClusterEntry]]
    volumes_index: Index[Entry[DRBDVolume]]
    floating_ips_index: Index[Entry[FloatingIP]]
    leases_index: Index[Entry[LeaseRecord]]
    nodes_index: Index[Entry[NodeInfo]]

    def cluster(self, namespace: str, name: str) -> Entry[ClusterEntry] | None:
        return _named(self.clusters_index, namespace, name)

    def clusters(self, namespace: str) -> dict[str, HACluster]:
        return {e.name: e.value.cluster for e in self.clusters_index.get(namespace, ())}

    def volumes(self, namespace: str) -> dict[str, DRBDVolume]:
        return {e.name: e.value for e in self.volumes_index.get(namespace, ())}

    def floating_ips(self, namespace: str) -> dict[str, FloatingIP]:
        return {e.name: e.value for e in self.floating_ips_index.get(namespace, ())}

    def lease(self, namespace: str, name: str) -> LeaseRecord | None:
        found = _named(self.leases_index, (namespace, name), name)
        return found.value if found else None

    def nodes(self, names: Iterable[str]) -> dict[str, NodeInfo]:
        return {n: e.value for n in names if (e := _named(self.nodes_index, n, n)) is not None}

    def version(self, key: ObjectKey) -> str | None:
        """The resourceVersion the cache holds of an object the operator writes."""
        plural, namespace, name = key
        found: Entry[Any] | None
        if plural == "leases":
            found = _named(self.leases_index, (namespace, name), name)
        elif plural == "haclusters":
            found = _named(self.clusters_index, namespace, name)
        elif plural == "drbdvolumes":
            found = _named(self.volumes_index, namespace, name)
        else:
            found = _named(self.floating_ips_index, namespace, name)
        return found.version if found else None


def _named(index: Index[Entry[T]], key: Any, name: str) -> Entry[T] | None:
    return next((e for e in index.get(key, ()) if e.name == name), None)
