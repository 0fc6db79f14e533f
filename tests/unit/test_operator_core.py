"""The operator's pure core: typed snapshots in, status/Events/switchover decisions out.

No I/O and no mocks: every test builds the world as the handlers would (typed models from
tandem.api plus the Lease as read) and checks the decision.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tandem.api.drbdvolume import DRBDVolume
from tandem.api.floatingip import FloatingIP
from tandem.api.hacluster import HACluster, HAClusterStatus
from tandem.kube.lease import LeaseRecord
from tandem_operator import core, deletion
from tandem_operator.lease import (
    EpochRecord,
    lease_created_event,
    lease_manifest,
    lease_members,
    remember,
)
from tandem_operator.snapshot import NodeInfo, PrimaryChange, Snapshot

NOW = datetime(2026, 11, 22, 3, 0, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def report(
    name: str,
    role: str = "Standby",
    epoch: int = 1,
    *,
    lag: int | None = 0,
    disk: str = "UpToDate",
    conn: str = "Connected",
    eligible: bool | None = True,
    why: tuple[str, str] | None = None,
    age: float = 1.0,
    message: str = "",
    drbd_role: str | None = None,
    pg_role: str | None = None,
    services: list[dict[str, Any]] | None = None,
    at: datetime = NOW,
) -> dict[str, Any]:
    pg: dict[str, Any] = {"role": pg_role or ("Primary" if role == "Primary" else "Standby")}
    if lag is not None and pg["role"] == "Standby":
        pg["lagSeconds"] = lag
    entry: dict[str, Any] = {
        "name": name,
        "role": role,
        "epoch": epoch,
        "heartbeatTime": iso(at - timedelta(seconds=age)),
        "drbd": [
            {
                "name": "data",
                "role": drbd_role or ("Primary" if role == "Primary" else "Secondary"),
                "diskState": disk,
                "connectionState": conn,
                "replicationState": "Established",
            }
        ],
        "postgres": pg,
        "message": message,
        "services": services or [],
    }
    if eligible is not None:
        entry["eligible"] = eligible
    if why:
        entry["ineligibleReason"], entry["ineligibleMessage"] = why
    return entry


def cluster(
    *reports: dict[str, Any],
    nodes: tuple[str, ...] = ("n1", "n2"),
    primary: str | None = "n1",
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> HACluster:
    body: dict[str, Any] = {
        "nodes": [{"name": n} for n in nodes],
        "chain": {"volumes": ["data"], "floatingIPs": ["vip"], "postgres": {}},
        "failover": {"maxLagSeconds": 5},
        **spec,
    }
    if primary is not None:
        body["primary"] = primary
    st = {"epoch": 1, "primary": "n1", **(status or {}), "nodes": list(reports)}
    return HACluster.model_validate({"spec": body, "status": st})


def volume(name: str = "data", owner: str = "c", nodes: tuple[str, ...] = ("n1", "n2")) -> DRBDVolume:
    return DRBDVolume.model_validate(
        {
            "spec": {
                "cluster": owner,
                "resourceName": name,
                "minor": 0,
                "nodes": [
                    {"name": n, "disk": "/dev/vg0/data", "address": f"198.19.0.{i + 1}", "nodeId": i}
                    for i, n in enumerate(nodes)
                ],
                "quorum": {"mode": "off"},
            }
        }
    )


def fip(*ranges: tuple[str, str | None], owner: str = "c") -> FloatingIP:
    addresses = [{"start": a} if b is None else {"start": a, "end": b} for a, b in ranges]
    return FloatingIP.model_validate(
        {"spec": {"cluster": owner, "addresses": addresses, "prefixLength": 24, "interface": "mgmt"}}
    )


HELD = LeaseRecord("n1", 1, NOW - timedelta(minutes=5), NOW - timedelta(seconds=1), 3)


def snap(c: HACluster, lease: LeaseRecord | None = HELD, **kw: Any) -> Snapshot:
    args: dict[str, Any] = {
        "name": "c",
        "namespace": "ns",
        "generation": 1,
        "cluster": c,
        "lease": lease,
        "now": NOW,
        "volumes": {"data": volume()},
        "floating_ips": {"vip": fip(("198.18.0.2", "198.18.0.100"))},
    }
    args.update(kw)
    return Snapshot(**args)


def healthy(**kw: Any) -> HACluster:
    return cluster(report("n1", "Primary"), report("n2"), **kw)


def settle(s: Snapshot, **changes: Any) -> Snapshot:
    """The next cycle: the decided status is stored (agents' reports kept), time moves on."""
    decision = core.reconcile(s)
    old = s.cluster.status or HAClusterStatus()
    stored = decision.status.model_copy(update={"nodes": old.nodes})
    nxt = s.cluster.model_copy(update={"status": stored})
    fields = {**s.__dict__, "cluster": nxt, "now": s.now + timedelta(seconds=2), "primary_change": None}
    fields.update(changes)
    return Snapshot(**fields)


def cond(d: core.Decision, type_: str) -> tuple[str, str, str]:
    c = next(c for c in d.status.conditions if c.type == type_)
    return c.status, c.reason, c.message


def reasons(d: core.Decision) -> list[str]:
    return [e.reason for e in d.events]


def with_reports(s: Snapshot, *reports: dict[str, Any]) -> Snapshot:
    status = (s.cluster.status or HAClusterStatus()).model_copy(
        update={"nodes": HAClusterStatus.model_validate({"nodes": list(reports)}).nodes}
    )
    return Snapshot(**{**s.__dict__, "cluster": s.cluster.model_copy(update={"status": status})})


# --- conditions ---------------------------------------------------------------------------


def test_healthy_pair_is_replicating_and_a_second_pass_writes_nothing() -> None:
    s = snap(healthy())
    d = core.reconcile(s)
    assert cond(d, "Ready")[:2] == ("True", "Replicating")
    assert cond(d, "Replicating")[:2] == ("True", "InSync")
    assert cond(d, "Degraded")[:2] == ("False", "Healthy")
    assert cond(d, "SplitBrain")[:2] == ("False", "NotDetected")
    assert cond(d, "SwitchoverInProgress")[:2] == ("False", "NoSwitchover")
    assert d.patch is not None and d.patch["primary"] == "n1" and d.patch["epoch"] == 1
    assert "nodes" not in d.patch, "the operator never writes the agents' entries"
    assert reasons(d) == ["Replicating"]
    again = core.reconcile(settle(s))
    assert again.patch is None and again.events == ()


def test_a_foreign_condition_does_not_make_the_operator_write_forever() -> None:
    s = settle(snap(healthy()))
    status = s.cluster.status
    assert status is not None
    foreign = HAClusterStatus.model_validate(
        {"conditions": [{"type": "Backup", "status": "True", "reason": "Done", "lastTransitionTime": iso(NOW)}]}
    )
    status = status.model_copy(update={"conditions": [*status.conditions, *foreign.conditions]})
    s = Snapshot(**{**s.__dict__, "cluster": s.cluster.model_copy(update={"status": status})})
    assert core.reconcile(s).patch is None


def test_conditions_keep_their_transition_time_until_their_status_changes() -> None:
    s = settle(snap(healthy()))
    first = {c.type: c for c in s.cluster.status.conditions}  # type: ignore[union-attr]
    lagging = with_reports(settle(s, now=NOW + timedelta(seconds=20)), report("n1", "Primary"), report("n2", lag=30))
    d = core.reconcile(lagging)
    after = {c.type: c for c in d.status.conditions}
    assert after["Ready"].status == "True" and after["Ready"].reason == "Degraded"
    assert after["Ready"].last_transition_time == first["Ready"].last_transition_time
    assert after["Degraded"].status == "True"
    assert after["Degraded"].last_transition_time == NOW + timedelta(seconds=20)
    assert all(c.observed_generation == 1 for c in d.status.conditions)
    assert d.status.observed_generation == 1


def test_lagging_standby_is_degraded_not_replicating() -> None:
    d = core.reconcile(snap(cluster(report("n1", "Primary"), report("n2", lag=12))))
    assert cond(d, "Degraded")[:2] == ("True", "StandbyLagging")
    assert "maxLagSeconds (5 s)" in cond(d, "Degraded")[2]
    assert cond(d, "Replicating")[:2] == ("False", "StandbyLagging")
    assert cond(d, "Ready")[:2] == ("True", "Degraded")
    assert [e.type for e in d.events if e.reason == "Degraded"] == ["Warning"]


def test_lag_within_policy_is_still_replicating() -> None:
    d = core.reconcile(snap(cluster(report("n1", "Primary"), report("n2", lag=5))))
    assert cond(d, "Replicating")[0] == "True"


def test_ineligible_standby_degrades_with_the_agents_reason() -> None:
    d = core.reconcile(
        snap(cluster(report("n1", "Primary"), report("n2", eligible=False, why=("RestartBackoff", "services failed"))))
    )
    status, reason, message = cond(d, "Degraded")
    assert (status, reason) == ("True", "StandbyIneligible")
    assert "RestartBackoff: services failed" in message
    assert cond(d, "Replicating")[0] == "True", "eligibility is not a replication problem"


@pytest.mark.parametrize(
    ("standby", "reason"),
    [
        (report("n2", conn="StandAlone"), "PeerDisconnected"),
        (report("n2", disk="Inconsistent"), "DiskNotUpToDate"),
        (report("n2", age=120), "NodeReportMissing"),
        (report("n2", role="Demoting"), "NotStandby"),
        (report("n2", pg_role="Stopped"), "PostgresNotStreaming"),
    ],
)
def test_standby_problems_name_their_cause(standby: dict[str, Any], reason: str) -> None:
    d = core.reconcile(snap(cluster(report("n1", "Primary"), standby)))
    assert cond(d, "Degraded")[:2] == ("True", reason)
    assert cond(d, "Replicating")[:2] == ("False", reason)


def test_missing_standby_report() -> None:
    d = core.reconcile(snap(cluster(report("n1", "Primary"))))
    assert cond(d, "Degraded")[:2] == ("True", "NodeReportMissing")
    assert "n2 has not reported" in cond(d, "Degraded")[2]


def test_failed_service_on_the_primary_degrades() -> None:
    primary = report("n1", "Primary", services=[{"name": "postfix", "state": "Failed", "restarts": 2}])
    d = core.reconcile(snap(cluster(primary, report("n2"))))
    assert cond(d, "Degraded")[:2] == ("True", "ServiceFailed")
    assert "postfix" in cond(d, "Degraded")[2]


def test_stale_epoch_report_is_ignored_for_roles_and_said_so() -> None:
    c = cluster(
        report("n1", "Primary", epoch=1), report("n2", "Primary", epoch=2), status={"epoch": 2, "primary": "n2"}
    )
    d = core.reconcile(snap(c, LeaseRecord("n2", 2, NOW, NOW, 3)))
    assert cond(d, "SplitBrain")[0] == "False", "n1's claim is of an older epoch"
    assert "stale epoch refused" in cond(d, "SplitBrain")[2]
    assert cond(d, "Degraded")[:2] == ("True", "StaleEpoch")
    assert "stale epoch refused" in cond(d, "Degraded")[2]
    assert cond(d, "Ready")[:2] == ("True", "Degraded")


def test_holder_reporting_an_older_epoch_is_promoting() -> None:
    c = cluster(
        report("n1", "Standby", epoch=2), report("n2", "Standby", epoch=1), status={"epoch": 2, "primary": "n2"}
    )
    d = core.reconcile(snap(c, LeaseRecord("n2", 2, NOW, NOW, 3)))
    assert cond(d, "Ready")[:2] == ("False", "Promoting")


def test_two_primaries_of_the_same_epoch_are_split_brain() -> None:
    c = cluster(
        report("n1", "Primary", epoch=2), report("n2", "Primary", epoch=2), status={"epoch": 2, "primary": "n2"}
    )
    d = core.reconcile(snap(c, LeaseRecord("n2", 2, NOW, NOW, 3)))
    assert cond(d, "SplitBrain")[:2] == ("True", "TwoPrimaries")
    assert cond(d, "Ready")[:2] == ("False", "SplitBrain")
    assert ("Warning", "SplitBrain") in [(e.type, e.reason) for e in d.events]


def test_primary_claim_without_the_lease_is_split_brain() -> None:
    c = cluster(report("n1", "Standby", epoch=1), report("n2", "Primary", epoch=1))
    d = core.reconcile(snap(c))
    assert cond(d, "SplitBrain")[:2] == ("True", "PrimaryWithoutLease")


@pytest.mark.parametrize(
    "standby",
    [
        report("n2", drbd_role="Primary"),
        report("n2", conn="StandAlone", message="Split-Brain detected but unresolved, dropping connection!"),
    ],
)
def test_drbd_split_brain(standby: dict[str, Any]) -> None:
    d = core.reconcile(snap(cluster(report("n1", "Primary"), standby)))
    assert cond(d, "SplitBrain")[:2] == ("True", "DRBDSplitBrain")


def test_split_brain_resolved_posts_an_event_with_its_duration() -> None:
    c = cluster(report("n1", "Primary", epoch=1), report("n2", "Primary", epoch=1))
    s = settle(snap(c))
    s = with_reports(settle(s, now=NOW + timedelta(seconds=20)), report("n1", "Primary"), report("n2"))
    d = core.reconcile(s)
    resolved = [e for e in d.events if e.reason == "SplitBrainResolved"]
    assert resolved and "20.0 s" in resolved[0].message
    assert cond(d, "Ready")[:2] == ("True", "Replicating")


def test_no_holder_yet_is_pending_and_spec_primary_is_only_a_preference() -> None:
    c = cluster(report("n1"), report("n2"), status={"epoch": 0, "primary": None})
    d = core.reconcile(snap(c, LeaseRecord(None, 0), primary_change=PrimaryChange("n1", "n2")))
    assert cond(d, "Ready")[:2] == ("False", "Pending")
    assert d.status.switchover is None and d.retry is None
    assert "primary" not in (d.patch or {})


def test_pending_says_why_the_nodes_may_not_take_the_lease() -> None:
    why = ("DiskNotUpToDate", "data Inconsistent")
    c = cluster(
        report("n1", eligible=False, why=why),
        report("n2", eligible=False, why=why),
        status={"epoch": 0, "primary": None},
    )
    ready = cond(core.reconcile(snap(c, LeaseRecord(None, 0))), "Ready")
    assert ready[:2] == ("False", "Pending")
    assert ("n1 is not eligible to take over: DiskNotUpToDate: data Inconsistent; n2 is not eligible") in ready[2]


def test_released_lease_is_no_primary() -> None:
    c = cluster(report("n1", "Standby"), report("n2"))
    d = core.reconcile(snap(c, LeaseRecord(None, 1, NOW, NOW, 3)))
    assert cond(d, "Ready")[:2] == ("False", "NoPrimary")
    assert cond(d, "Degraded")[:2] == ("Unknown", "NoPrimary")
    assert "LeaseReleased" in reasons(d)


def test_holder_without_a_fresh_report_is_unknown() -> None:
    d = core.reconcile(snap(cluster(report("n1", "Primary", age=300), report("n2"))))
    assert cond(d, "Ready")[:2] == ("Unknown", "NoReport")


# --- failover records -----------------------------------------------------------------------


def failed_over(history: dict[int, EpochRecord] | None = None, **status: Any) -> Snapshot:
    c = cluster(report("n1", "Primary", epoch=1, age=10), report("n2", "Primary", epoch=2), **status)
    acquired = NOW - timedelta(seconds=1)
    return snap(c, LeaseRecord("n2", 2, acquired, acquired, 3), history=history or {})


def test_unplanned_failover_is_recorded_with_its_duration_and_said_once() -> None:
    renewed = NOW - timedelta(seconds=1) - timedelta(milliseconds=4200)
    s = failed_over({1: EpochRecord("n1", renewed), 2: EpochRecord("n2", NOW)})
    d = core.reconcile(s)
    rec = d.status.last_failover
    assert rec is not None
    assert (rec.from_node, rec.to_node, rec.reason, rec.duration_ms, rec.planned) == (
        "n1",
        "n2",
        "LeaseExpired",
        4200,
        False,
    )
    assert rec.time == NOW - timedelta(seconds=1)
    failed = [e for e in d.events if e.reason == "FailedOver"]
    assert [e.message for e in failed] == ["failed over from n1 to n2: lease expired; 4.2 s"]
    assert failed[0].type == "Warning"
    again = core.reconcile(settle(s))
    assert "FailedOver" not in reasons(again) and again.status.last_failover == rec


def test_failover_seen_after_an_operator_restart_is_recorded_without_a_guessed_duration() -> None:
    d = core.reconcile(failed_over())
    rec = d.status.last_failover
    assert rec is not None and (rec.from_node, rec.to_node, rec.duration_ms) == ("n1", "n2", None)
    assert any(e.reason == "FailedOver" and "duration unknown" in e.message for e in d.events)


@pytest.mark.parametrize(
    ("history", "spec", "reason"),
    [
        ({1: EpochRecord("n1", NOW, released=True)}, {}, "LeaseReleased"),
        ({}, {"standbyNodes": ["n1"]}, "StandbyMode"),
    ],
)
def test_failover_reason_is_inferred(history: dict[int, EpochRecord], spec: dict[str, Any], reason: str) -> None:
    c = cluster(report("n1", "Standby", epoch=1), report("n2", "Primary", epoch=2), **spec)
    d = core.reconcile(snap(c, LeaseRecord("n2", 2, NOW, NOW, 3), history=history))
    assert d.status.last_failover is not None and d.status.last_failover.reason == reason


def test_service_failure_release_is_named() -> None:
    c = cluster(
        report("n1", "Standby", epoch=1, eligible=False, why=("RestartBackoff", "postfix failed")),
        report("n2", "Primary", epoch=2),
    )
    d = core.reconcile(snap(c, LeaseRecord("n2", 2, NOW, NOW, 3)))
    assert d.status.last_failover is not None and d.status.last_failover.reason == "ServiceFailed"


def test_first_holder_is_an_election_not_a_failover() -> None:
    c = cluster(report("n1", "Primary"), report("n2"), status={"epoch": 0, "primary": None})
    d = core.reconcile(snap(c))
    assert d.status.last_failover is None
    assert "PrimaryElected" in reasons(d)


def test_epoch_going_backwards_is_a_warning() -> None:
    c = cluster(report("n1"), report("n2"), status={"epoch": 7, "primary": "n1"})
    d = core.reconcile(snap(c, LeaseRecord(None, 0)))
    assert "EpochWentBackwards" in reasons(d)


def test_history_keeps_the_last_renewal_of_each_epoch_and_notices_a_release() -> None:
    h = remember({}, LeaseRecord("n1", 1, NOW, NOW))
    h = remember(h, LeaseRecord("n1", 1, NOW, NOW + timedelta(seconds=1)))
    h = remember(h, LeaseRecord(None, 1, NOW, NOW + timedelta(seconds=1)))
    assert h[1] == EpochRecord("n1", NOW + timedelta(seconds=1), released=True)
    h = remember(h, LeaseRecord("n2", 2, NOW, NOW + timedelta(seconds=2)))
    assert set(h) == {1, 2}
    assert remember(h, LeaseRecord(None, 0)) == {}, "a recreated Lease starts a new history"


# --- the primary's resources and the agents' repairs (issue 12) -----------------------------


def resource(kind: str, name: str, state: str = "Healthy", message: str = "") -> dict[str, Any]:
    return {
        "kind": kind,
        "name": name,
        "state": state,
        "message": message,
        "consecutiveFailures": 0 if state == "Healthy" else 3,
    }


CHAIN = (resource("Volume", "data"), resource("FloatingIP", "vip"), resource("PostgreSQL", "postgres"))


def recovery(
    action: str, at: datetime, message: str, resource: str = "postgres", kind: str = "PostgreSQL"
) -> dict[str, Any]:
    return {"time": iso(at), "resource": resource, "kind": kind, "action": action, "message": message}


def monitored(
    *resources: dict[str, Any],
    recovered: dict[str, Any] | None = None,
    standby_recovered: dict[str, Any] | None = None,
    **kw: Any,
) -> tuple[dict[str, Any], ...]:
    primary = {**report("n1", "Primary", **kw), "resources": list(resources or CHAIN)}
    standby = report("n2")
    if recovered is not None:
        primary["lastRecovery"] = recovered
    if standby_recovered is not None:
        standby["lastRecovery"] = standby_recovered
    return primary, standby


def test_resources_healthy_when_every_resource_of_the_primary_is() -> None:
    s = snap(cluster(*monitored()))
    d = core.reconcile(s)
    assert cond(d, "ResourcesHealthy") == ("True", "Healthy", "every monitored resource on n1 is Healthy (3)")
    assert d.status.announced is None and "announced" not in (d.patch or {})
    again = core.reconcile(settle(s))
    assert again.patch is None and again.events == ()


def test_unhealthy_resources_are_named_with_kind_state_and_message() -> None:
    pg = resource("PostgreSQL", "postgres", "Failed", "no answer within 2 s (3 checks)")
    postfix = resource("Service", "postfix", "Repairing", "restarting postfix.service (1 of 3)")
    d = core.reconcile(snap(cluster(*monitored(*CHAIN[:2], pg, postfix))))
    assert cond(d, "ResourcesHealthy") == (
        "False",
        "ResourceFailed",
        "on n1: PostgreSQL postgres Failed: no answer within 2 s "
        "(3 checks); Service postfix Repairing: restarting postfix.service (1 of 3)",
    )
    assert cond(d, "Ready")[:2] == ("True", "Replicating"), "Ready keeps its meaning"
    only_repairing = core.reconcile(snap(cluster(*monitored(*CHAIN, postfix))))
    assert cond(only_repairing, "ResourcesHealthy")[:2] == ("False", "Repairing")


@pytest.mark.parametrize(
    ("reports", "lease", "reason"),
    [
        (monitored(), LeaseRecord(None, 1, NOW, NOW, 3), "NoPrimary"),
        (monitored(age=300), HELD, "NoReport"),
        (monitored(epoch=0), HELD, "Promoting"),
        (monitored(resource("Volume", "data"), resource("PostgreSQL", "postgres", "Unknown")), HELD, "NotChecked"),
        ((report("n1", "Primary"), report("n2")), HELD, "NotChecked"),
    ],
)
def test_resources_healthy_is_unknown_without_a_judgeable_primary(
    reports: tuple[dict[str, Any], ...], lease: LeaseRecord, reason: str
) -> None:
    d = core.reconcile(snap(cluster(*reports), lease))
    assert cond(d, "ResourcesHealthy")[:2] == ("Unknown", reason)
    assert "ResourceFailed" not in reasons(d)


def test_an_empty_chain_has_healthy_resources() -> None:
    c = cluster(report("n1", "Primary", pg_role="Stopped"), report("n2", pg_role="Stopped"), chain={})
    d = core.reconcile(snap(c))
    assert cond(d, "ResourcesHealthy")[:2] == ("True", "Healthy")


def test_a_resource_becoming_unhealthy_is_a_warning_once() -> None:
    s = settle(snap(cluster(*monitored())))
    failing = resource("PostgreSQL", "postgres", "Failing", "no answer within 2 s")
    s = with_reports(s, *monitored(*CHAIN[:2], failing))
    d = core.reconcile(s)
    assert [(e.type, e.reason, e.message) for e in d.events] == [
        ("Warning", "ResourceFailed", "PostgreSQL postgres on n1 is Failing: no answer within 2 s")
    ]
    assert d.status.announced is not None
    assert [(r.node, r.kind, r.name) for r in d.status.announced.unhealthy] == [("n1", "PostgreSQL", "postgres")]
    # Failing -> Repairing, the next reconcile and an operator restart (history lost) say nothing new
    s = with_reports(settle(s), *monitored(*CHAIN[:2], {**failing, "state": "Repairing"}))
    assert "ResourceFailed" not in reasons(core.reconcile(s))
    s = settle(s, history={})
    assert "ResourceFailed" not in reasons(core.reconcile(s))
    # a second resource failing is said on its own
    vip = resource("FloatingIP", "vip", "Failed", "198.18.0.7 missing on mgmt")
    s = with_reports(s, *monitored(CHAIN[0], vip, {**failing, "state": "Repairing"}))
    d = core.reconcile(s)
    assert [e.message for e in d.events if e.reason == "ResourceFailed"] == [
        "FloatingIP vip on n1 is Failed: 198.18.0.7 missing on mgmt"
    ]
    # healthy again, then failing again: a new transition, a new Warning
    s = with_reports(settle(s), *monitored())
    d = core.reconcile(s)
    assert "ResourceFailed" not in reasons(d) and d.status.announced is None
    assert d.patch is not None and "announced" not in d.patch
    s = with_reports(settle(s), *monitored(*CHAIN[:2], failing))
    assert reasons(core.reconcile(s)).count("ResourceFailed") == 1


def test_a_stale_report_does_not_forget_what_was_said() -> None:
    failing = resource("PostgreSQL", "postgres", "Failed", "down")
    s = settle(snap(cluster(*monitored(*CHAIN[:2], failing))))
    s = with_reports(settle(s), *monitored(*CHAIN[:2], failing, age=300))
    d = core.reconcile(s)
    assert cond(d, "ResourcesHealthy")[:2] == ("Unknown", "NoReport")
    assert d.status.announced is not None and len(d.status.announced.unhealthy) == 1
    s = with_reports(settle(s), *monitored(*CHAIN[:2], failing))
    assert "ResourceFailed" not in reasons(core.reconcile(s)), "the same failure, said already"


REPAIRED = recovery(
    "Repaired",
    NOW - timedelta(seconds=3),
    "PostgreSQL on n1 stopped answering (3 checks, 1.5 s); restarted in place (1 of 3)",
)


def test_a_new_recovery_is_one_event_and_a_repeat_reconcile_or_restart_posts_none() -> None:
    s = settle(snap(cluster(*monitored())))
    s = with_reports(s, *monitored(recovered=REPAIRED))
    d = core.reconcile(s)
    assert [(e.type, e.reason, e.message) for e in d.events] == [("Normal", "Repaired", REPAIRED["message"])]
    assert d.patch is not None and d.patch["announced"]["recoveries"] == [
        {"node": "n1", "time": REPAIRED["time"], "resource": "postgres", "action": "Repaired"}
    ]
    again = settle(s)
    d = core.reconcile(again)
    assert d.events == () and d.patch is None
    assert core.reconcile(settle(again, history={})).events == (), "an operator restart"


@pytest.mark.parametrize(
    ("action", "type_"), [("Repaired", "Normal"), ("RepairFailed", "Warning"), ("SteppedDown", "Warning")]
)
def test_each_recovery_action_is_its_own_reason(action: str, type_: str) -> None:
    rec = recovery(action, NOW, f"postfix on n1: {action}", "postfix", "Service")
    d = core.reconcile(snap(cluster(*monitored(recovered=rec))))
    assert [(e.type, e.reason, e.message) for e in d.events if e.reason == action] == [
        (type_, action, f"postfix on n1: {action}")
    ]


def test_recoveries_of_every_node_are_posted_and_remembered_per_node() -> None:
    s = settle(snap(cluster(*monitored(recovered=REPAIRED))))
    stepped = recovery("SteppedDown", NOW, "PostgreSQL on n1 failed again after 3 restarts in 300 s; stepped down")
    failed = recovery("RepairFailed", NOW - timedelta(seconds=1), "mount /srv on n2 failed", "/srv", "Mount")
    s = with_reports(s, *monitored(recovered=stepped, standby_recovered=failed))
    d = core.reconcile(s)
    assert [(e.reason, e.message) for e in d.events] == [
        ("SteppedDown", stepped["message"]),
        ("RepairFailed", failed["message"]),
    ]
    assert d.status.announced is not None
    assert [(r.node, r.action) for r in d.status.announced.recoveries] == [
        ("n1", "SteppedDown"),
        ("n2", "RepairFailed"),
    ]
    assert core.reconcile(settle(s)).events == ()


def test_a_recovery_without_a_message_is_still_said() -> None:
    rec = recovery("Repaired", NOW, "", "vip", "FloatingIP")
    d = core.reconcile(snap(cluster(*monitored(recovered=rec))))
    assert [e.message for e in d.events if e.reason == "Repaired"] == ["FloatingIP vip on n1: Repaired"]


# --- planned switchover -------------------------------------------------------------------


def test_primary_change_to_a_fit_standby_requests_a_switchover() -> None:
    d = core.reconcile(snap(healthy(), primary_change=PrimaryChange("n1", "n2")))
    sw = d.status.switchover
    assert sw is not None
    assert (sw.target, sw.from_epoch, sw.phase, sw.reason, sw.requested_at) == ("n2", 1, "Pending", "Requested", NOW)
    assert cond(d, "SwitchoverInProgress")[:2] == ("True", "Requested")
    assert cond(d, "Ready")[:2] == ("False", "SwitchingOver")
    assert "SwitchoverRequested" in reasons(d)


@pytest.mark.parametrize(
    ("standby", "reason", "words"),
    [
        (report("n2", lag=3), "TargetLagging", "lag is 3 s"),
        (report("n2", conn="Connecting"), "TargetDisconnected", "Connecting"),
        (report("n2", disk="Outdated"), "TargetNotUpToDate", "Outdated"),
        (report("n2", eligible=False, why=("LagTooHigh", "9 s")), "TargetIneligible", "LagTooHigh"),
        (report("n2", age=300), "TargetReportStale", "older than 90 s"),
        (report("n2", epoch=0), "TargetStaleEpoch", "epoch 0"),
    ],
)
def test_unfit_target_is_refused_with_the_reason(standby: dict[str, Any], reason: str, words: str) -> None:
    s = snap(cluster(report("n1", "Primary"), standby), primary_change=PrimaryChange("n1", "n2"))
    d = core.reconcile(s)
    sw = d.status.switchover
    assert sw is not None and sw.phase == "Refused" and sw.reason == reason
    assert words in sw.message
    refused = [e for e in d.events if e.reason == "SwitchoverRefused"]
    assert refused and refused[0].type == "Warning" and words in refused[0].message
    assert cond(d, "SwitchoverInProgress")[:2] == ("False", "Refused")
    assert cond(d, "Ready")[0] == "True", "a refused switchover leaves the primary serving"


SYNC_N2 = LeaseRecord("n1", 1, NOW - timedelta(minutes=5), NOW - timedelta(seconds=1), 3, ("n2",))


def test_the_lease_not_listing_the_target_refuses_even_a_self_reported_eligible_target() -> None:
    lease = LeaseRecord("n1", 1, NOW - timedelta(minutes=5), NOW - timedelta(seconds=1), 3, ())
    d = core.reconcile(snap(healthy(), lease, primary_change=PrimaryChange("n1", "n2")))
    sw = d.status.switchover
    assert sw is not None and sw.phase == "Refused" and sw.reason == "TargetNotSynchronous"
    assert "the Lease lists none" in sw.message


def test_a_trailing_not_synchronous_report_yields_to_the_lease_that_lists_the_target() -> None:
    trailing = report(
        "n2",
        eligible=False,
        why=("NotSynchronous", "n1 lists none as synchronous standbys; taking over could lose acknowledged writes"),
    )
    s = snap(cluster(report("n1", "Primary"), trailing), SYNC_N2, primary_change=PrimaryChange("n1", "n2"))
    sw = core.reconcile(s).status.switchover
    assert sw is not None and sw.phase == "Pending", sw.message


def test_a_not_synchronous_report_refuses_when_the_lease_publishes_no_list() -> None:
    ineligible = report("n2", eligible=False, why=("NotSynchronous", "n1 lists none"))
    s = snap(cluster(report("n1", "Primary"), ineligible), primary_change=PrimaryChange("n1", "n2"))
    sw = core.reconcile(s).status.switchover
    assert sw is not None and sw.phase == "Refused" and sw.reason == "TargetIneligible"


def test_other_ineligibility_still_refuses_a_target_the_lease_lists() -> None:
    s = snap(
        cluster(report("n1", "Primary"), report("n2", eligible=False, why=("RestartBackoff", "30s"))),
        SYNC_N2,
        primary_change=PrimaryChange("n1", "n2"),
    )
    sw = core.reconcile(s).status.switchover
    assert sw is not None and sw.reason == "TargetIneligible" and "RestartBackoff" in sw.message


def test_target_in_standby_mode_or_maintenance_is_refused() -> None:
    c = healthy(standbyNodes=["n2"])
    d = core.reconcile(
        snap(c, primary_change=PrimaryChange("n1", "n2"), nodes={"n2": NodeInfo("n2", unschedulable=True)})
    )
    sw = d.status.switchover
    assert sw is not None and sw.phase == "Refused" and sw.reason == "TargetInStandbyMode"
    assert "cordoned" in sw.message


def test_pending_switchover_waits_for_the_holder_and_writes_nothing_meanwhile() -> None:
    s = settle(snap(healthy(), primary_change=PrimaryChange("n1", "n2")))
    d = core.reconcile(s)
    assert d.patch is None and d.events == ()
    assert d.status.switchover is not None and d.status.switchover.phase == "Pending"


def test_switchover_completes_when_the_target_reports_primary_for_the_new_epoch() -> None:
    s = settle(snap(healthy(), primary_change=PrimaryChange("n1", "n2")))
    handed = LeaseRecord("n2", 2, NOW + timedelta(seconds=3), NOW + timedelta(seconds=3), 3)
    s = with_reports(
        settle(s, lease=handed, now=NOW + timedelta(seconds=3)), report("n1", epoch=1), report("n2", epoch=1)
    )
    d = core.reconcile(s)
    assert d.status.switchover is not None and d.status.switchover.phase == "Pending"
    assert "LeaseHandedOver" in reasons(d)
    assert d.status.last_failover is not None and d.status.last_failover.planned
    assert cond(d, "Ready")[:2] == ("False", "SwitchingOver")
    s = settle(s, now=NOW + timedelta(seconds=5))
    s = with_reports(s, report("n1", epoch=2), report("n2", "Primary", epoch=2, age=0, at=NOW + timedelta(seconds=5)))
    d = core.reconcile(s)
    sw, rec = d.status.switchover, d.status.last_failover
    assert sw is not None and sw.phase == "Completed"
    assert rec is not None and (rec.from_node, rec.to_node, rec.planned, rec.reason, rec.duration_ms) == (
        "n1",
        "n2",
        True,
        "Requested",
        5000,
    )
    done = [e for e in d.events if e.reason == "SwitchoverCompleted"]
    assert done and "from n1 to n2" in done[0].message and "5.0 s" in done[0].message
    assert cond(d, "Ready")[:2] == ("True", "Replicating")
    assert cond(d, "SwitchoverInProgress")[:2] == ("False", "Completed")
    assert not [e for e in d.events if e.reason == "FailedOver"], "a planned switchover is no failover"


def test_restart_mid_switchover_after_the_handover_completes_from_status() -> None:
    pending = {
        "target": "n2",
        "fromEpoch": 1,
        "phase": "Pending",
        "reason": "Requested",
        "requestedAt": iso(NOW - timedelta(seconds=8)),
    }
    c = cluster(report("n1", epoch=2), report("n2", "Primary", epoch=2, age=0), status={"switchover": pending})
    d = core.reconcile(snap(c, LeaseRecord("n2", 2, NOW - timedelta(seconds=2), NOW, 3)))
    assert d.status.switchover is not None and d.status.switchover.phase == "Completed"
    rec = d.status.last_failover
    assert rec is not None and rec.from_node == "n1" and rec.planned and rec.duration_ms == 8000


def test_switchover_interrupted_by_a_failover_elsewhere() -> None:
    pending = {"target": "n2", "fromEpoch": 1, "phase": "Pending", "reason": "Requested", "requestedAt": iso(NOW)}
    c = cluster(
        report("n1"),
        report("n2"),
        report("n3", "Primary", epoch=2),
        nodes=("n1", "n2", "n3"),
        status={"switchover": pending},
    )
    d = core.reconcile(snap(c, LeaseRecord("n3", 2, NOW, NOW, 3)))
    sw = d.status.switchover
    assert sw is not None and (sw.phase, sw.reason) == ("Refused", "Interrupted")
    assert {"SwitchoverInterrupted", "FailedOver"} <= set(reasons(d))


def test_a_new_target_during_a_switchover_is_retried_later() -> None:
    c = cluster(report("n1", "Primary"), report("n2"), report("n3"), nodes=("n1", "n2", "n3"))
    s = settle(snap(c, volumes={"data": volume(nodes=("n1", "n2", "n3"))}, primary_change=PrimaryChange("n1", "n2")))
    d = core.reconcile(settle(s, primary_change=PrimaryChange("n2", "n3")))
    assert d.retry is not None and "n3" in d.retry
    assert d.status.switchover is not None and d.status.switchover.target == "n2"


def test_refusal_is_final_for_that_change() -> None:
    s = settle(snap(cluster(report("n1", "Primary"), report("n2", lag=3)), primary_change=PrimaryChange("n1", "n2")))
    s = with_reports(s, report("n1", "Primary"), report("n2"))
    d = core.reconcile(s)
    assert d.status.switchover is not None and d.status.switchover.phase == "Refused"
    retried = core.reconcile(settle(s, primary_change=PrimaryChange("n1", "n2")))
    assert retried.status.switchover is not None and retried.status.switchover.phase == "Pending"


def test_cordoned_primary_moves_away_by_a_planned_switchover() -> None:
    d = core.reconcile(snap(healthy(), nodes={"n1": NodeInfo("n1", unschedulable=True)}))
    sw = d.status.switchover
    assert sw is not None and (sw.target, sw.phase, sw.reason) == ("n2", "Pending", "NodeMaintenance")
    assert cond(d, "SwitchoverInProgress")[:2] == ("True", "NodeMaintenance")


def test_maintenance_without_a_fit_target_is_refused_once_and_retried_quietly() -> None:
    s = snap(cluster(report("n1", "Primary"), report("n2", lag=2)), nodes={"n1": NodeInfo("n1", maintenance=True)})
    d = core.reconcile(s)
    sw = d.status.switchover
    assert sw is not None and (sw.phase, sw.reason) == ("Refused", "NoEligibleTarget")
    assert "annotated tandem.dev/maintenance=true" in sw.message
    s = settle(s)
    again = core.reconcile(s)
    assert again.patch is None and "SwitchoverRefused" not in reasons(again)
    fit = core.reconcile(with_reports(s, report("n1", "Primary"), report("n2")))
    assert fit.status.switchover is not None and fit.status.switchover.phase == "Pending"


def test_auto_failback_only_when_asked() -> None:
    c = cluster(report("n1"), report("n2", "Primary", epoch=1), status={"primary": "n2"})
    lease = LeaseRecord("n2", 1, NOW, NOW, 3)
    assert core.reconcile(snap(c, lease)).status.switchover is None
    back = cluster(
        report("n1"), report("n2", "Primary", epoch=1), status={"primary": "n2"}, failover={"autoFailback": True}
    )
    sw = core.reconcile(snap(back, lease)).status.switchover
    assert sw is not None and (sw.target, sw.reason) == ("n1", "AutoFailback")


# --- cross-object validation ----------------------------------------------------------------


def test_address_in_two_floating_ips_is_invalid() -> None:
    fips = {"vip": fip(("198.18.0.2", "198.18.0.100")), "other": fip(("198.18.0.50", None), owner="x")}
    d = core.reconcile(snap(healthy(), floating_ips=fips))
    status, reason, message = cond(d, "Ready")
    assert (status, reason) == ("False", "InvalidSpec")
    assert "198.18.0.50 is in FloatingIP other and FloatingIP vip" in message
    assert any(e.type == "Warning" and e.reason == "InvalidSpec" for e in d.events)


def test_overlap_between_other_clusters_is_not_this_clusters_problem() -> None:
    fips = {
        "vip": fip(("198.18.0.2", None)),
        "a": fip(("198.18.1.1", None), owner="x"),
        "b": fip(("198.18.1.1", None), owner="y"),
    }
    assert cond(core.reconcile(snap(healthy(), floating_ips=fips)), "Ready")[1] == "Replicating"


@pytest.mark.parametrize(
    ("ranges", "words"),
    [
        ((("198.18.0.9", "198.18.0.2"),), "start > end"),
        ((("198.18.0.0", "198.18.1.255"),), "512 addresses"),
        ((("198.18.0.0", "198.18.0.200"), ("198.18.2.0", "198.18.2.99")), "301 addresses in all"),
        ((("198.18.0.1", "198.18.0.5"), ("198.18.0.5", None)), "twice"),
    ],
)
def test_bad_ranges_are_invalid(ranges: tuple[tuple[str, str | None], ...], words: str) -> None:
    d = core.reconcile(snap(healthy(), floating_ips={"vip": fip(*ranges)}))
    assert cond(d, "Ready")[1] == "InvalidSpec" and words in cond(d, "Ready")[2]


def test_volume_without_a_disk_for_a_node_is_invalid() -> None:
    d = core.reconcile(snap(healthy(), volumes={"data": volume(nodes=("n1", "n9"))}))
    assert cond(d, "Ready")[1] == "InvalidSpec"
    assert "DRBDVolume data has no disk for node n2" in cond(d, "Ready")[2]


def test_missing_objects_and_dependencies_are_invalid() -> None:
    d = core.reconcile(snap(healthy(dependsOn={"name": "db"}), volumes={}, floating_ips={}))
    message = cond(d, "Ready")[2]
    assert "DRBDVolume data, which does not exist" in message
    assert "FloatingIP vip, which does not exist" in message
    assert "HACluster db, which does not exist" in message


def test_dependency_cycle_is_invalid() -> None:
    other = cluster(primary=None, dependsOn={"name": "c"})
    d = core.reconcile(snap(healthy(dependsOn={"name": "db"}), clusters={"db": other}))
    assert "cycle (c -> db -> c)" in cond(d, "Ready")[2]


def test_invalid_spec_refuses_switchovers() -> None:
    fips = {"vip": fip(("198.18.0.2", None)), "other": fip(("198.18.0.2", None), owner="x")}
    d = core.reconcile(snap(healthy(), floating_ips=fips, primary_change=PrimaryChange("n1", "n2")))
    assert d.status.switchover is not None and d.status.switchover.reason == "InvalidSpec"


# --- specs the nodes refuse -----------------------------------------------------------------

REFUSED = ("InvalidSpec", "spec.chain.mounts[0].volume: DRBDVolume other is not in spec.chain.volumes")


def test_a_spec_both_nodes_refuse_is_invalid_naming_the_nodes_and_the_field() -> None:
    c = cluster(
        report("n1", "Unknown", epoch=0, eligible=False, why=REFUSED),
        report("n2", "Unknown", epoch=0, eligible=False, why=REFUSED),
        status={"epoch": 0, "primary": None},
    )
    s = snap(c, LeaseRecord(None, 0))
    d = core.reconcile(s)
    assert cond(d, "Ready") == (
        "False",
        "InvalidSpec",
        "n1 and n2 refuse the spec: spec.chain.mounts[0].volume: DRBDVolume other is not in spec.chain.volumes",
    )
    warnings = [e for e in d.events if e.reason == "InvalidSpec"]
    assert [e.type for e in warnings] == ["Warning"]
    assert "n1 and n2 refuse the spec: spec.chain.mounts[0].volume" in warnings[0].message
    assert core.reconcile(settle(s)).events == (), "the same refusal is said once"


def test_a_new_refusal_message_is_a_new_event_and_fixing_it_clears_it() -> None:
    c = cluster(
        report("n1", "Unknown", epoch=0, eligible=False, why=REFUSED),
        report("n2"),
        status={"epoch": 0, "primary": None},
    )
    s = settle(snap(c, LeaseRecord(None, 0)))
    other = ("InvalidSpec", "spec.chain.floatingIPs[0]: FloatingIP vip: range ends before it starts")
    d = core.reconcile(with_reports(s, report("n1", "Unknown", epoch=0, eligible=False, why=other), report("n2")))
    assert cond(d, "Ready")[2] == (
        "n1 refuses the spec: spec.chain.floatingIPs[0]: FloatingIP vip: range ends before it starts"
    )
    assert reasons(d) == ["InvalidSpec"]
    fixed = core.reconcile(with_reports(s, report("n1"), report("n2")))
    assert cond(fixed, "Ready")[1] == "Pending" and reasons(fixed) == ["Pending"]


def test_a_node_refusing_the_spec_beside_a_serving_primary_makes_it_invalid() -> None:
    """The pair cannot fail over: the same verdict as the operator's own cross-object checks."""
    # The refusing agent reports the Lease's epoch, so its report is not a stale one.
    d = core.reconcile(snap(cluster(report("n1", "Primary"), report("n2", "Unknown", eligible=False, why=REFUSED))))
    assert cond(d, "Ready")[:2] == ("False", "InvalidSpec")
    assert cond(d, "Ready")[2].startswith("n2 refuses the spec: spec.chain.mounts[0].volume")
    assert cond(d, "Degraded")[:2] == ("True", "NotStandby")
    assert "n2 is not eligible to take over: InvalidSpec: " in cond(d, "Degraded")[2]


def test_a_stale_refusal_or_one_of_another_node_is_not_counted() -> None:
    c = cluster(
        report("n1", "Primary"),
        report("n2", "Unknown", eligible=False, why=REFUSED, age=600),
        report("n9", "Unknown", eligible=False, why=REFUSED),
    )
    assert cond(core.reconcile(snap(c)), "Ready")[1] != "InvalidSpec"


# --- dependencies -------------------------------------------------------------------------


def dependency(ready: str, primary: str) -> HACluster:
    return HACluster.model_validate(
        {
            "spec": {"nodes": [{"name": "n1"}, {"name": "n2"}]},
            "status": {
                "primary": primary,
                "epoch": 3,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": ready,
                        "reason": "Replicating" if ready == "True" else "NoPrimary",
                        "lastTransitionTime": iso(NOW),
                    }
                ],
            },
        }
    )


