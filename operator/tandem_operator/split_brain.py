"""Split brain: two primaries, or a node whose data diverged from the Lease holder's.

For the HACluster (the SplitBrain condition): two nodes claiming Primary in the current epoch,
a Primary without the Lease, or DRBD Primary on both sides. For each DRBDVolume (its SplitBrain
condition): a node StandAlone with changes the holder lacks, until its recovery has resynced.
Each recovery (a node discarded its changes and resynced from the holder) is announced once,
as a Warning Event saying what was discarded, remembered in status.announced across restarts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from tandem.api.common import Condition
from tandem.api.hacluster import Announced, AnnouncedSplitBrainRecovery, SplitBrainRecovery
from tandem_operator.messages import Event, Problem, byte_size, clip, human_list, second
from tandem_operator.snapshot import View

# A DRBDVolume's SplitBrain condition, and the Event of each recovery (a node discarded its
# changes of a volume and resynced from the Lease holder: status.nodes[].splitBrainRecoveries).
SPLIT_BRAIN_DETECTED = "Detected"
SPLIT_BRAIN_RECOVERED = "Recovered"
SPLIT_BRAIN_RECOVERY = "SplitBrainRecovery"


def cluster_split_brain(v: View) -> Problem | None:
    claims = sorted(n for n, r in v.reports.items() if r.role == "Primary" and v.current(r))
    if len(claims) >= 2:
        return Problem(
            "TwoPrimaries",
            f"{human_list(claims)} all report Primary at epoch {v.epoch} or "
            "later: only the Lease holder may be primary",
        )
    if claims and v.holder is not None and claims[0] != v.holder:
        return Problem(
            "PrimaryWithoutLease",
            f"{claims[0]} reports Primary at epoch {v.reports[claims[0]].epoch} but {v.holder} holds the Lease",
        )
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
            return Problem("DRBDSplitBrain", f"DRBD {vol} is Primary on {human_list(nodes)}")
    return None


def volume_split_brain(v: View, name: str, before: Sequence[Condition]) -> Condition:
    """The DRBDVolume's SplitBrain condition. True (Detected) while a node's data of it has
    diverged from the Lease holder's: a fresh report of another node shows it StandAlone with
    changes the holder lacks, or its recovery (splitBrainRecoveries) has not resynced yet.
    False: Recovered (the last recoveries, what each discarded), or NotDetected."""
    spec, holder = v.s.cluster.spec, v.holder
    names = v.volume_names(name)
    recoveries = {
        n: rec for n in sorted(v.reports) for rec in v.reports[n].split_brain_recoveries if rec.volume == name
    }
    detected = []
    for node in sorted(v.reports):
        report, rec = v.reports[node], recoveries.get(node)
        if rec is not None and rec.resynced_time is None:
            detected.append(_discarded(node, rec))
            continue
        entry = next((d for d in report.drbd if d.name in names), None)
        if (
            holder is None
            or node == holder
            or not v.fresh(report)
            or entry is None
            or entry.connection_state != "StandAlone"
            or not entry.out_of_sync_bytes
        ):
            continue
        if spec.paused:
            then = "paused (spec.paused): nothing is discarded until the cluster is resumed"
        elif node in spec.standby_nodes:
            then = f"{node} is in standby mode and keeps them until it is online again"
        else:
            then = f"{node} discards them and resyncs from {holder}"
        detected.append(
            f"{node} is StandAlone with {byte_size(entry.out_of_sync_bytes)} "
            f"changed that the Lease holder {holder} lacks: {then}"
        )
    status: Literal["True", "False"] = "True" if detected else "False"
    if detected:
        reason, message = SPLIT_BRAIN_DETECTED, "; ".join(detected)
    elif recoveries:
        reason = SPLIT_BRAIN_RECOVERED
        message = "; ".join(_discarded(n, rec) for n, rec in recoveries.items())
    else:
        reason, message = "NotDetected", "no node's data diverged from the Lease holder's"
    old = next((c for c in before if c.type == "SplitBrain"), None)
    since = old.last_transition_time if old is not None and old.status == status else second(v.s.now)
    return Condition(type="SplitBrain", status=status, reason=reason, message=clip(message), last_transition_time=since)


def _stamp(t: datetime) -> str:
    return second(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def _discarded(node: str, rec: SplitBrainRecovery) -> str:
    """ "mail1 discarded 24.0 KiB it had changed that mail2 lacked (...); resynced from mail2
    at ..." """
    said = (
        f"{node} discarded {byte_size(rec.discarded_bytes)} it had changed that {rec.peer} "
        f"lacked (drbdadm connect --discard-my-data at {_stamp(rec.time)})"
    )
    if rec.resynced_time is None:
        return f"{said} and resyncs from {rec.peer}"
    return f"{said}; resynced from {rec.peer} at {_stamp(rec.resynced_time)}"


def announced_split_brain_recoveries(
    v: View, before: Announced
) -> tuple[list[AnnouncedSplitBrainRecovery], list[Event]]:
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
                events.append(
                    Event(
                        "Warning",
                        SPLIT_BRAIN_RECOVERY,
                        clip(
                            f"split brain on DRBD {rec.volume} recovered as DRBD documents it: "
                            f"{_discarded(name, rec)}, the Lease holder whose data wins"
                        ),
                    )
                )
            out[(name, rec.volume)] = mark
    return [out[key] for key in sorted(out)], events
