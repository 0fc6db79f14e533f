"""The agent's narrow view of the API server: its Lease, its HACluster, its own report.

Every call has a short timeout, so a cut link shows up as an error within the renew deadline
instead of a hung thread.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tandem.api.common import GROUP, SYNC_STANDBYS_ANNOTATION, VERSION, sync_standbys_from
from tandem_agent.metrics import count_api_error

FIELD_MANAGER_PREFIX = "tandem-agent-"
TIMEOUT = (0.5, 1.0)


class LeaseConflict(Exception):
    """A guarded Lease update lost: someone else wrote the Lease first (HTTP 409)."""


class ApiUnavailable(Exception):
    """The API server did not answer in time or answered with an error."""


@dataclass(frozen=True)
class LeaseRecord:
    holder: str | None
    epoch: int
    resource_version: str
    renew_time: dt.datetime | None
    sync_standbys: tuple[str, ...] | None = None



def load_client(kubeconfig: str | None) -> client.ApiClient:
    """An API client from a kubeconfig file, or the in-cluster service account."""
    if kubeconfig:
        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        configuration = client.Configuration.get_default_copy()
    configuration.retries = 0
    return client.ApiClient(configuration)


def list_all_namespaces(api_client: client.ApiClient, plural: str) -> list[dict[str, Any]]:
    """Every tandem object of kind `plural` in every namespace (one cluster-scoped list)."""
    try:
        listed: Any = client.CustomObjectsApi(api_client).list_cluster_custom_object(
            GROUP, VERSION, plural, _request_timeout=TIMEOUT)
    except Exception as exc:  # HTTP errors, timeouts, connection refused, TLS errors
        count_api_error(exc.status if isinstance(exc, ApiException) else None)
        raise ApiUnavailable(str(exc)) from exc
    items: list[dict[str, Any]] = listed["items"]
    return items


def lease_name(cluster: str) -> str:
    return f"{cluster}-primary"


def _now() -> dt.datetime:
    """Now, never on a whole second: the client drops a zero fraction when it serializes, and
    the API server refuses a MicroTime without one."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=1) if now.microsecond == 0 else now


class Kube:
    """Thread-safe wrapper: the Lease keeper and the chain runner share one instance."""

    def __init__(self, api_client: client.ApiClient, namespace: str, node: str) -> None:
        self.namespace = namespace
        self.node = node
        self._coordination = client.CoordinationV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._lock = threading.Lock()
        self._lease_objects: dict[str, Any] = {}

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=TIMEOUT, **kwargs)
        except ApiException as exc:
            count_api_error(exc.status)
            if exc.status == 409:
                raise LeaseConflict(str(exc.reason)) from exc
            raise ApiUnavailable(f"HTTP {exc.status}: {exc.reason}") from exc
        except Exception as exc:  # urllib3 timeouts, connection refused, TLS errors
            count_api_error(None)
            raise ApiUnavailable(str(exc)) from exc

    # --- Lease ------------------------------------------------------------------------
    def read_lease(self, cluster: str) -> LeaseRecord | None:
        try:
            lease = self._call(self._coordination.read_namespaced_lease,
                               lease_name(cluster), self.namespace)
        except ApiUnavailable as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        with self._lock:
            self._lease_objects[cluster] = lease
        return _record(lease)

    def write_lease(self, cluster: str, holder: str | None, epoch: int, acquire: bool,
                    sync_standbys: tuple[str, ...] | None = None) -> LeaseRecord:
        """Guarded update of the last Lease read: raises LeaseConflict when it changed since.

        `sync_standbys`, when given, replaces the list of synchronous standbys on the Lease."""
        with self._lock:
            lease = self._lease_objects.get(cluster)
        if lease is None:
            raise ApiUnavailable("the Lease was never read")
        now = _now()
        spec = lease.spec
        spec.holder_identity = holder
        spec.lease_transitions = epoch
        spec.renew_time = now
        if acquire:
            spec.acquire_time = now
        if sync_standbys is not None:
            lease.metadata.annotations = {**(lease.metadata.annotations or {}),
                                          SYNC_STANDBYS_ANNOTATION: ",".join(sync_standbys)}
        updated = self._call(self._coordination.replace_namespaced_lease,
                             lease_name(cluster), self.namespace, lease)
        with self._lock:
            self._lease_objects[cluster] = updated
        return _record(updated)

    # --- HACluster --------------------------------------------------------------------
    def read_cluster(self, cluster: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._call(
                self._custom.get_namespaced_custom_object,
                GROUP, VERSION, self.namespace, "haclusters", cluster)
        except ApiUnavailable as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        return obj

    def read_objects(self, plural: str) -> list[dict[str, Any]]:
        listed = self._call(self._custom.list_namespaced_custom_object,
                            GROUP, VERSION, self.namespace, plural)
        items: list[dict[str, Any]] = listed["items"]
        return items

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
            GROUP, VERSION, self.namespace, "haclusters", cluster, body,
            field_manager=FIELD_MANAGER_PREFIX + self.node, force=True,
            _content_type="application/apply-patch+yaml",
        )


    # --- Secret ---------------------------------------------------------------------------
    def read_secret(self, name: str) -> dict[str, str] | None:
        """The `data` of one Secret of the namespace, read by name (RBAC: `get` only); None
        when it does not exist."""
        try:
            secret = self._call(self._core.read_namespaced_secret, name, self.namespace)
        except ApiUnavailable as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        return dict(secret.data or {})


def _record(lease: Any) -> LeaseRecord:
    spec = lease.spec
    return LeaseRecord(
        holder=spec.holder_identity or None,
        epoch=spec.lease_transitions or 0,
        resource_version=lease.metadata.resource_version,
        renew_time=spec.renew_time,
        sync_standbys=sync_standbys_from(lease.metadata.annotations),
    )

