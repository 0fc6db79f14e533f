"""What a change of the Lease means, told once: failover, hand-over, release or re-election.

Each pass compares the Lease with the epoch and primary status last recorded. A new holder is
a planned hand-over (a Pending switchover to it), a first election, the same node again, or a
failover, whose cause (standby mode, failing services, a release, an expiry, a forced failover)
and duration (from the last renewal the operator saw to the new acquireTime) go into
status.lastFailover and a FailedOver Event.
"""

from __future__ import annotations

from tandem.api.hacluster import HAClusterStatus, IneligibleReason
from tandem_operator.forced_failover import FORCED_FAILOVER
from tandem_operator.lease import EpochRecord, lease_name
from tandem_operator.messages import human_duration, ms_between, second
from tandem_operator.snapshot import Flow, View, failover_record
from tandem_operator.switchover import REQUESTED, SWITCHOVER_WHY


def observe_lease(v: View, f: Flow) -> None:
    """Compare the Lease with what status last recorded: failover, hand-over, release."""
    s = v.s
    status = s.cluster.status or HAClusterStatus()
    lease = s.lease
    prev_epoch, prev_primary = status.epoch, status.primary
    if lease is None or prev_epoch is None:
        return
    holder, epoch = lease.holder, lease.epoch
    if epoch < prev_epoch:
        f.say(
            "Warning",
            "EpochWentBackwards",
            f"Lease {lease_name(s.name)} is at epoch {epoch}, status recorded {prev_epoch}: was the "
            "Lease deleted and recreated by hand? Agents refuse reports of older epochs",
        )
        return
    if epoch == prev_epoch:
        if holder is None and prev_primary is not None:
            why = "the HACluster is being deleted" if s.deleting else "it tore its chain down"
            f.say(
                "Normal" if s.deleting else "Warning",
                "LeaseReleased",
                f"{prev_primary} released the Lease at epoch {epoch}: {why}",
            )
        return
    record = s.history.get(prev_epoch)
    origin = prev_primary or (record.holder if record else None)
    if holder is None:
        f.say(
            "Warning",
            "LeaseReleased",
            f"the Lease is free at epoch {epoch}" + (f" (last held by {origin})" if origin else ""),
        )
        return
    sw = f.switchover
    if sw is not None and sw.phase == "Pending" and sw.target == holder and epoch > sw.from_epoch:
        f.last_failover = failover_record(
            from_node=origin,
            to_node=holder,
            reason=sw.reason or REQUESTED,
            duration_ms=None,
            time=second(lease.acquire_time or s.now),
            planned=True,
        )
        f.say(
            "Normal",
            "LeaseHandedOver",
            f"{origin or 'the previous primary'} handed the Lease to {holder} at epoch {epoch} "
            f"(planned switchover, {SWITCHOVER_WHY.get(sw.reason, sw.reason)}); waiting for {holder} to "
            "report Primary",
        )
        return
    if origin is None:
        f.say(
            "Normal",
            "PrimaryElected",
            f"{holder} took the Lease at epoch {epoch}" + (" (first primary)" if prev_epoch == 0 else ""),
        )
        return
    if origin == holder:
        f.say(
            "Warning",
            "LeaseReacquired",
            f"{holder} took the Lease again at epoch {epoch} (it was primary at epoch {prev_epoch}); "
            "its chain was restarted",
        )
        return
    reason, cause = _failover_cause(v, origin, prev_epoch, record)
    forced = f.forced
    if forced is not None and forced.phase == "Pending" and forced.target == holder:
        reason, cause = FORCED_FAILOVER, (f"forced failover (request {forced.request_id}), data loss accepted")
    duration = ms_between(record.renew_time if record and record.holder == origin else None, lease.acquire_time)
    f.last_failover = failover_record(
        from_node=origin,
        to_node=holder,
        reason=reason,
        duration_ms=duration,
        time=second(lease.acquire_time or s.now),
        planned=False,
    )
    hops = f" (epoch {prev_epoch} to {epoch})" if epoch > prev_epoch + 1 else ""
    suffix = (
        human_duration(duration)
        if duration is not None
        else ("duration unknown (the operator did not see the last renewal)")
    )
    f.say("Warning", "FailedOver", f"failed over from {origin} to {holder}: {cause}; {suffix}{hops}")


def _failover_cause(v: View, origin: str, prev_epoch: int, record: EpochRecord | None) -> tuple[str, str]:
    spec = v.s.cluster.spec
    old = v.reports.get(origin)
    if origin in spec.standby_nodes:
        return "StandbyMode", f"{origin} was put in standby (spec.standbyNodes)"
    if old is not None and old.epoch >= prev_epoch and old.ineligible_reason is IneligibleReason.RESTART_BACKOFF:
        return "ServiceFailed", f"services kept failing on {origin}, which gave the Lease up"
    if record is not None and record.released and record.holder == origin:
        return "LeaseReleased", f"{origin} released the lease"
    if old is not None and old.role == "Fenced":
        return "LeaseExpired", f"lease expired ({origin} fenced itself)"
    return "LeaseExpired", "lease expired"
