"""The operator's pure core: one snapshot of an HACluster's world in, one decision out.

`reconcile(snapshot)` returns the operator-owned part of the HACluster status (primary, epoch,
conditions, lastFailover, switchover, announced, observedGeneration), whether it differs from
what is stored (`Decision.patch` is None when it does not: the steady state writes nothing),
and the Events to post, each with a CamelCase reason and a message that gives the cause and,
where there is one, the duration. `teardown(snapshot, ...)` decides when a deleted HACluster may
release its Lease and drop its finalizer. Nothing here does I/O or reads a clock: `now` is an
input, so the same snapshot always gives the same decision.

The contract implemented here is docs/failover-protocol.md (section "Operator" for the choices
this side makes); docs/operator.md explains the conditions and Events to users.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from tandem.api.common import (
    ACCEPT_DATA_LOSS_ANNOTATION,
    API_VERSION,
    FORCE_FAILOVER_ANNOTATION,
    FORCE_FAILOVER_ID_ANNOTATION,
    MEMBERS_ANNOTATION,
    SWITCHOVER_ANNOTATION,
    SWITCHOVER_ID_ANNOTATION,
    Condition,
)
from tandem.api.drbdvolume import DRBDNodeStatus, DRBDVolume, DRBDVolumeStatus
from tandem.api.floatingip import MAX_ADDRESSES, FloatingIP, FloatingIPStatus
from tandem.api.hacluster import (
    INVALID_SPEC,
    NOT_SYNCHRONOUS,
    Announced,
    AnnouncedRecovery,
    AnnouncedSplitBrainRecovery,
    FailoverRecord,
    ForcedFailover,
    HACluster,
    HAClusterSpec,
    HAClusterStatus,
    NodeReport,
    ResourceRef,
    ResourceReport,
    SplitBrainRecovery,
    Switchover,
)

FIELD_MANAGER = "tandem-operator"
CLUSTER_LABEL = "tandem.dev/cluster"
MAINTENANCE_ANNOTATION = "tandem.dev/maintenance"
MIN_STALE_AFTER = timedelta(seconds=90)  # three of the agent's 30 s heartbeats
STALE_AFTER_LEASE_DURATIONS = 10
MESSAGE_LIMIT = 1024

CONDITION_TYPES = ("Ready", "Replicating", "Degraded", "SplitBrain", "SwitchoverInProgress",
                   "PreferredPrimary", "ResourcesHealthy", "SpecApplied")

# The one-word states shown in the STATUS column (the Ready condition's reason).
PENDING = "Pending"
DELETING = "Deleting"
SPLIT_BRAIN = "SplitBrain"
NO_PRIMARY = "NoPrimary"
WAITING_FOR_DEPENDENCY = "WaitingForDependency"
SWITCHING_OVER = "SwitchingOver"
NO_REPORT = "NoReport"
PROMOTING = "Promoting"
DEGRADED = "Degraded"
REPLICATING = "Replicating"
PAUSED = "Paused"
READY_REASONS = (
    PENDING, INVALID_SPEC, DELETING, SPLIT_BRAIN, PAUSED, NO_PRIMARY, WAITING_FOR_DEPENDENCY,
    SWITCHING_OVER, NO_REPORT, PROMOTING, DEGRADED, REPLICATING,
)
# Ready states that are expected steps rather than trouble: their Events are Normal.
_CALM_STATES = frozenset({PENDING, DELETING, SWITCHING_OVER, PROMOTING, REPLICATING,
                          WAITING_FOR_DEPENDENCY, PAUSED})

# Why a switchover was requested (Switchover.reason while Pending/Completed).
REQUESTED = "Requested"
REQUEST_ANNOTATION = "RequestAnnotation"
NODE_MAINTENANCE = "NodeMaintenance"
AUTO_FAILBACK = "AutoFailback"
FOLLOW_DEPENDENCY = "FollowDependency"
_WHY = {
    REQUESTED: "spec.primary changed",
    REQUEST_ANNOTATION: f"requested by {SWITCHOVER_ANNOTATION}",
    NODE_MAINTENANCE: "the primary's Node is in maintenance",
    AUTO_FAILBACK: "spec.failover.autoFailback",
    FOLLOW_DEPENDENCY: "following the HACluster it depends on",
}
INTERRUPTED = "Interrupted"

# ResourcesHealthy: the agents' monitors of the primary's chain (status.nodes[].resources).
RESOURCE_FAILED = "ResourceFailed"
REPAIRING = "Repairing"
NOT_CHECKED = "NotChecked"
HEALTHY = "Healthy"
_UNHEALTHY_STATES = ("Failing", "Failed", "Repairing")
# A node's lastRecovery becomes one Event, its reason the action.
_RECOVERY_EVENT_TYPES: dict[str, Literal["Normal", "Warning"]] = {
    "Repaired": "Normal", "RepairFailed": "Warning", "SteppedDown": "Warning"}

# A DRBDVolume's SplitBrain condition, and the Event of each recovery (a node discarded its
# changes of a volume and resynced from the Lease holder: status.nodes[].splitBrainRecoveries).
SPLIT_BRAIN_DETECTED = "Detected"
SPLIT_BRAIN_RECOVERED = "Recovered"
SPLIT_BRAIN_RECOVERY = "SplitBrainRecovery"


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseState:
    """The `<cluster>-primary` Lease as read from the API server."""

    holder: str | None
    epoch: int
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    duration_seconds: int | None = None
    sync_standbys: tuple[str, ...] | None = None  # None: the holder publishes no such list
    members: str | None = None  # the MEMBERS_ANNOTATION as stamped; None: not stamped


@dataclass(frozen=True)
class EpochRecord:
    """What the operator saw of one epoch while it was running (lost when it restarts)."""

    holder: str | None
    renew_time: datetime | None = None
    released: bool = False


LeaseHistory = Mapping[int, EpochRecord]


def remember(history: Mapping[int, EpochRecord], lease: LeaseState, keep: int = 8) -> dict[int, EpochRecord]:
    """Fold one observation of the Lease into the per-epoch history (newest `keep` epochs)."""
    out = dict(history)
    if out and lease.epoch < max(out):
        out = {}  # the Lease was recreated (or the HACluster): older records no longer apply
    old = out.get(lease.epoch)
    if lease.holder is not None:
        out[lease.epoch] = EpochRecord(lease.holder, lease.renew_time, released=False)
    elif old is not None and old.holder is not None:
        out[lease.epoch] = EpochRecord(old.holder, old.renew_time, released=True)
    for epoch in sorted(out)[:-keep]:
        del out[epoch]
    return out


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
            [f"annotated {MAINTENANCE_ANNOTATION}=true"] if self.maintenance else [])
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
    lease: LeaseState | None
    now: datetime
    volumes: Mapping[str, DRBDVolume] = field(default_factory=dict)
    floating_ips: Mapping[str, FloatingIP] = field(default_factory=dict)
    clusters: Mapping[str, HACluster] = field(default_factory=dict)
    nodes: Mapping[str, NodeInfo] = field(default_factory=dict)
    deleting: bool = False
    history: LeaseHistory = field(default_factory=dict)
    primary_change: PrimaryChange | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)  # the HACluster's


# --- outputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: HAClusterStatus
    patch: dict[str, Any] | None
    events: tuple[Event, ...]
    retry: str | None = None
    reason: str = ""
    members: tuple[MemberStatus, ...] = ()  # DRBDVolume and FloatingIP statuses to write


@dataclass(frozen=True)
class MemberStatus:
    """The status a DRBDVolume or FloatingIP of the chain should show (`plural`, `name`),
    gathered from the nodes' reports, as JSON for a server-side apply."""

    plural: Literal["drbdvolumes", "floatingips"]
    name: str
    status: dict[str, Any]


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


# --- small helpers ------------------------------------------------------------------------


def failover_record(*, from_node: str | None, to_node: str, reason: str, duration_ms: int | None,
                    time: datetime, planned: bool) -> FailoverRecord:
    """A FailoverRecord (its wire names `from`/`to` are Python keywords, hence this helper)."""
    return FailoverRecord.model_validate({
        "from": from_node, "to": to_node, "reason": reason, "durationMs": duration_ms,
        "time": time, "planned": planned,
    })


def lease_name(cluster: str) -> str:
    return f"{cluster}-primary"


def second(t: datetime) -> datetime:
    """UTC, whole seconds: the resolution of metav1.Time, so stored and computed values match."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).replace(microsecond=0)


def human_duration(ms: int | None) -> str:
    if ms is None:
        return "duration unknown"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms // 60_000} min {ms % 60_000 / 1000:.0f} s"


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds() * 1000))


def _clip(message: str) -> str:
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 3] + "..."


def _names(items: Iterable[str]) -> str:
    seq = list(items)
    if len(seq) <= 1:
        return "".join(seq)
    return ", ".join(seq[:-1]) + " and " + seq[-1]


def stale_after(cluster: HACluster) -> timedelta:
    """A node report older than this counts as missing: max(90 s, 10 x leaseDuration)."""
    lease = timedelta(milliseconds=cluster.spec.leases.lease_duration_ms)
    return max(MIN_STALE_AFTER, lease * STALE_AFTER_LEASE_DURATIONS)


def owned_fields(status: HAClusterStatus) -> dict[str, Any]:
    """The fields of status the operator owns, as they go on the wire (status.nodes excluded)."""
    data: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True,
                                             exclude={"nodes"})
    # conditions of other types (another controller's) are neither ours to compare nor to drop
    data["conditions"] = [c for c in data.get("conditions", []) if c["type"] in CONDITION_TYPES]
    return data


# --- cross-object validation --------------------------------------------------------------


IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class _Interval:
    fip: str
    family: int
    start: int
    end: int


def _fip_intervals(name: str, fip: FloatingIP) -> tuple[list[_Interval], list[str]]:
    """The FloatingIP's ranges as integer intervals, and what is wrong with them."""
    intervals: list[_Interval] = []
    problems: list[str] = []
    total = 0
    for entry in fip.spec.addresses:
        try:
            start: IPAddr = ipaddress.ip_address(entry.start)
            end: IPAddr = ipaddress.ip_address(entry.end) if entry.end else start
        except ValueError as exc:
            problems.append(f"FloatingIP {name}: {exc}")
            continue
        if start.version != end.version:
            problems.append(f"FloatingIP {name}: range {entry.start}..{entry.end} mixes IPv4 and IPv6")
            continue
        if int(start) > int(end):
            problems.append(f"FloatingIP {name}: range {entry.start}..{entry.end} has start > end: "
                            "swap them")
            continue
        size = int(end) - int(start) + 1
        if size > MAX_ADDRESSES:
            problems.append(f"FloatingIP {name}: range {entry.start}..{entry.end} holds {size} "
                            f"addresses, more than {MAX_ADDRESSES}: split it or shrink it")
            continue
        total += size
        intervals.append(_Interval(name, start.version, int(start), int(end)))
    if total > MAX_ADDRESSES:
        problems.append(f"FloatingIP {name} holds {total} addresses in all, more than "
                        f"{MAX_ADDRESSES}: split it into several FloatingIPs")
    return intervals, problems


