"""The `<cluster>-primary` Lease as one typed record (docs/failover-protocol.md): read here
from the client's V1Lease or from a plain body (kubectl's JSON, kopf's events), and written
here by its holder.

The record is what the agent, the operator, the plugin and the lab decide on; this module is
the only one that knows the Lease's field names and tandem's annotations on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tandem.api.common import MEMBERS_ANNOTATION, SYNC_STANDBYS_ANNOTATION


@dataclass(frozen=True)
class LeaseRecord:
    """The `<cluster>-primary` Lease as read from the API server."""

    holder: str | None
    epoch: int  # spec.leaseTransitions
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    duration_seconds: int | None = None
    sync_standbys: tuple[str, ...] | None = None  # None: the holder publishes no such list
    members: str | None = None  # the MEMBERS_ANNOTATION as stamped; None: not stamped
    resource_version: str = ""  # what a guarded write of this Lease is based on


def parse_lease(lease: Any) -> LeaseRecord:
    """The record of a Lease, from a `kubernetes.client.V1Lease` or a plain dict body. A field
    the Lease lacks reads as its default: no holder, epoch 0, no times; a time in a dict that is
    not ISO 8601 raises ValueError."""
    if isinstance(lease, Mapping):
        spec = lease.get("spec") or {}
        metadata = lease.get("metadata") or {}
        return _record(
            holder=spec.get("holderIdentity"),
            transitions=spec.get("leaseTransitions"),
            acquired=_time(spec.get("acquireTime")),
            renewed=_time(spec.get("renewTime")),
            duration=spec.get("leaseDurationSeconds"),
            annotations=metadata.get("annotations"),
            resource_version=metadata.get("resourceVersion"),
        )
    spec, metadata = lease.spec, lease.metadata  # either may be None on a bare V1Lease
    return _record(
        holder=getattr(spec, "holder_identity", None),
        transitions=getattr(spec, "lease_transitions", None),
        acquired=getattr(spec, "acquire_time", None),
        renewed=getattr(spec, "renew_time", None),
        duration=getattr(spec, "lease_duration_seconds", None),
        annotations=getattr(metadata, "annotations", None),
        resource_version=getattr(metadata, "resource_version", None),
    )


def _record(
    *,
    holder: str | None,
    transitions: int | None,
    acquired: datetime | None,
    renewed: datetime | None,
    duration: int | None,
    annotations: Mapping[str, str] | None,
    resource_version: str | None,
) -> LeaseRecord:
    return LeaseRecord(
        holder=holder or None,
        epoch=transitions or 0,
        acquire_time=acquired,
        renew_time=renewed,
        duration_seconds=duration,
        sync_standbys=sync_standbys_from(annotations),
        members=(annotations or {}).get(MEMBERS_ANNOTATION),
        resource_version=resource_version or "",
    )


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def sync_standbys_from(annotations: Mapping[str, str] | None) -> tuple[str, ...] | None:
    """The Lease's synchronous standbys; None when the holder publishes no list (no
    PostgreSQL in its chain)."""
    value = (annotations or {}).get(SYNC_STANDBYS_ANNOTATION)
    if value is None:
        return None
    return tuple(name for name in value.split(",") if name)


def set_holder(
    lease: dict[str, Any],
    *,
    holder: str | None,
    epoch: int,
    now: datetime,
    acquire: bool,
    sync_standbys: tuple[str, ...] | None,
) -> None:
    """Write a holder's fields into the Lease body last read (the API server's JSON), in
    place: `holder` at `epoch`, renewed `now` (and acquired, when `acquire`); `sync_standbys`,
    when given, replaces the list on the Lease. Everything else goes back as read, its
    resourceVersion above all, so a replace with it is refused (409) when the Lease changed
    since."""
    spec = lease.setdefault("spec", {})
    spec["holderIdentity"] = holder
    spec["leaseTransitions"] = epoch
    spec["renewTime"] = micro_time(now)
    if acquire:
        spec["acquireTime"] = micro_time(now)
    if sync_standbys is not None:
        metadata = lease.setdefault("metadata", {})
        metadata["annotations"] = {
            **(metadata.get("annotations") or {}),
            SYNC_STANDBYS_ANNOTATION: ",".join(sync_standbys),
        }


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with exactly six fractional digits (the API
    server refuses one without a fraction)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
