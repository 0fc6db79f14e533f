"""Forced failover (`kubectl tandem failover --force --accept-data-loss`): what force overrides
on the named node, what it never overrides, and that the single-primary timing rule holds."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tandem.api.common import (
    ACCEPT_DATA_LOSS_ANNOTATION,
    FORCE_FAILOVER_ANNOTATION,
    FORCE_FAILOVER_ID_ANNOTATION,
)
from tandem.api.hacluster import HAClusterSpec, IneligibleReason
from tandem.kube.lease import LeaseRecord
from tandem_agent.agent import ClusterAgent, force_request, intent_of
from tandem_agent.chain import ChainRunner, NodeEnvironment, ResolvedCluster
from tandem_agent.core import (
    FORCED_FAILOVER,
    NOT_OBSERVED_YET,
    Action,
    ChainSnapshot,
    ChainState,
    Eligibility,
    ForceRequest,
    Ineligible,
    LeaseSnapshot,
    LeaseView,
    LocalHealth,
    chain_decision,
    eligibility,
    lease_decision,
)
from tandem_agent.drivers import drbd
from tandem_agent.drivers.base import DriverError, Outcome
from tandem_agent.watchdog import NoWatchdog
from tandem_operator import core
from tandem_operator.forced_failover import loss_report
from tandem_operator.kubectl import command, rules
from tandem_operator.kubectl.rules import DONE, REFUSED, TIMED_OUT, USAGE
from tandem_operator.snapshot import Snapshot
from tests.unit import test_plugin as plugin_tests
from tests.unit.test_agent_core import T
from tests.unit.test_metrics import FakeKube
from tests.unit.test_operator_core import (
    NOW,
    cluster,
    reasons,
    report,
    settle,
    snap,
    with_reports,
)
from tests.unit.test_refused_clusters import MAIL, builder, world

FORCE = ForceRequest("r1", seen_at=95.0)


def keeper(**kw: object) -> LeaseSnapshot:
    base = LeaseSnapshot(
        now=100.0,
        node="n2",
        timings=T,
        lease=LeaseView("n1", 4, "7", observed_at=90.0, sync_standbys=()),
        holding=None,
        chain_down=True,
        eligibility=Eligibility(True),
        force=FORCE,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


# --- eligibility: what force overrides --------------------------------------------------------


def not_eligible(reason: IneligibleReason, message: str) -> Eligibility:
    return Eligibility(False, Ineligible(reason, message))


@pytest.mark.parametrize(
    ("health", "word"),
    [
        (LocalHealth(disks_up_to_date=False, disk_detail="mail-store Outdated"), "DiskNotUpToDate"),
        (LocalHealth(postgres_lag_seconds=40.0), "LagTooHigh"),
        (LocalHealth(postgres_lag_seconds=float("inf")), "LagTooHigh"),
        (LocalHealth(restart_backoff_until=200.0), "RestartBackoff"),
    ],
)
def test_force_overrides_what_only_protects_data(health: LocalHealth, word: str) -> None:
    why = eligibility(health, 5, 100.0).why
    assert why is not None and why.reason == word
    forced = eligibility(dataclasses.replace(health, forced=True), 5, 100.0)
    assert forced.eligible and forced.overridden[0].reason == word


def test_force_overrides_every_data_reason_at_once() -> None:
    health = LocalHealth(
        disks_up_to_date=False,
        disk_detail="x Inconsistent",
        postgres_lag_seconds=9.0,
        restart_backoff_until=200.0,
        forced=True,
    )
    forced = eligibility(health, 0, 100.0)
    assert forced.eligible
    assert [o.reason for o in forced.overridden] == [
        IneligibleReason.DISK_NOT_UP_TO_DATE,
        IneligibleReason.LAG_TOO_HIGH,
        IneligibleReason.RESTART_BACKOFF,
    ]


@pytest.mark.parametrize(
    ("health", "word"),
    [
        (LocalHealth(spec_problem="spec.nodes[1].replicationAddress is not set"), "InvalidSpec"),
        (LocalHealth(paused=True), "Paused"),
        (LocalHealth(in_standby_mode=True), "StandbyMode"),
        (LocalHealth(dependency_ready=False, dependency_detail="db is not Ready"), "DependencyNotReady"),
    ],
)
def test_force_never_overrides_the_spec_or_a_dependency(health: LocalHealth, word: str) -> None:
    forced = eligibility(dataclasses.replace(health, forced=True, disks_up_to_date=False), 5, 0)
    assert not forced.eligible and forced.why is not None and forced.why.reason == word


# --- the Lease keeper under force -------------------------------------------------------------


def test_an_expired_lease_is_taken_overriding_the_synchronous_list() -> None:
    unforced = lease_decision(dataclasses.replace(keeper(), force=None))
    assert unforced.action is Action.WAIT and "NotSynchronous" in unforced.reason
    d = lease_decision(keeper())
    assert d.action is Action.ACQUIRE and d.epoch == 5 and d.cause == FORCED_FAILOVER
    assert d.reason.startswith("forced failover (request r1): the Lease of n1 expired")
    assert "overriding NotSynchronous" in d.reason


def test_force_keeps_the_single_primary_timing_rule() -> None:
    """Unchanged for less than leaseDuration: the old holder may still act; wait."""
    d = lease_decision(keeper(now=90.0 + T.lease_duration - 0.1))
    assert d.action is Action.WAIT and "unchanged for" in d.reason
    assert lease_decision(keeper(now=90.0 + T.lease_duration)).action is Action.ACQUIRE


def test_a_holder_that_renews_after_the_request_refuses_it() -> None:
    renewed = LeaseView("n1", 4, "8", observed_at=96.0, sync_standbys=())
    d = lease_decision(keeper(lease=renewed, now=96.0 + T.lease_duration))
    assert d.action is Action.FORCE_REFUSED
    assert d.reason == (
        "forced failover (request r1) refused: n1 holds the Lease and renews it "
        "(it changed at epoch 4 after the request): use switchover"
    )


def test_a_free_lease_is_taken_at_once_and_the_preferred_primary_is_not_waited_for() -> None:
    free = LeaseView(None, 0, "1", observed_at=99.9)
    d = lease_decision(keeper(lease=free, preferred_primary="n1"))
    assert d.action is Action.ACQUIRE and d.epoch == 1 and d.cause == FORCED_FAILOVER


def test_force_overrides_the_failover_rate_limit() -> None:
    limited = dict(last_takeover_seen_at=95.0, min_failover_interval=60.0)
    plain = lease_decision(keeper(force=None, lease=LeaseView("n1", 4, "7", 90.0), **limited))
    assert plain.action is Action.WAIT and "rate limit" in plain.reason
    d = lease_decision(keeper(lease=LeaseView("n1", 4, "7", 90.0), **limited))
    assert d.action is Action.ACQUIRE and "overriding failover rate limit" in d.reason


def test_overridden_eligibility_is_named_in_the_takeover() -> None:
    elig = eligibility(LocalHealth(disks_up_to_date=False, disk_detail="mail-store Outdated", forced=True), 0, 100.0)
    d = lease_decision(keeper(eligibility=elig))
    assert d.action is Action.ACQUIRE and "overriding DiskNotUpToDate: mail-store Outdated" in d.reason


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (dict(deleting=True), "the HACluster is being deleted"),
        (dict(paused=True), "Paused: spec.paused is set"),
        (dict(eligibility=not_eligible(IneligibleReason.STANDBY_MODE, "listed")), "StandbyMode: listed"),
        (dict(eligibility=not_eligible(IneligibleReason.INVALID_SPEC, "spec.x")), "InvalidSpec: spec.x"),
        (dict(eligibility=not_eligible(IneligibleReason.PAUSED, "spec.paused")), "Paused: spec.paused"),
    ],
)
def test_what_force_never_overrides_refuses_the_request(change: dict[str, object], said: str) -> None:
    d = lease_decision(keeper(**change))
    assert d.action is Action.FORCE_REFUSED
    assert d.reason.startswith("forced failover (request r1) refused: ") and said in d.reason


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (dict(eligibility=Eligibility(False, NOT_OBSERVED_YET)), "not eligible yet"),
        (dict(eligibility=not_eligible(IneligibleReason.DEPENDENCY_NOT_READY, "db")), "DependencyNotReady: db"),
        (dict(chain_down=False), "the local chain is not down yet"),
    ],
)
def test_force_waits_for_what_passes(change: dict[str, object], said: str) -> None:
    d = lease_decision(keeper(**change))
    assert d.action is Action.WAIT and said in d.reason


def test_a_node_that_holds_the_lease_reclaims_it_as_always() -> None:
    mine = LeaseView("n2", 4, "7", observed_at=90.0)
    assert lease_decision(keeper(lease=mine)).action is Action.RENEW


# --- the chain under a forced epoch -----------------------------------------------------------


def chain(**kw: object) -> ChainSnapshot:
    base = ChainSnapshot(
        now=0.0,
        node="n2",
        acting_epoch=5,
        lease_holder="n2",
        lease_epoch=5,
        chain=ChainState.DOWN,
        chain_epoch=None,
        replicating=False,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_the_bring_up_of_a_forced_epoch_says_so_and_only_that_epoch() -> None:
    d = chain_decision(chain(forced_epoch=5))
    assert d.action is Action.BRING_UP and d.cause == FORCED_FAILOVER and "--force" in d.reason
    later = chain_decision(chain(forced_epoch=5, acting_epoch=6, lease_epoch=6))
    assert later.action is Action.BRING_UP and later.cause == ""
    assert chain_decision(chain()).cause == ""


# --- DRBD: --force only for a forced takeover -------------------------------------------------

STATUS = (
    '[{"name": "mail-store", "node-id": 1, "role": "Secondary", "devices": [{"volume": 0, '
    '"disk-state": "Outdated"}], "connections": []}]'
)


def test_drbd_passes_force_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []

    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        ran.append(list(argv))
        out = STATUS if "status" in argv else ""
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(drbd, "run", run)
    driver = drbd.Drbd("/etc/drbd.d", node_name="mail2")
    assert "(forced)" not in driver.primary("mail-store").detail
    assert ran[-1][-2:] == ["primary", "mail-store"]
    assert driver.primary("mail-store", force=True).detail.endswith("(forced)")
    assert ran[-1][-3:] == ["primary", "--force", "mail-store"]
    with pytest.raises(TypeError):
        driver.primary("mail-store", force="yes")  # type: ignore[arg-type]
    with pytest.raises(DriverError, match="not a DRBD resource name"):
        driver.primary("--force", force=False)


class FakeVolume:
    def __init__(self) -> None:
        self.promoted: list[bool] = []

    def primary(self, *, force: bool = False) -> Outcome:
        self.promoted.append(force)
        return Outcome(True, "promoted")

    def secondary(self) -> Outcome:
        return Outcome(False)


def test_the_chain_promotes_drbd_with_force_only_in_a_forced_bring_up(tmp_path: Path) -> None:
    volume = FakeVolume()
    spec = HAClusterSpec.model_validate(
        {"nodes": [{"name": "mail1"}, {"name": "mail2"}], "chain": {"volumes": ["store"]}}
    )
    env = NodeEnvironment(
        node="mail2",
        state_dir=tmp_path,
        volume_driver=lambda *_: volume,  # type: ignore[arg-type, return-value]
        service_backend=lambda *_: None,  # type: ignore[arg-type, return-value]
        postgres_config=None,  # type: ignore[arg-type]
        replication_password=lambda *_: "pw",
    )
    runner = ChainRunner(
        ResolvedCluster("mail", spec, {"store": None}, {}),  # type: ignore[dict-item]
        env,
    )
    runner.bring_up(5, lambda: True)
    runner.bring_up(6, lambda: True, force=True)
    assert volume.promoted == [False, True]


# --- the agent: acts once per request, only on one the operator judged Pending ----------------


def requested(
    node: str = "mail1",
    request: str = "r1",
    accept: str = "true",
    phase: str = "Pending",
    own: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = copy.deepcopy(MAIL)
    body["metadata"]["annotations"] = {
        FORCE_FAILOVER_ANNOTATION: node,
        FORCE_FAILOVER_ID_ANNOTATION: request,
        ACCEPT_DATA_LOSS_ANNOTATION: accept,
    }
    body["status"] = {
        "forcedFailover": {"requestId": "r1", "target": "mail1", "phase": phase, "requestedAt": "2026-12-01T00:00:00Z"},
        "nodes": [{"name": "mail1", "forcedFailover": own}] if own else [],
    }
    return body


@pytest.mark.parametrize(
    ("body", "acted"),
    [
        (requested(), "r1"),
        (requested(accept="yes"), None),
        (requested(node="mail2"), None),
        (requested(request="r2"), None),  # the operator has not judged r2 yet
        (requested(phase="Refused"), None),
        (requested(phase="Completed"), None),
    ],
)
def test_the_agent_acts_only_on_an_accepted_request_the_operator_holds_pending(
    body: dict[str, Any], acted: str | None
) -> None:
    assert intent_of(body, "mail1").force_request == acted


def test_a_forced_takeover_is_recorded_in_the_report_and_never_acted_on_again(tmp_path: Path) -> None:
    body = requested()
    runner = builder(tmp_path, world(body))(body)
    kube: Any = FakeKube()
    agent = ClusterAgent(kube, runner.cluster, runner, intent_of(body, "mail1"), lambda why: None, NoWatchdog())
    agent._change(lease=LeaseView("mail2", 7, "5", 1.0))
    assert agent._force(10.0) == ForceRequest("r1", 10.0)
    kube.answers = [LeaseRecord("mail1", 8, resource_version="6")]
    agent._write_lease(8, acquire=True, cause=FORCED_FAILOVER)
    assert agent.shared().forced_epoch == 8
    assert agent.shared().force_report == {
        "requestId": "r1",
        "phase": "Completed",
        "epoch": 8,
        "message": "took the Lease at epoch 8 by a forced failover",
    }
    assert agent._force(11.0) is None
    # A restart: the request is still annotated and Pending, the report says it was done.
    again = requested(own=agent.shared().force_report)
    restarted = ClusterAgent(kube, runner.cluster, runner, intent_of(again, "mail1"), lambda why: None, NoWatchdog())
    assert restarted._force(12.0) is None
    assert restarted.shared().forced_epoch == 8


def test_a_refused_request_is_recorded_too(tmp_path: Path) -> None:
    body = requested()
    runner = builder(tmp_path, world(body))(body)
    agent = ClusterAgent(
        FakeKube(),
        runner.cluster,
        runner,  # type: ignore[arg-type]
        intent_of(body, "mail1"),
        lambda why: None,
        NoWatchdog(),
    )
    agent._change(lease=LeaseView("mail2", 7, "5", 1.0))
    agent._force(10.0)
    agent._settle_force("Refused", "forced failover (request r1) refused: mail2 holds the Lease and renews it")
    report = agent.shared().force_report
    assert report is not None and report["phase"] == "Refused"
    assert agent.shared().forced_epoch is None


# --- the operator: judges each request once, follows it, records it ---------------------------

DEAD_N1 = LeaseRecord("n1", 1, NOW - timedelta(hours=1), NOW - timedelta(seconds=60), 3, ())
ACCEPTED = {FORCE_FAILOVER_ANNOTATION: "n2", FORCE_FAILOVER_ID_ANNOTATION: "f-1", ACCEPT_DATA_LOSS_ANNOTATION: "true"}


def stranded(*, annotations: dict[str, str] | None = None, lease: LeaseRecord = DEAD_N1, **spec: Any) -> Snapshot:
    """n1 gone for a minute; n2 a standby that is not synchronous and lags."""
    c = cluster(
        report("n1", "Primary", age=60), report("n2", lag=40, eligible=False, why=("LagTooHigh", "40s")), **spec
    )
    return snap(c, lease=lease, annotations=ACCEPTED if annotations is None else annotations)


def test_an_accepted_request_is_pending_with_what_may_be_lost_and_judged_once() -> None:
    d = core.reconcile(stranded())
    forced = d.status.forced_failover
    assert forced is not None and (forced.phase, forced.target, forced.request_id, forced.from_epoch) == (
        "Pending",
        "n2",
        "f-1",
        1,
    )
    assert "the Lease does not list n2 as a synchronous standby" in forced.data_at_risk
    assert "n1 holds the Lease at epoch 1 but last renewed it 60 s ago" in forced.data_at_risk
    [event] = [e for e in d.events if e.reason == "ForcedFailover"]
    assert event.type == "Warning" and "data loss accepted" in event.message
    assert not [e for e in core.reconcile(settle(stranded())).events if e.reason.startswith("ForcedFailover")], (
        "said once"
    )
    # The agent of n2 sees it Pending under the annotated id: it may act.
    stored = settle(stranded()).cluster.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert force_request(ACCEPTED, stored["status"]["forcedFailover"], "n2") == "f-1"


@pytest.mark.parametrize(
    ("annotations", "spec", "reason", "said"),
    [
        (
            {**ACCEPTED, ACCEPT_DATA_LOSS_ANNOTATION: "yes"},
            {},
            "DataLossNotAccepted",
            'tandem.dev/accept-data-loss is not "true": nothing is forced',
        ),
        (
            {**ACCEPTED, FORCE_FAILOVER_ANNOTATION: "n3"},
            {},
            "InvalidRequest",
            "names 'n3', which is not one of spec.nodes (n1 and n2)",
        ),
        ({**ACCEPTED, FORCE_FAILOVER_ID_ANNOTATION: "a b"}, {}, "InvalidRequest", "is not a request id"),
        (ACCEPTED, {"paused": True}, "Paused", "spec.paused is set"),
        (ACCEPTED, {"standbyNodes": ["n2"]}, "TargetInStandbyMode", "n2 is in spec.standbyNodes"),
    ],
)
def test_a_request_that_cannot_be_carried_out_is_refused_once_with_why(
    annotations: dict[str, str], spec: dict[str, Any], reason: str, said: str
) -> None:
    s = stranded(annotations=annotations, **spec)
    d = core.reconcile(s)
    forced = d.status.forced_failover
    assert forced is not None and (forced.phase, forced.reason) == ("Refused", reason)
    assert said in forced.message
    assert "ForcedFailoverRefused" in reasons(d)
    again = core.reconcile(settle(s))
    assert again.status.forced_failover == forced and "ForcedFailoverRefused" not in reasons(again)
    assert force_request(annotations, forced.model_dump(mode="json", by_alias=True), "n2") is None


def test_a_node_that_refuses_the_spec_is_refused() -> None:
    c = cluster(
        report("n1", "Primary", age=60),
        report("n2", eligible=False, why=("InvalidSpec", "spec.nodes[1].replicationAddress")),
    )
    forced = core.reconcile(snap(c, lease=DEAD_N1, annotations=ACCEPTED)).status.forced_failover
    assert forced is not None and (forced.phase, forced.reason) == ("Refused", "InvalidSpec")


def test_the_forced_takeover_completes_once_the_target_reports_primary() -> None:
    pending = settle(stranded())
    taken = LeaseRecord("n2", 2, NOW, NOW, 3, ())
    done = {"requestId": "f-1", "phase": "Completed", "epoch": 2, "message": "took"}
    promoting = with_reports(
        settle(pending, lease=taken), report("n1", "Primary", age=60), report("n2", epoch=2) | {"forcedFailover": done}
    )
    d = core.reconcile(promoting)
    assert d.status.forced_failover is not None and d.status.forced_failover.phase == "Pending"
    assert d.status.last_failover is not None and d.status.last_failover.reason == "ForcedFailover"
    primary = with_reports(
        settle(promoting), report("n1", "Primary", age=60), report("n2", "Primary", epoch=2) | {"forcedFailover": done}
    )
    d = core.reconcile(primary)
    forced = d.status.forced_failover
    assert forced is not None and (forced.phase, forced.reason) == ("Completed", "ForcedFailover")
    assert forced.message.endswith("n2 is primary at epoch 2 by the forced failover")
    [event] = [e for e in d.events if e.reason == "ForcedFailover"]
    assert "what may have been lost:" in event.message


def test_the_agents_refusal_and_a_withdrawal_end_the_request() -> None:
    pending = settle(stranded())
    refused = {
        "requestId": "f-1",
        "phase": "Refused",
        "message": "forced failover (request f-1) refused: n1 holds the Lease and renews it",
    }
    d = core.reconcile(
        with_reports(pending, report("n1", "Primary"), report("n2", lag=40) | {"forcedFailover": refused})
    )
    forced = d.status.forced_failover
    assert forced is not None and (forced.phase, forced.reason) == ("Refused", "RefusedByAgent")
    assert forced.message == (
        "forced failover (request f-1) refused: n1 holds the Lease and renews it (to n2)"
    )  # the agent's words, said once
    assert "ForcedFailoverRefused" in reasons(d)
    d = core.reconcile(settle(pending, annotations={}))
    forced = d.status.forced_failover
    assert forced is not None and (forced.phase, forced.reason) == ("Refused", "Withdrawn")


def test_a_request_for_the_holder_needs_nothing() -> None:
    held = LeaseRecord("n2", 1, NOW, NOW, 3, ())
    c = cluster(report("n1"), report("n2", "Primary"), status={"primary": "n2"})
    forced = core.reconcile(snap(c, lease=held, annotations=ACCEPTED)).status.forced_failover
    assert forced is not None and forced.phase == "Completed"
    assert "n2 already holds the Lease at epoch 1: nothing to force" in forced.message


def test_the_loss_report_names_lsn_distance_and_drbd_state() -> None:
    n1 = report("n1", "Primary", age=60)
    n1["postgres"]["lsn"] = "0/5A0F2C8"
    n1["drbd"][0]["outOfSyncBytes"] = 4 << 20
    n2 = report("n2", lag=40, disk="Outdated", conn="StandAlone")
    n2["postgres"]["lsn"] = "0/5A0E2C8"
    lines = loss_report(cluster(n1, n2), DEAD_N1, "n2", NOW)
    assert "PostgreSQL on n2: Standby, at LSN 0/5A0E2C8, lag 40 s" in lines
    assert (
        "n1 last reported LSN 0/5A0F2C8: n2 is 4.0 KiB of WAL behind that; what it wrote "
        "after its last report is unknown"
    ) in lines
    assert any(
        line.startswith("DRBD data on n2: disk Outdated, StandAlone")
        and "promoted with drbdadm primary --force" in line
        for line in lines
    )
    assert "n1 reported 4.0 MiB of DRBD data out of sync with its peer" in lines
    alive = LeaseRecord("n1", 1, NOW, NOW - timedelta(seconds=1), 3, ("n2",))
    lines = loss_report(cluster(n1, n2), alive, "n2", NOW)
    assert "it looks alive" in lines[0] and "use switchover" in lines[0]
    assert "the Lease lists n2 as a synchronous standby: it confirmed every acknowledged commit" in lines


# --- kubectl tandem failover ------------------------------------------------------------------

GONE = LeaseRecord("mail1", 7, plugin_tests.NOW - timedelta(hours=3), plugin_tests.NOW - timedelta(minutes=10), 3, ())


@pytest.fixture(autouse=True)
def _the_objects_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin measures ages at the objects' time, not today's."""
    monkeypatch.setattr(command, "now", lambda: plugin_tests.NOW)


