"""The operator's small I/O layer: the reads a reconcile needs and its few writes.

Reads: the HACluster, its Lease, the DRBDVolumes, FloatingIPs and HAClusters of the namespace,
and the cluster's Nodes. Writes: create or delete the Lease, stamp its member list, and one
server-side apply of the operator-owned status fields (field manager `tandem-operator`, status
subresource). Everything is parsed into the typed models of `tandem.api` (the Lease into
`tandem.kube.lease.LeaseRecord`) here, so the core sees no raw dicts; a failed call raises a
`tandem.kube.errors.KubeError`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kubernetes import client
from pydantic import ValidationError

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


# --- parsing into the typed models ----------------------------------------------------------


def parse_cluster(body: dict[str, Any]) -> HACluster:
    """The typed HACluster; a node report that does not parse is dropped (and logged) rather
    than blocking every decision about the cluster."""
    raw_status = dict(body.get("status") or {})
    reports = []
    for entry in raw_status.get("nodes") or []:
        try:
            reports.append(NodeReport.model_validate(entry))
        except ValidationError as exc:
            log.warning("ignoring an unparsable node report in %s: %s",
                        body.get("metadata", {}).get("name"), exc.errors()[:1])
    raw_status["nodes"] = []
    known = set(HAClusterStatus.model_fields) | {
        f.alias for f in HAClusterStatus.model_fields.values() if f.alias}
    raw_status = {k: v for k, v in raw_status.items() if k in known}
    try:
        status = HAClusterStatus.model_validate(raw_status)
    except ValidationError as exc:
        log.warning("ignoring an unparsable status of %s: %s",
                    body.get("metadata", {}).get("name"), exc.errors()[:1])
        status = HAClusterStatus()
    status = status.model_copy(update={"nodes": reports})
    return HACluster.model_validate({"spec": body.get("spec") or {}}).model_copy(
        update={"status": status})


def _parse_all(items: Iterable[dict[str, Any]], model: Any) -> dict[str, Any]:
    """Objects by name, with their status when it parses (the operator writes it, and
    rewrites one it cannot read)."""
    out: dict[str, Any] = {}
    for item in items:
        name = item["metadata"]["name"]
        spec = {"spec": item.get("spec") or {}}
        try:
            out[name] = model.model_validate(spec | {"status": item.get("status")})
        except ValidationError:
            try:
                out[name] = model.model_validate(spec)
            except ValidationError as exc:
                log.warning("ignoring unparsable %s %s: %s", model.__name__, name, exc.errors()[:1])
    return out


# --- the API ----------------------------------------------------------------------------------


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    # HAClusters, DRBDVolumes, FloatingIPs
    def get_cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            with translated():
                body: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
                    GROUP, VERSION, namespace, "haclusters", name, _request_timeout=TIMEOUT)
        except NotFound:
            return None
        return body

    def _list(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        with translated():
            listed: dict[str, Any] = self.custom.list_namespaced_custom_object(  # type: ignore[assignment]
                GROUP, VERSION, namespace, plural, _request_timeout=TIMEOUT)
        items: list[dict[str, Any]] = listed["items"]
        return items

    def volumes(self, namespace: str) -> dict[str, DRBDVolume]:
        return _parse_all(self._list(namespace, "drbdvolumes"), DRBDVolume)

    def floating_ips(self, namespace: str) -> dict[str, FloatingIP]:
        return _parse_all(self._list(namespace, "floatingips"), FloatingIP)

    def clusters(self, namespace: str) -> dict[str, HACluster]:
        return {item["metadata"]["name"]: parse_cluster(item)
                for item in self._list(namespace, "haclusters")}

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Server-side apply of the operator-owned status fields; status.nodes is never sent."""
        body = {
            "apiVersion": API_VERSION,
            "kind": "HACluster",
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        }
        with translated():
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, "haclusters", name, body,
                field_manager=FIELD_MANAGER, force=True, _content_type=APPLY,
                _request_timeout=TIMEOUT)

    def apply_member_status(self, namespace: str, member: MemberStatus) -> None:
        """Server-side apply of a DRBDVolume's or FloatingIP's status, as the cluster's nodes
        report it."""
        kind = {"drbdvolumes": "DRBDVolume", "floatingips": "FloatingIP"}[member.plural]
        body = {"apiVersion": API_VERSION, "kind": kind,
                "metadata": {"name": member.name, "namespace": namespace},
                "status": member.status}
        with translated():
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, member.plural, member.name, body,
                field_manager=FIELD_MANAGER, force=True, _content_type=APPLY,
                _request_timeout=TIMEOUT)

    # Nodes
    def node(self, name: str) -> NodeInfo | None:
        try:
            with translated():
                node = self.core.read_node(name, _request_timeout=TIMEOUT)
        except NotFound:
            return None
        annotations = (node.metadata.annotations if node.metadata else None) or {}
        return NodeInfo(name=name, unschedulable=bool(node.spec and node.spec.unschedulable),
                        maintenance=annotations.get(MAINTENANCE_ANNOTATION, "").lower() == "true")

    def nodes(self, names: Iterable[str]) -> dict[str, NodeInfo]:
        out = {}
        for name in names:
            info = self.node(name)
            if info is not None:
                out[name] = info
        return out

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
                    meta["namespace"], manifest,  # type: ignore[arg-type]  # a dict body is sent as is
                    field_manager=FIELD_MANAGER, _request_timeout=TIMEOUT)
        except Conflict:
            existing = self.get_lease(meta["namespace"], meta["name"])
            if existing is None:
                raise
            return existing, False
        return parse_lease(lease), True

    def stamp_lease_members(self, namespace: str, name: str, members: str) -> None:
        """Set the Lease's member list (a merge patch of that one annotation). It changes the
        Lease's resourceVersion: the holder's next guarded renew gets 409, reads the Lease
        again and renews on its next tick."""
        with translated():
            self.coordination.patch_namespaced_lease(
                name, namespace, {"metadata": {"annotations": {MEMBERS_ANNOTATION: members}}},
                field_manager=FIELD_MANAGER, _request_timeout=TIMEOUT)

    def delete_lease(self, namespace: str, name: str) -> bool:
        try:
            with translated():
                self.coordination.delete_namespaced_lease(name, namespace, _request_timeout=TIMEOUT)
        except NotFound:
            return False
        return True
