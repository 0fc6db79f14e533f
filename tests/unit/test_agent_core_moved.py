"""The decisions the agent's threads used to make themselves, now pure in tandem_agent.core:
NotSynchronous in eligibility, the standby's lag, the synchronous lists of a Lease write, the
restart back-off before a release, the first Lease read, and a hand-over told apart from a
reclaim."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

from tandem.api.hacluster import IneligibleReason, LeaseTimings
from tandem.kube.lease import LeaseRecord
from tandem_agent.agent import ClusterAgent, intent_of
from tandem_agent.core import (
    Action,
    ChainSnapshot,
    ChainState,
    Decision,
    Eligibility,
    FailedResource,
    Holding,
    LeaseSnapshot,
    LeaseView,
    LocalHealth,
    StandbyStream,
    Switchover,
    SyncLists,
    Timings,
    chain_decision,
    chain_may_be_up,
    eligibility,
    lease_decision,
    monitoring,
    report_role,
    slow_renew,
    standby_lag,
    sync_for_lease_write,
)
from tandem_agent.watchdog import NoWatchdog
from tests.unit.test_agent_core import chain_snap as core_chain_snap
from tests.unit.test_refused_clusters import MAIL, builder, world

T = Timings.of(LeaseTimings())
LISTED = LeaseView("n2", 4, "7", 100.0, sync_standbys=("n3",))
WEB = FailedResource("Service/web", "service web", "its unit is not active")


def chain_snap(**kw: object) -> ChainSnapshot:
    """test_agent_core's snapshot, with a restart window (the back-off the release carries)."""
    return core_chain_snap(**({"restart_window": 300.0} | kw))


class TestNotSynchronous:
    def test_a_standby_the_lease_does_not_list_reports_not_synchronous_once_down(self) -> None:
        health = LocalHealth(node="n1", lease=LISTED, chain_down=True)
        judged = eligibility(health, 30, 0)
        assert not judged.eligible and judged.why is not None
        assert judged.why.reason is IneligibleReason.NOT_SYNCHRONOUS and "n3" in judged.why.message

    def test_not_while_its_chain_is_not_down_nor_when_listed_nor_forced(self) -> None:
        health = LocalHealth(node="n1", lease=LISTED, chain_down=True)
        assert eligibility(dataclasses.replace(health, chain_down=False), 30, 0).eligible
        assert eligibility(dataclasses.replace(health, node="n3"), 30, 0).eligible
        assert eligibility(dataclasses.replace(health, forced=True), 30, 0) == Eligibility(True)
        assert eligibility(dataclasses.replace(health, lease=None), 30, 0).eligible

    def test_any_earlier_reason_is_reported_first(self) -> None:
        health = LocalHealth(node="n1", lease=LISTED, chain_down=True, dependency_ready=False, dependency_detail="db")
        judged = eligibility(health, 30, 0)
        assert judged.why is not None and judged.why.reason is IneligibleReason.DEPENDENCY_NOT_READY


class TestStandbyLag:
    def test_streaming_gives_the_replay_lag_and_remembers_it(self) -> None:
        assert standby_lag(LISTED, True, StandbyStream(True, 2.5), None) == (2.5, 2.5)
        assert standby_lag(LISTED, True, StandbyStream(True, None), 9.0) == (0.0, 0.0)

    def test_a_stopped_stream_keeps_the_lag_it_had(self) -> None:
        assert standby_lag(LISTED, True, StandbyStream(False, 40.0), 1.5) == (1.5, 1.5)
        assert standby_lag(LISTED, True, StandbyStream(False, 0.0), None) == (math.inf, None)

    def test_not_a_running_standby_is_infinitely_behind_except_before_the_first_primary(self) -> None:
        assert standby_lag(LISTED, True, None, 1.0) == (math.inf, 1.0)
        first = dataclasses.replace(LISTED, holder=None, epoch=0)
        assert standby_lag(first, False, None, None) == (0.0, None)
        assert standby_lag(first, True, None, None) == (math.inf, None), "a node with data may hold writes"