def _address(family: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if family == 4 else ipaddress.IPv6Address(value))


def floating_ip_conflicts(fips: Mapping[str, FloatingIP], mine: set[str]) -> list[str]:
    """Problems of the FloatingIPs named in `mine`: bad ranges, and addresses that another
    FloatingIP of the namespace (or another entry of the same one) also holds."""
    problems: list[str] = []
    intervals: list[_Interval] = []
    for name in sorted(fips):
        ivs, bad = _fip_intervals(name, fips[name])
        intervals += ivs
        if name in mine:
            problems += bad
    seen: set[tuple[str, str]] = set()
    for i, a in enumerate(intervals):
        for b in intervals[i + 1:]:
            if a.family != b.family or (a.fip not in mine and b.fip not in mine):
                continue
            lo, hi = max(a.start, b.start), min(a.end, b.end)
            if lo > hi:
                continue
            key = (a.fip, b.fip)
            if key in seen:
                continue
            seen.add(key)
            count = hi - lo + 1
            more = f" (and {count - 1} more)" if count > 1 else ""
            if a.fip == b.fip:
                problems.append(f"FloatingIP {a.fip} lists {_address(a.family, lo)}{more} twice: "
                                "remove the duplicate entry")
            else:
                problems.append(
                    f"address {_address(a.family, lo)}{more} is in FloatingIP {a.fip} and "
                    f"FloatingIP {b.fip}: an address may belong to one FloatingIP only; "
                    "remove it from one of them")
    return problems


def validate(s: Snapshot) -> list[str]:
    """Cross-object checks the API server cannot make; each message names the objects and the fix."""
    spec = s.cluster.spec
    problems: list[str] = []
    node_names = [n.name for n in spec.nodes]
    for vname in spec.chain.volumes:
        vol = s.volumes.get(vname)
        if vol is None:
            problems.append(f"spec.chain.volumes names DRBDVolume {vname}, which does not exist in "
                            f"namespace {s.namespace}: create it or remove it from the chain")
        elif vol.spec.cluster != s.name:
            problems.append(f"DRBDVolume {vname} belongs to HACluster {vol.spec.cluster} "
                            f"(its spec.cluster), not {s.name}: fix one of them")
    for vname in sorted(s.volumes):
        vol = s.volumes[vname]
        if vol.spec.cluster != s.name and vname not in spec.chain.volumes:
            continue
        disks = {n.name for n in vol.spec.nodes}
        missing = [n for n in node_names if n not in disks]
        if missing:
            problems.append(f"DRBDVolume {vname} has no disk for node {_names(missing)} of HACluster "
                            f"{s.name}: add {'it' if len(missing) == 1 else 'them'} to the volume's "
                            "spec.nodes")
    for mount in spec.chain.mounts:
        if mount.volume not in spec.chain.volumes:
            problems.append(f"spec.chain.mounts mounts {mount.volume}, which is not in "
                            "spec.chain.volumes: add it there")
    for fname in spec.chain.floating_ips:
        fip = s.floating_ips.get(fname)
        if fip is None:
            problems.append(f"spec.chain.floatingIPs names FloatingIP {fname}, which does not exist "
                            f"in namespace {s.namespace}: create it or remove it from the chain")
        elif fip.spec.cluster != s.name:
            problems.append(f"FloatingIP {fname} belongs to HACluster {fip.spec.cluster} "
                            f"(its spec.cluster), not {s.name}: fix one of them")
    mine = {n for n, f in s.floating_ips.items() if f.spec.cluster == s.name} | {
        n for n in spec.chain.floating_ips if n in s.floating_ips}
    problems += floating_ip_conflicts(s.floating_ips, mine)
    if spec.depends_on is not None:
        dep = spec.depends_on.name
        if dep == s.name:
            problems.append("spec.dependsOn names this HACluster itself: remove it")
        elif dep not in s.clusters:
            problems.append(f"spec.dependsOn names HACluster {dep}, which does not exist in namespace "
                            f"{s.namespace}: create it or remove spec.dependsOn")
        else:
            path = [s.name, dep]
            current = s.clusters[dep]
            while current.spec.depends_on is not None and len(path) <= len(s.clusters) + 1:
                nxt = current.spec.depends_on.name
                if nxt in path:
                    problems.append(f"spec.dependsOn makes a cycle ({' -> '.join([*path, nxt])}): "
                                    "break it")
                    break
                path.append(nxt)
                if nxt not in s.clusters:
                    break
                current = s.clusters[nxt]
    return problems


# --- node reports -------------------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    """Everything the condition and switchover rules share about one cycle."""

    s: Snapshot
    holder: str | None
    epoch: int
    reports: Mapping[str, NodeReport]
    stale_after: timedelta
    maintenance: Mapping[str, NodeInfo]

    def fresh(self, report: NodeReport) -> bool:
        return (report.heartbeat_time is not None
                and self.s.now - report.heartbeat_time <= self.stale_after)

    def current(self, report: NodeReport) -> bool:
        """The report is of the Lease's epoch or newer; older epochs are refused for roles."""
        return report.epoch >= self.epoch

    def volume_names(self, vname: str) -> set[str]:
        vol = self.s.volumes.get(vname)
        return {vname} | ({vol.spec.resource_name} if vol else set())


def _view(s: Snapshot) -> _View:
    status = s.cluster.status or HAClusterStatus()
    holder = s.lease.holder if s.lease else None
    epoch = s.lease.epoch if s.lease else (status.epoch or 0)
    maintenance = {n: info for n, info in s.nodes.items() if info.in_maintenance}
    return _View(s, holder, epoch, {r.name: r for r in status.nodes}, stale_after(s.cluster),
                 maintenance)


def _stale_notes(v: _View) -> list[str]:
    """Primary claims of older epochs: refused for role decisions, but worth saying."""
    notes = []
    for name in sorted(v.reports):
        r = v.reports[name]
        if not v.current(r) and r.role == "Primary":
            notes.append(f"{name} still reports Primary at epoch {r.epoch} < Lease epoch {v.epoch}: "
                         "ignored (stale epoch refused)")
    return notes


def _data_problems(v: _View, name: str) -> list[Problem]:
    """Why node `name` is not a standby in sync (empty: it is)."""
    r = v.reports.get(name)
    if r is None:
        return [Problem("NodeReportMissing", f"{name} has not reported")]
    if not v.fresh(r):
        last = r.heartbeat_time.isoformat() if r.heartbeat_time else "never"
        return [Problem("NodeReportMissing", f"{name}'s report is older than "
                        f"{v.stale_after.total_seconds():.0f} s (last heartbeat {last})")]
    if not v.current(r):
        return [Problem("StaleEpoch", f"{name} reports epoch {r.epoch}, older than the Lease's "
                        f"{v.epoch}: its report is ignored (stale epoch refused)")]
    problems: list[Problem] = []
    if r.role != "Standby":
        problems.append(Problem("NotStandby", f"{name} reports role {r.role}"))
    for vname in v.s.cluster.spec.chain.volumes:
        names = v.volume_names(vname)
        entry = next((d for d in r.drbd if d.name in names), None)
        if entry is None:
            problems.append(Problem("PeerDisconnected", f"{name} reports no DRBD state for {vname}"))
            continue
        if entry.connection_state != "Connected":
            problems.append(Problem("PeerDisconnected",
                                    f"{name}: DRBD {vname} is {entry.connection_state}"))
        if entry.disk_state != "UpToDate":
            resync = " (resyncing)" if entry.replication_state.startswith("Sync") else ""
            problems.append(Problem("DiskNotUpToDate",
                                    f"{name}: DRBD {vname} disk is {entry.disk_state}{resync}"))
    if v.s.cluster.spec.chain.postgres is not None:
        pg = r.postgres
        max_lag = v.s.cluster.spec.failover.max_lag_seconds
        if pg is None or pg.role != "Standby":
            problems.append(Problem("PostgresNotStreaming",
                                    f"{name}: PostgreSQL is {pg.role if pg else 'not reported'}, "
                                    "not a standby"))
        elif pg.lag_seconds is None:
            problems.append(Problem("StandbyLagging", f"{name}: PostgreSQL lag not reported"))
        elif pg.lag_seconds > max_lag:
            problems.append(Problem("StandbyLagging", f"{name}: PostgreSQL lag above "
                                    f"spec.failover.maxLagSeconds ({max_lag} s)"))
    return problems


def _eligibility_problems(v: _View, name: str) -> list[Problem]:
    r = v.reports.get(name)
    if r is None or not v.fresh(r) or not v.current(r):
        return []
    if r.eligible is False:
        why = r.ineligible_reason or "no reason given"
        return [Problem("StandbyIneligible", f"{name} is not eligible to take over: {why}")]
    return []


def _why_not(v: _View) -> str:
    """Why the nodes that say so may not take the Lease, for a cluster without a primary (a
    NotSynchronous or LagTooHigh node, say)."""
    problems = [p.message for n in v.s.cluster.spec.nodes for p in _eligibility_problems(v, n.name)]
    return "".join(f"; {m}" for m in problems)


