"""The simulated cluster: nodes (clocks, PostgreSQL data, replication, watchdog), the agents
on them, a writer, the operator's switchovers, faults drawn from a seed, and the checker.

Safety properties checked at the instant the state they depend on changes (which is every
step at which they could break):

- never two nodes acting as primary at the same instant (acting: from the first bring-up step
  to the end of the tear-down, a fence, or a power-off);
- every epoch has at most one primary node;
- a node that starts acting as primary holds every acknowledged write;
- a write is acknowledged only when every standby the Lease lists as synchronous has it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tandem.api.hacluster import LeaseTimings
from tandem_agent.core import Switchover, Timings
from tandem_lab.sim.agent import SimAgent, Sleep, WaitWake
from tandem_lab.sim.apiserver import ApiServer
from tandem_lab.sim.engine import Clock, Scheduler, Trace, Violation

VARIANTS = ("proposed", "agent-as-is", "eager-takeover", "ignore-sync-list")
FAULT_KINDS = (
    "freeze",
    "agent-crash",
    "power-cycle",
    "api-outage",
    "api-partition",
    "replication-cut",
    "slow-api",
    "clock-drift",
    "switchover",
)
DEFAULT_DURATION = 12.0  # the CLI's default; the unit test runs shorter seeds
WAL_SENDER_TIMEOUT = 3.0
WRITE_INTERVAL = 0.15  # mean seconds between client writes


@dataclass(frozen=True)
class Fault:
    """One fault; `node` None means the node the Lease names when the fault starts."""

    kind: str
    at: float
    seconds: float = 0.0
    node: str | None = None


@dataclass
class SimThread:
    """One of an agent's two loops; `waiting` while the runner waits on its wake-up event."""

    agent: SimAgent
    loop: object  # the generator, typed loosely: resumed with send/throw only
    waiting: bool = False
    wait_token: int = 0


@dataclass
class SimNode:
    name: str
    clock: Clock
    booted: bool = True
    incarnation: int = 0
    agent: SimAgent | None = None
    runner_thread: SimThread | None = None
    wake_set: bool = False
    frozen: bool = False
    parked: list[tuple[SimThread, object, Exception | None]] = field(default_factory=list)
    watchdog_token: int = 0
    volumes_joined: bool = False
    switchover_seen: Switchover | None = None
    intent_version: int = 0
    # PostgreSQL, which outlives the agent process but not a power-off:
    initialized: bool = False
    pg_role: str = "none"  # none | standby | primary | stopped
    serving: bool = False  # primary with the chain up: clients write here
    data: set[int] = field(default_factory=set)
    following: str | None = None
    walsenders: dict[str, float | None] = field(default_factory=dict)  # standby → broken at
    pg_configured: tuple[str, ...] = ()  # synchronous_standby_names
    configured_upto: int = 0  # the last write committed when it last changed
    pending: dict[int, set[str]] = field(default_factory=dict)  # write → confirmed by
    replication_cuts: int = 0


@dataclass(frozen=True)
class Outcome:
    seed: int
    trace: list[str]
    acknowledged: int
    epochs: int