class TestLeaseWriteSync:
    LISTS = SyncLists(to_publish=("n2",), configured=("n2",), required_from=77)

    def test_a_renew_publishes_what_is_queued_and_keeps_the_rest(self) -> None:
        carried, after = sync_for_lease_write(self.LISTS, Action.RENEW, True)
        assert carried == ("n2",) and after == dataclasses.replace(self.LISTS, in_flight=("n2",))

    def test_a_new_holder_starts_from_an_empty_list_and_forgets_the_old_one(self) -> None:
        for action in (Action.ACQUIRE, Action.HAND_OVER):
            assert sync_for_lease_write(self.LISTS, action, True) == ((), SyncLists(in_flight=()))
            assert sync_for_lease_write(self.LISTS, action, False) == (None, SyncLists())

    def test_a_release_leaves_the_list_and_forgets_it(self) -> None:
        assert sync_for_lease_write(self.LISTS, Action.RELEASE, True) == (None, SyncLists())


class TestRestartLimit:
    OVER = chain_snap(failed=(WEB,), restarts_in_window=3, restart_limit=3, eligible_peers=("n2",))

    def test_the_tear_down_names_the_member_to_remember(self) -> None:
        torn = chain_decision(self.OVER)
        assert (torn.action, torn.failed_member) == (Action.TEAR_DOWN, WEB)
        assert chain_decision(chain_snap(switchover=Switchover("n2", 4))).failed_member is None

    def test_deletion_first_is_no_step_down_for_the_restart_limit(self) -> None:
        torn = chain_decision(dataclasses.replace(self.OVER, deleting=True))
        assert (torn.cause, torn.failed_member) == ("Deleting", None)

    def test_the_release_backs_off_for_the_restart_window_first(self) -> None:
        down = dataclasses.replace(self.OVER, chain=ChainState.DOWN, failed=(), stepping_down="web failed")
        release = chain_decision(down)
        assert (release.action, release.cause, release.backoff_until) == (Action.RELEASE, "RestartLimit", 400.0)
        remembered = chain_decision(dataclasses.replace(down, deleting=True))
        assert (remembered.cause, remembered.backoff_until) == ("Deleting", 400.0)
        plain = chain_decision(dataclasses.replace(down, stepping_down=None, deleting=True))
        assert (plain.action, plain.backoff_until) == (Action.RELEASE, None)


class TestFirstLeaseRead:
    def test_nothing_is_torn_down_before_the_keeper_tried_the_lease(self) -> None:
        leftover = chain_snap(acting_epoch=None, lease_holder="n1", lease_tried=False)
        assert chain_decision(leftover).action is Action.WAIT
        assert chain_decision(dataclasses.replace(leftover, lease_tried=True)).action is Action.TEAR_DOWN

    def test_anything_else_goes_on(self) -> None:
        down = chain_snap(chain=ChainState.DOWN, lease_tried=False)
        assert chain_decision(down).action is Action.BRING_UP


def test_a_paused_holder_counts_its_chain_as_maybe_up() -> None:
    held = Holding(4, 100.0)
    assert chain_may_be_up(ChainState.UP, False, None)
    assert not chain_may_be_up(ChainState.DOWN, False, held)
    assert chain_may_be_up(ChainState.DOWN, True, held) and not chain_may_be_up(ChainState.DOWN, True, None)


class TestHandOver:
    """A primary hands the Lease over by writing the target into it at the next epoch; the
    target, which holds nothing yet, takes it with a guarded renew: the same write as a
    restarted agent's reclaim, told apart by the Pending switchover to it."""

    @staticmethod
    def snap(**kw: object) -> LeaseSnapshot:
        base = LeaseSnapshot(
            now=100.0,
            node="n2",
            timings=T,
            lease=LeaseView("n2", 5, "9", 100.0, sync_standbys=()),
            holding=None,
            chain_down=True,
            eligibility=Eligibility(True),
        )
        return dataclasses.replace(base, **kw)  # type: ignore[arg-type]

    def test_the_target_takes_a_lease_handed_over_at_once(self) -> None:
        decision = lease_decision(self.snap(switchover=Switchover(target="n2", from_epoch=4)))
        assert (decision.action, decision.epoch, decision.cause) == (Action.RENEW, 5, "HandedOver")
        assert "handed the Lease over" in decision.reason

    def test_without_a_switchover_to_it_the_same_lease_is_a_reclaim(self) -> None:
        for switchover in (None, Switchover("n3", 4), Switchover("n2", 5)):
            decision = lease_decision(self.snap(switchover=switchover))
            assert (decision.action, decision.epoch, decision.cause) == (Action.RENEW, 5, "Reclaimed")

    def test_both_take_it_whatever_the_eligibility_as_before(self) -> None:
        """Safety is the holder's: it tore down before writing the target in."""
        ineligible = Eligibility(False)
        for switchover in (None, Switchover("n2", 4)):
            decision = lease_decision(self.snap(switchover=switchover, eligibility=ineligible, chain_down=False))
            assert decision.action is Action.RENEW

    def test_the_holder_hands_over_at_the_next_epoch(self) -> None:
        sw = Switchover(target="n2", from_epoch=4)
        hand = chain_decision(chain_snap(switchover=sw, chain=ChainState.DOWN))
        assert (hand.action, hand.target, hand.epoch) == (Action.HAND_OVER, "n2", 4)