def _refusals(v: _View) -> list[str]:
    """The spec as the nodes refuse it: each fresh report whose ineligibleReason is
    "InvalidSpec: <field>: <problem>", of any epoch (a refusal is about the spec, not the
    Lease), the nodes that say the same thing together."""
    said: dict[str, list[str]] = {}
    for node in v.s.cluster.spec.nodes:
        r = v.reports.get(node.name)
        if r is not None and v.fresh(r) and r.ineligible_reason.startswith(f"{INVALID_SPEC}:"):
            detail = r.ineligible_reason.removeprefix(f"{INVALID_SPEC}:").strip()
            said.setdefault(detail, []).append(node.name)
    return [f"{_names(nodes)} {'refuses' if len(nodes) == 1 else 'refuse'} the spec: {detail}"
            for detail, nodes in said.items()]


def _split_brain(v: _View) -> Problem | None:
    claims = sorted(n for n, r in v.reports.items() if r.role == "Primary" and v.current(r))
    if len(claims) >= 2:
        return Problem("TwoPrimaries", f"{_names(claims)} all report Primary at epoch {v.epoch} or "
                       "later: only the Lease holder may be primary")
    if claims and v.holder is not None and claims[0] != v.holder:
        return Problem("PrimaryWithoutLease", f"{claims[0]} reports Primary at epoch "
                       f"{v.reports[claims[0]].epoch} but {v.holder} holds the Lease")
    drbd_primaries: dict[str, list[str]] = {}
    for name in sorted(v.reports):
        r = v.reports[name]
        if not v.current(r):
            continue
        for d in r.drbd:
            if d.role == "Primary":
                drbd_primaries.setdefault(d.name, []).append(name)
            if d.role == "Primary" and d.peer_role == "Primary":
                return Problem("DRBDSplitBrain", f"{name}: DRBD {d.name} is Primary and so is its peer")
        text = r.message.lower()
        if "split-brain" in text or "split brain" in text:
            return Problem("DRBDSplitBrain", f"{name} reports: {r.message}")
    for vol, nodes in sorted(drbd_primaries.items()):
        if len(nodes) >= 2:
            return Problem("DRBDSplitBrain", f"DRBD {vol} is Primary on {_names(nodes)}")
    return None


# --- switchover ---------------------------------------------------------------------------


def target_problems(v: _View, target: str) -> list[Problem]:
    """Why `target` may not take the Lease by a planned switchover now (empty: it is fit).

    Fit means: in spec.nodes, not in standby mode, its Node not in maintenance, a fresh report of
    the current epoch as Standby, eligible, every volume Connected and UpToDate, PostgreSQL lag 0.
    """
    spec = v.s.cluster.spec
    if target not in {n.name for n in spec.nodes}:
        return [Problem("TargetUnknown", f"{target} is not one of spec.nodes")]
    problems: list[Problem] = []
    if target in spec.standby_nodes:
        problems.append(Problem("TargetInStandbyMode", f"{target} is in spec.standbyNodes"))
    info = v.maintenance.get(target)
    if info is not None:
        problems.append(Problem("TargetInMaintenance", f"{target}'s Node is {info.why()}"))
    r = v.reports.get(target)
    if r is None:
        return [*problems, Problem("TargetReportMissing", f"{target} has not reported")]
    if not v.fresh(r):
        return [*problems, Problem("TargetReportStale", f"{target}'s report is older than "
                                   f"{v.stale_after.total_seconds():.0f} s")]
    if not v.current(r):
        return [*problems, Problem("TargetStaleEpoch", f"{target} reports epoch {r.epoch}, older "
                                   f"than the Lease's {v.epoch}")]
    if r.role != "Standby":
        problems.append(Problem("TargetNotStandby", f"{target} reports role {r.role}"))
    for vname in spec.chain.volumes:
        names = v.volume_names(vname)
        entry = next((d for d in r.drbd if d.name in names), None)
        if entry is None:
            problems.append(Problem("TargetDisconnected", f"{target} reports no DRBD state for {vname}"))
            continue
        if entry.connection_state != "Connected":
            problems.append(Problem("TargetDisconnected",
                                    f"{target}: DRBD {vname} is {entry.connection_state}"))
        if entry.disk_state != "UpToDate":
            problems.append(Problem("TargetNotUpToDate",
                                    f"{target}: DRBD {vname} disk is {entry.disk_state}"))
    if spec.chain.postgres is not None:
        pg = r.postgres
        if pg is None or pg.role != "Standby":
            problems.append(Problem("TargetNotStreaming", f"{target}: PostgreSQL is "
                                    f"{pg.role if pg else 'not reported'}, not a standby"))
        elif pg.lag_seconds is None or pg.lag_seconds != 0:
            lag = "not reported" if pg.lag_seconds is None else f"{pg.lag_seconds} s"
            problems.append(Problem("TargetLagging", f"{target}: PostgreSQL lag is {lag}; a planned "
                                    "switchover needs lag 0 so no acknowledged write is lost"))
    listed = v.s.lease.sync_standbys if v.s.lease else None
    if listed is not None and target not in listed:
        problems.append(Problem("TargetNotSynchronous", f"{target} is not a synchronous standby "
                                f"(the Lease lists {', '.join(listed) or 'none'}): it may lack "
                                "acknowledged writes"))
    # The Lease just read decides NotSynchronous; the target's own verdict may trail it.
    self_judged = r.ineligible_reason.startswith(NOT_SYNCHRONOUS) and listed is not None
    if r.eligible is not True and not self_judged:
        why = r.ineligible_reason or ("eligibility not reported" if r.eligible is None else
                                      "no reason given")
        problems.append(Problem("TargetIneligible", f"{target} is not eligible: {why}"))
    return problems


@dataclass
class _Flow:
    """The mutable state of one reconcile pass: what is written and what is said."""

    switchover: Switchover | None
    last_failover: FailoverRecord | None
    handled_request: str | None = None  # the last tandem.dev/switchover-id acted on
    forced: ForcedFailover | None = None
    events: list[Event] = field(default_factory=list)
    retry: str | None = None

    def say(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, _clip(message)))


def _request(v: _View, f: _Flow, target: str, why: str, *, refusal_event: bool = True,
             request_id: str | None = None) -> bool:
    """Check `target` and write Pending (True) or Refused (False)."""
    now = second(v.s.now)
    holder = v.holder or "nobody"
    problems = target_problems(v, target)
    invalid = validate(v.s)
    if invalid:
        problems = [Problem(INVALID_SPEC, "the spec is invalid: " + "; ".join(invalid)), *problems]
    if not problems:
        f.switchover = Switchover(target=target, from_epoch=v.epoch, phase="Pending", reason=why,
                                  message=_clip(f"planned switchover from {holder} to {target} "
                                                f"({_WHY[why]}): waiting for {holder} to demote "
                                                "and hand the Lease over"),
                                  requested_at=now, request_id=request_id)
        f.say("Normal", "SwitchoverRequested",
              f"planned switchover from {holder} to {target} requested ({_WHY[why]}): {target} is "
              "a connected, UpToDate standby with lag 0")
        return True
    message = _clip(f"switchover from {holder} to {target} ({_WHY[why]}) refused: "
                    + "; ".join(p.message for p in problems))
    old = f.switchover
    if (old is not None and old.phase == "Refused" and old.target == target
            and old.from_epoch == v.epoch and old.message == message
            and old.request_id == request_id):
        return False  # the same refusal again: nothing new to write or say
    f.switchover = Switchover(target=target, from_epoch=v.epoch, phase="Refused",
                              reason=problems[0].reason, message=message, requested_at=now,
                              request_id=request_id)
    if refusal_event:
        f.say("Warning", "SwitchoverRefused", message)
    return False


def _advance_switchover(v: _View, f: _Flow) -> None:
    """Move a Pending switchover on: hand-over seen, completion, or interruption."""
    sw = f.switchover
    if sw is None or sw.phase != "Pending" or v.epoch <= sw.from_epoch:
        return
    now = second(v.s.now)
    if v.holder != sw.target:
        f.switchover = sw.model_copy(update={
            "phase": "Refused", "reason": INTERRUPTED,
            "message": _clip(f"switchover to {sw.target} interrupted: the Lease went to "
                             f"{v.holder or 'nobody'} at epoch {v.epoch} instead"),
        })
        f.say("Warning", "SwitchoverInterrupted",
              f"switchover to {sw.target} interrupted: the Lease went to {v.holder or 'nobody'} "
              f"at epoch {v.epoch} instead")
        return
    r = v.reports.get(sw.target)
    if r is None or r.role != "Primary" or r.epoch < v.epoch:
        message = _clip(f"{sw.target} holds the Lease at epoch {v.epoch}; waiting for it to "
                        "report Primary")
        if sw.message != message:
            f.switchover = sw.model_copy(update={"message": message})
        return
    done = second(r.heartbeat_time) if r.heartbeat_time else now
    done = max(done, sw.requested_at)
    duration = _ms(sw.requested_at, done)
    record = f.last_failover
    origin = record.from_node if (record and record.planned and record.to_node == sw.target) else None
    f.last_failover = failover_record(
        from_node=origin, to_node=sw.target, reason=sw.reason or REQUESTED, duration_ms=duration,
        time=record.time if (record and record.planned and record.to_node == sw.target) else done,
        planned=True)
    f.switchover = sw.model_copy(update={
        "phase": "Completed",
        "message": _clip(f"{sw.target} is primary at epoch {v.epoch}; switchover took "
                         f"{human_duration(duration)}"),
    })
    f.say("Normal", "SwitchoverCompleted",
          f"switchover from {origin or 'the previous primary'} to {sw.target} completed "
          f"({_WHY.get(sw.reason, sw.reason)}): {sw.target} is primary at epoch {v.epoch}; "
          f"{human_duration(duration)}")


