"""One reconcile pass's world: the snapshot read, the view of the node reports, the flow written.

`Snapshot` is everything read for one HACluster (`now` included: nothing here reads a clock).
`View` is what the rules share about it: the Lease holder and epoch, the reports by node, and
which reports count (fresh, and of the current epoch: older epochs are refused for roles).
`Flow` is the pass's mutable output: the switchover, forced failover and failover record to
write, the Events to post. The rules in the other modules read a View and write a Flow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from tandem.api.drbdvolume import DRBDVolume
from tandem.api.floatingip import FloatingIP
from tandem.api.hacluster import FailoverRecord, ForcedFailover, HACluster, HAClusterStatus, NodeReport, Switchover
from tandem.kube.lease import LeaseRecord
from tandem_operator.lease import LeaseHistory
from tandem_operator.messages import Event, clip

MAINTENANCE_ANNOTATION = "tandem.dev/maintenance"
MIN_STALE_AFTER = timedelta(seconds=90)  # three of the agent's 30 s heartbeats
STALE_AFTER_LEASE_DURATIONS = 10


@dataclass(frozen=True)
class NodeInfo:
    """The Kubernetes Node of a cluster node: cordoned, or annotated for maintenance."""

    name: str
    unschedulable: bool = False
    maintenance: bool = False

    @property
    def in_maintenance(self) -> bool:
        return self.unschedulable or self.maintenance

    def why(self) -> str:
        parts = (["cordoned"] if self.unschedulable else []) + (
            [f"annotated {MAINTENANCE_ANNOTATION}=true"] if self.maintenance else []
        )
        return " and ".join(parts)


@dataclass(frozen=True)
class PrimaryChange:
    """A change of spec.primary seen by the operator (the edge that starts a switchover)."""

    old: str | None
    new: str | None


@dataclass(frozen=True)
class Snapshot:
    name: str
    namespace: str
    generation: int
    cluster: HACluster
    lease: LeaseRecord | None
    now: datetime
    volumes: Mapping[str, DRBDVolume] = field(default_factory=dict)
    floating_ips: Mapping[str, FloatingIP] = field(default_factory=dict)
    clusters: Mapping[str, HACluster] = field(default_factory=dict)
    nodes: Mapping[str, NodeInfo] = field(default_factory=dict)
    deleting: bool = False
    history: LeaseHistory = field(default_factory=dict)
    primary_change: PrimaryChange | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)  # the HACluster's


def stale_after(cluster: HACluster) -> timedelta:
    """A node report older than this counts as missing: max(90 s, 10 x leaseDuration)."""
    lease = timedelta(milliseconds=cluster.spec.leases.lease_duration_ms)
    return max(MIN_STALE_AFTER, lease * STALE_AFTER_LEASE_DURATIONS)


@dataclass(frozen=True)
class View:
    """Everything the condition and switchover rules share about one cycle."""

    s: Snapshot
    holder: str | None
    epoch: int
    reports: Mapping[str, NodeReport]
    stale_after: timedelta
    maintenance: Mapping[str, NodeInfo]

    def fresh(self, report: NodeReport) -> bool:
        return report.heartbeat_time is not None and self.s.now - report.heartbeat_time <= self.stale_after

    def current(self, report: NodeReport) -> bool:
        """The report is of the Lease's epoch or newer; older epochs are refused for roles."""
        return report.epoch >= self.epoch

    def volume_names(self, vname: str) -> set[str]:
        vol = self.s.volumes.get(vname)
        return {vname} | ({vol.spec.resource_name} if vol else set())


def view_of(s: Snapshot) -> View:
    status = s.cluster.status or HAClusterStatus()
    holder = s.lease.holder if s.lease else None
    epoch = s.lease.epoch if s.lease else (status.epoch or 0)
    maintenance = {n: info for n, info in s.nodes.items() if info.in_maintenance}
    return View(s, holder, epoch, {r.name: r for r in status.nodes}, stale_after(s.cluster), maintenance)


@dataclass
class Flow:
    """The mutable state of one reconcile pass: what is written and what is said."""

    switchover: Switchover | None
    last_failover: FailoverRecord | None
    handled_request: str | None = None  # the last tandem.dev/switchover-id acted on
    forced: ForcedFailover | None = None
    events: list[Event] = field(default_factory=list)
    retry: str | None = None

    def say(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, clip(message)))


def failover_record(
    *, from_node: str | None, to_node: str, reason: str, duration_ms: int | None, time: datetime, planned: bool
) -> FailoverRecord:
    """A FailoverRecord (its wire names `from`/`to` are Python keywords, hence this helper)."""
    return FailoverRecord.model_validate(
        {
            "from": from_node,
            "to": to_node,
            "reason": reason,
            "durationMs": duration_ms,
            "time": time,
            "planned": planned,
        }
    )


def dependency_state(v: View) -> tuple[str, str | None, bool] | None:
    """(name, its primary, its Ready is True) of spec.dependsOn, if it exists."""
    dep = v.s.cluster.spec.depends_on
    if dep is None or dep.name not in v.s.clusters or dep.name == v.s.name:
        return None
    other = v.s.clusters[dep.name].status or HAClusterStatus()
    ready = next((c for c in other.conditions if c.type == "Ready"), None)
    return dep.name, other.primary, ready is not None and ready.status == "True"