def test_waits_for_its_dependency_on_the_same_node() -> None:
    d = core.reconcile(snap(healthy(dependsOn={"name": "db"}), clusters={"db": dependency("False", "n1")}))
    assert cond(d, "Ready")[:2] == ("False", "WaitingForDependency")
    ok = core.reconcile(snap(healthy(dependsOn={"name": "db"}), clusters={"db": dependency("True", "n1")}))
    assert cond(ok, "Ready")[:2] == ("True", "Replicating")


def test_follows_its_dependency_to_the_other_node() -> None:
    d = core.reconcile(snap(healthy(dependsOn={"name": "db"}), clusters={"db": dependency("True", "n2")}))
    sw = d.status.switchover
    assert sw is not None and (sw.target, sw.phase, sw.reason) == ("n2", "Pending", "FollowDependency")


# --- the Lease and deletion ---------------------------------------------------------------


def test_lease_manifest_has_no_holder_a_label_and_an_owner() -> None:
    c = cluster(status={"epoch": None, "primary": None}, leases={"leaseDurationMs": 4500, "renewDeadlineMs": 2000})
    m = lease_manifest("c", "ns", "uid-1", c)
    assert m["metadata"]["name"] == "c-primary"
    assert m["metadata"]["labels"] == {"tandem.dev/cluster": "c"}
    assert m["metadata"]["annotations"] == {"tandem.dev/members": "n1,n2"}
    assert m["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert m["spec"] == {"leaseDurationSeconds": 5, "leaseTransitions": 0}
    assert lease_created_event("c", c).reason == "LeaseCreated"


def test_lease_members_are_the_sorted_spec_nodes() -> None:
    assert lease_members(cluster()) == "n1,n2"
    # The order in spec.nodes does not matter: reordering it does not touch the Lease.
    assert lease_members(cluster(nodes=("n2", "n1"), primary=None)) == "n1,n2"


def test_recreated_lease_never_goes_back_to_an_old_epoch() -> None:
    c = cluster(report("n1", epoch=9), status={"epoch": 7})
    assert lease_manifest("c", "ns", "u", c)["spec"]["leaseTransitions"] == 9
    assert lease_created_event("c", c).type == "Warning"


def deleting(c: HACluster, lease: LeaseRecord | None, now: datetime = NOW) -> deletion.Teardown:
    return deletion.teardown(snap(c, lease, deleting=True, now=now), NOW - timedelta(seconds=5), timedelta(seconds=60))


def test_deletion_waits_for_the_holder_to_tear_down() -> None:
    live = LeaseRecord("n1", 1, NOW, NOW, 3)
    wait = deleting(healthy(), live)
    assert not wait.done and "waiting for n1" in wait.message
    d = core.reconcile(snap(healthy(), live, deleting=True))
    assert cond(d, "Ready")[:2] == ("False", "Deleting")


def test_deletion_proceeds_once_the_lease_is_released() -> None:
    done = deleting(cluster(report("n1"), report("n2")), LeaseRecord(None, 1, NOW, NOW, 3))
    assert done.done and done.delete_lease
    assert [e.reason for e in done.events] == ["TornDown"]
    assert "5.0 s" in done.events[0].message


def test_deletion_of_a_dead_cluster_does_not_wait() -> None:
    stopped = LeaseRecord("n1", 1, NOW - timedelta(minutes=5), NOW - timedelta(minutes=5), 3)
    assert deleting(healthy(), stopped).done


def test_deletion_gives_up_after_the_timeout_with_a_warning() -> None:
    late = NOW + timedelta(minutes=2)
    c = cluster(report("n1", "Primary", age=-120), report("n2", age=-120))
    verdict = deleting(c, LeaseRecord("n1", 1, late, late, 3), now=late)
    assert verdict.done and verdict.delete_lease
    assert [(e.type, e.reason) for e in verdict.events] == [("Warning", "TeardownTimeout")]


def test_deletion_without_a_lease() -> None:
    verdict = deleting(healthy(), None)
    assert verdict.done and not verdict.delete_lease
