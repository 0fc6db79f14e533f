"""The operator's small I/O layer: its writes, the few reads that must be fresh, and the parsers.

Reads come from the watch-fed cache (cache.py), parsed here as the watch delivers each object
(`parse_cluster`, `parse_member`, `parse_node`; the Lease by `tandem.kube.lease.parse_lease`);
only the decisions that must not be made on old data GET the HACluster and its Lease. Writes:
create or delete the Lease, stamp its member list, and one server-side apply of the
operator-owned status fields (field manager `tandem-operator`, status subresource) of the
HACluster and of its DRBDVolumes and FloatingIPs; each returns the resourceVersion it made, so
the next decision can wait for the watch to show it. Everything is parsed into the typed models
of `tandem.api` here, so the core sees no raw dicts; a failed call raises a
`tandem.kube.errors.KubeError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

from kubernetes import client
from pydantic import BaseModel, ValidationError

from tandem.api.common import API_VERSION, GROUP, MEMBERS_ANNOTATION, VERSION
from tandem.api.drbdvolume import DRBDVolume
from tandem.api.floatingip import FloatingIP
from tandem.api.hacluster import HACluster, HAClusterStatus, NodeReport
from tandem.kube.errors import Conflict, NotFound, translated
from tandem.kube.lease import LeaseRecord, parse_lease
from tandem_operator.core import FIELD_MANAGER
from tandem_operator.members import MemberStatus
from tandem_operator.snapshot import MAINTENANCE_ANNOTATION, NodeInfo

log = logging.getLogger("tandem_operator")
TIMEOUT = (3.0, 10.0)
APPLY = "application/apply-patch+yaml"
M = TypeVar("M", bound=BaseModel)


# --- parsing into the typed models ----------------------------------------------------------


def parse_cluster(body: Mapping[str, Any]) -> HACluster:
    """The typed HACluster; a node report that does not parse is dropped (and logged) rather
    than blocking every decision about the cluster."""
    raw_status = dict(body.get("status") or {})
    reports = []
    for entry in raw_status.get("nodes") or []:
        try:
            reports.append(NodeReport.model_validate(entry))
        except ValidationError as exc:
            log.warning(
                "ignoring an unparsable node report in %s: %s", body.get("metadata", {}).get("name"), exc.errors()[:1]
            )
    raw_status["nodes"] = []
    known = set(HAClusterStatus.model_fields) | {f.alias for f in HAClusterStatus.model_fields.values() if f.alias}
    raw_status = {k: v for k, v in raw_status.items() if k in known}
    try:
        status = HAClusterStatus.model_validate(raw_status)
    except ValidationError as exc:
        log.warning("ignoring an unparsable status of %s: %s", body.get("metadata", {}).get("name"), exc.errors()[:1])
        status = HAClusterStatus()
    status = status.model_copy(update={"nodes": reports})
    return HACluster.model_validate({"spec": body.get("spec") or {}}).model_copy(update={"status": status})


def parse_member(body: Mapping[str, Any], model: type[M]) -> M | None:
    """A DRBDVolume or FloatingIP, with its status when it parses (the operator writes it, and
    rewrites one it cannot read); None (logged) when even the spec does not parse."""
    name = body["metadata"]["name"]
    spec = {"spec": body.get("spec") or {}}
    try:
        return model.model_validate(spec | {"status": body.get("status")})
    except ValidationError:
        try:
            return model.model_validate(spec)
        except ValidationError as exc:
            log.warning("ignoring unparsable %s %s: %s", model.__name__, name, exc.errors()[:1])
            return None


def _parse_all(items: list[dict[str, Any]], model: type[M]) -> dict[str, M]:
    """Objects by name; one that does not parse is left out (logged)."""
    return {item["metadata"]["name"]: parsed for item in items if (parsed := parse_member(item, model)) is not None}


def parse_node(body: Mapping[str, Any]) -> NodeInfo:
    """A Node as the switchover rules see it: cordoned, or annotated for maintenance."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return NodeInfo(
        name=meta["name"],
        unschedulable=bool((body.get("spec") or {}).get("unschedulable")),
        maintenance=str(annotations.get(MAINTENANCE_ANNOTATION, "")).lower() == "true",
    )


