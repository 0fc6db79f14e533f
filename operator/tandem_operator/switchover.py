"""Planned switchovers: when one is wanted, whether the target is fit, and how it ends.

A switchover starts from a change of spec.primary, the tandem.dev/switchover annotation, the
primary's Node in maintenance, the HACluster it depends on moving, or autoFailback; only one
runs at a time. The target must be fit now (`target_problems`: a fresh, eligible, connected,
UpToDate standby with lag 0, listed as synchronous): a planned move never loses an
acknowledged write, so an unfit target is refused with the reasons, not tried. A Pending
switchover completes when the target reports Primary at the new epoch, and is Interrupted
when the Lease goes elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tandem.api.common import SWITCHOVER_ANNOTATION, SWITCHOVER_ID_ANNOTATION
from tandem.api.hacluster import INVALID_SPEC, IneligibleReason, Switchover
from tandem_operator.messages import Problem, clip, human_duration, human_list, ms_between, second
from tandem_operator.snapshot import Flow, View, dependency_state, failover_record
from tandem_operator.validation import validate

# Why a switchover was requested (Switchover.reason while Pending/Completed).
REQUESTED = "Requested"
REQUEST_ANNOTATION = "RequestAnnotation"
NODE_MAINTENANCE = "NodeMaintenance"
AUTO_FAILBACK = "AutoFailback"
FOLLOW_DEPENDENCY = "FollowDependency"
SWITCHOVER_WHY = {
    REQUESTED: "spec.primary changed",
    REQUEST_ANNOTATION: f"requested by {SWITCHOVER_ANNOTATION}",
    NODE_MAINTENANCE: "the primary's Node is in maintenance",
    AUTO_FAILBACK: "spec.failover.autoFailback",
    FOLLOW_DEPENDENCY: "following the HACluster it depends on",
}
INTERRUPTED = "Interrupted"


def target_problems(v: View, target: str) -> list[Problem]:
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
        return [
            *problems,
            Problem("TargetReportStale", f"{target}'s report is older than {v.stale_after.total_seconds():.0f} s"),
        ]
    if not v.current(r):
        return [
            *problems,
            Problem("TargetStaleEpoch", f"{target} reports epoch {r.epoch}, older than the Lease's {v.epoch}"),
        ]
    if r.role != "Standby":
        problems.append(Problem("TargetNotStandby", f"{target} reports role {r.role}"))
    for vname in spec.chain.volumes:
        names = v.volume_names(vname)
        entry = next((d for d in r.drbd if d.name in names), None)
        if entry is None:
            problems.append(Problem("TargetDisconnected", f"{target} reports no DRBD state for {vname}"))
            continue
        if entry.connection_state != "Connected":
            problems.append(Problem("TargetDisconnected", f"{target}: DRBD {vname} is {entry.connection_state}"))
        if entry.disk_state != "UpToDate":
            problems.append(Problem("TargetNotUpToDate", f"{target}: DRBD {vname} disk is {entry.disk_state}"))
    if spec.chain.postgres is not None:
        pg = r.postgres
        if pg is None or pg.role != "Standby":
            problems.append(
                Problem(
                    "TargetNotStreaming", f"{target}: PostgreSQL is {pg.role if pg else 'not reported'}, not a standby"
                )
            )
        elif pg.lag_seconds is None or pg.lag_seconds != 0:
            lag = "not reported" if pg.lag_seconds is None else f"{pg.lag_seconds} s"
            problems.append(
                Problem(
                    "TargetLagging",
                    f"{target}: PostgreSQL lag is {lag}; a planned "
                    "switchover needs lag 0 so no acknowledged write is lost",
                )
            )
    listed = v.s.lease.sync_standbys if v.s.lease else None
    if listed is not None and target not in listed:
        problems.append(
            Problem(
                "TargetNotSynchronous",
                f"{target} is not a synchronous standby "
                f"(the Lease lists {', '.join(listed) or 'none'}): it may lack "
                "acknowledged writes",
            )
        )
    # The Lease just read decides NotSynchronous; the target's own verdict may trail it.
    self_judged = r.ineligible_reason is IneligibleReason.NOT_SYNCHRONOUS and listed is not None
    if r.eligible is not True and not self_judged:
        why = r.why_ineligible or ("eligibility not reported" if r.eligible is None else "no reason given")
        problems.append(Problem("TargetIneligible", f"{target} is not eligible: {why}"))
    return problems


def _request(
    v: View, f: Flow, target: str, why: str, *, refusal_event: bool = True, request_id: str | None = None
) -> bool:
    """Check `target` and write Pending (True) or Refused (False)."""
    now = second(v.s.now)
    holder = v.holder or "nobody"
    problems = target_problems(v, target)
    invalid = validate(v.s)
    if invalid:
        problems = [Problem(INVALID_SPEC, "the spec is invalid: " + "; ".join(invalid)), *problems]
    if not problems:
        f.switchover = Switchover(
            target=target,
            from_epoch=v.epoch,
            phase="Pending",
            reason=why,
            message=clip(
                f"planned switchover from {holder} to {target} "
                f"({SWITCHOVER_WHY[why]}): waiting for {holder} to demote "
                "and hand the Lease over"
            ),
            requested_at=now,
            request_id=request_id,
        )
        f.say(
            "Normal",
            "SwitchoverRequested",
            f"planned switchover from {holder} to {target} requested ({SWITCHOVER_WHY[why]}): {target} is "
            "a connected, UpToDate standby with lag 0",
        )
        return True
    message = clip(
        f"switchover from {holder} to {target} ({SWITCHOVER_WHY[why]}) refused: "
        + "; ".join(p.message for p in problems)
    )
    old = f.switchover
    if (
        old is not None
        and old.phase == "Refused"
        and old.target == target
        and old.from_epoch == v.epoch
        and old.message == message
        and old.request_id == request_id
    ):
        return False  # the same refusal again: nothing new to write or say
    f.switchover = Switchover(
        target=target,
        from_epoch=v.epoch,
        phase="Refused",
        reason=problems[0].reason,
        message=message,
        requested_at=now,
        request_id=request_id,
    )
    if refusal_event:
        f.say("Warning", "SwitchoverRefused", message)
    return False


def advance_switchover(v: View, f: Flow) -> None:
    """Move a Pending switchover on: hand-over seen, completion, or interruption."""
    sw = f.switchover
    if sw is None or sw.phase != "Pending" or v.epoch <= sw.from_epoch:
        return
    now = second(v.s.now)
    if v.holder != sw.target:
        f.switchover = sw.model_copy(
            update={
                "phase": "Refused",
                "reason": INTERRUPTED,
                "message": clip(
                    f"switchover to {sw.target} interrupted: the Lease went to "
                    f"{v.holder or 'nobody'} at epoch {v.epoch} instead"
                ),
            }
        )
        f.say(
            "Warning",
            "SwitchoverInterrupted",
            f"switchover to {sw.target} interrupted: the Lease went to {v.holder or 'nobody'} "
            f"at epoch {v.epoch} instead",
        )
        return
    r = v.reports.get(sw.target)
    if r is None or r.role != "Primary" or r.epoch < v.epoch:
        message = clip(f"{sw.target} holds the Lease at epoch {v.epoch}; waiting for it to report Primary")
        if sw.message != message:
            f.switchover = sw.model_copy(update={"message": message})
        return
    done = second(r.heartbeat_time) if r.heartbeat_time else now
    done = max(done, sw.requested_at)
    duration = ms_between(sw.requested_at, done)
    record = f.last_failover
    origin = record.from_node if (record and record.planned and record.to_node == sw.target) else None
    f.last_failover = failover_record(
        from_node=origin,
        to_node=sw.target,
        reason=sw.reason or REQUESTED,
        duration_ms=duration,
        time=record.time if (record and record.planned and record.to_node == sw.target) else done,
        planned=True,
    )
    f.switchover = sw.model_copy(
        update={
            "phase": "Completed",
            "message": clip(f"{sw.target} is primary at epoch {v.epoch}; switchover took {human_duration(duration)}"),
        }
    )
    f.say(
        "Normal",
        "SwitchoverCompleted",
        f"switchover from {origin or 'the previous primary'} to {sw.target} completed "
        f"({SWITCHOVER_WHY.get(sw.reason, sw.reason)}): {sw.target} is primary at epoch {v.epoch}; "
        f"{human_duration(duration)}",
    )


def new_switchover(v: View, f: Flow) -> None:
    """Start a switchover when one is wanted: spec.primary changed, the primary's Node is in
    maintenance, the dependency moved, or auto-failback. Only one runs at a time."""
    s = v.s
    spec = s.cluster.spec
    active = f.switchover is not None and f.switchover.phase == "Pending"
    change = s.primary_change
    if change is not None and change.new is not None and change.new != change.old:
        if active and f.switchover is not None and f.switchover.target != change.new:
            f.retry = (
                f"spec.primary changed to {change.new} while the switchover to "
                f"{f.switchover.target} is in progress: it is handled once that one ends"
            )
            return
        if (
            not active
            and v.holder is not None
            and change.new != v.holder
            and not s.deleting
            and _request(v, f, change.new, REQUESTED)
        ):
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
        message = clip(f"{holder}'s Node is {info.why()} but no other node is fit for a planned switchover: {details}")
        old = f.switchover
        if not (
            old
            and old.phase == "Refused"
            and old.reason == "NoEligibleTarget"
            and old.from_epoch == v.epoch
            and old.message == message
        ):
            f.switchover = Switchover(
                target=others[0] if others else holder,
                from_epoch=v.epoch,
                phase="Refused",
                reason="NoEligibleTarget",
                message=message,
                requested_at=second(s.now),
            )
            f.say("Warning", "SwitchoverRefused", message)
        return
    dep = dependency_state(v)
    if dep is not None:
        _, dep_primary, dep_ready = dep
        if (
            dep_ready
            and dep_primary is not None
            and dep_primary != holder
            and dep_primary in {n.name for n in spec.nodes}
            and not target_problems(v, dep_primary)
        ):
            _request(v, f, dep_primary, FOLLOW_DEPENDENCY)
            return
    if (
        spec.failover.auto_failback
        and spec.primary is not None
        and spec.primary != holder
        and not target_problems(v, spec.primary)
    ):
        _request(v, f, spec.primary, AUTO_FAILBACK)
        return
    if refused_request_outstanding(v, f) and spec.primary is not None and not target_problems(v, spec.primary):
        _request(v, f, spec.primary, REQUESTED)


def refused_request_outstanding(v: View, f: Flow) -> bool:
    """A move to spec.primary was refused in this epoch (the target was not fit yet): it is
    retried once the target is fit, so that one edit of spec.primary is enough. A failover
    since then (a new epoch) ends it: where the cluster goes next is the failover's."""
    sw, preferred = f.switchover, v.s.cluster.spec.primary
    return (
        sw is not None
        and sw.phase == "Refused"
        and sw.request_id is None
        and sw.reason != INTERRUPTED
        and preferred is not None
        and sw.target == preferred
        and preferred != v.holder
        and sw.from_epoch == v.epoch
    )


