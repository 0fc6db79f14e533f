"""Deletion: when a deleted HACluster may delete its Lease and drop its finalizer.

The agents take metadata.deletionTimestamp as "tear the chain down and release the Lease".
The operator waits for that (or for no node to report Primary, or for the holder to stop
renewing), then deletes the Lease; after the timeout it deletes it anyway, so a dead cluster
can always be deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tandem_operator.lease import lease_name
from tandem_operator.messages import Event, human_duration, human_list, ms_between
from tandem_operator.snapshot import Snapshot, view_of


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
    elapsed = ms_between(deleted_at, s.now)
    if lease is None:
        return Teardown(
            True,
            False,
            "the Lease is already gone",
            (
                Event(
                    "Normal",
                    "TornDown",
                    f"HACluster {s.name} released after {human_duration(elapsed)}: its Lease was already gone",
                ),
            ),
        )
    v = view_of(s)
    up = sorted(n for n, r in v.reports.items() if r.role in ("Primary", "Demoting") and v.current(r))
    expired = (
        lease.renew_time is not None
        and lease.duration_seconds is not None
        and s.now - lease.renew_time > timedelta(seconds=2 * lease.duration_seconds)
    )
    if lease.holder is None:
        why = "the Lease was released"
    elif not up:
        why = f"no node reports Primary (holder {lease.holder} is down)"
    elif expired:
        why = f"the holder {lease.holder} stopped renewing the Lease"
    elif s.now - deleted_at >= timeout:
        message = (
            f"gave up waiting for {human_list(up)} to tear the chain down after "
            f"{human_duration(elapsed)}; deleting Lease {lease_name(s.name)} anyway (the "
            "holder's next renew fails and it demotes)"
        )
        return Teardown(True, True, message, (Event("Warning", "TeardownTimeout", message),))
    else:
        return Teardown(
            False,
            False,
            f"waiting for {human_list(up)} to tear the chain down and release Lease "
            f"{lease_name(s.name)} ({human_duration(elapsed)} of "
            f"{human_duration(ms_between(s.now - timeout, s.now))})",
        )
    message = f"chain torn down and Lease {lease_name(s.name)} deleted after {human_duration(elapsed)}: {why}"
    return Teardown(True, True, message, (Event("Normal", "TornDown", message),))
