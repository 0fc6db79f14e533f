"""spec.paused (maintenance mode, issue 14 item 2) in the agent's pure core: nobody takes the
Lease, the holder keeps renewing and its fence deadline, the chain is neither brought up,
repaired, handed over nor torn down, except a chain this process brought up that lost its
Lease (the single-primary rule never pauses)."""

from __future__ import annotations

from tandem.api.hacluster import IneligibleReason
from tandem_agent.core import (
    Action,
    ChainState,
    FailedResource,
    Holding,
    LocalHealth,
    Switchover,
    chain_decision,
    eligibility,
    lease_decision,
)
from tests.unit.test_agent_core import T, chain_snap, lease_snap, view


def test_a_paused_node_is_ineligible_and_takes_no_lease() -> None:
    health = eligibility(LocalHealth(paused=True), 5, 0)
    assert not health.eligible and health.why is not None
    assert health.why.reason is IneligibleReason.PAUSED
    expired = lease_snap(now=200.0, lease=view("n2", observed_at=100.0), paused=True)
    assert lease_decision(expired).action is Action.WAIT
    assert "paused" in lease_decision(expired).reason
    free = lease_snap(lease=view(None, epoch=0, observed_at=0.0), paused=True)
    assert lease_decision(free).action is Action.WAIT
    assert lease_decision(lease_snap(now=200.0, lease=view("n2", observed_at=100.0))).action is Action.ACQUIRE, (
        "the same Lease is taken when not paused"
    )


def test_a_paused_holder_renews_reclaims_and_still_fences() -> None:
    held = Holding(epoch=4, last_renew_sent_at=100.0 - T.renew_interval)
    assert lease_decision(lease_snap(lease=view("n1"), holding=held, paused=True)).action is Action.RENEW
    restarted = lease_snap(lease=view("n1"), paused=True)
    assert lease_decision(restarted).action is Action.RENEW, "a restarted agent reclaims"
    late = lease_snap(
        now=100.0 + T.renew_deadline + T.demotion_timeout + 0.1,
        lease=view("n1"),
        holding=Holding(epoch=4, last_renew_sent_at=100.0),
        chain_down=False,
        paused=True,
    )
    assert lease_decision(late).action is Action.FENCE


def test_a_paused_holder_leaves_its_chain_as_it_is() -> None:
    failed = (FailedResource("PostgreSQL", "postgres", "the postmaster is not running"),)
    for snap in (
        chain_snap(chain=ChainState.DOWN, paused=True),
        chain_snap(chain=ChainState.UNKNOWN, paused=True),
        chain_snap(failed=failed, restarts_in_window=5, eligible_peers=("n2",), paused=True),
        chain_snap(switchover=Switchover("n2", 4), sync_standbys=("n2",), paused=True),
        chain_snap(in_standby_mode=True, paused=True),
    ):
        decision = chain_decision(snap)
        assert decision.action is Action.WAIT and "paused" in decision.reason, snap
    assert chain_decision(chain_snap(failed=failed)).action is Action.REPAIR


def test_paused_a_standby_joins_nothing_and_a_restarted_agent_leaves_what_it_finds() -> None:
    standby = chain_snap(acting_epoch=None, lease_holder="n2", chain=ChainState.DOWN, paused=True)
    assert chain_decision(standby).action is Action.WAIT
    fresh = chain_snap(acting_epoch=None, lease_holder="n2", chain=ChainState.UNKNOWN, paused=True)
    assert chain_decision(fresh).action is Action.WAIT
    assert (
        chain_decision(chain_snap(acting_epoch=None, lease_holder="n2", chain=ChainState.UNKNOWN)).action
        is Action.TEAR_DOWN
    )


def test_paused_a_chain_this_process_brought_up_still_goes_down_without_the_lease() -> None:
    lost = chain_snap(acting_epoch=None, lease_holder="n1", chain=ChainState.UP, paused=True)
    assert chain_decision(lost).action is Action.TEAR_DOWN


def test_paused_a_restarted_holder_adopts_a_chain_it_found_healthy_and_touches_nothing() -> None:
    unknown = chain_snap(chain=ChainState.UNKNOWN, paused=True)
    assert chain_decision(unknown).action is Action.WAIT, "not checked yet: wait"
    found = chain_decision(chain_snap(chain=ChainState.UNKNOWN, paused=True, found_running=True))
    assert found.action is Action.ADOPT and found.epoch == unknown.acting_epoch
    assert "adopting it as up" in found.reason
    for snap in (
        chain_snap(chain=ChainState.UNKNOWN, found_running=True),  # not paused
        chain_snap(chain=ChainState.UP, paused=True, found_running=True),
    ):
        assert chain_decision(snap).action is not Action.ADOPT, snap


def test_paused_a_restarted_standby_adopts_its_streaming_and_never_a_lost_lease() -> None:
    standby = chain_snap(
        acting_epoch=None, lease_holder="n2", chain=ChainState.UNKNOWN, paused=True, found_running=True
    )
    adopted = chain_decision(standby)
    assert adopted.action is Action.ADOPT and adopted.epoch is None
    assert "standby of n2" in adopted.reason
    up_without_lease = chain_snap(
        acting_epoch=None, lease_holder="n2", chain=ChainState.UP, paused=True, found_running=True
    )
    assert chain_decision(up_without_lease).action is Action.TEAR_DOWN
