"""The agent's narrow view of the API server: watch-fed mirrors of what it reads (its
HAClusters, their DRBDVolumes and FloatingIPs, their Leases), and the few writes it makes (its
Lease, its own report).

Reads cost no request: `AgentWatches` keeps one LIST+WATCH per kind (tandem.kube.watch), so a
standby's Lease keeper and the discovery loop read memory. A mirror that is not synced answers
`Unavailable`, as a failed GET did, and a write refused with 409 makes the Lease mirror list
again (it was behind). Every request has a short timeout, so a cut link shows up as an error
within the renew deadline instead of a hung thread.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
from collections.abc import Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tandem.api.common import CLUSTER_LABEL, GROUP, VERSION
from tandem.kube.errors import Conflict, KubeError, NotFound, Unavailable, kube_error
from tandem.kube.lease import LeaseRecord, parse_lease, set_holder
from tandem.kube.watch import WatchCache, older, resource_version
from tandem_agent.metrics import count_api_error

FIELD_MANAGER_PREFIX = "tandem-agent-"
TIMEOUT = (0.5, 1.0)
KINDS = ("haclusters", "drbdvolumes", "floatingips")
LEASES = "leases"
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"


def _counted(exc: Exception) -> KubeError:
    """The typed error for any failure of a call (HTTP errors, timeouts, connection refused,
    TLS errors, and whatever else the client raises), counted in the metrics."""
    error = kube_error(exc)
    count_api_error(error.status)
    return error


def lease_name(cluster: str) -> str:
    return f"{cluster}-primary"


class AgentWatches:
    """One watch-fed mirror per kind the agent reads: cluster-wide when it serves every
    namespace, else one per namespace served (RBAC may grant no more). Leases are those
    labelled with their cluster (the operator creates them so), never the node heartbeats and
    leader elections that share their namespaces."""

    def __init__(self, api_client: client.ApiClient, namespaces: Sequence[str] | None) -> None:
        custom = client.CustomObjectsApi(api_client)
        coordination = client.CoordinationV1Api(api_client)
        self._by_kind: dict[str, dict[str | None, WatchCache]] = {}
        scopes: list[str | None] = [*namespaces] if namespaces else [None]
        for scope in scopes:
            for plural in KINDS:
                call, args = (
                    (custom.list_cluster_custom_object, (GROUP, VERSION, plural))
                    if scope is None
                    else (custom.list_namespaced_custom_object, (GROUP, VERSION, scope, plural))
                )
                self._add(
                    plural, scope, WatchCache(f"{plural} in {scope or 'every namespace'}", call, *args, on_error=_count)
                )
            lease_call, lease_args = (
                (coordination.list_lease_for_all_namespaces, ())
                if scope is None
                else (coordination.list_namespaced_lease, (scope,))
            )
            self._add(
                LEASES,
                scope,
                WatchCache(
                    f"Leases in {scope or 'every namespace'}",
                    lease_call,
                    *lease_args,
                    label_selector=CLUSTER_LABEL,
                    on_error=_count,
                ),
            )

    def _add(self, plural: str, scope: str | None, cache: WatchCache) -> None:
        self._by_kind.setdefault(plural, {})[scope] = cache

    def _caches(self) -> list[WatchCache]:
        return [c for scopes in self._by_kind.values() for c in scopes.values()]

    def start(self) -> AgentWatches:
        for cache in self._caches():
            cache.start()
        return self

    def wait_synced(self, timeout: float) -> bool:
        return all(cache.wait_synced(timeout) for cache in self._caches())

    def problems(self) -> list[str]:
        """Why each mirror that is not synced is not (empty when all are)."""
        return [
            f"{cache.what}: {cache.last_error or 'not listed yet'}"
            for cache in self._caches()
            if not cache.wait_synced(0)
        ]

    def stop(self) -> bool:
        """Stop every watch; whether all their threads ended."""
        return all([cache.stop() for cache in self._caches()])

    def _cache(self, plural: str, namespace: str) -> WatchCache:
        scopes = self._by_kind[plural]
        cache = scopes.get(namespace) or scopes.get(None)
        if cache is None:
            raise Unavailable(None, f"namespace {namespace} is not served by this agent")
        return cache

    def objects(self, plural: str) -> list[dict[str, Any]]:
        """Every object of `plural` the agent serves; Unavailable when a mirror is not synced."""
        return [o for cache in self._by_kind[plural].values() for o in cache.items()]

    def changes(self, plural: str) -> tuple[int, ...]:
        """What `objects(plural)` answers, as counts that change whenever it would; Unavailable
        when a mirror is not synced."""
        return tuple(cache.changes() for cache in self._by_kind[plural].values())

    def lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._cache(LEASES, namespace).get(namespace, name)

    def resync_leases(self, namespace: str) -> None:
        self._cache(LEASES, namespace).resync()


def _count(error: KubeError) -> None:
    count_api_error(error.status)


class Kube:
    """One namespace's reads (from the mirrors) and writes; thread-safe: the Lease keeper and
    the chain runner share one instance."""

    def __init__(self, api_client: client.ApiClient, namespace: str, node: str, watches: AgentWatches) -> None:
        self.namespace = namespace
        self.node = node
        self.watches = watches
        self._coordination = client.CoordinationV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._lock = threading.Lock()
        self._lease_bodies: dict[str, dict[str, Any]] = {}

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """The call with the agent's short timeout; any failure raises a KubeError."""
        try:
            return fn(*args, _request_timeout=TIMEOUT, **kwargs)
        except Exception as exc:
            raise _counted(exc) from exc

    def _raw(self, fn: Any, *args: Any) -> dict[str, Any]:
        """The call's answer as the API server's JSON: the Lease body goes back as it came,
        never through the client's model (which drops a MicroTime's zero fraction)."""
        response = self._call(fn, *args, _preload_content=False)
        body: dict[str, Any] = json.loads(response.data)
        return body

    # --- Lease ------------------------------------------------------------------------
    def read_lease(self, cluster: str) -> LeaseRecord | None:
        """The Lease as the watch last showed it (no request), or as this agent last wrote or
        read it itself while the watch has not caught up with that yet."""
        body = self.watches.lease(self.namespace, lease_name(cluster))
        if body is None:
            return None
        with self._lock:
            known = self._lease_bodies.get(cluster)
        if known is not None and older(resource_version(body), resource_version(known)):
            return parse_lease(known)
        return self._remember(cluster, body)

    def read_lease_now(self, cluster: str) -> LeaseRecord | None:
        """The Lease read from the API server itself, for when the watch proved behind."""
        try:
            body = self._raw(self._coordination.read_namespaced_lease, lease_name(cluster), self.namespace)
        except NotFound:
            return None
        return self._remember(cluster, body)

    def _remember(self, cluster: str, body: dict[str, Any]) -> LeaseRecord:
        """Keep the body read: the next guarded write is based on it."""
        with self._lock:
            self._lease_bodies[cluster] = body
        return parse_lease(body)

    def write_lease(
        self, cluster: str, holder: str | None, epoch: int, acquire: bool, sync_standbys: tuple[str, ...] | None = None
    ) -> LeaseRecord:
        """Guarded update of the last Lease read: raises Conflict when it changed since, and
        then distrusts the Lease mirror until it has listed again.

        `sync_standbys`, when given, replaces the list of synchronous standbys on the Lease."""
        with self._lock:
            body = copy.deepcopy(self._lease_bodies.get(cluster))
        if body is None:
            raise Unavailable(None, "the Lease was never read")
        set_holder(
            body, holder=holder, epoch=epoch, now=dt.datetime.now(dt.UTC), acquire=acquire, sync_standbys=sync_standbys
        )
        try:
            updated = self._put_lease(lease_name(cluster), body)
        except Conflict:
            self.watches.resync_leases(self.namespace)
            raise
        return self._remember(cluster, updated)

    def _put_lease(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT the Lease as JSON, past the client's typed method: it turns the body into its
        V1Lease model and back, which cost more CPU than the rest of the request (a renew
        every 1.2 s per cluster held). The answer is the API server's JSON, as from `_raw`."""
        api = self._coordination.api_client
        try:
            method, url, headers, data, post = api.param_serialize(
                method="PUT",
                resource_path=LEASE_PATH,
                path_params={"namespace": self.namespace, "name": name},
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = api.call_api(
                method, url, header_params=headers, body=data, post_params=post, _request_timeout=TIMEOUT
            )
            response.read()
        except Exception as exc:
            raise _counted(exc) from exc
        if not 200 <= response.status <= 299:
            raise _counted(ApiException(http_resp=response))
        updated: dict[str, Any] = json.loads(response.data)
        return updated

    # --- HACluster -------------------------------------------------------------------
    def report(self, cluster: str, entry: dict[str, Any]) -> None:
        """Server-side apply of this node's own entry in status.nodes (nothing else)."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "HACluster",
            "metadata": {"name": cluster, "namespace": self.namespace},
            "status": {"nodes": [entry]},
        }
        self._call(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            self.namespace,
            "haclusters",
            cluster,
            body,
            field_manager=FIELD_MANAGER_PREFIX + self.node,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    # --- Secret ---------------------------------------------------------------------------
    def read_secret(self, name: str) -> dict[str, str] | None:
        """The `data` of one Secret of the namespace, read by name (RBAC: `get` only); None
        when it does not exist."""
        try:
            secret = self._call(self._core.read_namespaced_secret, name, self.namespace)
        except NotFound:
            return None
        return dict(secret.data or {})
