"""The agent's narrow view of the API server: its Lease, its HACluster, its own report.

Every call has a short timeout, so a cut link shows up as an error within the renew deadline
instead of a hung thread.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from kubernetes import client

from tandem.api.common import GROUP, VERSION
from tandem.kube.errors import KubeError, NotFound, Unavailable, kube_error
from tandem.kube.lease import LeaseRecord, parse_lease, set_holder
from tandem_agent.metrics import count_api_error

FIELD_MANAGER_PREFIX = "tandem-agent-"
TIMEOUT = (0.5, 1.0)


def _counted(exc: Exception) -> KubeError:
    """The typed error for any failure of a call (HTTP errors, timeouts, connection refused,
    TLS errors, and whatever else the client raises), counted in the metrics."""
    error = kube_error(exc)
    count_api_error(error.status)
    return error


def list_all_namespaces(api_client: client.ApiClient, plural: str) -> list[dict[str, Any]]:
    """Every tandem object of kind `plural` in every namespace (one cluster-scoped list)."""
    try:
        listed: Any = client.CustomObjectsApi(api_client).list_cluster_custom_object(
            GROUP, VERSION, plural, _request_timeout=TIMEOUT)
    except Exception as exc:
        raise _counted(exc) from exc
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
        """The call with the agent's short timeout; any failure raises a KubeError."""
        try:
            return fn(*args, _request_timeout=TIMEOUT, **kwargs)
        except Exception as exc:
            raise _counted(exc) from exc

    # --- Lease ------------------------------------------------------------------------
    def read_lease(self, cluster: str) -> LeaseRecord | None:
        try:
            lease = self._call(self._coordination.read_namespaced_lease,
                               lease_name(cluster), self.namespace)
        except NotFound:
            return None
        with self._lock:
            self._lease_objects[cluster] = lease
        return parse_lease(lease)

    def write_lease(self, cluster: str, holder: str | None, epoch: int, acquire: bool,
                    sync_standbys: tuple[str, ...] | None = None) -> LeaseRecord:
        """Guarded update of the last Lease read: raises Conflict when it changed since.

        `sync_standbys`, when given, replaces the list of synchronous standbys on the Lease."""
        with self._lock:
            lease = self._lease_objects.get(cluster)
        if lease is None:
            raise Unavailable(None, "the Lease was never read")
        set_holder(lease, holder=holder, epoch=epoch, now=_now(), acquire=acquire,
                   sync_standbys=sync_standbys)
        updated = self._call(self._coordination.replace_namespaced_lease,
                             lease_name(cluster), self.namespace, lease)
        with self._lock:
            self._lease_objects[cluster] = updated
        return parse_lease(updated)

    # --- HACluster --------------------------------------------------------------------
    def read_cluster(self, cluster: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._call(
                self._custom.get_namespaced_custom_object,
                GROUP, VERSION, self.namespace, "haclusters", cluster)
        except NotFound:
            return None
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
        except NotFound:
            return None
        return dict(secret.data or {})