def _new_switchover(v: _View, f: _Flow) -> None:
    """Start a switchover when one is wanted: spec.primary changed, the primary's Node is in
    maintenance, the dependency moved, or auto-failback. Only one runs at a time."""
    s = v.s
    spec = s.cluster.spec
    active = f.switchover is not None and f.switchover.phase == "Pending"
    change = s.primary_change
    if change is not None and change.new is not None and change.new != change.old:
        if active and f.switchover is not None and f.switchover.target != change.new:
            f.retry = (f"spec.primary changed to {change.new} while the switchover to "
                       f"{f.switchover.target} is in progress: it is handled once that one ends")
            return
        if (not active and v.holder is not None and change.new != v.holder and not s.deleting
                and _request(v, f, change.new, REQUESTED)):
            return
    if not active and _annotated_request(v, f):
        return
    if active or v.holder is None or s.deleting:
        return
    holder = v.holder
    info = v.maintenance.get(holder)
    if info is not None:
        others = [n.name for n in spec.nodes if n.name != holder]
        if spec.primary in others:
            others.remove(spec.primary)
            others.insert(0, spec.primary)
        for target in others:
            if not target_problems(v, target):
                _request(v, f, target, NODE_MAINTENANCE)
                return
        details = "; ".join(p.message for t in others for p in target_problems(v, t)[:2])
        message = _clip(f"{holder}'s Node is {info.why()} but no other node is fit for a planned "
                        f"switchover: {details}")
        old = f.switchover
        if not (old and old.phase == "Refused" and old.reason == "NoEligibleTarget"
                and old.from_epoch == v.epoch and old.message == message):
            f.switchover = Switchover(target=others[0] if others else holder, from_epoch=v.epoch,
                                      phase="Refused", reason="NoEligibleTarget", message=message,
                                      requested_at=second(s.now))
            f.say("Warning", "SwitchoverRefused", message)
        return
    dep = _dependency(v)
    if dep is not None:
        _, dep_primary, dep_ready = dep
        if (dep_ready and dep_primary is not None and dep_primary != holder
                and dep_primary in {n.name for n in spec.nodes}
                and not target_problems(v, dep_primary)):
            _request(v, f, dep_primary, FOLLOW_DEPENDENCY)
            return
    if (spec.failover.auto_failback and spec.primary is not None and spec.primary != holder
            and not target_problems(v, spec.primary)):
        _request(v, f, spec.primary, AUTO_FAILBACK)
        return
    if _refused_request_outstanding(v, f) and spec.primary is not None \
            and not target_problems(v, spec.primary):
        _request(v, f, spec.primary, REQUESTED)


def _refused_request_outstanding(v: _View, f: _Flow) -> bool:
    """A move to spec.primary was refused in this epoch (the target was not fit yet): it is
    retried once the target is fit, so that one edit of spec.primary is enough. A failover
    since then (a new epoch) ends it: where the cluster goes next is the failover's."""
    sw, preferred = f.switchover, v.s.cluster.spec.primary
    return (sw is not None and sw.phase == "Refused" and sw.request_id is None
            and sw.reason != INTERRUPTED and preferred is not None and sw.target == preferred
            and preferred != v.holder and sw.from_epoch == v.epoch)


def switchover_request(annotations: Mapping[str, str]) -> tuple[str, str] | None:
    """(target, request id) of the HACluster's switchover annotations, when both are set."""
    target = annotations.get(SWITCHOVER_ANNOTATION, "").strip()
    request_id = annotations.get(SWITCHOVER_ID_ANNOTATION, "").strip()
    return (target, request_id) if target and request_id else None


_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,62}")


def _annotated_request(v: _View, f: _Flow) -> bool:
    """Carry out a new tandem.dev/switchover request once (True: acted on it this pass): to any
    fit node, also the one spec.primary names; refused with the reason otherwise."""
    found = switchover_request(v.s.annotations)
    if found is None or found[1][:63] == f.handled_request or v.s.deleting:
        return False
    target, request_id = found
    now = second(v.s.now)
    f.handled_request = request_id[:63]  # a bad one too: refused once, not on every pass
    names = [n.name for n in v.s.cluster.spec.nodes]
    problem = None
    if not _REQUEST_ID.fullmatch(request_id):
        problem = (f"{SWITCHOVER_ID_ANNOTATION} {request_id[:63]!r} is not a request id: use 1 to "
                   "63 letters, digits, '.', '_', ':' or '-', e.g. a timestamp")
    elif target not in names:
        problem = (f"{SWITCHOVER_ANNOTATION} names {target[:63]!r}, which is not one of "
                   f"spec.nodes ({_names(names)})")
    elif v.holder is None:
        problem = "nobody holds the Lease: there is no primary to switch over from"
    if problem is not None:
        f.switchover = Switchover(target=target if target in names else names[0],
                                  from_epoch=v.epoch, phase="Refused", reason="InvalidRequest",
                                  message=_clip(f"switchover request {request_id[:63]} refused: "
                                                f"{problem}"),
                                  requested_at=now, request_id=f.handled_request)
        f.say("Warning", "SwitchoverRefused", f.switchover.message)
        return True
    if target == v.holder:
        message = f"{target} is already primary at epoch {v.epoch}: nothing to move"
        f.switchover = Switchover(target=target, from_epoch=v.epoch, phase="Completed",
                                  reason=REQUEST_ANNOTATION, message=message, requested_at=now,
                                  request_id=request_id)
        f.say("Normal", "SwitchoverCompleted", f"switchover request {request_id}: {message}")
        return True
    _request(v, f, target, REQUEST_ANNOTATION, request_id=request_id)
    return True


# --- forced failover ----------------------------------------------------------------------

FORCED_FAILOVER = "ForcedFailover"
FORCED_FAILOVER_REFUSED = "ForcedFailoverRefused"


def forced_failover_request(annotations: Mapping[str, str]) -> tuple[str, str, bool] | None:
    """(target, request id, data loss accepted) of the forced failover annotations, when the
    target and the id are set."""
    target = annotations.get(FORCE_FAILOVER_ANNOTATION, "").strip()
    request_id = annotations.get(FORCE_FAILOVER_ID_ANNOTATION, "").strip()
    accepted = annotations.get(ACCEPT_DATA_LOSS_ANNOTATION, "").strip() == "true"
    return (target, request_id, accepted) if target and request_id else None


def byte_size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def lsn_value(text: str | None) -> int | None:
    """A PostgreSQL LSN ("16/B374D848") as a byte position; None when it is not one."""
    high, _, low = (text or "").partition("/")
    try:
        return (int(high, 16) << 32) + int(low, 16)
    except ValueError:
        return None


def renewal_age(cluster: HACluster, lease: LeaseState | None,
                now: datetime) -> tuple[float, float] | None:
    """(seconds since the holder last renewed, leaseDuration in seconds); None without a
    holder or a renewal time. An age under the duration means the holder may well be alive."""
    if lease is None or lease.holder is None or lease.renew_time is None:
        return None
    duration = lease.duration_seconds or cluster.spec.leases.lease_duration_ms / 1000
    return (now - lease.renew_time).total_seconds(), duration


def loss_report(cluster: HACluster, lease: LeaseState | None, target: str,
                now: datetime) -> list[str]:
    """What a forced failover to `target` may lose, one finding a line, from the reports and
    the Lease as read: whether the holder still renews, the target's role and eligibility,
    whether the Lease lists it as a synchronous standby, its PostgreSQL position against the
    last primary's, its DRBD disks and out-of-sync bytes."""
    status = cluster.status or HAClusterStatus()
    spec = cluster.spec
    reports = {r.name: r for r in status.nodes}
    holder = lease.holder if lease else None
    last = holder if holder not in (None, target) else (
        status.primary if status.primary != target else None)
    lines = []
    if lease is None:
        lines.append("the Lease does not exist yet: no node has been primary")
    elif holder is None:
        lines.append(f"the Lease is free at epoch {lease.epoch}: no node is primary")
    elif holder == target:
        lines.append(f"{target} already holds the Lease (epoch {lease.epoch}): nothing to force")
    elif (renewed := renewal_age(cluster, lease, now)) is None:
        lines.append(f"{holder} holds the Lease at epoch {lease.epoch}; its last renewal is not "
                     "known")
    else:
        age, duration = renewed
        if age < duration:
            lines.append(f"{holder} holds the Lease at epoch {lease.epoch} and renewed it "
                         f"{age:.0f} s ago (leaseDuration {duration:g} s): it looks alive; while "
                         "it renews, a forced failover is refused: use switchover")
        else:
            lines.append(f"{holder} holds the Lease at epoch {lease.epoch} but last renewed it "
                         f"{age:.0f} s ago (leaseDuration {duration:g} s): it stopped renewing")
    report = reports.get(target)
    if report is None:
        lines.append(f"{target} has not reported: what its disks and database hold is unknown")
    else:
        beat = (f"{(now - report.heartbeat_time).total_seconds():.0f} s ago"
                if report.heartbeat_time else "never")
        fit = "eligible to take over" if report.eligible else (
            f"not eligible: {report.ineligible_reason or 'no reason given'}")
        lines.append(f"{target} reports role {report.role} at epoch {report.epoch} (heartbeat "
                     f"{beat}); {fit}")
    listed = lease.sync_standbys if lease else None
    if spec.chain.postgres is not None and holder != target:
        if listed is None:
            lines.append("the Lease lists no synchronous standbys: commits acknowledged by the "
                         f"last primary may be missing on {target}")
        elif target in listed:
            lines.append(f"the Lease lists {target} as a synchronous standby: it confirmed "
                         "every acknowledged commit")
        else:
            lines.append(f"the Lease does not list {target} as a synchronous standby (it lists "
                         f"{', '.join(listed) or 'none'}): commits acknowledged by "
                         f"{last or 'the last primary'} may be missing on {target}")
    if spec.chain.postgres is not None and report is not None:
        pg = report.postgres
        if pg is None or pg.role == "Unknown":
            lines.append(f"PostgreSQL on {target}: not reported")
        else:
            lag = f", lag {pg.lag_seconds} s" if pg.lag_seconds is not None else ""
            lines.append(f"PostgreSQL on {target}: {pg.role}, at LSN {pg.lsn or 'unknown'}{lag}")
        theirs = reports.get(last) if last else None
        mine = lsn_value(pg.lsn) if pg else None
        if theirs is not None and theirs.postgres is not None and theirs.postgres.lsn:
            other = lsn_value(theirs.postgres.lsn)
            behind = (f": {target} is {byte_size(other - mine)} of WAL behind that"
                      if mine is not None and other is not None and other > mine else "")
            lines.append(f"{last} last reported LSN {theirs.postgres.lsn}{behind}; what it "
                         "wrote after its last report is unknown")
    if report is not None:
        for d in report.drbd:
            lost = "" if d.disk_state == "UpToDate" else (
                ": not UpToDate, promoted with drbdadm primary --force; the blocks it lacks are "
                "lost")
            lines.append(f"DRBD {d.name} on {target}: disk {d.disk_state}, {d.connection_state}, "
                         f"peer disk {d.peer_disk_state}, {byte_size(d.out_of_sync_bytes)} out "
                         f"of sync{lost}")
    theirs = reports.get(last) if last else None
    for d in theirs.drbd if theirs is not None else []:
        if d.out_of_sync_bytes:
            lines.append(f"{last} reported {byte_size(d.out_of_sync_bytes)} of DRBD {d.name} "
                         f"out of sync with its peer")
    return lines


