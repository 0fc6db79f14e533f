"""How the agent's loops pace themselves: a runner that only waits sleeps IDLE_PAUSE_SECONDS
and is woken by what it waits for; and a hand-over whose answer was lost gives up the right to
act (the simulation found a holder bringing its chain up again at the epoch it had handed on)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tandem.kube.errors import Conflict, Unavailable
from tandem.kube.lease import LeaseRecord
from tandem_agent.agent import ClusterAgent, intent_of
from tandem_agent.core import IDLE_PAUSE_SECONDS, Action, Decision, Holding, LeaseView, runner_pause
from tests.unit.test_metrics import agent  # noqa: F401 (the fixture)
from tests.unit.test_refused_clusters import MAIL

POLL = 0.1


@pytest.mark.parametrize("action", [a for a in Action if a is not Action.WAIT])
def test_a_runner_that_acts_looks_again_after_the_poll_interval(action: Action) -> None:
    assert runner_pause(Decision(action, "acting"), POLL) == POLL


def test_a_runner_that_only_waits_looks_again_after_the_idle_pause() -> None:
    assert runner_pause(Decision(Action.WAIT, "standby"), POLL) == IDLE_PAUSE_SECONDS > POLL


def test_a_primary_bringing_its_synchronous_standbys_in_line_keeps_the_poll_interval() -> None:
    """Each sync_step (configure PostgreSQL, wait for the joiner's flush, publish on the Lease)
    takes a tick: at the idle pause a rejoined standby would be listed seconds later."""
    assert runner_pause(Decision(Action.WAIT, "primary at epoch 2"), POLL, syncing=True) == POLL


def holder(cluster_agent: ClusterAgent, renewed_ago: float = 0.0) -> None:
    now = time.monotonic()
    cluster_agent._change(lease=LeaseView("mail1", 7, "5", now), holding=Holding(7, now - renewed_ago))


def test_the_keeper_wakes_the_runner_when_the_right_to_act_comes_and_goes(agent: ClusterAgent) -> None:  # noqa: F811
    holder(agent)
    agent.keeper_tick()
    assert agent._wake_runner.is_set() and agent.acting_epoch() == 7
    agent._wake_runner.clear()
    agent.keeper_tick()
    assert not agent._wake_runner.is_set()  # nothing changed
    holder(agent, renewed_ago=agent.shared().timings.renew_deadline + 0.1)
    kube: Any = agent.kube
    kube.answers = [Unavailable(None, "timed out")]  # the renew it tries fails
    agent.keeper_tick()
    assert agent.acting_epoch() is None and agent._wake_runner.is_set()


def test_a_new_intent_wakes_the_runner_and_the_same_one_does_not(agent: ClusterAgent) -> None:  # noqa: F811
    agent.update_intent(agent.shared().intent)
    assert not agent._wake_runner.is_set()
    agent.update_intent(intent_of(MAIL | {"spec": MAIL["spec"] | {"paused": True}}, "mail1"))
    assert agent._wake_runner.is_set()


def test_a_hand_over_without_an_answer_gives_up_the_right_to_act(agent: ClusterAgent) -> None:  # noqa: F811
    holder(agent)
    kube: Any = agent.kube
    kube.answers = [Unavailable(None, "timed out")]
    with pytest.raises(Unavailable):
        agent._give_lease("mail2", 8, Action.HAND_OVER)
    assert agent.shared().holding is None and agent.acting_epoch() is None


def test_a_refused_hand_over_keeps_the_lease_it_still_holds(agent: ClusterAgent) -> None:  # noqa: F811
    holder(agent)
    kube: Any = agent.kube
    kube.answers = [Conflict(409, "the Lease changed")]
    with pytest.raises(Conflict):
        agent._give_lease("mail2", 8, Action.HAND_OVER)
    assert agent.acting_epoch() == 7
    kube.answers = [LeaseRecord("mail2", 8, resource_version="6")]
    agent._give_lease("mail2", 8, Action.HAND_OVER)
    assert agent.shared().holding is None and agent.acting_epoch() is None