class World:
    def __init__(
        self,
        seed: int,
        variant: str = "proposed",
        faults: list[Fault] | None = None,
        duration: float = DEFAULT_DURATION,
        node_count: int | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
        self.seed, self.variant, self.duration = seed, variant, duration
        self.rng = random.Random(seed)
        rng = self.rng
        defaults = LeaseTimings()
        self.timings = Timings.of(defaults)
        self.max_stall = defaults.max_stall_ms / 1000
        # Each clock's rate is within ±ε/2 of true time, so any two differ by at most ε.
        self.rate_error = defaults.clock_rate_error_permille / 1000 / 2
        self.scheduler = Scheduler()
        self.trace = Trace(self.scheduler)
        self.api = ApiServer(self.scheduler, rng, self.trace, loss=rng.uniform(0.0, 0.05))
        count = node_count or rng.choice((2, 2, 3))
        self.node_names = tuple(f"n{i}" for i in range(1, count + 1))
        self.nodes = {name: SimNode(name, Clock(rng.uniform(0, 1e4), self._drifted_rate())) for name in self.node_names}
        self.preferred_primary = self.node_names[0]
        self.slow_teardown_chance = rng.choice((0.0, 0.05, 0.2))
        self.acting: dict[str, int] = {}
        self.primary_of_epoch: dict[int, str] = {}
        self.acked: set[int] = set()
        self.next_write = 0
        self.switchover: Switchover | None = None
        self.outages = 0
        self.partitions: dict[str, int] = dict.fromkeys(self.node_names, 0)
        self.slow_periods = 0
        self.faults = faults if faults is not None else self._draw_faults()

    # --- running ----------------------------------------------------------------------------
    def run(self) -> Outcome:
        for name in self.node_names:
            self._start_agent(self.nodes[name])
        for fault in self.faults:
            self.scheduler.after(fault.at, lambda f=fault: self._inject(f))  # type: ignore[misc]
        self.scheduler.after(self.rng.expovariate(1 / WRITE_INTERVAL), self._write)
        self.scheduler.run_until(self.duration)
        return Outcome(self.seed, self.trace.lines, len(self.acked), max(self.primary_of_epoch, default=0))

    def violation(self, message: str) -> None:
        self.trace.add("CHECK", f"VIOLATION: {message}")
        raise Violation(self.seed, self.variant, message, self.trace.tail())

    def _drifted_rate(self) -> float:
        return 1.0 + self.rng.uniform(-self.rate_error, self.rate_error)

    # --- threads ----------------------------------------------------------------------------
    def _start_agent(self, node: SimNode) -> None:
        agent = SimAgent(self, node)
        node.agent, node.frozen, node.wake_set = agent, False, False
        node.parked.clear()
        keeper = SimThread(agent, agent.keeper())
        runner = SimThread(agent, agent.runner())
        node.runner_thread = runner
        self.trace.add(node.name, "agent started")
        self.scheduler.after(0, lambda: self._resume(keeper))
        self.scheduler.after(0, lambda: self._resume(runner))

    def _resume(self, thread: SimThread, value: object = None, error: Exception | None = None) -> None:
        node = thread.agent.node
        if node.agent is not thread.agent:
            return  # the process is gone
        if node.frozen:
            node.parked.append((thread, value, error))
            return
        loop = thread.loop
        try:
            op = loop.throw(error) if error is not None else loop.send(value)  # type: ignore[attr-defined]
        except StopIteration:
            return
        if type(op) is Sleep:
            stall = self.rng.uniform(0, self.max_stall) if self.rng.random() < 0.03 else 0.0
            self.scheduler.after(node.clock.true_duration(op.seconds) + stall, lambda: self._resume(thread))
        elif type(op) is WaitWake:
            if node.wake_set:
                node.wake_set = False
                self.scheduler.after(0, lambda: self._resume(thread))
                return
            thread.waiting = True
            thread.wait_token += 1
            token = thread.wait_token
            self.scheduler.after(node.clock.true_duration(op.seconds), lambda: self._wait_over(thread, token))
        else:
            self.api.call(node.name, op.request, lambda result, exc: self._resume(thread, result, exc))

    def _wait_over(self, thread: SimThread, token: int) -> None:
        if thread.waiting and token == thread.wait_token:
            thread.waiting = False
            self._resume(thread)

    def wake_runner(self, agent: SimAgent) -> None:
        thread = agent.node.runner_thread
        if thread is None or thread.agent is not agent:
            return
        if thread.waiting:
            thread.waiting = False
            thread.wait_token += 1
            self.scheduler.after(0, lambda: self._resume(thread))
        else:
            agent.node.wake_set = True

    # --- the node: watchdog, power ------------------------------------------------------------
    def pet_watchdog(self, node: SimNode, seconds: float) -> None:
        node.watchdog_token += 1
        token = node.watchdog_token

        def expire() -> None:
            if node.watchdog_token == token and node.booted:
                self.reboot(node, "watchdog expired")

        self.scheduler.after(node.clock.true_duration(seconds), expire)

    def disarm_watchdog(self, node: SimNode) -> None:
        node.watchdog_token += 1

    def reboot(self, node: SimNode, reason: str, down_for: float | None = None) -> None:
        """Power off now (a fence, the watchdog, or a power fault), boot again later."""
        self.trace.add(node.name, f"power off: {reason}")
        self.stop_serving(node)
        self.stop_acting(node, "powered off")
        node.agent, node.runner_thread, node.frozen, node.wake_set = None, None, False, False
        node.parked.clear()
        node.booted, node.volumes_joined = False, False
        node.incarnation += 1
        node.watchdog_token += 1
        self._leave_primary(node)
        if node.pg_role != "none":
            node.pg_role = "stopped"
        incarnation = node.incarnation
        self.scheduler.after(
            down_for if down_for is not None else self.rng.uniform(1.0, 3.0), lambda: self._boot(node, incarnation)
        )

    def _boot(self, node: SimNode, incarnation: int) -> None:
        if node.incarnation == incarnation and not node.booted:
            node.booted = True
            self.trace.add(node.name, "booted")
            self._start_agent(node)

    # --- acting as primary ------------------------------------------------------------------
    def start_acting(self, node: SimNode, epoch: int) -> None:
        if self.acting.get(node.name) == epoch:
            return
        others = {name: e for name, e in self.acting.items() if name != node.name}
        if others:
            self.violation(
                f"{node.name} starts acting as primary at epoch {epoch} while "
                + ", ".join(f"{name} acts at epoch {e}" for name, e in others.items())
            )
        owner = self.primary_of_epoch.get(epoch)
        if owner not in (None, node.name):
            self.violation(f"epoch {epoch} has two primaries: {owner} and {node.name}")
        missing = self.acked - node.data
        if missing:
            self.violation(
                f"{node.name} starts acting as primary at epoch {epoch} without "
                f"acknowledged writes {sorted(missing)[:5]} ({len(missing)} missing)"
            )
        self.acting[node.name] = epoch
        self.primary_of_epoch[epoch] = node.name
        self._leave_primary(node)
        node.pg_role, node.initialized = "primary", True
        self.trace.add(node.name, f"ACTING as primary at epoch {epoch}")

    def stop_acting(self, node: SimNode, why: str) -> None:
        if self.acting.pop(node.name, None) is not None:
            self.trace.add(node.name, f"stops acting as primary: {why}")

    def start_serving(self, node: SimNode) -> None:
        """PostgreSQL is primary: standbys that still follow it (it restarted under the same
        epoch) reconnect by themselves."""
        node.serving = True
        for standby in self.nodes.values():
            if standby.following == node.name and standby.pg_role == "standby":
                self.scheduler.after(self.rng.uniform(0.05, 0.5), lambda s=standby: self._reconnect(s, node))  # type: ignore[misc]

    def stop_serving(self, node: SimNode) -> None:
        """PostgreSQL stops: unacknowledged commits stay unacknowledged, standbys lose it."""
        node.serving = False
        node.pending.clear()
        node.walsenders.clear()

    def _leave_primary(self, node: SimNode) -> None:
        """This node stops being a standby: its primary's walsender notices only after
        wal_sender_timeout."""
        if node.following is not None:
            primary = self.nodes[node.following]
            if primary.walsenders.get(node.name, 0.0) is None:
                primary.walsenders[node.name] = self.scheduler.now
            node.following = None

    # --- durations ----------------------------------------------------------------------------
    def bring_up_steps(self) -> list[float]:
        return [self.rng.uniform(0.02, 0.3) for _ in range(3)]

    def tear_down_seconds(self, node: SimNode) -> float:
        if node.name not in self.acting:
            return 0.01
        if self.rng.random() < self.slow_teardown_chance:
            return self.rng.uniform(0.4, 2.0)  # overruns demotionTimeout: the fence must act
        return self.rng.uniform(0.02, 0.3)

    def rejoin_seconds(self) -> float:
        return self.rng.uniform(0.1, 0.8)

    def configure_seconds(self) -> float:
        return self.rng.uniform(0.005, 0.05)

    # --- replication ----------------------------------------------------------------------------
    def _linked(self, a: SimNode, b: SimNode) -> bool:
        return a.replication_cuts == 0 and b.replication_cuts == 0

    def rejoin(self, node: SimNode, primary_name: str) -> bool:
        """pg_rewind (or a fresh clone) from a serving primary, then stream from it."""
        primary = self.nodes.get(primary_name)
        if primary is None or not primary.serving or not self._linked(node, primary):
            return False
        self._leave_primary(node)
        node.data = set(primary.data)
        node.following, node.pg_role, node.initialized = primary_name, "standby", True
        primary.walsenders[node.name] = None
        return True

    def caught_up(self, primary: SimNode, names: set[str]) -> bool:
        """pg_stat_replication.flush_lsn of each standby has reached the primary's LSN of the
        moment synchronous_standby_names last changed: commits acknowledged before that did
        not wait for it."""
        before = {w for w in primary.data if w <= primary.configured_upto}
        return all(before <= self.nodes[name].data for name in sorted(names))

    def receiving(self, node: SimNode) -> bool:
        if node.following is None:
            return False
        primary = self.nodes[node.following]
        return primary.serving and node.name in primary.walsenders and primary.walsenders[node.name] is None

    def streaming_standbys(self, primary: SimNode) -> tuple[str, ...]:
        """pg_stat_replication: a broken stream shows until wal_sender_timeout."""
        now = self.scheduler.now
        for name, broken in list(primary.walsenders.items()):
            if broken is not None and now >= broken + WAL_SENDER_TIMEOUT:
                del primary.walsenders[name]
        return tuple(sorted(primary.walsenders))

    def configure_synchronous(self, primary: SimNode, names: tuple[str, ...]) -> None:
        primary.pg_configured = names
        primary.configured_upto = self.next_write
        for write in sorted(primary.pending):
            self._try_ack(primary, write)

    def _cut_replication(self, node: SimNode) -> None:
        node.replication_cuts += 1
        if node.replication_cuts > 1:
            return
        now = self.scheduler.now
        for other in self.nodes.values():
            if other is node:
                for name, broken in other.walsenders.items():
                    if broken is None:
                        other.walsenders[name] = now
            elif other.walsenders.get(node.name, 0.0) is None:
                other.walsenders[node.name] = now

    def _heal_replication(self, node: SimNode) -> None:
        node.replication_cuts -= 1
        if node.replication_cuts:
            return
        for standby in self.nodes.values():
            if standby.following is not None and standby.pg_role == "standby":
                primary = self.nodes[standby.following]
                if node in (standby, primary):
                    self.scheduler.after(
                        self.rng.uniform(0.05, 0.5),
                        lambda s=standby, p=primary: self._reconnect(s, p),  # type: ignore[misc]
                    )

    def _reconnect(self, standby: SimNode, primary: SimNode) -> None:
        """The walreceiver reconnects and catches up from where it stopped."""
        if standby.following == primary.name and primary.serving and standby.booted and self._linked(standby, primary):
            standby.data |= primary.data
            primary.walsenders[standby.name] = None

    # --- the writer -------------------------------------------------------------------------
    def _write(self) -> None:
        self.scheduler.after(self.rng.expovariate(1 / WRITE_INTERVAL), self._write)
        for primary in self.nodes.values():
            if primary.serving:
                self.next_write += 1
                self._commit(primary, self.next_write)

    def _commit(self, primary: SimNode, write: int) -> None:
        primary.data.add(write)
        primary.pending[write] = set()
        for name, broken in primary.walsenders.items():
            if broken is None:
                self.scheduler.after(
                    self.rng.uniform(0.001, 0.01),
                    lambda s=self.nodes[name]: self._deliver(primary, s, write),  # type: ignore[misc]
                )
        self._try_ack(primary, write)

    def _stream_healthy(self, primary: SimNode, standby: SimNode) -> bool:
        return (
            standby.booted
            and standby.following == primary.name
            and standby.name in primary.walsenders
            and primary.walsenders[standby.name] is None
        )

    def _deliver(self, primary: SimNode, standby: SimNode, write: int) -> None:
        if self._stream_healthy(primary, standby):
            standby.data.add(write)
            self.scheduler.after(self.rng.uniform(0.001, 0.01), lambda: self._confirm(primary, standby, write))

    def _confirm(self, primary: SimNode, standby: SimNode, write: int) -> None:
        if primary.serving and write in primary.pending and self._stream_healthy(primary, standby):
            primary.pending[write].add(standby.name)
            self._try_ack(primary, write)

    def _try_ack(self, primary: SimNode, write: int) -> None:
        if not set(primary.pg_configured) <= primary.pending[write]:
            return
        del primary.pending[write]
        self.acked.add(write)
        lease = self.api.lease
        if lease.holder == primary.name:
            for name in lease.sync_standbys or ():
                if name != primary.name and write not in self.nodes[name].data:
                    self.violation(
                        f"write {write} acknowledged by {primary.name} although "
                        f"{name}, listed as synchronous on the Lease, lacks it"
                    )

    # --- the operator's switchovers -------------------------------------------------------------
    def _request_switchover(self, target: str | None) -> None:
        lease = self.api.lease
        if self.switchover is not None or lease.holder is None or self.api.outage:
            return
        target = target or self.rng.choice([n for n in self.node_names if n != lease.holder])
        if target == lease.holder or target not in (lease.sync_standbys or ()):
            self.trace.add("operator", f"switchover to {target} refused: not a synchronous standby on the Lease")
            return
        self.switchover = Switchover(target=target, from_epoch=lease.epoch)
        self.trace.add("operator", f"switchover to {target} Pending from epoch {lease.epoch}")
        self._publish_intent(self.switchover)
        self.scheduler.after(0.25, self._watch_switchover)

    def _watch_switchover(self) -> None:
        if self.switchover is None:
            return
        lease = self.api.lease
        if self.api.outage:
            self.scheduler.after(0.25, self._watch_switchover)
            return
        if lease.epoch <= self.switchover.from_epoch:
            if self.variant == "agent-as-is" or self.switchover.target in (lease.sync_standbys or ()):
                self.scheduler.after(0.25, self._watch_switchover)
                return
            self.trace.add(
                "operator",
                f"switchover to {self.switchover.target} Refused: it left "
                "the synchronous standbys (proposed operator change)",
            )
        else:
            self.trace.add("operator", f"switchover ended at epoch {lease.epoch}")
        self.switchover = None
        self._publish_intent(None)

    def _publish_intent(self, switchover: Switchover | None) -> None:
        """The HACluster's status reaches each agent through its watch, with a delay."""
        for node in self.nodes.values():
            node.intent_version += 1
            self._deliver_intent(node, switchover, node.intent_version)

    def _deliver_intent(self, node: SimNode, switchover: Switchover | None, version: int) -> None:
        def arrive() -> None:
            if version != node.intent_version:
                return
            if self.api.reachable(node.name):
                node.switchover_seen = switchover
                if node.agent is not None:  # as agent.py: a new intent wakes the runner
                    self.wake_runner(node.agent)
            else:
                self._deliver_intent(node, switchover, version)

        self.scheduler.after(self.rng.uniform(0.01, 0.3), arrive)

    # --- faults -----------------------------------------------------------------------------
    def _draw_faults(self) -> list[Fault]:
        rng = self.rng
        faults = []
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice(FAULT_KINDS)
            node = rng.choice((None, *self.node_names))
            faults.append(
                Fault(kind, at=rng.uniform(1.0, self.duration - 2.0), seconds=rng.uniform(0.3, 6.0), node=node)
            )
        return faults

    def _inject(self, fault: Fault) -> None:
        name = fault.node or self.api.lease.holder or self.preferred_primary
        node = self.nodes[name]
        self.trace.add("fault", f"{fault.kind} {name} for {fault.seconds:.2f}s")
        seconds = fault.seconds
        after = self.scheduler.after
        if fault.kind == "freeze":
            agent = node.agent
            if agent is None or node.frozen:
                return
            node.frozen = True
            after(seconds, lambda: self._thaw(node, agent))
        elif fault.kind == "agent-crash":
            if node.agent is None:
                return
            node.agent, node.runner_thread = None, None
            incarnation = node.incarnation
            after(seconds, lambda: self._restart_agent(node, incarnation))
        elif fault.kind == "power-cycle":
            if node.booted:
                self.reboot(node, "power fault", down_for=seconds)
        elif fault.kind == "api-outage":
            self._set_outage(+1)
            after(seconds, lambda: self._set_outage(-1))
        elif fault.kind == "api-partition":
            self._set_partition(name, +1)
            after(seconds, lambda: self._set_partition(name, -1))
        elif fault.kind == "replication-cut":
            self._cut_replication(node)
            after(seconds, lambda: self._heal_replication(node))
        elif fault.kind == "slow-api":
            self._set_slow(+1)
            after(seconds, lambda: self._set_slow(-1))
        elif fault.kind == "clock-drift":
            node.clock.set_rate(self.scheduler.now, self._drifted_rate())
        elif fault.kind == "switchover":
            self._request_switchover(fault.node)
        else:
            raise ValueError(f"unknown fault {fault.kind!r}")

    def _thaw(self, node: SimNode, agent: SimAgent) -> None:
        if node.agent is agent and node.frozen:
            self.trace.add("fault", f"thaw {node.name}")
            node.frozen = False
            parked, node.parked = node.parked, []
            for thread, value, error in parked:
                self.scheduler.after(0, lambda t=thread, v=value, e=error: self._resume(t, v, e))  # type: ignore[misc]

    def _restart_agent(self, node: SimNode, incarnation: int) -> None:
        if node.booted and node.incarnation == incarnation and node.agent is None:
            self._start_agent(node)

    def _set_outage(self, delta: int) -> None:
        self.outages += delta
        self.api.outage = self.outages > 0

    def _set_partition(self, name: str, delta: int) -> None:
        self.partitions[name] += delta
        if self.partitions[name]:
            self.api.cut_off.add(name)
        else:
            self.api.cut_off.discard(name)

    def _set_slow(self, delta: int) -> None:
        self.slow_periods += delta
        self.api.slow = self.slow_periods > 0


def simulate(
    seed: int,
    variant: str = "proposed",
    faults: list[Fault] | None = None,
    duration: float = DEFAULT_DURATION,
    node_count: int | None = None,
) -> Outcome:
    """Run one seed; raises Violation (with the seed and the trace's tail) when a safety
    property breaks."""
    return World(seed, variant, faults, duration, node_count).run()