def _forced_failover(v: _View, f: _Flow) -> None:
    """Judge a new forced failover request once (its id), then follow a Pending one to its
    end: the target primary (Completed), or refused by its agent or overtaken."""
    found = forced_failover_request(v.s.annotations)
    old = f.forced
    if found is not None and (old is None or found[1][:63] != old.request_id):
        _judge_forced(v, f, *found)
        return
    if old is None or old.phase != "Pending":
        return
    target = old.target or ""
    report = v.reports.get(target)
    settled = report.forced_failover if report is not None else None
    mine = settled is not None and settled.request_id == old.request_id
    if mine and settled is not None and settled.phase == "Refused":
        _end_forced(f, old, "Refused", "RefusedByAgent", settled.message, whole=True)
        return
    if v.epoch <= old.from_epoch:
        if found is None:
            _end_forced(f, old, "Refused", "Withdrawn", "the annotations were removed: nothing "
                        "is forced")
        return
    if v.holder != target:
        _end_forced(f, old, "Refused", INTERRUPTED, f"the Lease went to {v.holder or 'nobody'} "
                    f"at epoch {v.epoch} instead")
        return
    if report is None or report.role != "Primary" or report.epoch < v.epoch:
        message = _clip(f"{target} took the Lease at epoch {v.epoch}; waiting for it to report "
                        "Primary")
        if old.message != message:
            f.forced = old.model_copy(update={"message": message})
        return
    how = "by the forced failover" if mine else "(it took over by itself)"
    _end_forced(f, old, "Completed", FORCED_FAILOVER,
                f"{target} is primary at epoch {v.epoch} {how}")


def _end_forced(f: _Flow, old: ForcedFailover, phase: Literal["Completed", "Refused"],
                reason: str, message: str, *, whole: bool = False) -> None:
    """`whole`: the message already says which request ended and how (the agent's own)."""
    said = _clip(f"{message} (to {old.target})" if whole else
                 f"forced failover to {old.target} (request {old.request_id}) "
                 f"{phase.lower()}: {message}")
    f.forced = old.model_copy(update={"phase": phase, "reason": reason, "message": said})
    if phase == "Completed":
        f.say("Warning", FORCED_FAILOVER, f"{said}; what may have been lost: {old.data_at_risk}")
    else:
        f.say("Warning", FORCED_FAILOVER_REFUSED, said)


def _judge_forced(v: _View, f: _Flow, target: str, request_id: str, accepted: bool) -> None:
    """Refuse a request that cannot be carried out (with why and the fix), complete one that
    needs nothing, or make it Pending with what may be lost."""
    s = v.s
    spec = s.cluster.spec
    names = [n.name for n in spec.nodes]
    rid = request_id[:63]
    report = v.reports.get(target)
    problem: tuple[str, str] | None = None
    if not _REQUEST_ID.fullmatch(request_id):
        problem = ("InvalidRequest", f"{FORCE_FAILOVER_ID_ANNOTATION} {rid!r} is not a request "
                   "id: use 1 to 63 letters, digits, '.', '_', ':' or '-', e.g. a timestamp")
    elif target not in names:
        problem = ("InvalidRequest", f"{FORCE_FAILOVER_ANNOTATION} names {target[:63]!r}, which "
                   f"is not one of spec.nodes ({_names(names)})")
    elif not accepted:
        problem = ("DataLossNotAccepted", f"{ACCEPT_DATA_LOSS_ANNOTATION} is not \"true\": "
                   "nothing is forced; set it, with a new request id, to accept losing data")
    elif s.deleting:
        problem = (DELETING, "the HACluster is being deleted")
    elif spec.paused:
        problem = (PAUSED, "spec.paused is set: resume the cluster first")
    elif target in spec.standby_nodes:
        problem = ("TargetInStandbyMode", f"{target} is in spec.standbyNodes: bring it online "
                   "first")
    elif report is not None and report.ineligible_reason.startswith(f"{INVALID_SPEC}:"):
        problem = (INVALID_SPEC, f"{target} refuses the spec: {report.ineligible_reason}")
    known = target in names
    risk = _clip("; ".join(loss_report(s.cluster, s.lease, target, s.now))) if known else ""
    forced = ForcedFailover(request_id=rid, target=target if known else None,
                            from_epoch=v.epoch, phase="Pending", data_at_risk=risk,
                            requested_at=second(s.now))
    if problem is not None:
        f.forced = forced.model_copy(update={"phase": "Refused", "reason": problem[0], "message": _clip(
            f"forced failover to {target[:63]} (request {rid}) refused: {problem[1]}")})
        f.say("Warning", FORCED_FAILOVER_REFUSED, f.forced.message)
    elif v.holder == target:
        f.forced = forced.model_copy(update={"phase": "Completed", "message": _clip(
            f"forced failover to {target} (request {rid}): {target} already holds the Lease "
            f"at epoch {v.epoch}: nothing to force")})
        f.say("Normal", FORCED_FAILOVER, f.forced.message)
    else:
        f.forced = forced.model_copy(update={"message": _clip(
            f"forced failover to {target} (request {rid}) pending, data loss accepted: waiting "
            f"for {target} to take the Lease once it is free or unchanged for leaseDuration")})
        f.say("Warning", FORCED_FAILOVER, f"forced failover to {target} requested (request "
              f"{rid}), data loss accepted; what may be lost: {risk}")


# --- Lease transitions and failover records -------------------------------------------------


def _observe_lease(v: _View, f: _Flow) -> None:
    """Compare the Lease with what status last recorded: failover, hand-over, release."""
    s = v.s
    status = s.cluster.status or HAClusterStatus()
    lease = s.lease
    prev_epoch, prev_primary = status.epoch, status.primary
    if lease is None or prev_epoch is None:
        return
    holder, epoch = lease.holder, lease.epoch
    if epoch < prev_epoch:
        f.say("Warning", "EpochWentBackwards",
              f"Lease {lease_name(s.name)} is at epoch {epoch}, status recorded {prev_epoch}: was the "
              "Lease deleted and recreated by hand? Agents refuse reports of older epochs")
        return
    if epoch == prev_epoch:
        if holder is None and prev_primary is not None:
            why = "the HACluster is being deleted" if s.deleting else "it tore its chain down"
            f.say("Normal" if s.deleting else "Warning", "LeaseReleased",
                  f"{prev_primary} released the Lease at epoch {epoch}: {why}")
        return
    record = s.history.get(prev_epoch)
    origin = prev_primary or (record.holder if record else None)
    if holder is None:
        f.say("Warning", "LeaseReleased", f"the Lease is free at epoch {epoch}"
              + (f" (last held by {origin})" if origin else ""))
        return
    sw = f.switchover
    if sw is not None and sw.phase == "Pending" and sw.target == holder and epoch > sw.from_epoch:
        f.last_failover = failover_record(
            from_node=origin, to_node=holder, reason=sw.reason or REQUESTED, duration_ms=None,
            time=second(lease.acquire_time or s.now), planned=True)
        f.say("Normal", "LeaseHandedOver",
              f"{origin or 'the previous primary'} handed the Lease to {holder} at epoch {epoch} "
              f"(planned switchover, {_WHY.get(sw.reason, sw.reason)}); waiting for {holder} to "
              "report Primary")
        return
    if origin is None:
        f.say("Normal", "PrimaryElected", f"{holder} took the Lease at epoch {epoch}"
              + (" (first primary)" if prev_epoch == 0 else ""))
        return
    if origin == holder:
        f.say("Warning", "LeaseReacquired",
              f"{holder} took the Lease again at epoch {epoch} (it was primary at epoch {prev_epoch}); "
              "its chain was restarted")
        return
    reason, cause = _failover_cause(v, origin, prev_epoch, record)
    forced = f.forced
    if forced is not None and forced.phase == "Pending" and forced.target == holder:
        reason, cause = FORCED_FAILOVER, (f"forced failover (request {forced.request_id}), data "
                                          "loss accepted")
    duration = _ms(record.renew_time if record and record.holder == origin else None,
                   lease.acquire_time)
    f.last_failover = failover_record(
from_node=origin, to_node=holder, reason=reason,
                                     duration_ms=duration,
                                     time=second(lease.acquire_time or s.now), planned=False)
    hops = f" (epoch {prev_epoch} to {epoch})" if epoch > prev_epoch + 1 else ""
    suffix = human_duration(duration) if duration is not None else (
        "duration unknown (the operator did not see the last renewal)")
    f.say("Warning", "FailedOver", f"failed over from {origin} to {holder}: {cause}; {suffix}{hops}")


def _failover_cause(v: _View, origin: str, prev_epoch: int, record: EpochRecord | None) -> tuple[str, str]:
    spec = v.s.cluster.spec
    old = v.reports.get(origin)
    if origin in spec.standby_nodes:
        return "StandbyMode", f"{origin} was put in standby (spec.standbyNodes)"
    if old is not None and old.epoch >= prev_epoch and old.ineligible_reason.startswith("RestartBackoff"):
        return "ServiceFailed", f"services kept failing on {origin}, which gave the Lease up"
    if record is not None and record.released and record.holder == origin:
        return "LeaseReleased", f"{origin} released the lease"
    if old is not None and old.role == "Fenced":
        return "LeaseExpired", f"lease expired ({origin} fenced itself)"
    return "LeaseExpired", "lease expired"