def test_the_reported_role_follows_the_chain_and_the_right_to_act() -> None:
    assert report_role(4, ChainState.UP, False) == "Primary"
    assert report_role(None, ChainState.UP, False) == "Demoting", "up without the right to act"
    assert report_role(None, ChainState.DOWN, False) == "Standby"
    assert report_role(4, ChainState.UNKNOWN, True) == "Unknown"
    assert report_role(4, ChainState.UNKNOWN, False) == "Demoting"


def test_members_are_monitored_on_the_primary_of_their_epoch_or_a_paused_holder_adopting() -> None:
    assert monitoring(4, ChainState.UP, 4, False)
    assert not monitoring(4, ChainState.UP, 3, False), "brought up for an older epoch"
    assert not monitoring(None, ChainState.UP, 4, False)
    assert monitoring(4, ChainState.UNKNOWN, None, True) and not monitoring(4, ChainState.UNKNOWN, None, False)


# --- the executor: it only stores what the decision says, in the order it says -------------


class ReleaseKube:
    """Records the agent's eligibility at the moment the Lease is released."""

    namespace = "a"
    node = "mail1"

    def __init__(self) -> None:
        self.agent: ClusterAgent | None = None
        self.eligible_when_written: list[bool] = []

    def write_lease(
        self, cluster: str, holder: str | None, epoch: int, acquire: bool, sync_standbys: tuple[str, ...] | None = None
    ) -> LeaseRecord:
        assert self.agent is not None
        self.eligible_when_written.append(self.agent.shared().eligibility.eligible)
        return LeaseRecord(holder, epoch, resource_version="9")


def test_the_agent_backs_off_before_it_releases_and_forgets_the_step_down(tmp_path: Path) -> None:
    runner = builder(tmp_path, world(MAIL))(MAIL)
    runner.state = ChainState.DOWN
    runner.disks = lambda: (True, "")  # type: ignore[method-assign]
    kube = ReleaseKube()
    agent = ClusterAgent(kube, runner.cluster, runner, intent_of(MAIL, "mail1"), lambda why: None, NoWatchdog())  # type: ignore[arg-type]
    kube.agent = agent
    agent._standby_lag = lambda pg: 0.0  # type: ignore[method-assign]
    agent._change(eligibility=Eligibility(True))
    agent.stepping_down, agent.stepping_down_for = "web failed after 3 repairs", WEB
    release = Decision(Action.RELEASE, "", epoch=7, backoff_until=time.monotonic() + 300)
    agent._execute(release)
    assert kube.eligible_when_written == [False], "ineligible before the Lease is free"
    why = agent.shared().eligibility.why
    assert why is not None and why.reason is IneligibleReason.RESTART_BACKOFF
    assert agent.stepping_down is None and agent.last_recovery is not None
    assert agent.last_recovery["action"] == "SteppedDown" and agent.shared().holding is None


def test_a_renew_within_half_the_deadline_margin_is_not_slow() -> None:
    t = Timings()  # renewInterval 1.2 s, renewDeadline 1.8 s: a 0.6 s margin
    assert slow_renew(t, since_previous=1.2, took=0.1) is None
    assert slow_renew(t, since_previous=1.3, took=0.15) is None


def test_a_renew_sent_late_or_answered_slowly_says_how_much_of_the_margin_it_used() -> None:
    t = Timings()
    late = slow_renew(t, since_previous=1.6, took=0.05)
    assert late is not None and "sent 0.40s late" in late and "of the 0.60s" in late
    slow = slow_renew(t, since_previous=1.2, took=0.5)
    assert slow is not None and "answered in 0.50s" in slow