def mail_stranded() -> dict[str, Any]:
    """mail1 silent for ten minutes; mail2 not on the Lease's synchronous list, behind it."""
    body = plugin_tests.mail_cluster()
    mail1 = plugin_tests.node(body, "mail1")
    mail1["heartbeatTime"] = plugin_tests.ago(minutes=10)
    mail1["drbd"][0]["outOfSyncBytes"] = 3 << 20
    mail2 = plugin_tests.node(body, "mail2")
    mail2.update(eligible=False, ineligibleReason="NotSynchronous", ineligibleMessage="mail1 lists none")
    mail2["postgres"].update(lsn="0/5A0E2C8", lagSeconds=4)
    mail2["drbd"][0].update(diskState="Outdated", connectionState="Connecting", outOfSyncBytes=3 << 20)
    return body


def stranded_api(body: dict[str, Any] | None = None) -> plugin_tests.FakeApi:
    api = plugin_tests.FakeApi(body or mail_stranded())
    api.lease = lambda namespace, cluster: GONE  # type: ignore[method-assign]
    return api


def test_failover_without_force_or_with_bad_names_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    api = stranded_api()
    code, _, err = plugin_tests.run(["failover", "mail", "--to", "mail2"], api, capsys)
    assert code == USAGE and "add --force" in err and "switchover mail --to mail2" in err
    code, _, err = plugin_tests.run(["failover", "mail", "--to", "mail3", "--force"], api, capsys)
    assert code == USAGE and "its spec.nodes: mail1, mail2" in err
    code, _, err = plugin_tests.run(["failover", "mial", "--to", "mail2", "--force"], api, capsys)
    assert code == USAGE and "no HACluster 'mial'" in err
    code, _, _ = plugin_tests.run(["failover", "mail", "--to", "mail2", "--force", "--timeout", "3"], api, capsys)
    assert code == USAGE
    assert api.patches == []


