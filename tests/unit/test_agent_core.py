"""The agent's pure decisions, fed with snapshots: the single-primary rule and the chain."""

from __future__ import annotations

import dataclasses

import pytest

from tandem.api.hacluster import IneligibleReason, LeaseTimings
from tandem_agent.core import (
    Action,
    ChainSnapshot,
    ChainState,
    Eligibility,
    FailedResource,
    Health,
    Holding,
    Ineligible,
    LeaseSnapshot,
    LeaseView,
    LocalHealth,
    MonitorSettings,
    MonitorState,
    Switchover,
    SyncStep,
    Timings,
    after_check,
    chain_decision,
    check_due,
    departure_confirmed,
    eligibility,
    lease_decision,
    may_act,
    not_caught_up,
    not_synchronous,
    sync_step,
)

T = Timings.of(LeaseTimings())
OK = Eligibility(True)


def lease_snap(**kw: object) -> LeaseSnapshot:
    base = LeaseSnapshot(now=100.0, node="n1", timings=T, lease=None, holding=None, chain_down=True, eligibility=OK)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def view(holder: str | None, epoch: int = 4, observed_at: float = 100.0) -> LeaseView:
    return LeaseView(holder=holder, epoch=epoch, resource_version="7", observed_at=observed_at)


class TestLeaseKeeper:
    def test_holder_renews_after_the_interval_only(self) -> None:
        held = Holding(epoch=4, last_renew_sent_at=100.0 - T.renew_interval + 0.1)
        assert lease_decision(lease_snap(lease=view("n1"), holding=held)).action is Action.WAIT
        later = lease_snap(now=100.1, lease=view("n1"), holding=held)
        assert lease_decision(later).action is Action.RENEW

    def test_holder_fences_when_demotion_overruns_the_deadline(self) -> None:
        held = Holding(epoch=4, last_renew_sent_at=100.0)
        fence_at = 100.0 + T.renew_deadline + T.demotion_timeout
        just_in_time = lease_snap(now=fence_at - 0.01, lease=view("n1"), holding=held, chain_down=False)
        assert lease_decision(just_in_time).action is not Action.FENCE
        overdue = dataclasses.replace(just_in_time, now=fence_at + 0.01)
        decision = lease_decision(overdue)
        assert decision.action is Action.FENCE and "demotion" in decision.reason

    def test_no_fence_once_the_chain_is_down(self) -> None:
        held = Holding(epoch=4, last_renew_sent_at=90.0)
        decision = lease_decision(lease_snap(lease=view("n1"), holding=held, chain_down=True))
        assert decision.action is Action.RENEW

    def test_challenger_waits_a_full_lease_duration_from_its_own_observation(self) -> None:
        observed = view("n2", observed_at=98.0)
        expiry = 98.0 + T.lease_duration
        assert lease_decision(lease_snap(now=expiry - 0.01, lease=observed)).action is Action.WAIT
        decision = lease_decision(lease_snap(now=expiry, lease=observed))
        assert decision.action is Action.ACQUIRE and decision.epoch == 5
        assert "expired" in decision.reason and decision.cause == "LeaseExpired"

    def test_ineligible_challenger_never_takes(self) -> None:
        lagging = Eligibility(False, "LagTooHigh: 12s")
        decision = lease_decision(lease_snap(now=200.0, lease=view("n2", observed_at=0.0), eligibility=lagging))
        assert decision.action is Action.WAIT and "LagTooHigh" in decision.reason

    def test_challenger_with_its_chain_still_up_does_not_take(self) -> None:
        snap = lease_snap(now=200.0, lease=view("n2", observed_at=0.0), chain_down=False)
        assert lease_decision(snap).action is Action.WAIT

    def test_free_lease_goes_to_the_preferred_primary_first(self) -> None:
        free = view(None, epoch=0, observed_at=100.0)
        assert lease_decision(lease_snap(lease=free, preferred_primary="n1")).action is Action.ACQUIRE
        other = lease_snap(node="n2", lease=free, preferred_primary="n1")
        assert lease_decision(other).action is Action.WAIT
        late = dataclasses.replace(other, now=100.0 + T.lease_duration)
        assert lease_decision(late).action is Action.ACQUIRE
        released = dataclasses.replace(other, lease=view(None, epoch=3, observed_at=100.0))
        assert lease_decision(released).action is Action.ACQUIRE, "no grace after a release"
        assert lease_decision(released).cause == "LeaseFree"

    def test_failover_rate_limit(self) -> None:
        snap = lease_snap(
            now=200.0, lease=view("n2", observed_at=150.0), min_failover_interval=60.0, last_takeover_seen_at=150.0
        )
        decision = lease_decision(snap)
        assert decision.action is Action.WAIT and "rate limit" in decision.reason
        assert lease_decision(dataclasses.replace(snap, now=211.0)).action is Action.ACQUIRE

    def test_lost_lease_is_forgotten_only_after_the_chain_is_down(self) -> None:
        held = Holding(epoch=4, last_renew_sent_at=99.9)
        up = lease_snap(lease=view("n2", epoch=5), holding=held, chain_down=False)
        assert lease_decision(up).action is Action.WAIT
        down = dataclasses.replace(up, chain_down=True)
        assert lease_decision(down).action is Action.FORGET_HOLDING

    def test_restarted_agent_reclaims_a_lease_naming_it_with_a_guarded_renew(self) -> None:
        decision = lease_decision(lease_snap(lease=view("n1", epoch=9)))
        assert decision.action is Action.RENEW and decision.epoch == 9
        assert decision.cause == "Reclaimed"
        held = Holding(epoch=9, last_renew_sent_at=90.0)
        assert lease_decision(lease_snap(lease=view("n1", epoch=9), holding=held)).cause == "", (
            "a routine renew is no takeover"
        )

    def test_may_act_needs_holding_matching_view_and_a_recent_renew(self) -> None:
        held = Holding(epoch=4, last_renew_sent_at=100.0)
        assert may_act(held, view("n1"), "n1", T, 100.0 + T.renew_deadline)
        assert not may_act(held, view("n1"), "n1", T, 100.0 + T.renew_deadline + 0.01)
        assert not may_act(held, view("n2", epoch=5), "n1", T, 100.1)
        assert not may_act(held, view("n1", epoch=5), "n1", T, 100.1)
        assert not may_act(None, view("n1"), "n1", T, 100.1)

    @pytest.mark.parametrize("stall", [0.0, 0.1, 0.2])
    def test_timing_rule_holds_for_the_default_timings(self, stall: float) -> None:
        """Walk a partition: the holder's last renew is sent at t=0 and observed by the
        challenger at once. Whenever the challenger may take the Lease, the holder has stopped
        acting, for any stall up to maxStall and the clock-rate error the defaults allow."""
        rate_error = 0.01
        held = Holding(epoch=4, last_renew_sent_at=0.0)
        t = 0.0
        while t < 5.0:
            challenger_clock = t * (1 - rate_error)
            snap = lease_snap(node="n2", now=challenger_clock, lease=view("n1", observed_at=0.0))
            if lease_decision(snap).action is Action.ACQUIRE:
                holder_clock = t - stall  # the holder's view, delayed by a scheduling stall
                assert not may_act(held, view("n1"), "n1", T, holder_clock)
                assert holder_clock > T.renew_deadline + T.demotion_timeout, "demotion may overlap"
                break
            t += 0.01
        else:
            pytest.fail("the challenger never took the Lease")


