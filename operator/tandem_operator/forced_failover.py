"""Forced failover: moving the Lease to a node that may lack data, once a person accepts it.

The tandem.dev/force-failover annotations name a target, a request id and the acceptance of
data loss. Each request is judged once (by its id): refused with the reason and the fix when it
cannot be carried out, or Pending with `loss_report`, what may be lost (the holder's renewals,
the target's synchronous standing, its PostgreSQL and DRBD positions), said in a Warning Event.
The target's agent does the forcing; this side follows it to Completed or Refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from tandem.api.common import ACCEPT_DATA_LOSS_ANNOTATION, FORCE_FAILOVER_ANNOTATION, FORCE_FAILOVER_ID_ANNOTATION
from tandem.api.hacluster import (
    INVALID_SPEC,
    ForcedFailover,
    HACluster,
    HAClusterStatus,
    IneligibleReason,
)
from tandem.kube.lease import LeaseRecord
from tandem_operator.conditions import DELETING, PAUSED
from tandem_operator.messages import byte_size, clip, human_list, second
from tandem_operator.snapshot import Flow, View
from tandem_operator.switchover import INTERRUPTED, REQUEST_ID

FORCED_FAILOVER = "ForcedFailover"
FORCED_FAILOVER_REFUSED = "ForcedFailoverRefused"


def forced_failover_request(annotations: Mapping[str, str]) -> tuple[str, str, bool] | None:
    """(target, request id, data loss accepted) of the forced failover annotations, when the
    target and the id are set."""
    target = annotations.get(FORCE_FAILOVER_ANNOTATION, "").strip()
    request_id = annotations.get(FORCE_FAILOVER_ID_ANNOTATION, "").strip()
    accepted = annotations.get(ACCEPT_DATA_LOSS_ANNOTATION, "").strip() == "true"
    return (target, request_id, accepted) if target and request_id else None


def lsn_value(text: str | None) -> int | None:
    """A PostgreSQL LSN ("16/B374D848") as a byte position; None when it is not one."""
    high, _, low = (text or "").partition("/")
    try:
        return (int(high, 16) << 32) + int(low, 16)
    except ValueError:
        return None


def renewal_age(cluster: HACluster, lease: LeaseRecord | None, now: datetime) -> tuple[float, float] | None:
    """(seconds since the holder last renewed, leaseDuration in seconds); None without a
    holder or a renewal time. An age under the duration means the holder may well be alive."""
    if lease is None or lease.holder is None or lease.renew_time is None:
        return None
    duration = lease.duration_seconds or cluster.spec.leases.lease_duration_ms / 1000
    return (now - lease.renew_time).total_seconds(), duration


def loss_report(cluster: HACluster, lease: LeaseRecord | None, target: str, now: datetime) -> list[str]:
    """What a forced failover to `target` may lose, one finding a line, from the reports and
    the Lease as read: whether the holder still renews, the target's role and eligibility,
    whether the Lease lists it as a synchronous standby, its PostgreSQL position against the
    last primary's, its DRBD disks and out-of-sync bytes."""
    status = cluster.status or HAClusterStatus()
    spec = cluster.spec
    reports = {r.name: r for r in status.nodes}
    holder = lease.holder if lease else None
    last = holder if holder not in (None, target) else (status.primary if status.primary != target else None)
    lines = []
    if lease is None:
        lines.append("the Lease does not exist yet: no node has been primary")
    elif holder is None:
        lines.append(f"the Lease is free at epoch {lease.epoch}: no node is primary")
    elif holder == target:
        lines.append(f"{target} already holds the Lease (epoch {lease.epoch}): nothing to force")
    elif (renewed := renewal_age(cluster, lease, now)) is None:
        lines.append(f"{holder} holds the Lease at epoch {lease.epoch}; its last renewal is not known")
    else:
        age, duration = renewed
        if age < duration:
            lines.append(
                f"{holder} holds the Lease at epoch {lease.epoch} and renewed it "
                f"{age:.0f} s ago (leaseDuration {duration:g} s): it looks alive; while "
                "it renews, a forced failover is refused: use switchover"
            )
        else:
            lines.append(
                f"{holder} holds the Lease at epoch {lease.epoch} but last renewed it "
                f"{age:.0f} s ago (leaseDuration {duration:g} s): it stopped renewing"
            )
    report = reports.get(target)
    if report is None:
        lines.append(f"{target} has not reported: what its disks and database hold is unknown")
    else:
        beat = f"{(now - report.heartbeat_time).total_seconds():.0f} s ago" if report.heartbeat_time else "never"
        fit = (
            "eligible to take over"
            if report.eligible
            else (f"not eligible: {report.why_ineligible or 'no reason given'}")
        )
        lines.append(f"{target} reports role {report.role} at epoch {report.epoch} (heartbeat {beat}); {fit}")
    listed = lease.sync_standbys if lease else None
    if spec.chain.postgres is not None and holder != target:
        if listed is None:
            lines.append(
                "the Lease lists no synchronous standbys: commits acknowledged by the "
                f"last primary may be missing on {target}"
            )
        elif target in listed:
            lines.append(f"the Lease lists {target} as a synchronous standby: it confirmed every acknowledged commit")
        else:
            lines.append(
                f"the Lease does not list {target} as a synchronous standby (it lists "
                f"{', '.join(listed) or 'none'}): commits acknowledged by "
                f"{last or 'the last primary'} may be missing on {target}"
            )
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
            behind = (
                f": {target} is {byte_size(other - mine)} of WAL behind that"
                if mine is not None and other is not None and other > mine
                else ""
            )
            lines.append(
                f"{last} last reported LSN {theirs.postgres.lsn}{behind}; what it "
                "wrote after its last report is unknown"
            )
    if report is not None:
        for d in report.drbd:
            lost = (
                ""
                if d.disk_state == "UpToDate"
                else (": not UpToDate, promoted with drbdadm primary --force; the blocks it lacks are lost")
            )
            lines.append(
                f"DRBD {d.name} on {target}: disk {d.disk_state}, {d.connection_state}, "
                f"peer disk {d.peer_disk_state}, {byte_size(d.out_of_sync_bytes)} out "
                f"of sync{lost}"
            )
    theirs = reports.get(last) if last else None
    for d in theirs.drbd if theirs is not None else []:
        if d.out_of_sync_bytes:
            lines.append(f"{last} reported {byte_size(d.out_of_sync_bytes)} of DRBD {d.name} out of sync with its peer")
    return lines


