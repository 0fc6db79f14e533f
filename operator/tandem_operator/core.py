"""The operator's decision: one snapshot of an HACluster's world in, one decision out.

`reconcile(snapshot)` returns the operator-owned part of the HACluster status (primary, epoch,
conditions, lastFailover, switchover, announced, observedGeneration), whether it differs from
what is stored (`Decision.patch` is None when it does not: the steady state writes nothing),
the Events to post and the DRBDVolume and FloatingIP statuses to write. It runs the rules of
the package's other modules in a fixed order on one `View` and `Flow` (snapshot.py): the Lease
change first (failover_record.py), then the switchovers (switchover.py, forced_failover.py),
then what the conditions say of the result (conditions.py, resources.py, split_brain.py).
Nothing here or there does I/O or reads a clock: `now` is an input, so the same snapshot
always gives the same decision.

The contract implemented here is docs/failover-protocol.md (section "Operator" for the choices
this side makes); docs/operator.md explains the conditions and Events to users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tandem.api.hacluster import Announced, HAClusterStatus
from tandem_operator.conditions import CONDITION_TYPES, cluster_conditions, spec_applied, transition_events
from tandem_operator.failover_record import observe_lease
from tandem_operator.forced_failover import advance_forced_failover
from tandem_operator.members import MemberStatus, member_statuses
from tandem_operator.messages import Event
from tandem_operator.resources import announced_recoveries, resources_healthy
from tandem_operator.snapshot import Flow, Snapshot, view_of
from tandem_operator.split_brain import announced_split_brain_recoveries
from tandem_operator.switchover import advance_switchover, new_switchover
from tandem_operator.validation import refusals, validate

FIELD_MANAGER = "tandem-operator"  # the owner of the status fields below, in server-side apply


@dataclass(frozen=True)
class Decision:
    status: HAClusterStatus
    patch: dict[str, Any] | None
    events: tuple[Event, ...]
    retry: str | None = None
    reason: str = ""
    members: tuple[MemberStatus, ...] = ()  # DRBDVolume and FloatingIP statuses to write


def reconcile(s: Snapshot) -> Decision:
    """The desired operator-owned status, the patch (None: unchanged) and the Events."""
    status = s.cluster.status or HAClusterStatus()
    v = view_of(s)
    f = Flow(
        switchover=status.switchover,
        last_failover=status.last_failover,
        handled_request=status.handled_switchover_id,
        forced=status.forced_failover,
    )
    invalid = validate(s) + refusals(v)
    observe_lease(v, f)
    advance_switchover(v, f)
    new_switchover(v, f)
    advance_forced_failover(v, f)
    before = status.announced or Announced()
    resources, unhealthy, resource_events = resources_healthy(v, {c.type: c for c in status.conditions}, before)
    recoveries, recovery_events = announced_recoveries(v, before)
    split_brains, split_brain_events = announced_split_brain_recoveries(v, before)
    conditions = [
        *cluster_conditions(v, f, invalid),
        resources,
        spec_applied(v, {c.type: c for c in status.conditions}),
    ]
    desired = HAClusterStatus(
        observed_generation=s.generation,
        primary=v.holder,
        epoch=v.epoch if s.lease is not None else status.epoch,
        conditions=conditions,
        last_failover=f.last_failover,
        switchover=f.switchover,
        handled_switchover_id=f.handled_request,
        announced=Announced(recoveries=recoveries, unhealthy=unhealthy, split_brain_recoveries=split_brains)
        if recoveries or unhealthy or split_brains
        else None,
        forced_failover=f.forced,
    )
    events = [
        *f.events,
        *transition_events(status, conditions, s.now),
        *resource_events,
        *recovery_events,
        *split_brain_events,
    ]
    wanted = owned_fields(desired)
    patch = None if wanted == owned_fields(status) else wanted
    ready = conditions[0]
    return Decision(
        status=desired,
        patch=patch,
        events=tuple(events),
        retry=f.retry,
        reason=f"{ready.reason}: {ready.message}",
        members=member_statuses(v),
    )


def owned_fields(status: HAClusterStatus) -> dict[str, Any]:
    """The fields of status the operator owns, as they go on the wire (status.nodes excluded)."""
    data: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"nodes"})
    # conditions of other types (another controller's) are neither ours to compare nor to drop
    data["conditions"] = [c for c in data.get("conditions", []) if c["type"] in CONDITION_TYPES]
    return data
