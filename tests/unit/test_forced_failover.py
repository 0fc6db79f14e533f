"""Forced failover (`kubectl tandem failover --force --accept-data-loss`): what force overrides
on the named node, what it never overrides, and that the single-primary timing rule holds."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tandem.api.common import (
    ACCEPT_DATA_LOSS_ANNOTATION,
    FORCE_FAILOVER_ANNOTATION,
    FORCE_FAILOVER_ID_ANNOTATION,
)
from tandem.api.hacluster import HAClusterSpec, LeaseTimings
from tandem_agent.agent import ClusterAgent, intent_of
from tandem_agent.chain import ChainRunner, NodeEnvironment, ResolvedCluster
from tandem_agent.core import (
    FORCED_FAILOVER,
    Action,
    ChainSnapshot,
    ChainState,
    Eligibility,
    ForceRequest,
    LeaseSnapshot,
    LeaseView,
    LocalHealth,
    Timings,
    chain_decision,
    eligibility,
    lease_decision,
)
from tandem_agent.drivers import drbd
from tandem_agent.drivers.base import DriverError, Outcome
from tandem_agent.kube import LeaseRecord
from tandem_agent.watchdog import NoWatchdog
from tests.unit.test_metrics import FakeKube
from tests.unit.test_refused_clusters import MAIL, builder, world

_D = LeaseTimings()
T = Timings.from_ms(_D.lease_duration_ms, _D.renew_interval_ms, _D.renew_deadline_ms,
                    _D.demotion_timeout_ms)
FORCE = ForceRequest("r1", seen_at=95.0)


def snap(**kw: object) -> LeaseSnapshot:
    base = LeaseSnapshot(now=100.0, node="n2", timings=T,
                         lease=LeaseView("n1", 4, "7", observed_at=90.0, sync_standbys=()),
                         holding=None, chain_down=True, eligibility=Eligibility(True),
                         force=FORCE)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


# --- eligibility: what force overrides --------------------------------------------------------


@pytest.mark.parametrize(("health", "word"), [
    (LocalHealth(disks_up_to_date=False, disk_detail="mail-store Outdated"), "DiskNotUpToDate"),
    (LocalHealth(postgres_lag_seconds=40.0), "LagTooHigh"),
    (LocalHealth(postgres_lag_seconds=float("inf")), "LagTooHigh"),
    (LocalHealth(restart_backoff_until=200.0), "RestartBackoff"),
])
def test_force_overrides_what_only_protects_data(health: LocalHealth, word: str) -> None:
    assert eligibility(health, 5, 100.0).reason.startswith(word)
    forced = eligibility(dataclasses.replace(health, forced=True), 5, 100.0)
    assert forced.eligible and forced.overridden[0].startswith(word)


def test_force_overrides_every_data_reason_at_once() -> None:
    health = LocalHealth(disks_up_to_date=False, disk_detail="x Inconsistent",
                         postgres_lag_seconds=9.0, restart_backoff_until=200.0, forced=True)
    forced = eligibility(health, 0, 100.0)
    assert forced.eligible
    assert [o.split(":")[0] for o in forced.overridden] == [
        "DiskNotUpToDate", "LagTooHigh", "RestartBackoff"]


@pytest.mark.parametrize(("health", "word"), [
    (LocalHealth(spec_problem="spec.nodes[1].replicationAddress is not set"), "InvalidSpec"),
    (LocalHealth(paused=True), "Paused"),
    (LocalHealth(in_standby_mode=True), "StandbyMode"),
    (LocalHealth(dependency_ready=False, dependency_detail="db is not Ready"),
     "DependencyNotReady"),
])
def test_force_never_overrides_the_spec_or_a_dependency(health: LocalHealth, word: str) -> None:
    forced = eligibility(dataclasses.replace(health, forced=True, disks_up_to_date=False), 5, 0)
    assert not forced.eligible and forced.reason.startswith(word)


# --- the Lease keeper under force -------------------------------------------------------------


def test_an_expired_lease_is_taken_overriding_the_synchronous_list() -> None:
    unforced = lease_decision(dataclasses.replace(snap(), force=None))
    assert unforced.action is Action.WAIT and "NotSynchronous" in unforced.reason
    d = lease_decision(snap())
    assert d.action is Action.ACQUIRE and d.epoch == 5 and d.cause == FORCED_FAILOVER
    assert d.reason.startswith("forced failover (request r1): the Lease of n1 expired")
    assert "overriding NotSynchronous" in d.reason


def test_force_keeps_the_single_primary_timing_rule() -> None:
    """Unchanged for less than leaseDuration: the old holder may still act; wait."""
    d = lease_decision(snap(now=90.0 + T.lease_duration - 0.1))
    assert d.action is Action.WAIT and "unchanged for" in d.reason
    assert lease_decision(snap(now=90.0 + T.lease_duration)).action is Action.ACQUIRE


def test_a_holder_that_renews_after_the_request_refuses_it() -> None:
    renewed = LeaseView("n1", 4, "8", observed_at=96.0, sync_standbys=())
    d = lease_decision(snap(lease=renewed, now=96.0 + T.lease_duration))
    assert d.action is Action.FORCE_REFUSED
    assert d.reason == ("forced failover (request r1) refused: n1 holds the Lease and renews it "
                        "(it changed at epoch 4 after the request): use switchover")


def test_a_free_lease_is_taken_at_once_and_the_preferred_primary_is_not_waited_for() -> None:
    free = LeaseView(None, 0, "1", observed_at=99.9)
    d = lease_decision(snap(lease=free, preferred_primary="n1"))
    assert d.action is Action.ACQUIRE and d.epoch == 1 and d.cause == FORCED_FAILOVER


def test_force_overrides_the_failover_rate_limit() -> None:
    limited = dict(last_takeover_seen_at=95.0, min_failover_interval=60.0)
    plain = lease_decision(snap(force=None, lease=LeaseView("n1", 4, "7", 90.0), **limited))
    assert plain.action is Action.WAIT and "rate limit" in plain.reason
    d = lease_decision(snap(lease=LeaseView("n1", 4, "7", 90.0), **limited))
    assert d.action is Action.ACQUIRE and "overriding failover rate limit" in d.reason


def test_overridden_eligibility_is_named_in_the_takeover() -> None:
    elig = eligibility(LocalHealth(disks_up_to_date=False, disk_detail="mail-store Outdated",
                                   forced=True), 0, 100.0)
    d = lease_decision(snap(eligibility=elig))
    assert d.action is Action.ACQUIRE and "overriding DiskNotUpToDate: mail-store Outdated" in d.reason


@pytest.mark.parametrize(("change", "said"), [
    (dict(deleting=True), "the HACluster is being deleted"),
    (dict(paused=True), "Paused: spec.paused is set"),
    (dict(eligibility=Eligibility(False, "StandbyMode: listed")), "StandbyMode: listed"),
    (dict(eligibility=Eligibility(False, "InvalidSpec: spec.x")), "InvalidSpec: spec.x"),
    (dict(eligibility=Eligibility(False, "Paused: spec.paused")), "Paused: spec.paused"),
])
def test_what_force_never_overrides_refuses_the_request(change: dict[str, object],
                                                        said: str) -> None:
    d = lease_decision(snap(**change))
    assert d.action is Action.FORCE_REFUSED
    assert d.reason.startswith("forced failover (request r1) refused: ") and said in d.reason


@pytest.mark.parametrize(("change", "said"), [
    (dict(eligibility=Eligibility(False, "Starting: not observed yet")), "not eligible yet"),
    (dict(eligibility=Eligibility(False, "DependencyNotReady: db")), "DependencyNotReady"),
    (dict(chain_down=False), "the local chain is not down yet"),
])
def test_force_waits_for_what_passes(change: dict[str, object], said: str) -> None:
    d = lease_decision(snap(**change))
    assert d.action is Action.WAIT and said in d.reason


def test_a_node_that_holds_the_lease_reclaims_it_as_always() -> None:
    mine = LeaseView("n2", 4, "7", observed_at=90.0)
    assert lease_decision(snap(lease=mine)).action is Action.RENEW


# --- the chain under a forced epoch -----------------------------------------------------------


def chain(**kw: object) -> ChainSnapshot:
    base = ChainSnapshot(now=0.0, node="n2", acting_epoch=5, lease_holder="n2", lease_epoch=5,
                         chain=ChainState.DOWN, chain_epoch=None, replicating=False)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_the_bring_up_of_a_forced_epoch_says_so_and_only_that_epoch() -> None:
    d = chain_decision(chain(forced_epoch=5))
    assert d.action is Action.BRING_UP and d.cause == FORCED_FAILOVER and "--force" in d.reason
    later = chain_decision(chain(forced_epoch=5, acting_epoch=6, lease_epoch=6))
    assert later.action is Action.BRING_UP and later.cause == ""
    assert chain_decision(chain()).cause == ""


# --- DRBD: --force only for a forced takeover -------------------------------------------------

STATUS = ('[{"name": "mail-store", "node-id": 1, "role": "Secondary", "devices": [{"volume": 0, '
          '"disk-state": "Outdated"}], "connections": []}]')


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
    spec = HAClusterSpec.model_validate({"nodes": [{"name": "mail1"}, {"name": "mail2"}],
                                         "chain": {"volumes": ["store"]}})
    env = NodeEnvironment(node="mail2", state_dir=tmp_path,
                          volume_driver=lambda *_: volume,  # type: ignore[arg-type, return-value]
                          service_backend=lambda *_: None,  # type: ignore[arg-type, return-value]
                          postgres_config=None,  # type: ignore[arg-type]
                          replication_password=lambda *_: "pw")
    runner = ChainRunner(ResolvedCluster("mail", spec, {"store": None}, {}),  # type: ignore[dict-item]
                         env)
    runner.bring_up(5, lambda: True)
    runner.bring_up(6, lambda: True, force=True)
    assert volume.promoted == [False, True]


# --- the agent: acts once per request, only on one the operator judged Pending ----------------


def requested(node: str = "mail1", request: str = "r1", accept: str = "true",
              phase: str = "Pending", own: dict[str, Any] | None = None) -> dict[str, Any]:
    body = copy.deepcopy(MAIL)
    body["metadata"]["annotations"] = {FORCE_FAILOVER_ANNOTATION: node,
                                       FORCE_FAILOVER_ID_ANNOTATION: request,
                                       ACCEPT_DATA_LOSS_ANNOTATION: accept}
    body["status"] = {"forcedFailover": {"requestId": "r1", "target": "mail1", "phase": phase,
                                         "requestedAt": "2026-12-01T00:00:00Z"},
                      "nodes": [{"name": "mail1", "forcedFailover": own}] if own else []}
    return body


@pytest.mark.parametrize(("body", "acted"), [
    (requested(), "r1"),
    (requested(accept="yes"), None),
    (requested(node="mail2"), None),
    (requested(request="r2"), None),  # the operator has not judged r2 yet
    (requested(phase="Refused"), None),
    (requested(phase="Completed"), None),
])
def test_the_agent_acts_only_on_an_accepted_request_the_operator_holds_pending(
        body: dict[str, Any], acted: str | None) -> None:
    assert intent_of(body, "mail1").force_request == acted


def test_a_forced_takeover_is_recorded_in_the_report_and_never_acted_on_again(
        tmp_path: Path) -> None:
    body = requested()
    runner = builder(tmp_path, world(body))(body)
    kube: Any = FakeKube()
    agent = ClusterAgent(kube, runner.cluster, runner, intent_of(body, "mail1"),
                         lambda why: None, NoWatchdog())
    with agent._lock:
        assert agent._force(10.0) == ForceRequest("r1", 10.0)
    kube.answers = [LeaseRecord("mail1", 8, "6", None)]
    agent._write_lease(8, acquire=True, cause=FORCED_FAILOVER)
    assert agent.forced_epoch == 8
    assert agent.force_report == {"requestId": "r1", "phase": "Completed", "epoch": 8,
                                  "message": "took the Lease at epoch 8 by a forced failover"}
    with agent._lock:
        assert agent._force(11.0) is None
    # A restart: the request is still annotated and Pending, the report says it was done.
    again = requested(own=agent.force_report)
    restarted = ClusterAgent(kube, runner.cluster, runner, intent_of(again, "mail1"),
                             lambda why: None, NoWatchdog())
    with restarted._lock:
        assert restarted._force(12.0) is None
    assert restarted.forced_epoch == 8


def test_a_refused_request_is_recorded_too(tmp_path: Path) -> None:
    body = requested()
    runner = builder(tmp_path, world(body))(body)
    agent = ClusterAgent(FakeKube(), runner.cluster, runner,  # type: ignore[arg-type]
                         intent_of(body, "mail1"), lambda why: None, NoWatchdog())
    with agent._lock:
        agent._force(10.0)
    agent._settle_force("Refused", "forced failover (request r1) refused: mail2 holds the Lease "
                        "and renews it")
    assert agent.force_report is not None and agent.force_report["phase"] == "Refused"
    assert agent.forced_epoch is None
