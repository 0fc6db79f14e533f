"""`kubectl tandem status`: one screen per HACluster, like Pacemaker's `crm_mon -1`.

`render(view, now)` is a pure function of the objects as read (the HACluster with its nodes'
reports, its Lease, the DRBDVolumes and FloatingIPs of its namespace) and the time, so the same
objects always print the same screen. Every value that comes from an object is printed with its
control characters escaped: a report written by a compromised node cannot move the cursor or
forge a line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tandem.api.common import SWITCHOVER_ANNOTATION, SWITCHOVER_ID_ANNOTATION
from tandem.api.drbdvolume import DRBDNodeStatus, DRBDVolume
from tandem.api.floatingip import FloatingIP
from tandem.api.hacluster import HACluster, HAClusterStatus, NodeReport, ResourceKind
from tandem.kube.lease import LeaseRecord
from tandem_operator.addresses import address_summary
from tandem_operator.kube import parse_cluster
from tandem_operator.lease import lease_name
from tandem_operator.messages import byte_size, human_duration
from tandem_operator.snapshot import stale_after


@dataclass(frozen=True)
class ClusterView:
    """One HACluster and what it names, as read from the API server."""

    name: str
    namespace: str
    cluster: HACluster
    annotations: Mapping[str, str]
    lease: LeaseRecord | None
    volumes: Mapping[str, DRBDVolume]
    floating_ips: Mapping[str, FloatingIP]


def cluster_view(
    body: dict[str, Any],
    lease: LeaseRecord | None,
    volumes: Mapping[str, DRBDVolume],
    floating_ips: Mapping[str, FloatingIP],
) -> ClusterView:
    """The view of a raw HACluster; raises pydantic's ValidationError if its spec does not parse
    (a node report that does not is dropped, as the operator drops it)."""
    meta = body.get("metadata") or {}
    return ClusterView(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        cluster=parse_cluster(body),
        annotations=meta.get("annotations") or {},
        lease=lease,
        volumes=volumes,
        floating_ips=floating_ips,
    )


def clean(text: object) -> str:
    """`text` on one line with its control characters (newline, escape, ...) spelled out."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, length in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * length:
            return f"{seconds // length}{unit} ago"
    return f"{seconds}s ago"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Rows under a header, columns aligned, every cell cleaned."""
    cells = [[clean(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def render(view: ClusterView, now: datetime) -> str:
    """The whole screen for one HACluster."""
    status = view.cluster.status or HAClusterStatus()
    reports = {r.name: r for r in status.nodes}
    lines = _summary(view, status, now)
    lines += ["", "Nodes:", *_nodes(view, reports, now)]
    lines += [
        "",
        "Resources (monitors run on the primary; services show their unit too):",
        *_resources(view, reports, now),
    ]
    if view.cluster.spec.chain.postgres is not None:
        lines += ["", "PostgreSQL:", *_postgres(view, reports)]
    if view.cluster.spec.chain.volumes:
        lines += ["", "DRBD:", *_drbd(view)]
    if view.cluster.spec.chain.floating_ips:
        lines += ["", "Floating IPs:", *_floating_ips(view)]
    lines += ["", *_history(view, status, now)]
    lines += ["", "Conditions:", *_conditions(status, now)]
    return "\n".join(lines) + "\n"


def _summary(view: ClusterView, status: HAClusterStatus, now: datetime) -> list[str]:
    spec = view.cluster.spec
    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    state = f"{ready.reason} (Ready={ready.status})" if ready else "not reconciled yet (no Ready condition)"
    lines = [clean(f"HACluster {view.name} in namespace {view.namespace}: {state}")]
    if spec.paused:
        lines.append(
            "  PAUSED (spec.paused): the agents neither bring up, tear down, repair nor "
            f"fail over anything; `kubectl tandem resume {clean(view.name)}` to resume"
        )
    lease = view.lease
    name = clean(lease_name(view.name))
    if lease is None:
        lines.append(f"  Lease {name}: missing (the operator creates it)")
    elif lease.holder is None:
        lines.append(f"  Lease {name}: held by nobody, epoch {lease.epoch}")
    else:
        lines.append(
            clean(f"  Lease {name}: held by {lease.holder}, epoch {lease.epoch}, renewed {ago(lease.renew_time, now)}")
        )
    if lease is not None and lease.sync_standbys is not None:
        lines.append(clean(f"  Synchronous standbys (on the Lease): {', '.join(lease.sync_standbys) or 'none'}"))
    lines.append(
        clean(
            f"  Primary (status): {status.primary or 'none'}, epoch {status.epoch or 0}; "
            f"desired (spec.primary): {spec.primary or 'any'}"
        )
    )
    return lines


def _eligibility(report: NodeReport) -> str:
    if report.eligible is None:
        return "unknown"
    return "yes" if report.eligible else f"no: {report.why_ineligible or 'no reason given'}"


def _nodes(view: ClusterView, reports: Mapping[str, NodeReport], now: datetime) -> list[str]:
    spec = view.cluster.spec
    rows, notes = [], []
    for node in spec.nodes:
        mode = "standby" if node.name in spec.standby_nodes else "online"
        report = reports.get(node.name)
        if report is None:
            rows.append([node.name, mode, "-", "-", "never", "no report: is its agent running?"])
            continue
        heartbeat = ago(report.heartbeat_time, now)
        if report.heartbeat_time is not None and now - report.heartbeat_time > stale_after(view.cluster):
            heartbeat += " (stale)"
        rows.append([node.name, mode, report.role, str(report.epoch), heartbeat, _eligibility(report)])
        if report.message:
            notes.append(clean(f"  {node.name}: {report.message}"))
        if report.pending_change:
            notes.append(
                clean(
                    f"  {node.name}: spec generation {report.applied_generation} runs "
                    f"here; the newest waits: {report.pending_change}"
                )
            )
    return table(["NODE", "MODE", "ROLE", "EPOCH", "HEARTBEAT", "ELIGIBLE"], rows) + notes


def _chain_members(view: ClusterView) -> list[tuple[ResourceKind, str]]:
    """The chain's members in the order they come up, named as the agents report them."""
    chain = view.cluster.spec.chain
    members: list[tuple[ResourceKind, str]] = [("Volume", v) for v in chain.volumes]
    members += [("Mount", m.mount_point) for m in chain.mounts]
    members += [("BindMount", b.target) for b in chain.bind_mounts]
    members += [("FloatingIP", f) for f in chain.floating_ips]
    members += [("PostgreSQL", "postgresql")] if chain.postgres is not None else []
    members += [("Service", s.name) for s in chain.services]
    return members