# --- conditions ---------------------------------------------------------------------------


def _condition(prev: Mapping[str, Condition], type_: str, status: Literal["True", "False", "Unknown"],
               reason: str, message: str, *, s: Snapshot) -> Condition:
    old = prev.get(type_)
    since = old.last_transition_time if old is not None and old.status == status else second(s.now)
    return Condition(type=type_, status=status, reason=reason, message=_clip(message),
                     observed_generation=s.generation, last_transition_time=since)


def _dependency(v: _View) -> tuple[str, str | None, bool] | None:
    """(name, its primary, its Ready is True) of spec.dependsOn, if it exists."""
    dep = v.s.cluster.spec.depends_on
    if dep is None or dep.name not in v.s.clusters or dep.name == v.s.name:
        return None
    other = v.s.clusters[dep.name].status or HAClusterStatus()
    ready = next((c for c in other.conditions if c.type == "Ready"), None)
    return dep.name, other.primary, ready is not None and ready.status == "True"


def _conditions(v: _View, f: _Flow, invalid: Sequence[str]) -> list[Condition]:
    s = v.s
    status = s.cluster.status or HAClusterStatus()
    prev = {c.type: c for c in status.conditions}
    spec = s.cluster.spec
    holder, epoch = v.holder, v.epoch
    notes = _stale_notes(v)
    note = (" (" + "; ".join(notes) + ")") if notes else ""

    standbys = [n.name for n in spec.nodes if n.name != holder]
    data = {n: _data_problems(v, n) for n in standbys}
    elig = {n: _eligibility_problems(v, n) for n in standbys}
    failed = []
    holder_report = v.reports.get(holder) if holder else None
    if holder_report is not None and v.current(holder_report) and v.fresh(holder_report):
        failed = [svc.name for svc in holder_report.services if svc.state == "Failed"]

    # Replicating
    data_problems = [p for n in standbys for p in data[n]]
    if holder is None:
        replicating = _condition(prev, "Replicating", "False", NO_PRIMARY,
                                 "no primary: nothing to replicate from", s=s)
    elif data_problems:
        replicating = _condition(prev, "Replicating", "False", data_problems[0].reason,
                                 "; ".join(p.message for p in data_problems), s=s)
    else:
        replicating = _condition(prev, "Replicating", "True", "InSync",
                                 f"{_names(standbys)} in sync with {holder}: DRBD Connected/UpToDate"
                                 + (", PostgreSQL lag within policy" if spec.chain.postgres else ""), s=s)

    # Degraded
    all_problems = data_problems + [p for n in standbys for p in elig[n]]
    if failed:
        all_problems.insert(0, Problem("ServiceFailed", f"on {holder}: {_names(failed)} failed"))
    if holder is None:
        degraded = _condition(prev, "Degraded", "Unknown", NO_PRIMARY,
                              "no primary: redundancy cannot be judged", s=s)
    elif all_problems:
        degraded = _condition(prev, "Degraded", "True", all_problems[0].reason,
                              "; ".join(p.message for p in all_problems), s=s)
    else:
        degraded = _condition(prev, "Degraded", "False", "Healthy",
                              "every standby is in sync and eligible", s=s)

    # SplitBrain
    brain = _split_brain(v)
    if brain is not None:
        split = _condition(prev, "SplitBrain", "True", brain.reason, brain.message, s=s)
    else:
        split = _condition(prev, "SplitBrain", "False", "NotDetected",
                           "at most one node claims Primary for the current epoch" + note, s=s)

    # SwitchoverInProgress
    sw = f.switchover
    if sw is not None and sw.phase == "Pending":
        switching = _condition(prev, "SwitchoverInProgress", "True", sw.reason or REQUESTED,
                               sw.message, s=s)
    elif sw is not None:
        switching = _condition(prev, "SwitchoverInProgress", "False",
                               "Completed" if sw.phase == "Completed" else "Refused", sw.message, s=s)
    else:
        switching = _condition(prev, "SwitchoverInProgress", "False", "NoSwitchover",
                               "no switchover requested", s=s)

    # Ready: the one-word state of the STATUS column
    ready_status: Literal["True", "False", "Unknown"] = "False"
    dep = _dependency(v)
    if s.deleting:
        reason = DELETING
        message = "deletion requested: the agents tear the chain down and release the Lease"
    elif invalid:
        reason, message = INVALID_SPEC, "; ".join(invalid)
    elif brain is not None:
        reason, message = SPLIT_BRAIN, brain.message
    elif spec.paused:
        reason = PAUSED
        serving = (holder_report is not None and v.fresh(holder_report)
                   and holder_report.role == "Primary" and holder_report.epoch >= epoch)
        ready_status = "True" if serving else "False"
        message = ("paused (spec.paused): the agents bring up, repair, fail over and switch "
                   "over nothing; " + (f"{holder} holds the Lease at epoch {epoch}" if holder
                                       else "nobody holds the Lease"))
    elif s.lease is None or (holder is None and epoch == 0):
        reason = PENDING
        prefer = f" (preferred: {spec.primary})" if spec.primary else ""
        message = f"waiting for an agent to take Lease {lease_name(s.name)}{prefer}" + _why_not(v)
    elif holder is None:
        reason = NO_PRIMARY
        message = (f"nobody holds Lease {lease_name(s.name)} (epoch {epoch}); waiting for an eligible "
                   "node to take it" + _why_not(v))
    elif sw is not None and sw.phase == "Pending":
        reason, message = SWITCHING_OVER, sw.message
    elif dep is not None and not (dep[2] and dep[1] == holder):
        reason = WAITING_FOR_DEPENDENCY
        message = (f"waiting for HACluster {dep[0]} to be Ready on {holder} (it is "
                   f"{'Ready' if dep[2] else 'not Ready'}, primary {dep[1] or 'none'})")
    elif holder_report is None or not v.fresh(holder_report):
        ready_status, reason = "Unknown", NO_REPORT
        message = (f"{holder} holds the Lease at epoch {epoch} but its report is missing or older "
                   f"than {v.stale_after.total_seconds():.0f} s")
    elif holder_report.role != "Primary" or holder_report.epoch < epoch:
        reason = PROMOTING
        message = (f"{holder} holds the Lease at epoch {epoch} and has not reported Primary yet "
                   f"(it reports {holder_report.role} at epoch {holder_report.epoch})")
    elif degraded.status == "True":
        ready_status, reason = "True", DEGRADED
        message = f"{holder} is primary at epoch {epoch}; degraded: {degraded.message}"
    else:
        ready_status, reason = "True", REPLICATING
        message = f"{holder} is primary at epoch {epoch}; {replicating.message}"
    if notes and reason not in (DEGRADED, SPLIT_BRAIN):
        message += note
    ready = _condition(prev, "Ready", ready_status, reason, message, s=s)
    return [ready, replicating, degraded, split, switching, _preferred(v, f, prev)]


def _preferred(v: _View, f: _Flow, prev: Mapping[str, Condition]) -> Condition:
    """Does the primary agree with spec.primary, and if not, why and what happens next: so that
    spec.primary never silently disagrees with the Lease."""
    spec, holder, s = v.s.cluster.spec, v.holder, v.s
    preferred = spec.primary
    sw = f.switchover
    if preferred is None:
        return _condition(prev, "PreferredPrimary", "True", "NoPreference",
                          "spec.primary is not set: any eligible node may be primary", s=s)
    if holder == preferred:
        return _condition(prev, "PreferredPrimary", "True", "AtPreferred",
                          f"{holder} is primary, as spec.primary says", s=s)
    if holder is None:
        return _condition(prev, "PreferredPrimary", "Unknown", NO_PRIMARY,
                          f"no primary yet; {preferred} is preferred", s=s)
    if sw is not None and sw.phase == "Pending" and sw.target == preferred:
        return _condition(prev, "PreferredPrimary", "False", SWITCHING_OVER,
                          f"switching over from {holder} to {preferred}", s=s)
    problems = "; ".join(p.message for p in target_problems(v, preferred)[:2])
    unfit = f" ({problems})" if problems else ""
    since = _since(v)
    if spec.failover.auto_failback:
        return _condition(prev, "PreferredPrimary", "False", "FailbackWaiting",
                          f"primary {holder} differs from spec.primary {preferred}{since}; "
                          f"autoFailback moves it back once {preferred} is fit{unfit}", s=s)
    if _refused_request_outstanding(v, f):
        return _condition(prev, "PreferredPrimary", "False", "SwitchoverRetrying",
                          f"the switchover to {preferred} was refused{unfit}; it is retried as "
                          f"soon as {preferred} is fit", s=s)
    return _condition(prev, "PreferredPrimary", "False", "PrimaryDiffers",
                      f"primary {holder} differs from spec.primary {preferred}{since}; "
                      "autoFailback is false, so it stays: move it with `kubectl tandem "
                      f"switchover {s.name} --to {preferred}` or the {SWITCHOVER_ANNOTATION} "
                      "annotation", s=s)


APPLYING = "Applying"
# SpecApplied reasons that need a person (the others resolve by themselves).
_SPEC_PROBLEMS = ("NotApplicable", INVALID_SPEC, "ApplyFailed")


