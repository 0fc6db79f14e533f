"""spec.primary never silently disagrees with the Lease (issue 14 item 1): the
PreferredPrimary condition, a refused move retried once the target is fit, and switchover
requests by annotation, carried out once per request id."""

from __future__ import annotations

from datetime import timedelta

from tandem.api.hacluster import Switchover
from tandem.kube.lease import LeaseRecord
from tandem_operator import core
from tandem_operator.snapshot import PrimaryChange, Snapshot
from tests.unit.test_operator_core import (
    NOW,
    cluster,
    cond,
    healthy,
    reasons,
    report,
    settle,
    snap,
    with_reports,
)

ON_N2 = LeaseRecord("n2", 2, NOW - timedelta(minutes=1), NOW - timedelta(seconds=1), 3)
REQUEST = {"tandem.dev/switchover": "n1", "tandem.dev/switchover-id": "2026-11-30T22:00:00Z-a1"}


def after_failover(**spec: object) -> Snapshot:
    """n2 primary at epoch 2 after an unplanned failover; spec.primary still says n1."""
    failed_over = {"time": "2026-11-22T02:59:00Z", "from": "n1", "to": "n2", "reason": "LeaseExpired", "planned": False}
    c = cluster(
        report("n1", epoch=2),
        report("n2", "Primary", epoch=2),
        status={"epoch": 2, "primary": "n2", "lastFailover": failed_over},
        **spec,
    )
    return snap(c, lease=ON_N2)


def test_at_the_preferred_primary_the_condition_says_so() -> None:
    assert cond(core.reconcile(snap(healthy())), "PreferredPrimary")[:2] == ("True", "AtPreferred")
    unset = snap(cluster(report("n1", "Primary"), report("n2"), primary=None))
    assert cond(core.reconcile(unset), "PreferredPrimary")[:2] == ("True", "NoPreference")


def test_after_a_failover_without_autofailback_the_condition_says_where_and_how_to_move() -> None:
    d = core.reconcile(after_failover())
    status, reason, message = cond(d, "PreferredPrimary")
    assert (status, reason) == ("False", "PrimaryDiffers")
    assert "primary n2 differs from spec.primary n1 since the failover at 2026-11-22T02:59:00Z" in message
    assert "kubectl tandem switchover c --to n1" in message
    assert d.status.switchover is None, "autoFailback false: the cluster stays where it is"


def test_with_autofailback_the_condition_says_it_moves_back_once_fit() -> None:
    s = snap(
        cluster(
            report("n1", epoch=2, lag=3),
            report("n2", "Primary", epoch=2),
            status={"epoch": 2, "primary": "n2"},
            failover={"maxLagSeconds": 5, "autoFailback": True},
        ),
        lease=ON_N2,
    )
    status, reason, message = cond(core.reconcile(s), "PreferredPrimary")
    assert (status, reason) == ("False", "FailbackWaiting") and "lag is 3 s" in message


def test_a_move_refused_while_the_target_catches_up_is_retried_once_it_is_fit() -> None:
    lagging = snap(
        cluster(report("n1", "Primary"), report("n2", lag=3), primary="n2"), primary_change=PrimaryChange("n1", "n2")
    )
    d = core.reconcile(lagging)
    assert d.status.switchover is not None and d.status.switchover.phase == "Refused"
    assert cond(d, "PreferredPrimary")[:2] == ("False", "SwitchoverRetrying")
    still = settle(lagging)
    assert core.reconcile(still).events == (), "the same refusal is not said again"
    d = core.reconcile(with_reports(still, report("n1", "Primary"), report("n2")))
    assert d.status.switchover is not None
    assert (d.status.switchover.phase, d.status.switchover.target) == ("Pending", "n2")
    assert "SwitchoverRequested" in reasons(d)


def test_a_failover_after_a_refusal_ends_the_retry() -> None:
    s = after_failover()
    refused = Switchover(
        target="n1",
        from_epoch=1,
        phase="Refused",
        reason="TargetLagging",
        message="refused",
        requested_at=NOW - timedelta(minutes=2),
    )
    c = s.cluster.model_copy(
        update={
            "status": s.cluster.status.model_copy(  # type: ignore[union-attr]
                update={"switchover": refused}
            )
        }
    )
    d = core.reconcile(snap(c, lease=ON_N2))
    assert d.status.switchover == refused and cond(d, "PreferredPrimary")[1] == "PrimaryDiffers"


def test_a_request_annotation_moves_the_primary_to_the_node_spec_primary_already_names() -> None:
    d = core.reconcile(snap(after_failover().cluster, lease=ON_N2, annotations=REQUEST))
    sw = d.status.switchover
    assert sw is not None and (sw.phase, sw.target, sw.reason, sw.request_id) == (
        "Pending",
        "n1",
        "RequestAnnotation",
        REQUEST["tandem.dev/switchover-id"],
    )
    assert d.status.handled_switchover_id == REQUEST["tandem.dev/switchover-id"]
    assert "SwitchoverRequested" in reasons(d)


def test_a_request_is_carried_out_once_however_long_the_annotation_stays() -> None:
    first = snap(after_failover().cluster, lease=ON_N2, annotations=REQUEST)
    done = core.reconcile(first)
    # Later, back on n2 after another failover: the same annotation must not move it again.
    status = done.status.model_copy(update={"switchover": None, "nodes": first.cluster.status.nodes})  # type: ignore[union-attr]
    later = snap(first.cluster.model_copy(update={"status": status}), lease=ON_N2, annotations=REQUEST)
    d = core.reconcile(later)
    assert d.status.switchover is None and d.status.handled_switchover_id == REQUEST["tandem.dev/switchover-id"]
    fresh = REQUEST | {"tandem.dev/switchover-id": "second"}
    again = core.reconcile(snap(later.cluster, lease=ON_N2, annotations=fresh))
    assert again.status.switchover is not None and again.status.switchover.request_id == "second"


def test_a_request_for_the_current_primary_completes_at_once() -> None:
    d = core.reconcile(snap(healthy(), annotations=REQUEST))
    sw = d.status.switchover
    assert sw is not None and (sw.phase, sw.request_id) == ("Completed", REQUEST["tandem.dev/switchover-id"])
    assert "already primary" in sw.message


def test_bad_requests_are_refused_once_naming_the_annotation() -> None:
    unknown = core.reconcile(snap(healthy(), annotations=REQUEST | {"tandem.dev/switchover": "n9"}))
    sw = unknown.status.switchover
    assert sw is not None and sw.phase == "Refused" and sw.reason == "InvalidRequest"
    assert "tandem.dev/switchover names 'n9', which is not one of spec.nodes (n1 and n2)" in sw.message
    bad_id = REQUEST | {"tandem.dev/switchover-id": "a b\nc"}
    s = snap(healthy(), annotations=bad_id)
    d = core.reconcile(s)
    assert d.status.switchover is not None and "is not a request id" in d.status.switchover.message
    assert "SwitchoverRefused" not in reasons(core.reconcile(settle(s))), "refused once, not every pass"


def test_a_request_waits_for_a_running_switchover_to_end() -> None:
    s = snap(healthy(), primary_change=PrimaryChange("n1", "n2"))
    pending = settle(s, annotations=REQUEST | {"tandem.dev/switchover": "n2", "tandem.dev/switchover-id": "x"})
    d = core.reconcile(pending)
    assert d.status.handled_switchover_id is None and d.status.switchover is not None
    assert d.status.switchover.reason == "Requested"