def advance_forced_failover(v: View, f: Flow) -> None:
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
            _end_forced(f, old, "Refused", "Withdrawn", "the annotations were removed: nothing is forced")
        return
    if v.holder != target:
        _end_forced(
            f, old, "Refused", INTERRUPTED, f"the Lease went to {v.holder or 'nobody'} at epoch {v.epoch} instead"
        )
        return
    if report is None or report.role != "Primary" or report.epoch < v.epoch:
        message = clip(f"{target} took the Lease at epoch {v.epoch}; waiting for it to report Primary")
        if old.message != message:
            f.forced = old.model_copy(update={"message": message})
        return
    how = "by the forced failover" if mine else "(it took over by itself)"
    _end_forced(f, old, "Completed", FORCED_FAILOVER, f"{target} is primary at epoch {v.epoch} {how}")


def _end_forced(
    f: Flow,
    old: ForcedFailover,
    phase: Literal["Completed", "Refused"],
    reason: str,
    message: str,
    *,
    whole: bool = False,
) -> None:
    """`whole`: the message already says which request ended and how (the agent's own)."""
    said = clip(
        f"{message} (to {old.target})"
        if whole
        else f"forced failover to {old.target} (request {old.request_id}) {phase.lower()}: {message}"
    )
    f.forced = old.model_copy(update={"phase": phase, "reason": reason, "message": said})
    if phase == "Completed":
        f.say("Warning", FORCED_FAILOVER, f"{said}; what may have been lost: {old.data_at_risk}")
    else:
        f.say("Warning", FORCED_FAILOVER_REFUSED, said)


def _judge_forced(v: View, f: Flow, target: str, request_id: str, accepted: bool) -> None:
    """Refuse a request that cannot be carried out (with why and the fix), complete one that
    needs nothing, or make it Pending with what may be lost."""
    s = v.s
    spec = s.cluster.spec
    names = [n.name for n in spec.nodes]
    rid = request_id[:63]
    report = v.reports.get(target)
    problem: tuple[str, str] | None = None
    if not REQUEST_ID.fullmatch(request_id):
        problem = (
            "InvalidRequest",
            f"{FORCE_FAILOVER_ID_ANNOTATION} {rid!r} is not a request "
            "id: use 1 to 63 letters, digits, '.', '_', ':' or '-', e.g. a timestamp",
        )
    elif target not in names:
        problem = (
            "InvalidRequest",
            f"{FORCE_FAILOVER_ANNOTATION} names {target[:63]!r}, which is not one of spec.nodes ({human_list(names)})",
        )
    elif not accepted:
        problem = (
            "DataLossNotAccepted",
            f'{ACCEPT_DATA_LOSS_ANNOTATION} is not "true": '
            "nothing is forced; set it, with a new request id, to accept losing data",
        )
    elif s.deleting:
        problem = (DELETING, "the HACluster is being deleted")
    elif spec.paused:
        problem = (PAUSED, "spec.paused is set: resume the cluster first")
    elif target in spec.standby_nodes:
        problem = ("TargetInStandbyMode", f"{target} is in spec.standbyNodes: bring it online first")
    elif report is not None and report.ineligible_reason is IneligibleReason.INVALID_SPEC:
        problem = (INVALID_SPEC, f"{target} refuses the spec: {report.ineligible_message}")
    known = target in names
    risk = clip("; ".join(loss_report(s.cluster, s.lease, target, s.now))) if known else ""
    forced = ForcedFailover(
        request_id=rid,
        target=target if known else None,
        from_epoch=v.epoch,
        phase="Pending",
        data_at_risk=risk,
        requested_at=second(s.now),
    )
    if problem is not None:
        f.forced = forced.model_copy(
            update={
                "phase": "Refused",
                "reason": problem[0],
                "message": clip(f"forced failover to {target[:63]} (request {rid}) refused: {problem[1]}"),
            }
        )
        f.say("Warning", FORCED_FAILOVER_REFUSED, f.forced.message)
    elif v.holder == target:
        f.forced = forced.model_copy(
            update={
                "phase": "Completed",
                "message": clip(
                    f"forced failover to {target} (request {rid}): {target} already holds the Lease "
                    f"at epoch {v.epoch}: nothing to force"
                ),
            }
        )
        f.say("Normal", FORCED_FAILOVER, f.forced.message)
    else:
        f.forced = forced.model_copy(
            update={
                "message": clip(
                    f"forced failover to {target} (request {rid}) pending, data loss accepted: waiting "
                    f"for {target} to take the Lease once it is free or unchanged for leaseDuration"
                )
            }
        )
        f.say(
            "Warning",
            FORCED_FAILOVER,
            f"forced failover to {target} requested (request {rid}), data loss accepted; what may be lost: {risk}",
        )
