"""A simulated agent: agent.py's two loops as generators over the REAL decisions of
`tandem_agent.core`.

Each loop is a generator that yields what the real thread would block on (a sleep, an API
call, the runner's wake-up event); the world resumes it at the simulated instant that call
returns. The executor is a model of agent.py, not agent.py itself: it mirrors what the keeper
and the runner do with each decision (observe, renew, take, hand over, fence, bring up, tear
down, rejoin, keep the synchronous standbys), line for line where it matters for safety."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tandem.kube.errors import Conflict, Unavailable
from tandem_agent.core import (
    NOT_OBSERVED_YET,
    Action,
    ChainSnapshot,
    ChainState,
    Decision,
    Eligibility,
    Holding,
    LeaseSnapshot,
    LeaseView,
    LocalHealth,
    StandbyStream,
    SyncLists,
    chain_decision,
    eligibility,
    lease_decision,
    may_act,
    not_synchronous,
    runner_pause,
    standby_lag,
    sync_for_lease_write,
    sync_step,
)
from tandem_lab.sim.apiserver import LeaseState, ReadLease, WriteLease

if TYPE_CHECKING:
    from tandem_lab.sim.world import SimNode, World

POLL_INTERVAL = 0.1  # ClusterAgent.poll_interval
MAX_LAG_SECONDS = 30.0
ROUTINE = (Action.WAIT, Action.RENEW)


@dataclass(frozen=True)
class Sleep:
    seconds: float  # on the node's clock


@dataclass(frozen=True)
class Call:
    request: ReadLease | WriteLease


@dataclass(frozen=True)
class WaitWake:
    seconds: float  # threading.Event.wait(timeout)


Op = Sleep | Call | WaitWake
Loop = Generator[Op, Any, None]


class StepAborted(Exception):
    """chain.Aborted / StepFailed: the runner logs it and decides again next tick."""


class SimAgent:
    """One agent process on one node; killed with the process (crash, fence, power off)."""

    def __init__(self, world: World, node: SimNode) -> None:
        self.world = world
        self.node = node
        self.name = node.name
        self.timings = world.timings
        self.lease: LeaseView | None = None
        self.cached: LeaseState | None = None  # kube's last Lease object, the guard's base
        self.holding: Holding | None = None
        self.eligibility = Eligibility(False, NOT_OBSERVED_YET)
        self.last_takeover_seen_at: float | None = None
        self.first_lease_attempt_done = False
        self.acting_seen: int | None = None  # the keeper's last acting_epoch()
        self.syncing = False  # the runner's last tick found a sync_step due
        self.sync = SyncLists()  # its to_publish and configured (fix 2 uses lease_write_in_flight)
        self.lease_write_in_flight = False
        self.lag_when_streaming: float | None = None
        # The chain runner's in-process view (ChainRunner.state/epoch/following).
        self.chain = ChainState.UNKNOWN
        self.chain_epoch: int | None = None
        self.following: tuple[str, int] | None = None
        self.last_decisions: dict[str, Decision] = {}

    def now(self) -> float:
        return self.node.clock.local(self.world.scheduler.now)

    def acting_epoch(self) -> int | None:
        if may_act(self.holding, self.lease, self.name, self.timings, self.now()):
            assert self.holding is not None
            return self.holding.epoch
        return None

    def _note(self, loop: str, decision: Decision) -> None:
        previous = self.last_decisions.get(loop)
        self.last_decisions[loop] = decision
        if decision.action in ROUTINE and (previous is None or previous.action in ROUTINE):
            return
        if previous is None or previous.action is not decision.action or previous.reason != decision.reason:
            self.world.trace.add(self.name, f"{loop}: {decision.action.value} ({decision.reason})")

    # --- the Lease keeper -------------------------------------------------------------------
    def _observe(self, record: LeaseState | None, now: float) -> None:
        if record is None:
            self.lease = None
            return
        old = self.lease
        rv = str(record.resource_version)
        same = old is not None and (old.holder, old.epoch, old.resource_version) == (record.holder, record.epoch, rv)
        if old is not None and record.epoch > old.epoch and record.holder:
            self.last_takeover_seen_at = now
        if not same:
            self.lease = LeaseView(record.holder, record.epoch, rv, now, record.sync_standbys)
            self.world.wake_runner(self)

    def keeper(self) -> Loop:
        variant = self.world.variant
        while True:
            now = self.now()
            if self.holding is None or self.lease is None or self.lease.holder != self.name:
                try:
                    record = yield Call(ReadLease())
                    self.cached = record
                    # agent.py stamps the observation with the time *before* the read.
                    self._observe(record, now)
                except Unavailable:
                    pass
            lease, timings = self.lease, self.timings
            if variant == "ignore-sync-list" and lease is not None:
                lease = dataclasses.replace(lease, sync_standbys=None)
            if variant == "eager-takeover" and self.holding is None:
                timings = dataclasses.replace(timings, lease_duration=timings.lease_duration / 2)
            snapshot = LeaseSnapshot(
                now=self.now(),
                node=self.name,
                timings=timings,
                lease=lease,
                holding=self.holding,
                chain_down=self.chain is ChainState.DOWN,
                eligibility=self.eligibility,
                preferred_primary=self.world.preferred_primary,
                last_takeover_seen_at=self.last_takeover_seen_at,
                sync_to_publish=self.sync.to_publish,
                switchover=self.node.switchover_seen,
            )
            decision = lease_decision(snapshot)
            self._note("keeper", decision)
            if decision.action is Action.RENEW:
                yield from self._write_lease(decision.epoch or 0, acquire=False)
            elif decision.action is Action.ACQUIRE:
                yield from self._write_lease(decision.epoch or 0, acquire=True)
            elif decision.action is Action.FORGET_HOLDING:
                self.holding = None
            elif decision.action is Action.FENCE:
                self.world.reboot(self.node, f"fenced by its agent: {decision.reason}")
                return
            self.first_lease_attempt_done = True
            acting = self.acting_epoch()
            if acting != self.acting_seen:  # as agent.py: gained or lost the right to act
                self.acting_seen = acting
                self.world.wake_runner(self)
            yield Sleep(POLL_INTERVAL)

    def _write_lease(self, epoch: int, acquire: bool) -> Loop:
        sent_at = self.now()
        sync, self.sync = sync_for_lease_write(self.sync, Action.ACQUIRE if acquire else Action.RENEW, True)
        if self.cached is None:
            return  # kube: "the Lease was never read"
        self.lease_write_in_flight = True
        try:
            record = yield Call(WriteLease(self.name, epoch, sync, self.cached))
        except Conflict:
            self.lease_write_in_flight = False
            try:
                reread: LeaseState | None = yield Call(ReadLease())
                self.cached = reread
            except Unavailable:
                reread = None
            self._observe(reread, self.now())
            return
        except Unavailable:
            self.lease_write_in_flight = False
            return
        self.lease_write_in_flight = False
        self.cached = record
        self.holding = Holding(epoch=record.epoch, last_renew_sent_at=sent_at)
        self.lease = LeaseView(record.holder, record.epoch, str(record.resource_version), sent_at, record.sync_standbys)
        if self.chain is not ChainState.DOWN:
            self._pet_watchdog()
        self.world.wake_runner(self)
        if acquire:
            self.world.trace.add(self.name, f"took the Lease at epoch {record.epoch}")

    def _pet_watchdog(self) -> None:
        if self.holding is None:
            return
        deadline = self.holding.last_renew_sent_at + self.timings.renew_deadline + self.timings.demotion_timeout
        self.world.pet_watchdog(self.node, max(0.0, deadline - self.now()))

    # --- the chain runner -------------------------------------------------------------------
    def runner(self) -> Loop:
        while True:
            lease = self.lease
            snapshot = ChainSnapshot(
                now=self.now(),
                node=self.name,
                acting_epoch=self.acting_epoch(),
                lease_holder=lease.holder if lease else None,
                lease_epoch=lease.epoch if lease else None,
                chain=self.chain,
                chain_epoch=self.chain_epoch,
                replicating=lease is not None
                and lease.holder is not None
                and self.following == (lease.holder, lease.epoch),
                volumes_joined=self.node.volumes_joined,
                switchover=self.node.switchover_seen,
                nodes=self.world.node_names,
                lease_tried=self.first_lease_attempt_done,
            )
            decision = chain_decision(snapshot)
            self._note("runner", decision)
            try:
                yield from self._execute(decision)
            except (StepAborted, Unavailable, Conflict) as exc:
                self.world.trace.add(self.name, f"runner: {decision.action.value} stopped: {type(exc).__name__} {exc}")
            self._observe_node()
            yield from self._keep_synchronous_standbys()
            yield WaitWake(runner_pause(decision, POLL_INTERVAL, self.syncing))

    def _execute(self, decision: Decision) -> Loop:
        action, world, node = decision.action, self.world, self.node
        if action is Action.BRING_UP:
            epoch = decision.epoch
            self._pet_watchdog()
            self.chain, self.following = ChainState.UNKNOWN, None
            for index, seconds in enumerate(world.bring_up_steps()):
                if self.acting_epoch() != epoch:
                    raise StepAborted(f"lost the right to act at epoch {epoch} before step {index}")
                if index == 0:
                    world.start_acting(node, epoch or 0)
                yield Sleep(seconds)
            world.start_serving(node)
            self.chain, self.chain_epoch = ChainState.UP, epoch
        elif action is Action.TEAR_DOWN:
            self.chain = ChainState.UNKNOWN
            world.stop_serving(node)
            yield Sleep(world.tear_down_seconds(node))
            world.stop_acting(node, "chain down")
            self.chain, self.chain_epoch = ChainState.DOWN, None
            world.disarm_watchdog(node)
        elif action in (Action.HAND_OVER, Action.RELEASE):
            target = decision.target if action is Action.HAND_OVER else None
            if (
                target is not None
                and world.variant != "agent-as-is"
                and not_synchronous(self.lease, target) is not None
            ):
                raise StepAborted(
                    f"{target} is no longer a synchronous standby on the Lease: keeping the Lease (proposed fix 1)"
                )
            epoch = (decision.epoch or 0) + (1 if target else 0)
            yield from self._give_lease(target, epoch, action)
        elif action is Action.REJOIN and decision.target is None:
            yield Sleep(0.05)
            node.volumes_joined = True
        elif action is Action.REJOIN:
            primary = decision.target or ""
            epoch = self.lease.epoch if self.lease else 0
            yield Sleep(world.rejoin_seconds())
            if not world.rejoin(node, primary):
                raise StepAborted(f"pg_rewind from {primary} failed: it is not a reachable primary")
            node.volumes_joined = True
            self.following = (primary, epoch)

    def _give_lease(self, target: str | None, epoch: int, action: Action) -> Loop:
        if self.cached is None:
            raise Unavailable(None, "the Lease was never read")
        sync, lists = sync_for_lease_write(self.sync, action, True)
        try:
            record = yield Call(WriteLease(target, epoch, sync, self.cached))
        except Unavailable:
            self.holding = None  # as agent.py: the write may have landed
            raise
        self.cached = record
        self.sync = lists
        self.holding = None
        self.lease = LeaseView(
            record.holder, record.epoch, str(record.resource_version), self.now(), record.sync_standbys
        )
        self.world.trace.add(
            self.name, f"Lease {'handed to ' + target if target else 'released'} at epoch {record.epoch}"
        )

    def _observe_node(self) -> None:
        now = self.now()
        lag = self._standby_lag() if self.chain is not ChainState.UP else None
        health = LocalHealth(
            node=self.name,
            # the broken variant never reads the Lease's list
            lease=None if self.world.variant == "ignore-sync-list" else self.lease,
            chain_down=self.chain is ChainState.DOWN,
            postgres_lag_seconds=lag,
        )
        self.eligibility = eligibility(health, MAX_LAG_SECONDS, now)

    def _standby_lag(self) -> float:
        """agent._standby_lag with streaming lag taken as 0: the sim's standbys are either
        streaming (caught up but for writes in flight) or cut off."""
        node = self.node
        stream = StandbyStream(self.world.receiving(node), replay_lag=0.0) if node.pg_role == "standby" else None
        lag, self.lag_when_streaming = standby_lag(self.lease, node.initialized, stream, self.lag_when_streaming)
        return lag

    def _keep_synchronous_standbys(self) -> Loop:
        node = self.node
        self.syncing = False
        if (
            self.chain is not ChainState.UP
            or self.acting_epoch() is None
            or node.pg_role != "primary"
            or self.lease is None
        ):
            return
        streaming = self.world.streaming_standbys(node)
        step = sync_step(self.lease.sync_standbys or (), self.sync.configured, streaming)
        self.syncing = step.publish is not None or step.configure is not None  # as agent.py
        if step.publish is not None:
            joining = set(step.publish) - set(self.lease.sync_standbys or ())
            if joining and self.world.variant != "agent-as-is" and not self.world.caught_up(node, joining):
                return  # proposed fix 3: a standby joins once it has every acknowledged write
            self.sync = dataclasses.replace(self.sync, to_publish=step.publish)
        elif step.configure is not None:
            if self.world.variant != "agent-as-is" and (
                self.lease_write_in_flight or self.sync.to_publish not in (None, self.lease.sync_standbys)
            ):
                return  # proposed fix 2: a list queued for the Lease must land first
            yield Sleep(self.world.configure_seconds())
            self.world.configure_synchronous(node, step.configure)
            self.sync = dataclasses.replace(self.sync, configured=step.configure)