def test_eligibility_reasons() -> None:
    ok = eligibility(LocalHealth(), 0, 0)
    assert ok.eligible and ok.why is None
    bad = eligibility(LocalHealth(spec_problem="spec.chain.services[0].unit is not set", in_standby_mode=True), 0, 0)
    assert not bad.eligible and bad.why == Ineligible(
        IneligibleReason.INVALID_SPEC, "spec.chain.services[0].unit is not set"
    )
    assert str(bad.why) == "InvalidSpec: spec.chain.services[0].unit is not set"

    def why(health: LocalHealth, max_lag: float = 0, now: float = 0) -> Ineligible:
        found = eligibility(health, max_lag, now)
        assert not found.eligible and found.why is not None
        return found.why

    assert why(LocalHealth(in_standby_mode=True)).reason is IneligibleReason.STANDBY_MODE
    assert why(LocalHealth(disks_up_to_date=False, disk_detail="mail-store Outdated")) == Ineligible(
        IneligibleReason.DISK_NOT_UP_TO_DATE, "mail-store Outdated"
    )
    lag = why(LocalHealth(postgres_lag_seconds=7.0), 5)
    assert lag.reason is IneligibleReason.LAG_TOO_HIGH and "maxLagSeconds=5" in lag.message
    assert eligibility(LocalHealth(postgres_lag_seconds=5.0), 5, 0).eligible
    unknown = why(LocalHealth(postgres_lag_seconds=float("inf")), 5)
    assert unknown.reason is IneligibleReason.LAG_TOO_HIGH
    assert "inf" not in unknown.message and "lag is unknown" in unknown.message
    assert why(LocalHealth(restart_backoff_until=10.0), 0, 5.0).reason is IneligibleReason.RESTART_BACKOFF
    assert eligibility(LocalHealth(restart_backoff_until=10.0), 0, 10.0).eligible
    assert why(LocalHealth(dependency_ready=False, dependency_detail="db not here")) == Ineligible(
        IneligibleReason.DEPENDENCY_NOT_READY, "db not here"
    )