def _resources(view: ClusterView, reports: Mapping[str, NodeReport], now: datetime) -> list[str]:
    nodes = [n.name for n in view.cluster.spec.nodes]
    members = _chain_members(view)
    for seen in reports.values():  # members reported but no longer in the spec, at the end
        members += [(r.kind, r.name) for r in seen.resources if (r.kind, r.name) not in members]
    rows, details = [], []
    for kind, name in members:
        cells = []
        for node in nodes:
            report = reports.get(node)
            monitor = next((r for r in report.resources if (r.kind, r.name) == (kind, name)), None) if report else None
            unit = next((s for s in report.services if s.name == name), None) if report and kind == "Service" else None
            parts: list[str] = [unit.state] if unit else []
            if monitor is not None:
                parts.append(monitor.state + (f" ({monitor.repairs} repaired)" if monitor.repairs else ""))
                if monitor.state != "Healthy" and monitor.message:
                    details.append(clean(f"  {node} {name}: {monitor.state}: {monitor.message}"))
            cells.append(", ".join(parts) or "-")
        rows.append([name, kind, *cells])
    for node in nodes:
        recovery = reports[node].last_recovery if node in reports else None
        if recovery is not None:
            details.append(
                clean(
                    f"  Last recovery on {node}, {ago(recovery.time, now)}: "
                    f"{recovery.action} {recovery.resource}: {recovery.message}"
                )
            )
    return table(["RESOURCE", "KIND", *nodes], rows) + details


def _postgres(view: ClusterView, reports: Mapping[str, NodeReport]) -> list[str]:
    rows = []
    for node in view.cluster.spec.nodes:
        report = reports.get(node.name)
        pg = report.postgres if report else None
        if pg is None:
            rows.append([node.name, "not reported", "-", "-", "-"])
            continue
        if pg.role == "Primary":
            count = pg.streaming_standbys
            replication = "-" if count is None else f"{count} streaming standby" + ("" if count == 1 else "s")
        elif pg.role == "Standby":
            replication = "lag unknown" if pg.lag_seconds is None else f"lag {pg.lag_seconds} s"
        else:
            replication = "-"
        rows.append([node.name, pg.role, "-" if pg.timeline is None else str(pg.timeline), pg.lsn or "-", replication])
    return table(["NODE", "ROLE", "TIMELINE", "LSN", "REPLICATION"], rows)