def test_failover_without_accept_prints_what_may_be_lost_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = stranded_api()
    code, out, err = plugin_tests.run(["failover", "mail", "--to", "mail2", "--force"], api, capsys)
    assert code == REFUSED and api.patches == []
    assert "add --accept-data-loss" in err and "nothing changed" in err
    lines = out.splitlines()
    assert lines[0] == "Forcing mail2 to be the primary of mail may lose data:"
    assert (
        "  - mail1 holds the Lease at epoch 7 but last renewed it 600 s ago (leaseDuration 3 s): it stopped renewing"
    ) in lines
    assert (
        "  - the Lease does not list mail2 as a synchronous standby (it lists none): commits "
        "acknowledged by mail1 may be missing on mail2"
    ) in lines
    assert "  - PostgreSQL on mail2: Standby, at LSN 0/5A0E2C8, lag 4 s" in lines
    assert (
        "  - mail1 last reported LSN 0/5A0F2C8: mail2 is 4.0 KiB of WAL behind that; what it "
        "wrote after its last report is unknown"
    ) in lines
    assert any(
        line.startswith(
            "  - DRBD mail-store on mail2: disk Outdated, Connecting, peer disk UpToDate, 3.0 MiB out of sync"
        )
        for line in lines
    )
    assert "  - mail1 reported 3.0 MiB of DRBD mail-store out of sync with its peer" in lines
    assert "switchover" not in lines[-1] and lines[-1].startswith("A forced failover makes mail2")