def switchover_request(annotations: Mapping[str, str]) -> tuple[str, str] | None:
    """(target, request id) of the HACluster's switchover annotations, when both are set."""
    target = annotations.get(SWITCHOVER_ANNOTATION, "").strip()
    request_id = annotations.get(SWITCHOVER_ID_ANNOTATION, "").strip()
    return (target, request_id) if target and request_id else None


REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,62}")


def _annotated_request(v: View, f: Flow) -> bool:
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
    if not REQUEST_ID.fullmatch(request_id):
        problem = (
            f"{SWITCHOVER_ID_ANNOTATION} {request_id[:63]!r} is not a request id: use 1 to "
            "63 letters, digits, '.', '_', ':' or '-', e.g. a timestamp"
        )
    elif target not in names:
        problem = f"{SWITCHOVER_ANNOTATION} names {target[:63]!r}, which is not one of spec.nodes ({human_list(names)})"
    elif v.holder is None:
        problem = "nobody holds the Lease: there is no primary to switch over from"
    if problem is not None:
        f.switchover = Switchover(
            target=target if target in names else names[0],
            from_epoch=v.epoch,
            phase="Refused",
            reason="InvalidRequest",
            message=clip(f"switchover request {request_id[:63]} refused: {problem}"),
            requested_at=now,
            request_id=f.handled_request,
        )
        f.say("Warning", "SwitchoverRefused", f.switchover.message)
        return True
    if target == v.holder:
        message = f"{target} is already primary at epoch {v.epoch}: nothing to move"
        f.switchover = Switchover(
            target=target,
            from_epoch=v.epoch,
            phase="Completed",
            reason=REQUEST_ANNOTATION,
            message=message,
            requested_at=now,
            request_id=request_id,
        )
        f.say("Normal", "SwitchoverCompleted", f"switchover request {request_id}: {message}")
        return True
    _request(v, f, target, REQUEST_ANNOTATION, request_id=request_id)
    return True
