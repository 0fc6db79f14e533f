"""ResourcesHealthy, and the Events of the agents' repairs.

The primary's agent monitors each member of its chain and reports their states; a resource
becoming unhealthy is said once (a ResourceFailed Event), and so is each node's lastRecovery
(repaired, repair failed, stepped down), remembered in status.announced so that neither is
said again after an operator restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from tandem.api.common import Condition
from tandem.api.hacluster import Announced, AnnouncedRecovery, HAClusterSpec, ResourceRef, ResourceReport
from tandem_operator.conditions import NO_PRIMARY, NO_REPORT, PROMOTING, condition
from tandem_operator.messages import Event, clip, human_list
from tandem_operator.snapshot import View

# ResourcesHealthy: the agents' monitors of the primary's chain (status.nodes[].resources).
RESOURCE_FAILED = "ResourceFailed"
REPAIRING = "Repairing"
NOT_CHECKED = "NotChecked"
HEALTHY = "Healthy"
_UNHEALTHY_STATES = ("Failing", "Failed", "Repairing")
# A node's lastRecovery becomes one Event, its reason the action.
_RECOVERY_EVENT_TYPES: dict[str, Literal["Normal", "Warning"]] = {
    "Repaired": "Normal",
    "RepairFailed": "Warning",
    "SteppedDown": "Warning",
}


def _chain_has_members(spec: HAClusterSpec) -> bool:
    chain = spec.chain
    return bool(
        chain.volumes
        or chain.mounts
        or chain.bind_mounts
        or chain.floating_ips
        or chain.postgres is not None
        or chain.services
    )


def _said(r: ResourceReport) -> str:
    return f"{r.kind} {r.name} {r.state}" + (f": {r.message}" if r.message else "")


def resources_healthy(
    v: View, prev: Mapping[str, Condition], before: Announced
) -> tuple[Condition, list[ResourceRef], list[Event]]:
    """ResourcesHealthy from the holder's report, the holder's resources that are not Healthy
    (kept in status.announced.unhealthy), and a ResourceFailed Event for each one that was not
    in the stored list: a resource becoming unhealthy is said once, across restarts too."""
    s, holder = v.s, v.holder
    kept = [r for r in before.unhealthy if r.node == holder]

    def judged(status: Literal["True", "False", "Unknown"], reason: str, message: str) -> Condition:
        return condition(prev, "ResourcesHealthy", status, reason, message, s=s)

    if holder is None:
        return judged("Unknown", NO_PRIMARY, "no primary: nothing is monitored"), [], []
    report = v.reports.get(holder)
    if report is None or not v.fresh(report):
        return (
            judged(
                "Unknown",
                NO_REPORT,
                f"{holder} holds the Lease but its report is missing "
                f"or older than {v.stale_after.total_seconds():.0f} s",
            ),
            kept,
            [],
        )
    if not v.current(report) or report.role != "Primary":
        return (
            judged(
                "Unknown",
                PROMOTING,
                f"{holder} holds the Lease at epoch {v.epoch} and has "
                "not reported Primary yet: its monitors have not started",
            ),
            kept,
            [],
        )
    bad = [r for r in report.resources if r.state in _UNHEALTHY_STATES]
    refs = [ResourceRef(node=holder, kind=r.kind, name=r.name) for r in bad]
    known = set(before.unhealthy)
    events = [
        Event(
            "Warning",
            RESOURCE_FAILED,
            clip(f"{r.kind} {r.name} on {holder} is {r.state}" + (f": {r.message}" if r.message else "")),
        )
        for r, ref in zip(bad, refs, strict=True)
        if ref not in known
    ]
    if bad:
        reason = REPAIRING if all(r.state == "Repairing" for r in bad) else RESOURCE_FAILED
        return judged("False", reason, f"on {holder}: " + "; ".join(_said(r) for r in bad)), refs, events
    unchecked = [r for r in report.resources if r.state != "Healthy"]
    if unchecked:
        return (
            judged(
                "Unknown",
                NOT_CHECKED,
                f"on {holder}: not checked yet: " + human_list(f"{r.kind} {r.name}" for r in unchecked),
            ),
            refs,
            events,
        )
    if not report.resources and _chain_has_members(s.cluster.spec):
        return judged("Unknown", NOT_CHECKED, f"{holder} reports no resource states yet"), refs, events
    if not report.resources:
        return judged("True", HEALTHY, "the chain has no members to monitor"), refs, events
    return (
        judged("True", HEALTHY, f"every monitored resource on {holder} is Healthy ({len(report.resources)})"),
        refs,
        events,
    )


def announced_recoveries(v: View, before: Announced) -> tuple[list[AnnouncedRecovery], list[Event]]:
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
            events.append(Event(_RECOVERY_EVENT_TYPES[rec.action], rec.action, clip(message)))
        out[name] = mark
    return [out[n] for n in sorted(out)], events