def _spec_applied(v: _View, prev: Mapping[str, Condition]) -> Condition:
    """Does every node run the newest spec? The agents apply most changes live; one that needs
    the chain down waits on the primary for the next switchover, and its report says so."""
    s = v.s
    reports = [r for n in s.cluster.spec.nodes if (r := v.reports.get(n.name)) is not None
               and v.fresh(r) and r.applied_generation is not None]
    if not reports:
        return _condition(prev, "SpecApplied", "Unknown", NO_REPORT,
                          "no node has reported which generation of the spec it runs", s=s)
    waiting = [r for r in reports if r.pending_change]
    if waiting:
        word = waiting[0].pending_change.partition(":")[0]
        reason = word if word.isalpha() else APPLYING
        return _condition(prev, "SpecApplied", "False", reason,
                          "; ".join(f"{r.name}: {r.pending_change}" for r in waiting), s=s)
    behind = [r for r in reports if (r.applied_generation or 0) < s.generation]
    if behind:
        return _condition(prev, "SpecApplied", "False", APPLYING, "; ".join(
            f"{r.name} runs generation {r.applied_generation}" for r in behind)
            + f"; applying generation {s.generation}", s=s)
    return _condition(prev, "SpecApplied", "True", "Applied",
                      f"{_names(r.name for r in reports)} run generation {s.generation} of the "
                      "spec", s=s)


def _since(v: _View) -> str:
    """When the primary last moved, from status.lastFailover."""
    record = (v.s.cluster.status or HAClusterStatus()).last_failover
    if record is None or record.to_node != v.holder:
        return ""
    what = "switchover" if record.planned else "failover"
    return f" since the {what} at {record.time.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def _transition_events(old: HAClusterStatus, new: Sequence[Condition], now: datetime) -> list[Event]:
    prev = {c.type: c for c in old.conditions}
    events = []
    cur = {c.type: c for c in new}
    ready, was = cur["Ready"], prev.get("Ready")
    if (was is None or was.status != ready.status or was.reason != ready.reason
            or (ready.reason in (INVALID_SPEC, SPLIT_BRAIN) and was.message != ready.message)):
        after = ""
        if was is not None and was.reason != ready.reason:
            after = (f" (after {human_duration(_ms(was.last_transition_time, now))} "
                     f"{was.reason})")
        kind: Literal["Normal", "Warning"] = "Normal" if ready.reason in _CALM_STATES else "Warning"
        events.append(Event(kind, ready.reason, _clip(f"Ready={ready.status}{after}: {ready.message}")))
    applied, was_applied = cur.get("SpecApplied"), prev.get("SpecApplied")
    if applied is not None and applied.status == "False" and applied.reason != APPLYING \
            and (was_applied is None or was_applied.reason != applied.reason):
        events.append(Event("Warning" if applied.reason in _SPEC_PROBLEMS else "Normal",
                            applied.reason, applied.message))
    split, was_split = cur["SplitBrain"], prev.get("SplitBrain")
    if split.status == "True" and (was_split is None or was_split.status != "True"):
        events.append(Event("Warning", "SplitBrain", split.message))
    if split.status != "True" and was_split is not None and was_split.status == "True":
        dur = human_duration(_ms(was_split.last_transition_time, now))
        events.append(Event("Normal", "SplitBrainResolved", f"split brain resolved after {dur}"))
    return events


# --- the primary's resources and the agents' repairs ------------------------------------------


def _chain_has_members(spec: HAClusterSpec) -> bool:
    chain = spec.chain
    return bool(chain.volumes or chain.mounts or chain.bind_mounts or chain.floating_ips
                or chain.postgres is not None or chain.services)


def _said(r: ResourceReport) -> str:
    return f"{r.kind} {r.name} {r.state}" + (f": {r.message}" if r.message else "")


def _resources(v: _View, prev: Mapping[str, Condition],
               before: Announced) -> tuple[Condition, list[ResourceRef], list[Event]]:
    """ResourcesHealthy from the holder's report, the holder's resources that are not Healthy
    (kept in status.announced.unhealthy), and a ResourceFailed Event for each one that was not
    in the stored list: a resource becoming unhealthy is said once, across restarts too."""
    s, holder = v.s, v.holder
    kept = [r for r in before.unhealthy if r.node == holder]

    def judged(status: Literal["True", "False", "Unknown"], reason: str, message: str) -> Condition:
        return _condition(prev, "ResourcesHealthy", status, reason, message, s=s)

    if holder is None:
        return judged("Unknown", NO_PRIMARY, "no primary: nothing is monitored"), [], []
    report = v.reports.get(holder)
    if report is None or not v.fresh(report):
        return judged("Unknown", NO_REPORT, f"{holder} holds the Lease but its report is missing "
                      f"or older than {v.stale_after.total_seconds():.0f} s"), kept, []
    if not v.current(report) or report.role != "Primary":
        return judged("Unknown", PROMOTING, f"{holder} holds the Lease at epoch {v.epoch} and has "
                      "not reported Primary yet: its monitors have not started"), kept, []
    bad = [r for r in report.resources if r.state in _UNHEALTHY_STATES]
    refs = [ResourceRef(node=holder, kind=r.kind, name=r.name) for r in bad]
    known = set(before.unhealthy)
    events = [Event("Warning", RESOURCE_FAILED, _clip(
        f"{r.kind} {r.name} on {holder} is {r.state}" + (f": {r.message}" if r.message else "")))
        for r, ref in zip(bad, refs, strict=True) if ref not in known]
    if bad:
        reason = REPAIRING if all(r.state == "Repairing" for r in bad) else RESOURCE_FAILED
        return judged("False", reason, f"on {holder}: " + "; ".join(_said(r) for r in bad)), refs, events
    unchecked = [r for r in report.resources if r.state != "Healthy"]
    if unchecked:
        return judged("Unknown", NOT_CHECKED, f"on {holder}: not checked yet: "
                      + _names(f"{r.kind} {r.name}" for r in unchecked)), refs, events
    if not report.resources and _chain_has_members(s.cluster.spec):
        return judged("Unknown", NOT_CHECKED, f"{holder} reports no resource states yet"), refs, events
    if not report.resources:
        return judged("True", HEALTHY, "the chain has no members to monitor"), refs, events
    return judged("True", HEALTHY, f"every monitored resource on {holder} is Healthy "
                  f"({len(report.resources)})"), refs, events


def _recoveries(v: _View, before: Announced) -> tuple[list[AnnouncedRecovery], list[Event]]:
    """An Event for each node's lastRecovery not posted before (status.announced.recoveries
    remembers the last one posted per node), reason = its action."""
    posted = {r.node: r for r in before.recoveries}
    members = {n.name for n in v.s.cluster.spec.nodes}
    out = {node: mark for node, mark in posted.items() if node in members}
    events = []
    for name in sorted(v.reports):
        rec = v.reports[name].last_recovery
        if rec is None:
            continue
        mark = AnnouncedRecovery(node=name, time=rec.time, resource=rec.resource, action=rec.action)
        if posted.get(name) != mark:
            message = rec.message or f"{rec.kind} {rec.resource} on {name}: {rec.action}"
            events.append(Event(_RECOVERY_EVENT_TYPES[rec.action], rec.action, _clip(message)))
        out[name] = mark
    return [out[n] for n in sorted(out)], events