def chain_snap(**kw: object) -> ChainSnapshot:
    base = ChainSnapshot(
        now=100.0,
        node="n1",
        acting_epoch=4,
        lease_holder="n1",
        lease_epoch=4,
        chain=ChainState.UP,
        chain_epoch=4,
        replicating=False,
        nodes=("n1", "n2"),
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


class TestChainRunner:
    def test_holder_brings_the_chain_up_for_its_epoch(self) -> None:
        assert chain_decision(chain_snap(chain=ChainState.DOWN)).action is Action.BRING_UP
        assert chain_decision(chain_snap(chain_epoch=3)).action is Action.BRING_UP
        assert chain_decision(chain_snap()).action is Action.WAIT

    def test_not_acting_means_tear_down_whatever_is_up(self) -> None:
        for state in (ChainState.UP, ChainState.UNKNOWN):
            decision = chain_decision(chain_snap(acting_epoch=None, chain=state))
            assert decision.action is Action.TEAR_DOWN
        stale = chain_decision(chain_snap(acting_epoch=None))
        assert "renewDeadline" in stale.reason
        lost = chain_decision(chain_snap(acting_epoch=None, lease_holder="n2"))
        assert "does not hold" in lost.reason

    def test_a_tear_down_of_the_primary_names_its_cause_in_one_word(self) -> None:
        web = FailedResource("Service/web", "service web", "its unit is not active")
        causes = {
            "LeaseLost": chain_snap(acting_epoch=None, lease_holder="n2"),
            "RenewDeadlineMissed": chain_snap(acting_epoch=None),
            "Deleting": chain_snap(deleting=True),
            "StandbyMode": chain_snap(in_standby_mode=True),
            "RestartLimit": chain_snap(failed=(web,), restarts_in_window=3, restart_limit=3, eligible_peers=("n2",)),
            "Switchover": chain_snap(switchover=Switchover(target="n2", from_epoch=4)),
            "DependencyNotReady": chain_snap(dependency_ready=False, dependency_detail="db"),
        }
        for cause, snap in causes.items():
            decision = chain_decision(snap)
            assert (decision.action, decision.cause) == (Action.TEAR_DOWN, cause)

    def test_standby_rejoins_the_new_primary_once(self) -> None:
        snap = chain_snap(acting_epoch=None, lease_holder="n2", chain=ChainState.DOWN)
        decision = chain_decision(snap)
        assert decision.action is Action.REJOIN and decision.target == "n2"
        assert chain_decision(dataclasses.replace(snap, replicating=True)).action is Action.WAIT

    def test_failed_member_is_repaired_in_place_until_the_limit(self) -> None:
        web = FailedResource("Service/web", "service web", "its unit is not active")
        decision = chain_decision(chain_snap(failed=(web,), restarts_in_window=1))
        assert decision.action is Action.REPAIR and decision.target == "Service/web"
        assert "repair 2 of 3" in decision.reason
        over = chain_snap(failed=(web,), restarts_in_window=3, restart_limit=3, eligible_peers=("n2",))
        torn = chain_decision(over)
        assert torn.action is Action.TEAR_DOWN and "after 3 repairs in place" in torn.reason
        assert "after 3 repairs in place" in torn.stepping_down
        assert "demoting" not in torn.stepping_down, "why it steps down, not what it does"
        # The agent keeps that until the Lease is released: the failure no longer shows.
        down = dataclasses.replace(over, chain=ChainState.DOWN, failed=(), stepping_down=torn.stepping_down)
        decision = chain_decision(down)
        assert decision.action is Action.RELEASE and "restartLimit 3" in decision.reason
        assert decision.stepping_down == torn.stepping_down
        forgot = dataclasses.replace(down, stepping_down=None)
        assert chain_decision(forgot).action is Action.BRING_UP, "stepping_down must be kept"

    def test_planned_switchover_demotes_fully_then_hands_over(self) -> None:
        sw = Switchover(target="n2", from_epoch=4)
        assert chain_decision(chain_snap(switchover=sw)).action is Action.TEAR_DOWN
        decision = chain_decision(chain_snap(switchover=sw, chain=ChainState.DOWN))
        assert decision.action is Action.HAND_OVER and decision.target == "n2"

    def test_switchover_is_held_back_while_the_lease_does_not_list_the_target(self) -> None:
        """The target may lack acknowledged writes: no tear-down, no hand-over; a chain torn
        down meanwhile comes back up. Listed, the switchover goes ahead."""
        sw = Switchover(target="n2", from_epoch=4)
        held = chain_decision(chain_snap(switchover=sw, sync_standbys=()))
        assert held.action is Action.WAIT and "held back" in held.reason
        down = chain_decision(chain_snap(switchover=sw, sync_standbys=("n3",), chain=ChainState.DOWN))
        assert down.action is Action.BRING_UP
        listed = chain_decision(chain_snap(switchover=sw, sync_standbys=("n2",), chain=ChainState.DOWN))
        assert listed.action is Action.HAND_OVER and listed.target == "n2"

    def test_switchover_for_an_older_epoch_is_ignored(self) -> None:
        stale = Switchover(target="n2", from_epoch=3)
        assert chain_decision(chain_snap(switchover=stale)).action is Action.WAIT

    def test_standby_mode_and_deletion_release_the_lease(self) -> None:
        for snap in (
            chain_snap(in_standby_mode=True, chain=ChainState.DOWN),
            chain_snap(deleting=True, chain=ChainState.DOWN),
        ):
            assert chain_decision(snap).action is Action.RELEASE

    def test_dependency_gates_the_chain(self) -> None:
        snap = chain_snap(chain=ChainState.DOWN, dependency_ready=False, dependency_detail="db")
        assert chain_decision(snap).action is Action.WAIT
        assert chain_decision(dataclasses.replace(snap, dependency_ready=True)).action is Action.BRING_UP


class TestSynchronousStandbys:
    def expired(self, listed: tuple[str, ...] | None, holder: str | None = "n2") -> LeaseSnapshot:
        lease = dataclasses.replace(view(holder, observed_at=0.0), sync_standbys=listed)
        return lease_snap(now=200.0, lease=lease)

    def test_a_standby_the_primary_did_not_list_never_takes_over(self) -> None:
        decision = lease_decision(self.expired(()))
        assert decision.action is Action.WAIT and "NotSynchronous" in decision.reason
        assert lease_decision(self.expired(("n3",))).action is Action.WAIT

    def test_nor_takes_a_released_lease(self) -> None:
        decision = lease_decision(self.expired((), holder=None))
        assert decision.action is Action.WAIT and "NotSynchronous" in decision.reason

    def test_a_listed_standby_takes_over(self) -> None:
        assert lease_decision(self.expired(("n1",))).action is Action.ACQUIRE

    def test_no_list_means_no_restriction(self) -> None:
        assert lease_decision(self.expired(None)).action is Action.ACQUIRE
        assert not_synchronous(None, "n1") is None

    def test_holder_renews_at_once_to_publish(self) -> None:
        held = Holding(epoch=4, last_renew_sent_at=100.0)
        snap = lease_snap(lease=view("n1"), holding=held)
        assert lease_decision(snap).action is Action.WAIT
        decision = lease_decision(dataclasses.replace(snap, sync_to_publish=("mail2",)))
        assert decision.action is Action.RENEW and "synchronous" in decision.reason

    def test_a_joining_standby_is_required_by_postgresql_before_it_is_published(self) -> None:
        assert sync_step((), (), ("n2",)) == SyncStep(configure=("n2",))
        assert sync_step((), ("n2",), ("n2",)) == SyncStep(publish=("n2",))
        assert sync_step(("n2",), ("n2",), ("n2",)) == SyncStep()

    def test_a_lost_standby_leaves_the_lease_before_postgresql_stops_waiting(self) -> None:
        assert sync_step(("n2",), ("n2",), ()) == SyncStep(publish=())
        assert sync_step((), ("n2",), ()) == SyncStep(configure=())
        assert sync_step((), (), ()) == SyncStep()

    def test_a_queued_list_counts_as_published_until_the_lease_carries_it(self) -> None:
        """n2 joined the queue, then stopped streaming before the keeper wrote the Lease:
        PostgreSQL keeps waiting for n2 until the Lease no longer can list it."""
        queued = ("n2",)
        assert sync_step((), ("n2",), (), queued=queued) == SyncStep(publish=())
        assert sync_step((), ("n2", "n3"), ("n3",), queued=("n2", "n3")) == SyncStep(publish=("n3",))
        # Nothing to publish, but the Lease does not carry the queue yet: no reconfiguration.
        assert sync_step(("n2",), ("n2",), (), queued=()) == SyncStep()
        # Once the Lease carries the queued list, the usual steps resume.
        assert sync_step((), ("n2",), (), queued=()) == SyncStep(configure=())

    def test_nothing_moves_while_a_write_with_another_list_may_still_land(self) -> None:
        assert sync_step((), ("n2",), (), in_flight=("n2",)) == SyncStep()
        assert sync_step(("n2",), ("n2",), (), in_flight=("n2",)) == SyncStep(publish=())

    def test_unknown_configuration_is_set_once(self) -> None:
        assert sync_step(("n2",), None, ("n2",)) == SyncStep(configure=("n2",))

    @pytest.mark.parametrize("published", [(), ("a",), ("a", "b"), ("b", "c")])
    @pytest.mark.parametrize("configured", [None, (), ("a",), ("a", "b", "c")])
    @pytest.mark.parametrize("streaming", [(), ("a",), ("b", "c")])
    def test_every_step_keeps_the_published_list_within_what_postgresql_requires(
        self,
        published: tuple[str, ...],
        configured: tuple[str, ...] | None,
        streaming: tuple[str, ...],
    ) -> None:
        for _ in range(4):
            step = sync_step(published, configured, streaming)
            if step.publish is not None:
                assert set(step.publish) <= set(configured or ()) or set(step.publish) <= set(published)
                published = step.publish
            elif step.configure is not None:
                assert set(published) <= set(step.configure)
                configured = step.configure
        assert set(published) == set(configured or ()) == set(streaming)


class TestMonitors:
    SETTINGS = MonitorSettings(period=1.0, timeout=2.0, failure_threshold=3)

    def test_failure_threshold_failed_checks_in_a_row_mark_the_member_failed(self) -> None:
        state = MonitorState()
        for at, expected in ((10.0, Health.FAILING), (11.0, Health.FAILING), (12.0, Health.FAILED)):
            state = after_check(state, self.SETTINGS, "no answer within 2s", at)
            assert state.health is expected
        assert state.consecutive_failures == 3 and state.first_failure_at == 10.0
        failed = FailedResource(
            "PostgreSQL/postgresql", "PostgreSQL", state.detail, state.consecutive_failures, 13.5 - 10.0
        )
        assert failed.describe("mail1") == ("PostgreSQL on mail1 failed: no answer within 2s (3 checks, 3.5 s)")

    def test_one_healthy_check_clears_the_failures(self) -> None:
        state = after_check(MonitorState(), self.SETTINGS, "gone", 1.0)
        state = after_check(state, self.SETTINGS, None, 2.0)
        assert state == MonitorState(Health.HEALTHY, 0, 2.0, None, "")

    def test_a_check_is_due_one_period_after_the_last_one_started(self) -> None:
        assert check_due(MonitorState(), self.SETTINGS, 0.0)
        state = after_check(MonitorState(), self.SETTINGS, None, 5.0)
        assert not check_due(state, self.SETTINGS, 5.9)
        assert check_due(state, self.SETTINGS, 6.0)

    def test_the_first_failed_member_in_chain_order_is_repaired_first(self) -> None:
        mount = FailedResource("Mount//srv/mail", "mount /srv/mail", "nothing is mounted")
        bind = FailedResource("BindMount//var/mail", "bind mount /var/mail", "not a bind")
        decision = chain_decision(chain_snap(failed=(mount, bind)))
        assert decision.action is Action.REPAIR and decision.target == "Mount//srv/mail"

    def test_a_failed_member_waits_while_one_below_it_has_not_checked_healthy(self) -> None:
        mount = FailedResource(
            "Mount//srv/mail", "mount /srv/mail", "Input/output error", waiting_for="DRBD volume mail-store"
        )
        decision = chain_decision(chain_snap(failed=(mount,)))
        assert decision.action is Action.WAIT
        assert "repaired once DRBD volume mail-store below it checks healthy" in decision.reason
        settled = dataclasses.replace(mount, waiting_for=None)
        assert chain_decision(chain_snap(failed=(settled,))).action is Action.REPAIR

    def test_a_failed_member_past_the_limit_steps_down_even_while_waiting(self) -> None:
        mount = FailedResource("Mount//srv/mail", "mount /srv/mail", "Input/output error", waiting_for="volume")
        snap = chain_snap(failed=(mount,), restarts_in_window=2, restart_limit=2, eligible_peers=("n2",))
        assert chain_decision(snap).action is Action.TEAR_DOWN

    def test_past_the_limit_without_an_eligible_standby_it_keeps_repairing(self) -> None:
        pg = FailedResource("PostgreSQL/postgresql", "PostgreSQL", "not running")
        alone = chain_snap(failed=(pg,), restarts_in_window=2, restart_limit=2)
        decision = chain_decision(alone)
        assert decision.action is Action.REPAIR
        assert "past restartLimit 2: no standby is eligible" in decision.reason
        helped = dataclasses.replace(alone, eligible_peers=("n2",))
        assert chain_decision(helped).action is Action.TEAR_DOWN

    def test_past_the_limit_a_peer_the_lease_does_not_list_is_no_successor(self) -> None:
        pg = FailedResource("PostgreSQL/postgresql", "PostgreSQL", "not running")
        unlisted = chain_snap(
            failed=(pg,), restarts_in_window=2, restart_limit=2, eligible_peers=("n2",), sync_standbys=()
        )
        decision = chain_decision(unlisted)
        assert decision.action is Action.REPAIR
        assert "no standby is eligible" in decision.reason
        listed = dataclasses.replace(unlisted, sync_standbys=("n2",))
        assert chain_decision(listed).action is Action.TEAR_DOWN
        without_postgres = dataclasses.replace(unlisted, sync_standbys=None)
        assert chain_decision(without_postgres).action is Action.TEAR_DOWN

    def test_no_repair_without_the_right_to_act(self) -> None:
        pg = FailedResource("PostgreSQL/postgresql", "PostgreSQL", "not running")
        decision = chain_decision(chain_snap(failed=(pg,), acting_epoch=None))
        assert decision.action is Action.TEAR_DOWN


class TestLeavingStandby:
    def test_a_standby_leaves_only_when_a_fresh_read_of_a_running_primary_lacks_it(self) -> None:
        assert departure_confirmed(("n2",), "primary", ())
        assert departure_confirmed(("n2",), "primary", ("n3",))

    def test_a_dead_or_unreadable_server_confirms_no_departure(self) -> None:
        assert not departure_confirmed(("n2",), None, ())

    def test_a_standby_streaming_again_or_a_demoted_server_stays_listed(self) -> None:
        assert not departure_confirmed(("n2",), "primary", ("n2",))
        assert not departure_confirmed(("n2", "n3"), "primary", ("n3",))
        assert not departure_confirmed(("n2",), "standby", ())


class TestJoiningStandby:
    def test_a_standby_joins_the_list_only_once_it_flushed_past_the_change(self) -> None:
        assert not_caught_up(("n2",), {"n2": 99}, required_from=100) == ("n2",)
        assert not_caught_up(("n2",), {"n2": 100}, required_from=100) == ()

    def test_unknown_change_point_or_unknown_flush_keeps_it_out(self) -> None:
        assert not_caught_up(("n2",), {"n2": 10**9}, required_from=None) == ("n2",)
        assert not_caught_up(("n2", "n3"), {"n2": 200}, required_from=100) == ("n3",)
