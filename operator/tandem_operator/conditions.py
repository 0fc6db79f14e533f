"""The HACluster's conditions and the Events their transitions post.

Ready's reason is the one-word state of the STATUS column, chosen in a fixed order of what
matters most (deleting, an invalid spec, split brain, paused, no primary, ...); Replicating and
Degraded judge the standbys, SwitchoverInProgress the switchover, PreferredPrimary whether the
primary agrees with spec.primary (and if not, why and what happens next), SpecApplied whether
every node runs the newest spec. A condition keeps its lastTransitionTime while its status
holds, so an Event is posted on a change only, not on every pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from tandem.api.common import SWITCHOVER_ANNOTATION, Condition
from tandem.api.hacluster import INVALID_SPEC, HAClusterStatus
from tandem_operator.lease import lease_name
from tandem_operator.messages import Event, Problem, clip, human_duration, human_list, ms_between, second
from tandem_operator.snapshot import Flow, Snapshot, View, dependency_state
from tandem_operator.split_brain import cluster_split_brain
from tandem_operator.switchover import REQUESTED, refused_request_outstanding, target_problems

CONDITION_TYPES = (
    "Ready",
    "Replicating",
    "Degraded",
    "SplitBrain",
    "SwitchoverInProgress",
    "PreferredPrimary",
    "ResourcesHealthy",
    "SpecApplied",
)

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
# Ready states that are expected steps rather than trouble: their Events are Normal.
_CALM_STATES = frozenset({PENDING, DELETING, SWITCHING_OVER, PROMOTING, REPLICATING, WAITING_FOR_DEPENDENCY, PAUSED})

APPLYING = "Applying"
# SpecApplied reasons that need a person (the others resolve by themselves).
_SPEC_PROBLEMS = ("NotApplicable", INVALID_SPEC, "ApplyFailed")

ConditionStatus = Literal["True", "False", "Unknown"]


def condition(
    prev: Mapping[str, Condition], type_: str, status: ConditionStatus, reason: str, message: str, *, s: Snapshot
) -> Condition:
    old = prev.get(type_)
    since = old.last_transition_time if old is not None and old.status == status else second(s.now)
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=clip(message),
        observed_generation=s.generation,
        last_transition_time=since,
    )


def cluster_conditions(v: View, f: Flow, invalid: Sequence[str]) -> list[Condition]:
    """Ready, Replicating, Degraded, SplitBrain, SwitchoverInProgress and PreferredPrimary."""
    s = v.s
    prev = {c.type: c for c in (s.cluster.status or HAClusterStatus()).conditions}
    standbys = [n.name for n in s.cluster.spec.nodes if n.name != v.holder]
    data_problems = [p for n in standbys for p in _data_problems(v, n)]
    replicating = _replicating(v, prev, standbys, data_problems)
    degraded = _degraded(v, prev, standbys, data_problems)
    brain = cluster_split_brain(v)
    notes = _stale_notes(v)
    note = (" (" + "; ".join(notes) + ")") if notes else ""
    if brain is not None:
        split = condition(prev, "SplitBrain", "True", brain.reason, brain.message, s=s)
    else:
        split = condition(
            prev,
            "SplitBrain",
            "False",
            "NotDetected",
            "at most one node claims Primary for the current epoch" + note,
            s=s,
        )
    ready_status, reason, message = _ready(v, f, invalid, brain, replicating=replicating, degraded=degraded)
    if notes and reason not in (DEGRADED, SPLIT_BRAIN):
        message += note
    ready = condition(prev, "Ready", ready_status, reason, message, s=s)
    return [ready, replicating, degraded, split, _switchover_in_progress(v, f, prev), _preferred(v, f, prev)]


def _replicating(
    v: View, prev: Mapping[str, Condition], standbys: Sequence[str], data_problems: Sequence[Problem]
) -> Condition:
    """Are the standbys in sync with the primary (DRBD, and PostgreSQL within its lag policy)?"""
    s, holder = v.s, v.holder
    if holder is None:
        return condition(prev, "Replicating", "False", NO_PRIMARY, "no primary: nothing to replicate from", s=s)
    if data_problems:
        return condition(
            prev, "Replicating", "False", data_problems[0].reason, "; ".join(p.message for p in data_problems), s=s
        )
    return condition(
        prev,
        "Replicating",
        "True",
        "InSync",
        f"{human_list(standbys)} in sync with {holder}: DRBD Connected/UpToDate"
        + (", PostgreSQL lag within policy" if s.cluster.spec.chain.postgres else ""),
        s=s,
    )


def _degraded(
    v: View, prev: Mapping[str, Condition], standbys: Sequence[str], data_problems: Sequence[Problem]
) -> Condition:
    """Is redundancy lost: a standby out of sync or not eligible, or a service of the primary
    failed (said first)?"""
    s, holder = v.s, v.holder
    if holder is None:
        return condition(prev, "Degraded", "Unknown", NO_PRIMARY, "no primary: redundancy cannot be judged", s=s)
    problems = [*data_problems, *(p for n in standbys for p in _eligibility_problems(v, n))]
    failed = _failed_services(v)
    if failed:
        problems.insert(0, Problem("ServiceFailed", f"on {holder}: {human_list(failed)} failed"))
    if problems:
        return condition(prev, "Degraded", "True", problems[0].reason, "; ".join(p.message for p in problems), s=s)
    return condition(prev, "Degraded", "False", "Healthy", "every standby is in sync and eligible", s=s)


def _failed_services(v: View) -> list[str]:
    """The services the primary reports Failed (in a fresh report of the current epoch)."""
    report = v.reports.get(v.holder) if v.holder else None
    if report is None or not v.current(report) or not v.fresh(report):
        return []
    return [svc.name for svc in report.services if svc.state == "Failed"]


def _switchover_in_progress(v: View, f: Flow, prev: Mapping[str, Condition]) -> Condition:
    sw, s = f.switchover, v.s
    if sw is not None and sw.phase == "Pending":
        return condition(prev, "SwitchoverInProgress", "True", sw.reason or REQUESTED, sw.message, s=s)
    if sw is not None:
        return condition(
            prev,
            "SwitchoverInProgress",
            "False",
            "Completed" if sw.phase == "Completed" else "Refused",
            sw.message,
            s=s,
        )
    return condition(prev, "SwitchoverInProgress", "False", "NoSwitchover", "no switchover requested", s=s)


def _ready(
    v: View, f: Flow, invalid: Sequence[str], brain: Problem | None, *, replicating: Condition, degraded: Condition
) -> tuple[ConditionStatus, str, str]:
    """Ready's status, reason (the one-word state of the STATUS column) and message: the first
    that applies of deletion, an invalid spec, split brain, paused, no primary, then what the
    primary is doing."""
    if v.s.deleting:
        return "False", DELETING, "deletion requested: the agents tear the chain down and release the Lease"
    if invalid:
        return "False", INVALID_SPEC, "; ".join(invalid)
    if brain is not None:
        return "False", SPLIT_BRAIN, brain.message
    if v.s.cluster.spec.paused:
        return _paused(v)
    if v.holder is None:
        return _without_primary(v)
    return _with_primary(v, v.holder, f, replicating=replicating, degraded=degraded)


def _paused(v: View) -> tuple[ConditionStatus, str, str]:
    """Paused: Ready stays True while the primary still serves."""
    holder, epoch = v.holder, v.epoch
    report = v.reports.get(holder) if holder else None
    serving = report is not None and v.fresh(report) and report.role == "Primary" and report.epoch >= epoch
    message = "paused (spec.paused): the agents bring up, repair, fail over and switch over nothing; " + (
        f"{holder} holds the Lease at epoch {epoch}" if holder else "nobody holds the Lease"
    )
    return ("True" if serving else "False"), PAUSED, message


def _without_primary(v: View) -> tuple[ConditionStatus, str, str]:
    """Pending before the first primary, NoPrimary once the Lease has been held and is free."""
    s = v.s
    if s.lease is None or v.epoch == 0:
        prefer = f" (preferred: {s.cluster.spec.primary})" if s.cluster.spec.primary else ""
        return "False", PENDING, (f"waiting for an agent to take Lease {lease_name(s.name)}{prefer}" + _why_not(v))
    return (
        "False",
        NO_PRIMARY,
        (
            f"nobody holds Lease {lease_name(s.name)} (epoch {v.epoch}); waiting "
            "for an eligible node to take it" + _why_not(v)
        ),
    )


def _with_primary(
    v: View, holder: str, f: Flow, *, replicating: Condition, degraded: Condition
) -> tuple[ConditionStatus, str, str]:
    """A node holds the Lease: switching over, waiting for the dependency, its report missing,
    promoting, or primary (Degraded or Replicating)."""
    epoch, sw, dep = v.epoch, f.switchover, dependency_state(v)
    report = v.reports.get(holder)
    if sw is not None and sw.phase == "Pending":
        return "False", SWITCHING_OVER, sw.message
    if dep is not None and not (dep[2] and dep[1] == holder):
        return (
            "False",
            WAITING_FOR_DEPENDENCY,
            (
                f"waiting for HACluster {dep[0]} to be Ready on {holder} (it is "
                f"{'Ready' if dep[2] else 'not Ready'}, primary {dep[1] or 'none'})"
            ),
        )
    if report is None or not v.fresh(report):
        return (
            "Unknown",
            NO_REPORT,
            (
                f"{holder} holds the Lease at epoch {epoch} but its report is "
                f"missing or older than {v.stale_after.total_seconds():.0f} s"
            ),
        )
    if report.role != "Primary" or report.epoch < epoch:
        return (
            "False",
            PROMOTING,
            (
                f"{holder} holds the Lease at epoch {epoch} and has not reported "
                f"Primary yet (it reports {report.role} at epoch {report.epoch})"
            ),
        )
    if degraded.status == "True":
        return "True", DEGRADED, f"{holder} is primary at epoch {epoch}; degraded: {degraded.message}"
    return "True", REPLICATING, f"{holder} is primary at epoch {epoch}; {replicating.message}"


def _stale_notes(v: View) -> list[str]:
    """Primary claims of older epochs: refused for role decisions, but worth saying."""
    notes = []
    for name in sorted(v.reports):
        r = v.reports[name]
        if not v.current(r) and r.role == "Primary":
            notes.append(
                f"{name} still reports Primary at epoch {r.epoch} < Lease epoch {v.epoch}: "
                "ignored (stale epoch refused)"
            )
    return notes


def _data_problems(v: View, name: str) -> list[Problem]:
    """Why node `name` is not a standby in sync (empty: it is)."""
    r = v.reports.get(name)
    if r is None:
        return [Problem("NodeReportMissing", f"{name} has not reported")]
    if not v.fresh(r):
        last = r.heartbeat_time.isoformat() if r.heartbeat_time else "never"
        return [
            Problem(
                "NodeReportMissing",
                f"{name}'s report is older than {v.stale_after.total_seconds():.0f} s (last heartbeat {last})",
            )
        ]
    if not v.current(r):
        return [
            Problem(
                "StaleEpoch",
                f"{name} reports epoch {r.epoch}, older than the Lease's "
                f"{v.epoch}: its report is ignored (stale epoch refused)",
            )
        ]
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
            problems.append(Problem("PeerDisconnected", f"{name}: DRBD {vname} is {entry.connection_state}"))
        if entry.disk_state != "UpToDate":
            resync = " (resyncing)" if entry.replication_state.startswith("Sync") else ""
            problems.append(Problem("DiskNotUpToDate", f"{name}: DRBD {vname} disk is {entry.disk_state}{resync}"))
    if v.s.cluster.spec.chain.postgres is not None:
        pg = r.postgres
        max_lag = v.s.cluster.spec.failover.max_lag_seconds
        if pg is None or pg.role != "Standby":
            problems.append(
                Problem(
                    "PostgresNotStreaming", f"{name}: PostgreSQL is {pg.role if pg else 'not reported'}, not a standby"
                )
            )
        elif pg.lag_seconds is None:
            problems.append(Problem("StandbyLagging", f"{name}: PostgreSQL lag not reported"))
        elif pg.lag_seconds > max_lag:
            problems.append(
                Problem("StandbyLagging", f"{name}: PostgreSQL lag above spec.failover.maxLagSeconds ({max_lag} s)")
            )
    return problems


def _eligibility_problems(v: View, name: str) -> list[Problem]:
    r = v.reports.get(name)
    if r is None or not v.fresh(r) or not v.current(r):
        return []
    if r.eligible is False:
        why = r.why_ineligible or "no reason given"
        return [Problem("StandbyIneligible", f"{name} is not eligible to take over: {why}")]
    return []


def _why_not(v: View) -> str:
    """Why the nodes that say so may not take the Lease, for a cluster without a primary (a
    NotSynchronous or LagTooHigh node, say)."""
    problems = [p.message for n in v.s.cluster.spec.nodes for p in _eligibility_problems(v, n.name)]
    return "".join(f"; {m}" for m in problems)


def _preferred(v: View, f: Flow, prev: Mapping[str, Condition]) -> Condition:
    """Does the primary agree with spec.primary, and if not, why and what happens next: so that
    spec.primary never silently disagrees with the Lease."""
    spec, holder, s = v.s.cluster.spec, v.holder, v.s
    preferred = spec.primary
    sw = f.switchover
    if preferred is None:
        return condition(
            prev,
            "PreferredPrimary",
            "True",
            "NoPreference",
            "spec.primary is not set: any eligible node may be primary",
            s=s,
        )
    if holder == preferred:
        return condition(
            prev, "PreferredPrimary", "True", "AtPreferred", f"{holder} is primary, as spec.primary says", s=s
        )
    if holder is None:
        return condition(
            prev, "PreferredPrimary", "Unknown", NO_PRIMARY, f"no primary yet; {preferred} is preferred", s=s
        )
    if sw is not None and sw.phase == "Pending" and sw.target == preferred:
        return condition(
            prev, "PreferredPrimary", "False", SWITCHING_OVER, f"switching over from {holder} to {preferred}", s=s
        )
    problems = "; ".join(p.message for p in target_problems(v, preferred)[:2])
    unfit = f" ({problems})" if problems else ""
    since = _since(v)
    if spec.failover.auto_failback:
        return condition(
            prev,
            "PreferredPrimary",
            "False",
            "FailbackWaiting",
            f"primary {holder} differs from spec.primary {preferred}{since}; "
            f"autoFailback moves it back once {preferred} is fit{unfit}",
            s=s,
        )
    if refused_request_outstanding(v, f):
        return condition(
            prev,
            "PreferredPrimary",
            "False",
            "SwitchoverRetrying",
            f"the switchover to {preferred} was refused{unfit}; it is retried as soon as {preferred} is fit",
            s=s,
        )
    return condition(
        prev,
        "PreferredPrimary",
        "False",
        "PrimaryDiffers",
        f"primary {holder} differs from spec.primary {preferred}{since}; "
        "autoFailback is false, so it stays: move it with `kubectl tandem "
        f"switchover {s.name} --to {preferred}` or the {SWITCHOVER_ANNOTATION} "
        "annotation",
        s=s,
    )


def _since(v: View) -> str:
    """When the primary last moved, from status.lastFailover."""
    record = (v.s.cluster.status or HAClusterStatus()).last_failover
    if record is None or record.to_node != v.holder:
        return ""
    what = "switchover" if record.planned else "failover"
    return f" since the {what} at {record.time.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def spec_applied(v: View, prev: Mapping[str, Condition]) -> Condition:
    """Does every node run the newest spec? The agents apply most changes live; one that needs
    the chain down waits on the primary for the next switchover, and its report says so."""
    s = v.s
    reports = [
        r
        for n in s.cluster.spec.nodes
        if (r := v.reports.get(n.name)) is not None and v.fresh(r) and r.applied_generation is not None
    ]
    if not reports:
        return condition(
            prev, "SpecApplied", "Unknown", NO_REPORT, "no node has reported which generation of the spec it runs", s=s
        )
    waiting = [r for r in reports if r.pending_change]
    if waiting:
        word = waiting[0].pending_change.partition(":")[0]
        reason = word if word.isalpha() else APPLYING
        return condition(
            prev, "SpecApplied", "False", reason, "; ".join(f"{r.name}: {r.pending_change}" for r in waiting), s=s
        )
    behind = [r for r in reports if (r.applied_generation or 0) < s.generation]
    if behind:
        return condition(
            prev,
            "SpecApplied",
            "False",
            APPLYING,
            "; ".join(f"{r.name} runs generation {r.applied_generation}" for r in behind)
            + f"; applying generation {s.generation}",
            s=s,
        )
    return condition(
        prev,
        "SpecApplied",
        "True",
        "Applied",
        f"{human_list(r.name for r in reports)} run generation {s.generation} of the spec",
        s=s,
    )


def transition_events(old: HAClusterStatus, new: Sequence[Condition], now: datetime) -> list[Event]:
    prev = {c.type: c for c in old.conditions}
    events = []
    cur = {c.type: c for c in new}
    ready, was = cur["Ready"], prev.get("Ready")
    if (
        was is None
        or was.status != ready.status
        or was.reason != ready.reason
        or (ready.reason in (INVALID_SPEC, SPLIT_BRAIN) and was.message != ready.message)
    ):
        after = ""
        if was is not None and was.reason != ready.reason:
            after = f" (after {human_duration(ms_between(was.last_transition_time, now))} {was.reason})"
        kind: Literal["Normal", "Warning"] = "Normal" if ready.reason in _CALM_STATES else "Warning"
        events.append(Event(kind, ready.reason, clip(f"Ready={ready.status}{after}: {ready.message}")))
    applied, was_applied = cur.get("SpecApplied"), prev.get("SpecApplied")
    if (
        applied is not None
        and applied.status == "False"
        and applied.reason != APPLYING
        and (was_applied is None or was_applied.reason != applied.reason)
    ):
        events.append(
            Event("Warning" if applied.reason in _SPEC_PROBLEMS else "Normal", applied.reason, applied.message)
        )
    split, was_split = cur["SplitBrain"], prev.get("SplitBrain")
    if split.status == "True" and (was_split is None or was_split.status != "True"):
        events.append(Event("Warning", "SplitBrain", split.message))
    if split.status != "True" and was_split is not None and was_split.status == "True":
        dur = human_duration(ms_between(was_split.last_transition_time, now))
        events.append(Event("Normal", "SplitBrainResolved", f"split brain resolved after {dur}"))
    return events