def _replication(d: DRBDNodeStatus) -> str:
    return d.replication_state + (f" {d.resync_percent}%" if d.resync_percent is not None else "")


def _drbd(view: ClusterView) -> list[str]:
    rows, notes = [], []
    for name in view.cluster.spec.chain.volumes:
        volume = view.volumes.get(name)
        if volume is None:
            notes.append(clean(f"  {name}: no DRBDVolume of that name in namespace {view.namespace}"))
        elif volume.status is None or not volume.status.nodes:
            notes.append(clean(f"  {name}: no state yet (the operator writes it from the nodes' reports)"))
        else:
            rows += [
                [
                    name,
                    d.name,
                    d.role,
                    d.disk_state,
                    d.connection_state,
                    _replication(d),
                    byte_size(d.out_of_sync_bytes),
                ]
                for d in volume.status.nodes
            ]
    header = ["VOLUME", "NODE", "ROLE", "DISK", "CONNECTION", "REPLICATION", "OUT-OF-SYNC"]
    return (table(header, rows) if rows else []) + notes


def _floating_ips(view: ClusterView) -> list[str]:
    rows, notes = [], []
    for name in view.cluster.spec.chain.floating_ips:
        fip = view.floating_ips.get(name)
        if fip is None:
            notes.append(clean(f"  {name}: no FloatingIP of that name in namespace {view.namespace}"))
            continue
        status = fip.status
        holder = f"{status.holder} (epoch {status.epoch})" if status and status.holder else "nobody"
        rows.append([name, address_summary(name, fip)[1], f"{fip.spec.interface}/{fip.spec.prefix_length}", holder])
    return (table(["NAME", "ADDRESSES", "INTERFACE", "HOLDER"], rows) if rows else []) + notes


def _history(view: ClusterView, status: HAClusterStatus, now: datetime) -> list[str]:
    lines = []
    last = status.last_failover
    if last is None:
        lines.append("Last failover: none")
    else:
        kind = "planned" if last.planned else "unplanned"
        took = f", took {human_duration(last.duration_ms)}" if last.duration_ms is not None else ""
        lines.append(
            clean(
                f"Last failover: {last.from_node or 'nobody'} -> {last.to_node}, {kind} "
                f"({last.reason}){took}, {ago(last.time, now)}"
            )
        )
    switchover = status.switchover
    if switchover is None:
        lines.append("Switchover: none")
    else:
        request = f", request {switchover.request_id}" if switchover.request_id else ""
        said = f": {switchover.reason}" + (f": {switchover.message}" if switchover.message else "")
        lines.append(
            clean(
                f"Switchover: to {switchover.target} from epoch {switchover.from_epoch}, "
                f"{switchover.phase} (asked {ago(switchover.requested_at, now)}{request})"
                f"{said}"
            )
        )
    asked_id = view.annotations.get(SWITCHOVER_ID_ANNOTATION)
    if asked_id and (switchover is None or switchover.request_id != asked_id):
        target = view.annotations.get(SWITCHOVER_ANNOTATION, "?")
        lines.append(clean(f"Switchover request: to {target} (request {asked_id}), not taken up by the operator yet"))
    forced = status.forced_failover
    if forced is not None:  # shown only once there was one: it is rare and never routine
        said = f": {forced.reason}" if forced.reason else ""
        lines.append(
            clean(
                f"Forced failover: to {forced.target or '?'} from epoch "
                f"{forced.from_epoch}, {forced.phase} (asked "
                f"{ago(forced.requested_at, now)}, request {forced.request_id}){said}: "
                f"{forced.message}"
            )
        )
    return lines


def _conditions(status: HAClusterStatus, now: datetime) -> list[str]:
    if not status.conditions:
        return ["  none yet: is the operator running?"]
    rows = [
        [c.type, c.status, c.reason, ago(c.last_transition_time, now).removesuffix(" ago"), c.message]
        for c in status.conditions
    ]
    return table(["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], rows)


def unreadable(body: dict[str, Any], problem: str) -> str:
    """What status prints for an HACluster whose spec does not parse, instead of its screen."""
    meta = body.get("metadata") or {}
    return (
        clean(
            f"HACluster {meta.get('name')} in namespace {meta.get('namespace')}: cannot show "
            f"it, its spec does not parse: {problem}"
        )
        + "\n"
    )