def test_failover_with_accept_writes_the_three_annotations_in_one_patch(capsys: pytest.CaptureFixture[str]) -> None:
    api = stranded_api()
    code, out, _ = plugin_tests.run(["failover", "mail", "--to", "mail2", "--force", "--accept-data-loss"], api, capsys)
    assert code == DONE
    [(name, patch)] = api.patches
    annotations = patch["metadata"]["annotations"]
    assert name == "mail" and set(patch) == {"metadata"}
    assert annotations[FORCE_FAILOVER_ANNOTATION] == "mail2"
    assert annotations[ACCEPT_DATA_LOSS_ANNOTATION] == "true"
    assert f"(request {annotations[FORCE_FAILOVER_ID_ANNOTATION]})" in out


@pytest.mark.parametrize(
    ("phase", "code", "said"),
    [
        ("Completed", DONE, "mail2 is primary at epoch 8 by the forced failover"),
        ("Refused", REFUSED, "RefusedByAgent: mail1 holds the Lease and renews it"),
    ],
)
def test_failover_wait_ends_with_the_operators_record(
    phase: str, code: int, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def record(body: dict[str, Any], patch: dict[str, Any]) -> None:
        request = patch["metadata"]["annotations"][FORCE_FAILOVER_ID_ANNOTATION]
        message = said if phase == "Completed" else said.split(": ", 1)[1]
        body["status"]["forcedFailover"] = {
            "requestId": request,
            "target": "mail2",
            "phase": phase,
            "message": message,
            "reason": "" if phase == "Completed" else "RefusedByAgent",
            "requestedAt": plugin_tests.ago(seconds=1),
        }

    api = stranded_api()
    api.after_patch = record
    got, out, err = plugin_tests.run(
        ["failover", "mail", "--to", "mail2", "--force", "--accept-data-loss", "--wait"], api, capsys
    )
    assert got == code and said in (out if code == DONE else err)


def test_failover_wait_times_out_when_nobody_acts(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = plugin_tests.run(
        ["failover", "mail", "--to", "mail2", "--force", "--accept-data-loss", "--wait", "--timeout", "0.05"],
        stranded_api(),
        capsys,
    )
    assert code == TIMED_OUT and "has not taken request" in err


def test_the_loss_screen_points_at_a_switchover_or_a_failover_by_itself() -> None:
    healthy = plugin_tests.parse_cluster(plugin_tests.mail_cluster())
    lines = rules.loss_screen("mail", healthy, plugin_tests.mail_lease(), "mail2", plugin_tests.NOW)
    assert "it looks alive" in lines[1]
    assert (
        "mail2 is fit for a switchover: if mail1 is alive, `kubectl tandem switchover mail "
        "--to mail2` moves the primary without losing anything"
    ) in lines
    eligible = rules.loss_screen("mail", healthy, GONE, "mail2", plugin_tests.NOW)
    assert any(
        line.startswith("mail2 is eligible: once the Lease is free or expires it takes over by itself")
        for line in eligible
    )


@pytest.mark.parametrize(
    ("change", "code", "said"),
    [
        (lambda b: b["spec"].update(paused=True), REFUSED, "is paused"),
        (lambda b: b["spec"].update(standbyNodes=["mail2"]), REFUSED, "mail2 is in standby"),
        (
            lambda b: b["status"].update(
                forcedFailover={
                    "requestId": "x",
                    "target": "mail2",
                    "phase": "Pending",
                    "requestedAt": "2026-11-30T10:00:00Z",
                }
            ),
            REFUSED,
            "a forced failover of mail to mail2 is in progress (request x)",
        ),
        (
            lambda b: plugin_tests.node(b, "mail2").update(ineligibleReason="InvalidSpec", ineligibleMessage="spec.x"),
            REFUSED,
            "mail2 refuses the spec of mail",
        ),
    ],
)
def test_failover_refuses_what_force_never_overrides(
    change: Any, code: int, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    body = mail_stranded()
    change(body)
    api = stranded_api(body)
    got, out, err = plugin_tests.run(
        ["failover", "mail", "--to", "mail2", "--force", "--accept-data-loss"], api, capsys
    )
    assert (got, out) == (code, "") and said in err and api.patches == []


def test_failover_to_the_holder_needs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plugin_tests.run(["failover", "mail", "--to", "mail1", "--force"], stranded_api(), capsys)
    assert code == DONE and "mail1 already holds the Lease of mail (epoch 7)" in out


def test_failover_has_help_with_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plugin_tests.run(["failover", "--help"], None, capsys)
    assert code == DONE and "usage: kubectl tandem failover" in out
    assert "--accept-data-loss" in out and "exit codes:" in out


def test_status_shows_the_forced_failover_once_there_was_one() -> None:
    body = plugin_tests.mail_cluster()
    assert "Forced failover" not in plugin_tests.screen(body)
    body["status"]["forcedFailover"] = {
        "requestId": "f-1",
        "target": "mail2",
        "fromEpoch": 7,
        "phase": "Refused",
        "reason": "RefusedByAgent",
        "message": "mail1 renews\x1b[2J",
        "requestedAt": plugin_tests.ago(minutes=3),
    }
    assert (
        "Forced failover: to mail2 from epoch 7, Refused (asked 3m ago, request f-1): "
        "RefusedByAgent: mail1 renews\\x1b[2J"
    ) in plugin_tests.screen(body)


def test_the_keeper_after_a_restart_waits_a_full_lease_duration_then_takes_it(tmp_path: Path) -> None:
    """The first read of the Lease is no change of it (seen with the request); once it has
    stayed unchanged for leaseDuration, the forced takeover happens and is recorded."""
    body = requested()
    runner = builder(tmp_path, world(body))(body)
    runner.state = ChainState.DOWN
    kube: Any = FakeKube()  # reads mail2 holding epoch 7, always the same version
    agent = ClusterAgent(kube, runner.cluster, runner, intent_of(body, "mail1"), lambda why: None, NoWatchdog())
    agent._change(eligibility=Eligibility(True))
    assert agent._force(0.0) is None, "not before the Lease was read"
    agent.keeper_tick()
    first = agent.last_decisions["keeper"]
    assert first.action is Action.WAIT and "mail2 holds the Lease; unchanged for" in first.reason
    lease = agent.shared().lease
    assert lease is not None
    agent._change(lease=dataclasses.replace(lease, observed_at=lease.observed_at - 10))
    kube.answers = [LeaseRecord("mail1", 8, resource_version="6")]
    agent.keeper_tick()
    assert agent.last_decisions["keeper"].cause == FORCED_FAILOVER
    report = agent.shared().force_report
    assert report is not None and report["phase"] == "Completed"