def _stamp(t: datetime) -> str:
    return second(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def _discarded(node: str, rec: SplitBrainRecovery) -> str:
    """ "mail1 discarded 24.0 KiB it had changed that mail2 lacked (...); resynced from mail2
    at ..." """
    said = (f"{node} discarded {byte_size(rec.discarded_bytes)} it had changed that {rec.peer} "
            f"lacked (drbdadm connect --discard-my-data at {_stamp(rec.time)})")
    if rec.resynced_time is None:
        return f"{said} and resyncs from {rec.peer}"
    return f"{said}; resynced from {rec.peer} at {_stamp(rec.resynced_time)}"


def _split_brain_recoveries(v: _View, before: Announced) -> tuple[
        list[AnnouncedSplitBrainRecovery], list[Event]]:
    """A Warning Event for each node's splitBrainRecoveries entry not posted before
    (status.announced.splitBrainRecoveries remembers the last one posted per node and
    volume): a node discarded its changes of a volume, so it is said once."""
    posted = {(a.node, a.volume): a for a in before.split_brain_recoveries}
    members = {n.name for n in v.s.cluster.spec.nodes}
    out = {key: mark for key, mark in posted.items() if key[0] in members}
    events = []
    for name in sorted(v.reports):
        for rec in v.reports[name].split_brain_recoveries:
            mark = AnnouncedSplitBrainRecovery(node=name, volume=rec.volume, time=rec.time)
            if posted.get((name, rec.volume)) != mark:
                events.append(Event("Warning", SPLIT_BRAIN_RECOVERY, _clip(
                    f"split brain on DRBD {rec.volume} recovered as DRBD documents it: "
                    f"{_discarded(name, rec)}, the Lease holder whose data wins")))
            out[(name, rec.volume)] = mark
    return [out[key] for key in sorted(out)], events


# --- the decision -------------------------------------------------------------------------


def reconcile(s: Snapshot) -> Decision:
    """The desired operator-owned status, the patch (None: unchanged) and the Events."""
    status = s.cluster.status or HAClusterStatus()
    v = _view(s)
    f = _Flow(switchover=status.switchover, last_failover=status.last_failover,
              handled_request=status.handled_switchover_id, forced=status.forced_failover)
    invalid = validate(s) + _refusals(v)
    _observe_lease(v, f)
    _advance_switchover(v, f)
    _new_switchover(v, f)
    _forced_failover(v, f)
    before = status.announced or Announced()
    resources, unhealthy, resource_events = _resources(
        v, {c.type: c for c in status.conditions}, before)
    recoveries, recovery_events = _recoveries(v, before)
    split_brains, split_brain_events = _split_brain_recoveries(v, before)
    conditions = [*_conditions(v, f, invalid), resources,
                  _spec_applied(v, {c.type: c for c in status.conditions})]
    desired = HAClusterStatus(
        observed_generation=s.generation,
        primary=v.holder,
        epoch=v.epoch if s.lease is not None else status.epoch,
        conditions=conditions,
        last_failover=f.last_failover,
        switchover=f.switchover,
        handled_switchover_id=f.handled_request,
        announced=Announced(recoveries=recoveries, unhealthy=unhealthy,
                            split_brain_recoveries=split_brains)
        if recoveries or unhealthy or split_brains else None,
        forced_failover=f.forced,
    )
    events = [*f.events, *_transition_events(status, conditions, s.now), *resource_events,
              *recovery_events, *split_brain_events]
    wanted = owned_fields(desired)
    patch = None if wanted == owned_fields(status) else wanted
    ready = conditions[0]
    return Decision(status=desired, patch=patch, events=tuple(events), retry=f.retry,
                    reason=f"{ready.reason}: {ready.message}", members=_member_statuses(v))


# --- the chain's DRBDVolumes and FloatingIPs ----------------------------------------------


def _volume_status(v: _View, name: str, volume: DRBDVolume) -> DRBDVolumeStatus:
    """Each node's own view of the volume (its fresh report), in spec.nodes order."""
    names = v.volume_names(name)
    nodes: list[DRBDNodeStatus] = []
    reported: list[DRBDNodeStatus] = []  # those of nodes with a fresh report
    for node in volume.spec.nodes:
        report = v.reports.get(node.name)
        fresh = report is not None and v.fresh(report)
        seen = next((d for d in report.drbd if d.name in names), None) \
            if report is not None and fresh else None
        status = seen.model_copy(update={"name": node.name}) if seen is not None \
            else DRBDNodeStatus(name=node.name)
        nodes.append(status)
        if fresh:
            reported.append(status)
    primary = next((n for n in reported if n.role == "Primary"), None)
    connection = (primary or reported[0]).connection_state if reported else "Unknown"
    before = volume.status.conditions if volume.status else []
    return DRBDVolumeStatus(roles="/".join(n.role for n in nodes),
                            disks="/".join(n.disk_state for n in nodes),
                            connection=connection, nodes=nodes,
                            conditions=[_volume_split_brain(v, name, before)])


def _volume_split_brain(v: _View, name: str, before: Sequence[Condition]) -> Condition:
    """The DRBDVolume's SplitBrain condition. True (Detected) while a node's data of it has
    diverged from the Lease holder's: a fresh report of another node shows it StandAlone with
    changes the holder lacks, or its recovery (splitBrainRecoveries) has not resynced yet.
    False: Recovered (the last recoveries, what each discarded), or NotDetected."""
    spec, holder = v.s.cluster.spec, v.holder
    names = v.volume_names(name)
    recoveries = {n: rec for n in sorted(v.reports) for rec in v.reports[n].split_brain_recoveries
                  if rec.volume == name}
    detected = []
    for node in sorted(v.reports):
        report, rec = v.reports[node], recoveries.get(node)
        if rec is not None and rec.resynced_time is None:
            detected.append(_discarded(node, rec))
            continue
        entry = next((d for d in report.drbd if d.name in names), None)
        if holder is None or node == holder or not v.fresh(report) or entry is None \
                or entry.connection_state != "StandAlone" or not entry.out_of_sync_bytes:
            continue
        if spec.paused:
            then = "paused (spec.paused): nothing is discarded until the cluster is resumed"
        elif node in spec.standby_nodes:
            then = f"{node} is in standby mode and keeps them until it is online again"
        else:
            then = f"{node} discards them and resyncs from {holder}"
        detected.append(f"{node} is StandAlone with {byte_size(entry.out_of_sync_bytes)} "
                        f"changed that the Lease holder {holder} lacks: {then}")
    status: Literal["True", "False"] = "True" if detected else "False"
    if detected:
        reason, message = SPLIT_BRAIN_DETECTED, "; ".join(detected)
    elif recoveries:
        reason = SPLIT_BRAIN_RECOVERED
        message = "; ".join(_discarded(n, rec) for n, rec in recoveries.items())
    else:
        reason, message = "NotDetected", "no node's data diverged from the Lease holder's"
    old = next((c for c in before if c.type == "SplitBrain"), None)
    since = old.last_transition_time if old is not None and old.status == status \
        else second(v.s.now)
    return Condition(type="SplitBrain", status=status, reason=reason, message=_clip(message),
                     last_transition_time=since)


def address_summary(name: str, fip: FloatingIP) -> tuple[int, str]:
    """How many addresses the FloatingIP holds, and a short list for `kubectl get`."""
    intervals, problems = _fip_intervals(name, fip)
    if problems:
        return 0, "invalid: see the HACluster's Ready condition"
    count = sum(i.end - i.start + 1 for i in intervals)
    ranges = [_address(i.family, i.start) if i.start == i.end
              else f"{_address(i.family, i.start)}-{_address(i.family, i.end)}" for i in intervals]
    text = ", ".join(ranges)
    summary = text if count == 1 else f"{count} addresses {text}"
    return count, summary if len(summary) <= 128 else summary[:125] + "..."


def _floating_ip_status(v: _View, name: str, fip: FloatingIP) -> FloatingIPStatus:
    """Held by the Lease holder once its fresh report of the current epoch says Primary."""
    report = v.reports.get(v.holder) if v.holder else None
    held = report is not None and v.fresh(report) and v.current(report) \
        and report.role == "Primary"
    count, summary = address_summary(name, fip)
    return FloatingIPStatus(holder=v.holder if held else None, epoch=v.epoch if held else None,
                            address_count=count, summary=summary)


def _member_statuses(v: _View) -> tuple[MemberStatus, ...]:
    """The statuses of this cluster's volumes and addresses that differ from what they show."""
    if v.s.deleting:
        return ()
    chain = v.s.cluster.spec.chain
    found: list[MemberStatus] = []
    for name in chain.volumes:
        volume = v.s.volumes.get(name)
        if volume is not None and volume.spec.cluster == v.s.name:
            wanted = _volume_status(v, name, volume)
            shown = volume.status or DRBDVolumeStatus()
            # Conditions of other types (another controller's) are neither compared nor dropped.
            ours = [c for c in shown.conditions if c.type == "SplitBrain"]
            if wanted != shown.model_copy(update={"conditions": ours}):
                found.append(MemberStatus("drbdvolumes", name, _json(wanted)))
    for name in chain.floating_ips:
        fip = v.s.floating_ips.get(name)
        if fip is not None and fip.spec.cluster == v.s.name:
            wanted_ip = _floating_ip_status(v, name, fip)
            if wanted_ip != (fip.status or FloatingIPStatus()):
                found.append(MemberStatus("floatingips", name, _json(wanted_ip)))
    return tuple(found)


def _json(status: DRBDVolumeStatus | FloatingIPStatus) -> dict[str, Any]:
    data: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


# --- the Lease object ---------------------------------------------------------------------


def initial_epoch(cluster: HACluster) -> int:
    """Epoch for a (re)created Lease: 0 for a new cluster, never below any epoch already seen,
    so that a Lease deleted by hand cannot make old epochs current again."""
    status = cluster.status or HAClusterStatus()
    return max([status.epoch or 0, *(r.epoch for r in status.nodes)])


def lease_members(cluster: HACluster) -> str:
    """The value of the Lease's MEMBERS_ANNOTATION: the cluster's node names, sorted,
    comma-separated. The admission policy lets an agent take the Lease, or be handed it, only
    when its node is listed here; only the operator (and an administrator) may change it."""
    return ",".join(sorted(n.name for n in cluster.spec.nodes))


def lease_manifest(name: str, namespace: str, uid: str, cluster: HACluster) -> dict[str, Any]:
    """The Lease the operator creates when it is missing: no holder, labelled, owned, and
    stamped with the cluster's members."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(name),
            "namespace": namespace,
            "labels": {CLUSTER_LABEL: name},
            "annotations": {MEMBERS_ANNOTATION: lease_members(cluster)},
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": "HACluster", "name": name, "uid": uid,
                "controller": True,
            }],
        },
        "spec": {
            "leaseDurationSeconds": math.ceil(cluster.spec.leases.lease_duration_ms / 1000),
            "leaseTransitions": initial_epoch(cluster),
        },
    }


def lease_created_event(name: str, cluster: HACluster) -> Event:
    epoch = initial_epoch(cluster)
    if epoch == 0:
        return Event("Normal", "LeaseCreated", f"created Lease {lease_name(name)} with no holder")
    return Event("Warning", "LeaseRecreated",
                 f"Lease {lease_name(name)} was missing; recreated with no holder at epoch {epoch} "
                 "(the highest epoch seen), so no older epoch becomes current again")


# --- deletion -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Teardown:
    done: bool
    delete_lease: bool
    message: str
    events: tuple[Event, ...] = ()


def teardown(s: Snapshot, deleted_at: datetime, timeout: timedelta) -> Teardown:
    """May the finalizer go? Agents treat metadata.deletionTimestamp as "tear down and release";
    the operator waits for that (or for the holder to be gone), then deletes the Lease."""
    lease = s.lease
    elapsed = _ms(deleted_at, s.now)
    if lease is None:
        return Teardown(True, False, "the Lease is already gone",
                        (Event("Normal", "TornDown", f"HACluster {s.name} released after "
                               f"{human_duration(elapsed)}: its Lease was already gone"),))
    v = _view(s)
    up = sorted(n for n, r in v.reports.items() if r.role in ("Primary", "Demoting") and v.current(r))
    expired = (lease.renew_time is not None and lease.duration_seconds is not None
               and s.now - lease.renew_time > timedelta(seconds=2 * lease.duration_seconds))
    if lease.holder is None:
        why = "the Lease was released"
    elif not up:
        why = f"no node reports Primary (holder {lease.holder} is down)"
    elif expired:
        why = f"the holder {lease.holder} stopped renewing the Lease"
    elif s.now - deleted_at >= timeout:
        message = (f"gave up waiting for {_names(up)} to tear the chain down after "
                   f"{human_duration(elapsed)}; deleting Lease {lease_name(s.name)} anyway (the "
                   "holder's next renew fails and it demotes)")
        return Teardown(True, True, message, (Event("Warning", "TeardownTimeout", message),))
    else:
        return Teardown(False, False,
                        f"waiting for {_names(up)} to tear the chain down and release Lease "
                        f"{lease_name(s.name)} ({human_duration(elapsed)} of "
                        f"{human_duration(_ms(s.now - timeout, s.now))})")
    message = f"chain torn down and Lease {lease_name(s.name)} deleted after {human_duration(elapsed)}: {why}"
    return Teardown(True, True, message, (Event("Normal", "TornDown", message),))