# --- the API ----------------------------------------------------------------------------------


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.coordination = client.CoordinationV1Api(api_client)

    # the fresh reads (handlers.py says when) and the writes
    def get_cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            with translated():
                body: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
                    GROUP, VERSION, namespace, "haclusters", name, _request_timeout=TIMEOUT
                )
        except NotFound:
            return None
        return body

    def _list(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        with translated():
            listed: dict[str, Any] = self.custom.list_namespaced_custom_object(  # type: ignore[assignment]
                GROUP, VERSION, namespace, plural, _request_timeout=TIMEOUT
            )
        items: list[dict[str, Any]] = listed["items"]
        return items

    # listings, for the kubectl plugin (the operator itself reads them from its cache)
    def volumes(self, namespace: str) -> dict[str, DRBDVolume]:
        return _parse_all(self._list(namespace, "drbdvolumes"), DRBDVolume)

    def floating_ips(self, namespace: str) -> dict[str, FloatingIP]:
        return _parse_all(self._list(namespace, "floatingips"), FloatingIP)

    def clusters(self, namespace: str) -> dict[str, HACluster]:
        return {item["metadata"]["name"]: parse_cluster(item) for item in self._list(namespace, "haclusters")}

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> str:
        """Server-side apply of the operator-owned status fields; status.nodes is never sent.
        Returns the HACluster's new resourceVersion."""
        body = {
            "apiVersion": API_VERSION,
            "kind": "HACluster",
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        }
        with translated():
            applied: dict[str, Any] = self.custom.patch_namespaced_custom_object_status(  # type: ignore[assignment]
                GROUP,
                VERSION,
                namespace,
                "haclusters",
                name,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
                _request_timeout=TIMEOUT,
            )
        return str(applied["metadata"]["resourceVersion"])

    def apply_member_status(self, namespace: str, member: MemberStatus) -> str:
        """Server-side apply of a DRBDVolume's or FloatingIP's status, as the cluster's nodes
        report it. Returns its new resourceVersion."""
        kind = {"drbdvolumes": "DRBDVolume", "floatingips": "FloatingIP"}[member.plural]
        body = {
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"name": member.name, "namespace": namespace},
            "status": member.status,
        }
        with translated():
            applied: dict[str, Any] = self.custom.patch_namespaced_custom_object_status(  # type: ignore[assignment]
                GROUP,
                VERSION,
                namespace,
                member.plural,
                member.name,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
                _request_timeout=TIMEOUT,
            )
        return str(applied["metadata"]["resourceVersion"])

    # the Lease
    def get_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        try:
            with translated():
                lease = self.coordination.read_namespaced_lease(name, namespace, _request_timeout=TIMEOUT)
        except NotFound:
            return None
        return parse_lease(lease)

    def create_lease(self, manifest: dict[str, Any]) -> tuple[LeaseRecord, bool]:
        """Create the Lease; (state, True) if created, (the existing one, False) if it existed."""
        meta = manifest["metadata"]
        try:
            with translated():
                lease = self.coordination.create_namespaced_lease(
                    meta["namespace"],
                    manifest,  # type: ignore[arg-type]  # a dict body is sent as is
                    field_manager=FIELD_MANAGER,
                    _request_timeout=TIMEOUT,
                )
        except Conflict:
            existing = self.get_lease(meta["namespace"], meta["name"])
            if existing is None:
                raise
            return existing, False
        return parse_lease(lease), True

    def stamp_lease_members(self, namespace: str, name: str, members: str) -> LeaseRecord:
        """Set the Lease's member list (a merge patch of that one annotation). It changes the
        Lease's resourceVersion: the holder's next guarded renew gets 409, reads the Lease
        again and renews on its next tick. Returns the Lease as patched."""
        with translated():
            lease = self.coordination.patch_namespaced_lease(
                name,
                namespace,
                {"metadata": {"annotations": {MEMBERS_ANNOTATION: members}}},
                field_manager=FIELD_MANAGER,
                _request_timeout=TIMEOUT,
            )
        return parse_lease(lease)

    def delete_lease(self, namespace: str, name: str) -> bool:
        try:
            with translated():
                self.coordination.delete_namespaced_lease(name, namespace, _request_timeout=TIMEOUT)
        except NotFound:
            return False
        return True
