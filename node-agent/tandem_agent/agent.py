"""One HACluster on one node: the Lease keeper and the chain runner, each in its own thread.

Both loops follow the same shape: observe into an immutable snapshot, ask the pure core
(`tandem_agent.core`) for a decision with a reason, execute it with a few driver calls. The
keeper owns the Lease timing; the runner never writes the Lease except to hand it over or
release it after a complete tear-down.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tandem.api.common import (
    ACCEPT_DATA_LOSS_ANNOTATION,
    CLEANUP_ANNOTATION,
    FORCE_FAILOVER_ANNOTATION,
    FORCE_FAILOVER_ID_ANNOTATION,
)
from tandem.api.hacluster import INVALID_SPEC
from tandem.kube.errors import Conflict, KubeError, Unavailable
from tandem.kube.lease import LeaseRecord
from tandem_agent.chain import Aborted, ChainRunner, ResolvedCluster, StepFailed
from tandem_agent.core import (
    FORCED_FAILOVER,
    IDLE_PAUSE_SECONDS,
    NOT_OBSERVED_YET,
    Action,
    ChainSnapshot,
    ChainState,
    Decision,
    Eligibility,
    FailedResource,
    ForceRequest,
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
    departure_confirmed,
    eligibility,
    ineligible_report,
    lease_decision,
    may_act,
    monitoring,
    not_caught_up,
    report_role,
    runner_pause,
    slow_renew,
    standby_lag,
    sync_for_lease_write,
    sync_step,
)
from tandem_agent.drivers.base import Outcome
from tandem_agent.drivers.postgres import parse_lsn
from tandem_agent.kube import Kube
from tandem_agent.metrics import ClusterEvents
from tandem_agent.monitor import ChainMonitor
from tandem_agent.spec_change import spec_change, verdict
from tandem_agent.volumes import resynced_from
from tandem_agent.watchdog import Watchdog

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
POSTGRES_MEMBER = "PostgreSQL/postgresql"
DRBD_OBSERVE_SECONDS = 0.5
# How old a report's state of a primary service may be while the chain is down here: nothing
# of this agent's starts it then, and every start or stop reads it afresh after.
IDLE_SERVICE_SECONDS = 10.0
# How each kind of member is repaired in place, for the recovery's message.
REPAIRED = {
    "Volume": "promoted again",
    "Mount": "mounted again",
    "BindMount": "bound again",
    "FloatingIP": "address added again and announced",
    "PostgreSQL": "restarted",
    "Service": "restarted",
}


def repaired_how(kind: str, outcome: Outcome) -> str:
    """What a repair in place did, for the recovery's message. One that found nothing to
    change says so (the problem had gone by itself, or it is one a repair here cannot mend:
    the next checks tell, and restartLimit bounds the attempts)."""
    if outcome.changed:
        how = f"{REPAIRED.get(kind, 'repaired')} in place"
        # A mount is repaired one of two ways (mounted, or remounted with what is above it).
        return f"{how}: {outcome.detail}" if kind == "Mount" and outcome.detail else how
    return f"nothing to repair in place ({outcome.detail or 'no change'})"


@dataclass(frozen=True)
class ClusterIntent:
    """What the agent reads of the HACluster besides the chain: intent written by people or
    the operator."""

    preferred_primary: str | None
    standby_nodes: tuple[str, ...]
    switchover: Switchover | None
    deleting: bool
    generation: int
    dependency_ready: bool | None = None
    dependency_detail: str = ""
    eligible_peers: tuple[str, ...] = ()  # other nodes whose fresh report says eligible
    paused: bool = False  # spec.paused (maintenance mode)
    cleanup: str | None = None  # the tandem.dev/cleanup annotation: a new value forgets failures
    force_request: str | None = None  # id of a forced failover to this node it may act on
    force_report: dict[str, Any] | None = None  # this node's report of the last one it settled
    # This node's report of the split brains it recovered from (its splitBrainRecoveries).
    split_brain_recoveries: tuple[dict[str, Any], ...] = ()


# A peer's report older than this no longer counts as "it could take over" (the agents
# heartbeat every HEARTBEAT_SECONDS; the operator judges staleness the same way).
PEER_REPORT_FRESH_SECONDS = 90.0


def intent_of(obj: dict[str, Any], node: str) -> ClusterIntent:
    spec, status, meta = obj.get("spec", {}), obj.get("status") or {}, obj["metadata"]
    sw = status.get("switchover")
    switchover = (
        Switchover(target=sw["target"], from_epoch=int(sw["fromEpoch"]))
        if sw and sw.get("phase") == "Pending"
        else None
    )
    reports = status.get("nodes") or []
    own: dict[str, Any] = next((r for r in reports if r.get("name") == node), {})
    return ClusterIntent(
        preferred_primary=spec.get("primary"),
        standby_nodes=tuple(spec.get("standbyNodes", [])),
        switchover=switchover,
        deleting=bool(meta.get("deletionTimestamp")),
        generation=int(meta.get("generation", 0)),
        paused=bool(spec.get("paused")),
        cleanup=(meta.get("annotations") or {}).get(CLEANUP_ANNOTATION),
        eligible_peers=eligible_peers(reports, node, dt.datetime.now(dt.UTC)),
        force_request=force_request(meta.get("annotations") or {}, status.get("forcedFailover") or {}, node),
        force_report=own.get("forcedFailover"),
        split_brain_recoveries=tuple(own.get("splitBrainRecoveries") or ()),
    )


def force_request(annotations: dict[str, str], recorded: dict[str, Any], node: str) -> str | None:
    """The id of a forced failover to `node` this agent may act on: annotated, with the
    data loss accepted, and Pending in status.forcedFailover (the operator judged it) under
    that same id, so an annotation left in place never acts again."""
    request_id = annotations.get(FORCE_FAILOVER_ID_ANNOTATION, "").strip()
    if (
        annotations.get(FORCE_FAILOVER_ANNOTATION, "").strip() != node
        or not request_id
        or annotations.get(ACCEPT_DATA_LOSS_ANNOTATION, "").strip() != "true"
    ):
        return None
    if recorded.get("requestId") != request_id or recorded.get("target") != node or recorded.get("phase") != "Pending":
        return None
    return request_id


def force_pending(shared: Shared) -> str | None:
    """The id of the forced failover to this node not settled yet."""
    request = shared.intent.force_request
    if request is None or request == (shared.force_report or {}).get("requestId"):
        return None
    return request


def eligible_peers(reports: list[dict[str, Any]], node: str, now: dt.datetime) -> tuple[str, ...]:
    """The other nodes whose report, fresh enough to believe, says they may take the Lease."""
    found = []
    for report in reports:
        beat = report.get("heartbeatTime")
        if report.get("name") == node or report.get("eligible") is not True or not beat:
            continue
        try:
            at = dt.datetime.fromisoformat(str(beat).replace("Z", "+00:00"))
        except ValueError:
            continue
        if (now - at).total_seconds() <= PEER_REPORT_FRESH_SECONDS:
            found.append(str(report["name"]))
    return tuple(sorted(found))


@dataclass(frozen=True)
class Shared:
    """What the agent's threads share: the keeper, the runner, the monitor, and the main
    thread and metrics scrapes that read the agent. It is immutable; `ClusterAgent._lock`
    guards the one reference to it, so a thread reads a consistent copy in one step
    (`ClusterAgent.shared`) and writes a new one under the lock (`ClusterAgent._change`).

    Thread-local, on the ClusterAgent itself: the keeper's `last_takeover_seen_at` and
    `force_seen`; the runner's `failed`, `restarts`, `backoff_until`, `stepping_down(_for)`,
    `lag_when_streaming`, `cleanup_seen`, `split_brain`, `last_recovery` and last report. The
    ChainRunner's state is written by the runner alone and read elsewhere one attribute at a
    time (the keeper must see a bring-up or tear-down under way, not its end)."""

    intent: ClusterIntent
    cluster: ResolvedCluster
    timings: Timings
    monitor: ChainMonitor
    lease: LeaseView | None = None
    holding: Holding | None = None
    eligibility: Eligibility = Eligibility(False, NOT_OBSERVED_YET)
    lease_tried: bool = False  # the keeper tried the Lease once since the start
    sync: SyncLists = SyncLists()
    # Forced failovers: the last one settled here (from this node's own report, so that a
    # restart does not act on it again), and the epoch taken by it.
    force_report: dict[str, Any] | None = None
    forced_epoch: int | None = None
    # The newest spec, built but not applied yet (with its HACluster generation), and the
    # generation this node runs; `pending_change` says why the newest waits.
    offered: tuple[ChainRunner, int] | None = None
    applied_generation: int = 0
    pending_change: str = ""
    postgres_seen: Any = None  # PostgreSQL's status at the last report, for metrics
    decisions: Mapping[str, Decision] = field(default_factory=dict)  # each loop's last one


class ClusterAgent:
    """Runs one HACluster on this node until `stop()`."""

    def __init__(  # noqa: PLR0917
        self,
        kube: Kube,
        cluster: ResolvedCluster,
        runner: ChainRunner,
        intent: ClusterIntent,
        fence: Callable[[str], None],
        watchdog: Watchdog,
        poll_interval: float = 0.1,
    ) -> None:
        self.kube = kube
        self.node = kube.node
        self.name = cluster.name  # a spec change keeps it
        self.runner = runner
        self.fence = fence
        self.watchdog = watchdog
        self.poll_interval = poll_interval
        self._lock = threading.Lock()  # guards `_shared`, and nothing else
        report = intent.force_report or {}
        self._shared = Shared(
            intent=intent,
            cluster=cluster,
            timings=Timings.of(cluster.spec.leases),
            monitor=ChainMonitor(runner.monitored()),
            force_report=intent.force_report,
            forced_epoch=report.get("epoch") if report.get("phase") == "Completed" else None,
            applied_generation=intent.generation,
        )
        self._stop = threading.Event()
        self._wake_runner = threading.Event()
        self._runner_pause = poll_interval  # core.runner_pause of its last tick
        self._syncing = False  # the last tick found a sync_step due
        self._acting_seen: int | None = None  # the keeper's last acting_epoch()
        # The keeper's own.
        self.last_takeover_seen_at: float | None = None
        self.force_seen: ForceRequest | None = None  # the forced failover being acted on
        # The runner's own.
        self.failed: tuple[FailedResource, ...] = ()
        self.last_recovery: dict[str, Any] | None = None
        self.stepping_down: str | None = None
        self.stepping_down_for: FailedResource | None = None
        self.lag_when_streaming: float | None = None
        self.restarts: list[float] = []
        self.backoff_until: float | None = None
        self.cleanup_seen = intent.cleanup  # a request present at start needs no action
        # Per DRBD volume, the last split brain recovered from here by discarding this node's
        # changes (its report's splitBrainRecoveries, kept across restarts through it).
        self.split_brain: dict[str, dict[str, Any]] = {
            r["volume"]: r for r in intent.split_brain_recoveries if r.get("volume")
        }
        self.events = ClusterEvents(kube.namespace, cluster.name, self.node)
        self._last_report: dict[str, Any] | None = None
        self._last_report_at = 0.0
        self._threads = [
            threading.Thread(
                target=self._loop,
                args=("keeper", self.keeper_tick, self._stop, lambda: self.poll_interval),
                name=f"keeper-{cluster.name}",
                daemon=True,
            ),
            threading.Thread(
                target=self._loop,
                args=("runner", self.runner_tick, self._wake_runner, lambda: self._runner_pause),
                name=f"runner-{cluster.name}",
                daemon=True,
            ),
            # Its own loop: a runner step that blocks (a repair, a hung PostgreSQL answering
            # a status read slowly) never delays noticing the next failure. Idle, it has
            # nothing to collect: it looks again after IDLE_PAUSE_SECONDS.
            threading.Thread(
                target=self._loop,
                args=(
                    "monitor",
                    self.monitor_tick,
                    self._stop,
                    lambda: self.poll_interval if self.monitor.active else IDLE_PAUSE_SECONDS,
                ),
                name=f"monitor-{cluster.name}",
                daemon=True,
            ),
        ]

    # --- the shared state -------------------------------------------------------------------
    def shared(self) -> Shared:
        """A consistent copy of what the threads share."""
        with self._lock:
            return self._shared

    def _change(self, **changes: Any) -> Shared:
        """Write fields of the shared state, in one step; the new state."""
        with self._lock:
            self._shared = replace(self._shared, **changes)
            return self._shared

    @property
    def cluster(self) -> ResolvedCluster:
        return self.shared().cluster

    @property
    def monitor(self) -> ChainMonitor:
        return self.shared().monitor

    @property
    def last_decisions(self) -> Mapping[str, Decision]:
        return self.shared().decisions

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the loops; a primary steps down cleanly (tear down, then release the Lease),
        because once this agent stops renewing, the other node will take over."""
        self._stop.set()
        self._wake_runner.set()
        for thread in self._threads:
            thread.join(timeout=30)
        epoch = self.acting_epoch()
        if self.shared().intent.paused:
            # Maintenance (an agent upgrade): what runs stays and the Lease keeps naming this
            # node, so the next agent process reclaims it; nobody takes it meanwhile, since
            # every node is paused. The watchdog would fence the node before that process is
            # up: disarm it (docs/install.md, "Upgrading without a switchover", says what that costs).
            self.watchdog.disarm()
            log.info("%s: paused: leaving the chain as it is and the Lease with this node", self.name)
            return
        try:
            if self.runner.state is not ChainState.DOWN:
                self.runner.tear_down()
                self.watchdog.disarm()
            if epoch is not None:
                self._give_lease(None, epoch, Action.RELEASE)
        except Exception as exc:
            log.error("%s: clean step-down failed: %s", self.name, exc)

    def update_intent(self, intent: ClusterIntent) -> None:
        if intent != self.shared().intent:
            self._change(intent=intent)
            self._wake_runner.set()

    def offer_spec(self, candidate: ChainRunner, generation: int) -> None:
        """A newer spec, validated and built (no I/O yet): the runner applies it when
        `spec_change.verdict` allows."""
        self._change(offered=(candidate, generation))
        self._wake_runner.set()

    def refuse_spec(self, problem: str) -> None:
        """The newest spec cannot be built: keep running the last good one and say why."""
        with self._lock:
            self._shared = replace(
                self._shared,
                offered=None,
                pending_change=f"{INVALID_SPEC}: {problem}; this node keeps running generation "
                f"{self._shared.applied_generation}",
            )

    def _loop(self, name: str, tick: Callable[[], None], wake: threading.Event, pause: Callable[[], float]) -> None:
        while not self._stop.is_set():
            try:
                tick()
            except Exception:
                log.exception("%s %s: unexpected error", self.name, name)
            wake.wait(pause())
            if wake is not self._stop:
                wake.clear()

    def _note(self, loop: str, decision: Decision) -> None:
        with self._lock:
            previous = self._shared.decisions.get(loop)
            if decision != previous:
                self._shared = replace(self._shared, decisions={**self._shared.decisions, loop: decision})
        changed = previous is None or (previous.action, previous.reason) != (decision.action, decision.reason)
        routine = {Action.WAIT, Action.RENEW}
        quiet = decision.action in routine and (previous is None or previous.action in routine)
        if changed and not quiet:
            log.info("%s %s: %s (%s)", self.name, loop, decision.action.value, decision.reason)

    # --- the Lease keeper -----------------------------------------------------------------
    def _observe(self, record: LeaseRecord | None, now: float) -> None:
        """Remember the Lease, restarting the observation timer only when it changed. The
        keeper reads after its writes, so what it reads shows whether a write landed."""
        with self._lock:
            shared = self._shared
            sync = replace(shared.sync, in_flight=None)
            if record is None:
                self._shared = replace(shared, lease=None, sync=sync)
                return
            old = shared.lease
            same = old is not None and (old.holder, old.epoch, old.resource_version) == (
                record.holder,
                record.epoch,
                record.resource_version,
            )
            if old is not None and record.epoch > old.epoch and record.holder:
                self.last_takeover_seen_at = now
            lease = (
                old
                if same
                else LeaseView(record.holder, record.epoch, record.resource_version, now, record.sync_standbys)
            )
            self._shared = replace(shared, lease=lease, sync=sync)
        if not same:
            self._wake_runner.set()

    def keeper_tick(self) -> None:
        now = time.monotonic()
        shared = self.shared()
        if shared.holding is None or shared.lease is None or shared.lease.holder != self.node:
            try:
                self._observe(self.kube.read_lease(self.name), now)
            except KubeError as exc:
                log.debug("lease read failed: %s", exc)
        force = self._force(now)
        shared = self.shared()
        intent = shared.intent
        snapshot = LeaseSnapshot(
            now=time.monotonic(),
            node=self.node,
            timings=shared.timings,
            lease=shared.lease,
            holding=shared.holding,
            chain_down=not self._chain_may_be_up(shared),
            eligibility=shared.eligibility,
            preferred_primary=intent.preferred_primary,
            min_failover_interval=float(shared.cluster.spec.failover.min_failover_interval_seconds),
            last_takeover_seen_at=self.last_takeover_seen_at,
            deleting=intent.deleting,
            sync_to_publish=shared.sync.to_publish,
            paused=intent.paused,
            force=force,
            switchover=intent.switchover,
        )
        decision = lease_decision(snapshot)
        self._note("keeper", decision)
        if decision.action is Action.FORCE_REFUSED:
            self._settle_force("Refused", decision.reason)
        elif decision.action is Action.RENEW:
            self._write_lease(decision.epoch or 0, acquire=False, cause=decision.cause)
        elif decision.action is Action.ACQUIRE:
            self._write_lease(decision.epoch or 0, acquire=True, cause=decision.cause)
        elif decision.action is Action.FORGET_HOLDING:
            self._change(holding=None)
        elif decision.action is Action.FENCE:
            self.fence(decision.reason)
        if not shared.lease_tried:
            self._change(lease_tried=True)
        acting = self.acting_epoch()
        if acting != self._acting_seen:  # gained or lost the right to act: the runner must know now
            self._acting_seen = acting
            self._wake_runner.set()

    def _write_lease(self, epoch: int, acquire: bool, cause: str = "") -> None:
        """Renew or take the Lease; `cause`, when set, makes a success a takeover."""
        sent_at = time.monotonic()
        with self._lock:
            sync, lists = sync_for_lease_write(
                self._shared.sync, Action.ACQUIRE if acquire else Action.RENEW, self.runner.postgres is not None
            )
            self._shared = replace(self._shared, sync=lists)
        try:
            with self.events.lease_write(renew=not acquire):
                record = self.kube.write_lease(self.name, self.node, epoch, acquire=acquire, sync_standbys=sync)
        except Conflict:
            # Someone else wrote the Lease since we read it: read it from the API server (the
            # watch was behind) before anything else.
            log.info(
                "%s: %s the Lease at epoch %d refused (HTTP 409): someone else wrote it first",
                self.name,
                "taking" if acquire else "renewing",
                epoch,
            )
            self._observe(self._safe_read(), time.monotonic())
            return
        except KubeError as exc:
            log.debug("lease write failed: %s", exc)
            return
        with self._lock:
            previous = self._shared.holding
            self._shared = shared = replace(
                self._shared,
                holding=Holding(epoch=record.epoch, last_renew_sent_at=sent_at),
                lease=LeaseView(record.holder, record.epoch, record.resource_version, sent_at, record.sync_standbys),
                sync=replace(self._shared.sync, in_flight=None),
            )
        if previous is not None and not acquire:
            slow = slow_renew(shared.timings, sent_at - previous.last_renew_sent_at, time.monotonic() - sent_at)
            if slow is not None:
                log.warning("%s: %s", self.name, slow)
        if self._chain_may_be_up(shared):
            self._pet_watchdog()
        self._wake_runner.set()
        if cause:
            self.events.took_over(cause)
        if cause == FORCED_FAILOVER:
            self._change(forced_epoch=record.epoch)
            self._settle_force(
                "Completed", f"took the Lease at epoch {record.epoch} by a forced failover", epoch=record.epoch
            )
        if acquire:
            log.info("%s: took the Lease at epoch %d", self.name, record.epoch)

    def _force(self, now: float) -> ForceRequest | None:
        """The forced failover to act on. Only the keeper calls it, with the time of its Lease
        read, and only once it has read the Lease: the request counts as seen no earlier than
        the Lease it compares it with, so a first read after a restart is no change of the
        Lease."""
        shared = self.shared()
        request = force_pending(shared)
        if request is None or shared.lease is None:
            return None
        if self.force_seen is None or self.force_seen.request_id != request:
            self.force_seen = ForceRequest(request, now)
            log.warning(
                "%s: forced failover to this node requested (request %s), data loss accepted",
                self.name,
                request,
            )
        return self.force_seen

    def _settle_force(self, phase: str, message: str, epoch: int | None = None) -> None:
        """Record how the forced failover ended, in this node's report: it is never acted on
        again, after a restart neither."""
        seen = self.force_seen
        if seen is None:
            return
        self._change(
            force_report={"requestId": seen.request_id, "phase": phase, "message": message[:1024]}
            | ({"epoch": epoch} if epoch is not None else {})
        )
        self.force_seen = None
        log.warning("%s: forced failover %s %s: %s", self.name, seen.request_id, phase.lower(), message)

    def _pet_watchdog(self) -> None:
        """Tell the watchdog when this agent's own fence deadline is: renewDeadline +
        demotionTimeout after the last successful renew was sent."""
        shared = self.shared()
        if shared.holding is None:
            return
        timings = shared.timings
        deadline = shared.holding.last_renew_sent_at + timings.renew_deadline + timings.demotion_timeout
        self.watchdog.pet(max(0.0, deadline - time.monotonic()))

    def _chain_may_be_up(self, shared: Shared) -> bool:
        return chain_may_be_up(self.runner.state, shared.intent.paused, shared.holding)

    def _safe_read(self) -> LeaseRecord | None:
        try:
            return self.kube.read_lease_now(self.name)
        except KubeError:
            return None

    def acting_epoch(self) -> int | None:
        shared = self.shared()
        if may_act(shared.holding, shared.lease, self.node, shared.timings, time.monotonic()):
            assert shared.holding is not None
            return shared.holding.epoch
        return None

    # --- the chain runner -----------------------------------------------------------------
    def runner_tick(self) -> None:
        """Decide on what was observed at the end of the last tick, act, then observe: a
        decision (say, to bring the chain up after winning the Lease) never waits for an
        observation."""
        self._apply_offered_spec()
        now = time.monotonic()
        self.runner.refresh_credentials(now)
        shared = self.shared()
        lease, intent, policy = shared.lease, shared.intent, shared.cluster.spec.failover
        if intent.cleanup != self.cleanup_seen:
            self._cleanup(intent.cleanup)
        self.restarts = [t for t in self.restarts if now - t < policy.restart_window_seconds]
        self.monitor.forget_repairs(now - policy.restart_window_seconds)
        snapshot = ChainSnapshot(
            now=now,
            node=self.node,
            acting_epoch=self.acting_epoch(),
            lease_holder=lease.holder if lease else None,
            lease_epoch=lease.epoch if lease else None,
            chain=self.runner.state,
            chain_epoch=self.runner.epoch,
            replicating=lease is not None
            and lease.holder is not None
            and self.runner.following == (lease.holder, lease.epoch),
            volumes_joined=self.runner.volumes_joined(),
            failed=self.failed,
            restarts_in_window=len(self.restarts),
            restart_limit=policy.restart_limit,
            in_standby_mode=self.node in intent.standby_nodes,
            switchover=intent.switchover,
            deleting=intent.deleting,
            dependency_ready=intent.dependency_ready,
            dependency_detail=intent.dependency_detail,
            nodes=tuple(n.name for n in shared.cluster.spec.nodes),
            stepping_down=self.stepping_down,
            restart_window=float(policy.restart_window_seconds),
            eligible_peers=intent.eligible_peers,
            sync_standbys=lease.sync_standbys if lease else None,
            paused=intent.paused,
            forced_epoch=shared.forced_epoch,
            found_running=self._found_running(lease, intent.paused),
            standalone=self.runner.standalone(),
            lease_tried=shared.lease_tried,
        )
        decision = chain_decision(snapshot)
        if decision.failed_member is not None:
            self.stepping_down, self.stepping_down_for = decision.stepping_down, decision.failed_member
        self._note("runner", decision)
        message = decision.reason
        try:
            self._execute(decision)
        except (StepFailed, Aborted) as exc:
            message = f"{decision.action.value} stopped: {exc}"
            log.warning("%s: %s", self.name, message)
        except Exception as exc:
            message = f"{decision.action.value} failed: {exc}"
            log.warning("%s: %s", self.name, message)
        if problem := self.runner.problem():
            message = f"{problem}; {message}"
        self.runner.ensure_everywhere_services()
        # PostgreSQL's status, read once a tick for eligibility, the synchronous standbys and the
        # report (a query each time).
        pg = self._postgres_status()
        self._observe_node(pg)
        pg = self._keep_synchronous_standbys(pg)
        self._runner_pause = runner_pause(decision, self.poll_interval, self._syncing)
        self._report(decision, message, pg)

    def _apply_offered_spec(self) -> None:
        """Apply the newest spec if `spec_change.verdict` allows it now (live on a running
        chain, or anything once the chain is down here); otherwise record why it waits."""
        shared = self.shared()
        offered = shared.offered
        if offered is None:
            return
        candidate, generation = offered
        new = candidate.cluster
        old = shared.cluster
        change = spec_change(old, new)
        judged = verdict(change, chain_down=self.runner.state is ChainState.DOWN, paused=shared.intent.paused)
        if not judged.apply:
            if judged.pending != shared.pending_change:
                log.info("%s: generation %d not applied yet: %s", old.name, generation, judged.pending)
            self._change(pending_change=judged.pending)
            return
        try:
            done = self.runner.apply_spec(candidate)
        except Exception as exc:
            self._change(pending_change=f"ApplyFailed: {exc}; retried")
            log.warning("%s: applying generation %d failed (retried): %s", old.name, generation, exc)
            return
        # The monitors start afresh on the new members; failures seen by the old ones (of a
        # member that may be gone now) are forgotten with them.
        monitor = ChainMonitor(self.runner.monitored())
        with self._lock:
            self._shared = replace(
                self._shared,
                cluster=new,
                timings=Timings.of(new.spec.leases),
                monitor=monitor,
                applied_generation=generation,
                pending_change="",
                offered=None if self._shared.offered is offered else self._shared.offered,
            )
        self.failed = ()
        log.log(
            logging.DEBUG if change.empty else logging.INFO,
            "%s: generation %d applied (%s)%s",
            new.name,
            generation,
            ", ".join(change.live + change.deferred) or "no change to the chain",
            f": {'; '.join(done)}" if done else "",
        )

    def _keep_synchronous_standbys(self, pg: Any) -> Any:
        """On the primary: one step towards the streaming standbys being exactly the
        synchronous ones, on the Lease and in PostgreSQL (see `core.sync_step`), from `pg`,
        PostgreSQL's status. Returns its status after the step (read again when the step
        reconfigured it)."""
        self._syncing = False
        postgres = self.runner.postgres
        if postgres is None or self.runner.state is not ChainState.UP or self.acting_epoch() is None:
            return pg
        shared = self.shared()
        lease, sync = shared.lease, shared.sync
        if pg is None or not pg.running or pg.role != "primary" or lease is None:
            return pg
        members = {n.name for n in shared.cluster.spec.nodes} - {self.node}
        streaming = tuple(n for n in pg.streaming_names if n in members)
        step = sync_step(
            lease.sync_standbys or (),
            sync.configured,
            streaming,
            queued=sync.to_publish,
            in_flight=sync.in_flight,
        )
        self._syncing = step.publish is not None or step.configure is not None
        if step.publish is not None:
            before = (*(lease.sync_standbys or ()), *(sync.to_publish or ()))
            if leaving := tuple(sorted({n for n in before if n not in step.publish})):
                again = self._postgres_status()
                role, streaming = (again.role, again.streaming_names) if again is not None else (None, ())
                if not departure_confirmed(leaving, role, streaming):
                    log.debug(
                        "%s: %s stays listed: a fresh read shows no running primary without it",
                        self.name,
                        ", ".join(leaving),
                    )
                    return again
            joining = tuple(n for n in step.publish if n not in (lease.sync_standbys or ()))
            flushed = {name: parse_lsn(lsn) for name, lsn in pg.flushed}
            if waiting := not_caught_up(joining, flushed, sync.required_from):
                log.debug(
                    "%s: %s not listed yet: flushed WAL short of %s",
                    self.name,
                    ", ".join(waiting),
                    sync.required_from,
                )
                return pg
            self._change_sync(to_publish=step.publish)
        elif step.configure is not None:
            try:
                postgres.set_synchronous_standbys(step.configure, num_sync=max(1, len(step.configure)))
            except Exception as exc:
                log.warning("%s: setting synchronous standbys failed: %s", self.name, exc)
                return pg
            after = self._postgres_status()
            self._change_sync(
                configured=step.configure,
                required_from=parse_lsn(after.current_lsn) if after is not None and after.current_lsn else None,
            )
            log.info("%s: PostgreSQL waits for %s", self.name, ", ".join(step.configure) or "no standby")
            return after
        return pg

    def _change_sync(self, **changes: Any) -> None:
        with self._lock:
            self._shared = replace(self._shared, sync=replace(self._shared.sync, **changes))

    def _observe_node(self, pg: Any) -> None:
        now = time.monotonic()
        self.runner.observe_volumes(now, max_age=DRBD_OBSERVE_SECONDS)
        self._note_resynced()
        self._judge_eligibility(now, pg)
        inactive = tuple(
            FailedResource(
                f"Service/{name}",
                f"service {name}",
                "its unit is not active",
                waiting_for=self.monitor.unsettled_below(f"Service/{name}"),
            )
            for name in self.runner.failed_services()
        )
        # A service can fail its health check and its ActiveState at once: the first counts.
        unique: dict[str, FailedResource] = {}
        for failed in self.monitor.failed(now) + inactive:
            unique.setdefault(failed.key, failed)
        self.failed = tuple(unique.values())

    def _judge_eligibility(self, now: float, pg: Any) -> None:
        """Eligibility from what this node observes now, and `pg`, PostgreSQL's status."""
        health = self._health(now, pg)
        max_lag = float(self.cluster.spec.failover.max_lag_seconds)
        self._change(eligibility=eligibility(health, max_lag, now))

    def monitor_tick(self) -> None:
        """Monitor the chain's members while it is up on this primary (see monitor.py), and
        while a paused holder does not know yet what runs (so that it can adopt it)."""
        epoch = self.acting_epoch()
        shared = self.shared()
        monitor = shared.monitor
        monitor.activate(monitoring(epoch, self.runner.state, self.runner.epoch, shared.intent.paused))
        monitor.tick(time.monotonic())
        if monitor.failed(time.monotonic()):
            self._wake_runner.set()

    def _execute(self, decision: Decision) -> None:
        action = decision.action
        if action is Action.BRING_UP:
            epoch = decision.epoch
            started = time.monotonic()
            self._pet_watchdog()
            steps = self.runner.bring_up(
                epoch or 0, lambda: self.acting_epoch() == epoch, force=decision.cause == FORCED_FAILOVER
            )
            log.info(
                "%s: chain up at epoch %s in %.2fs: %s",
                self.name,
                epoch,
                time.monotonic() - started,
                "; ".join(steps),
            )
        elif action is Action.TEAR_DOWN:
            if self.runner.state is ChainState.UP:
                self.events.stepped_down(decision.cause)
            started = time.monotonic()
            steps = self.runner.tear_down()
            self.watchdog.disarm()
            log.info(
                "%s: chain down in %.2fs (%s): %s",
                self.name,
                time.monotonic() - started,
                decision.reason,
                "; ".join(steps),
            )
        elif action is Action.HAND_OVER:
            self._give_lease(decision.target, (decision.epoch or 0) + 1, action)
        elif action is Action.RELEASE:
            self._release(decision)
        elif action is Action.REPAIR:
            self._repair(decision)
        elif action is Action.ADOPT:
            self._adopt_running(decision)
        elif action is Action.RECONNECT:
            self._reconnect(decision)
        elif action is Action.DISCARD_MY_DATA:
            self._discard_my_data(decision)
        elif action is Action.REJOIN and decision.target is None:
            log.info("%s: standby volumes: %s", self.name, "; ".join(self.runner.join_volumes()))
        elif action is Action.REJOIN:
            primary = decision.target or ""
            lease = self.shared().lease
            steps = self.runner.rejoin(primary, lease.epoch if lease else 0)
            log.info("%s: rejoined as standby of %s: %s", self.name, primary, "; ".join(steps))

    def _release(self, decision: Decision) -> None:
        """Release the Lease, in a back-off first when the decision says so."""
        if decision.backoff_until is not None:
            self.backoff_until = decision.backoff_until
            self._judge_eligibility(time.monotonic(), self._postgres_status())
        self._give_lease(None, decision.epoch or 0, Action.RELEASE)
        if self.stepping_down:
            failed = self.stepping_down_for
            self._recovered(
                failed.key if failed else "Service/unknown",
                "SteppedDown",
                f"{self.stepping_down}: stepped down and released the Lease on {self.node}",
            )
            self.restarts.clear()
            self.stepping_down = None
            self.stepping_down_for = None

    def _found_running(self, lease: LeaseView | None, paused: bool) -> bool:
        """With the chain Unknown: does what runs here fit this node's role? (See
        `ChainSnapshot.found_running`.)"""
        if self.runner.state is not ChainState.UNKNOWN or lease is None:
            return False
        if self.acting_epoch() is not None:
            return paused and self.monitor.all_healthy() and not self.runner.inactive_primary_services()
        holder = lease.holder
        if not holder or holder == self.node:
            return False
        # The first tick after a start comes before any observation: look now.
        self.runner.observe_volumes(time.monotonic(), max_age=DRBD_OBSERVE_SECONDS)
        if not self.runner.volumes_joined():
            return False
        if leftovers := self.runner.primary_leftovers():
            log.info("%s: not adopting this node as a standby: %s still up", self.name, ", ".join(leftovers))
            return False
        if self.runner.postgres is None:
            return True
        pg = self._postgres_status()
        return (
            pg is not None
            and pg.running
            and pg.role == "standby"
            and bool(pg.receiving)
            and pg.upstream == self.runner.standby_address(holder)
        )

    def _adopt_running(self, decision: Decision) -> None:
        """Take what runs as the chain's state, changing nothing on the node."""
        lease = self.shared().lease
        if decision.epoch is not None:
            self.runner.state, self.runner.epoch = ChainState.UP, decision.epoch
        elif lease is not None and lease.holder:
            self.runner.state, self.runner.epoch = ChainState.DOWN, None
            self.runner.following = (lease.holder, lease.epoch)
        log.info("%s: %s", self.name, decision.reason)

    def _reconnect(self, decision: Decision) -> None:
        """The holder connects its StandAlone DRBD connections again, only while it still acts
        under the epoch the decision was taken at."""
        if self.acting_epoch() != decision.epoch:
            raise Aborted(f"no longer the holder at epoch {decision.epoch}: DRBD not reconnected")
        for c in decision.connections:
            outcome = self.runner.reconnect(c.volume, c.peer)
            log.info("%s: DRBD %s was StandAlone toward %s: %s", self.name, c.volume, c.peer, outcome.detail)

    def _discard_my_data(self, decision: Decision) -> None:
        """The victim's side of DRBD's manual split-brain recovery, only while the Lease, as
        last read, still names the holder the decision was taken for (so this node does not
        act as primary either). What it is about to discard goes into its report first."""
        holder = decision.target
        lease = self.shared().lease
        if lease is None or lease.holder != holder:
            raise Aborted(f"the Lease no longer names {holder}: this node's data is kept")
        for c in decision.connections:
            if c.out_of_sync_bytes:
                self._record_discard(c.volume, c.peer, c.out_of_sync_bytes)
            outcome = self.runner.reconnect(c.volume, c.peer, discard_my_data=True)
            if c.out_of_sync_bytes:
                log.warning(
                    "%s: split brain on DRBD %s: %s discards the %d KiB it changed that "
                    "the Lease holder %s lacks and resyncs from it (drbdadm connect "
                    "--discard-my-data): %s",
                    self.name,
                    c.volume,
                    self.node,
                    c.out_of_sync_bytes // 1024,
                    holder,
                    outcome.detail,
                )
            else:
                log.info(
                    "%s: DRBD %s was StandAlone toward the Lease holder %s, nothing changed here that it lacks: %s",
                    self.name,
                    c.volume,
                    holder,
                    outcome.detail,
                )

    def _record_discard(self, volume: str, peer: str, discarded: int) -> None:
        """A new entry of the report's splitBrainRecoveries, unless the last one for `volume`
        is the same recovery tried again (same peer, not resynced yet): said once."""
        last = self.split_brain.get(volume)
        if last is not None and last.get("peer") == peer and "resyncedTime" not in last:
            return
        self.split_brain[volume] = {"volume": volume, "peer": peer, "discardedBytes": discarded, "time": _utc_stamp()}

    def _note_resynced(self) -> None:
        """Mark each split-brain recovery whose resync from the holder has finished."""
        for volume, record in list(self.split_brain.items()):
            if "resyncedTime" not in record and resynced_from(self.runner.drbd.get(volume), record.get("peer", "")):
                self.split_brain[volume] = record | {"resyncedTime": _utc_stamp()}

    def _cleanup(self, request: str | None) -> None:
        """Forget this cluster's failures, like `crm resource cleanup`: repairs counted in the
        window, the restart back-off and a step-down not yet carried out."""
        self.cleanup_seen = request
        if request is None:
            return
        self.restarts.clear()
        self.monitor.forget_repairs(float("inf"))
        self.backoff_until = None
        self.stepping_down, self.stepping_down_for = None, None
        log.info("%s: cleanup %s: repair counts and restart back-off forgotten", self.name, request)

    def _repair(self, decision: Decision) -> None:
        """Repair one member in place, only while this node still acts under the epoch the
        decision was taken at."""
        key = decision.target or ""
        failed = next((f for f in self.failed if f.key == key), None)
        if failed is None:
            return
        if self.acting_epoch() != decision.epoch:
            raise Aborted(f"no longer the holder at epoch {decision.epoch}: {failed.what} not repaired")
        now = time.monotonic()
        self.restarts.append(now)
        limit = self.cluster.spec.failover.restart_limit
        attempt = (
            f"({len(self.restarts)} of {limit})"
            if len(self.restarts) <= limit
            else f"({len(self.restarts)}, past restartLimit {limit}: no standby could take over)"
        )
        kind, _, name = key.partition("/")
        self.events.repair_attempted(kind)
        member = self.monitor.members.get(key)
        self.monitor.repairing(key)
        try:
            # A service without a health check has no monitor: its unit stopped being active.
            outcome = member.repair() if member is not None else self.runner.restart(name)
        except Exception as exc:
            message = f"{failed.describe(self.node)}; repair {attempt} failed: {exc}"
            self.monitor.repaired(key, now, message)
            self._recovered(key, "RepairFailed", message)
            raise
        message = f"{failed.describe(self.node)}; {repaired_how(kind, outcome)} {attempt}"
        self.monitor.repaired(key, now, message)
        self._recovered(key, "Repaired", message)
        log.warning("%s: %s", self.name, message)

    def _recovered(self, key: str, action: str, message: str) -> None:
        kind, _, name = key.partition("/")
        self.last_recovery = {
            "time": _utc_stamp(),
            "resource": name,
            "kind": kind,
            "action": action,
            "message": message[:1024],
        }

    def _give_lease(self, target: str | None, epoch: int, action: Action) -> None:
        """Hand the Lease to `target` (None: release it), guarded by resourceVersion."""
        with self._lock:
            sync, lists = sync_for_lease_write(self._shared.sync, action, self.runner.postgres is not None)
            self._shared = replace(self._shared, sync=lists)
        try:
            record = self.kube.write_lease(self.name, target, epoch, acquire=target is not None, sync_standbys=sync)
        except Unavailable:
            # No answer: the write may have landed and the target may act at the next epoch
            # already. This node stops acting on its own; if the Lease still names it, its
            # keeper reclaims it with a guarded update, which fails if the write did land.
            self._change(holding=None)
            raise
        self._change(
            holding=None,
            lease=LeaseView(
                record.holder, record.epoch, record.resource_version, time.monotonic(), record.sync_standbys
            ),
        )
        log.info("%s: Lease %s at epoch %d", self.name, f"handed to {target}" if target else "released", record.epoch)

    # --- observation and reporting ----------------------------------------------------------
    def _health(self, now: float, pg: Any) -> LocalHealth:
        disks_ok, disk_detail = self.runner.disks()
        lag = None
        if self.runner.postgres is not None and self.runner.state is not ChainState.UP:
            lag = self._standby_lag(pg)
        shared = self.shared()
        intent = shared.intent
        return LocalHealth(
            node=self.node,
            lease=shared.lease,
            chain_down=self.runner.state is ChainState.DOWN,
            spec_problem=self.runner.problem(),
            in_standby_mode=self.node in intent.standby_nodes,
            disks_up_to_date=disks_ok,
            disk_detail=disk_detail,
            postgres_lag_seconds=lag,
            restart_backoff_until=self.backoff_until,
            dependency_ready=intent.dependency_ready,
            dependency_detail=intent.dependency_detail,
            paused=intent.paused,
            forced=force_pending(shared) is not None,
        )

    def _standby_lag(self, pg: Any) -> float:
        """`core.standby_lag` of `pg`, what PostgreSQL here says."""
        postgres = self.runner.postgres
        stream = (
            StandbyStream(bool(pg.receiving), pg.replay_lag_s)
            if pg is not None and pg.running and pg.role == "standby"
            else None
        )
        has_data = postgres is not None and postgres.initialized and postgres.managed
        lag, self.lag_when_streaming = standby_lag(self.shared().lease, has_data, stream, self.lag_when_streaming)
        return lag

    def _postgres_status(self) -> Any:
        """PostgreSQL as a status query sees it; None (unknown) while its monitor finds it
        failing, so that a hung server does not hold up the runner on every read."""
        if self.monitor.in_trouble(POSTGRES_MEMBER):
            return None
        try:
            return self.runner.postgres_status()
        except Exception as exc:
            log.debug("postgres status failed: %s", exc)
            return None

    def _report(self, decision: Decision, message: str, pg: Any) -> None:
        """Apply this node's own status entry when it changed, or as a slow heartbeat; `pg` is
        PostgreSQL's status."""
        epoch = self.acting_epoch()
        shared = self.shared()
        lease = shared.lease
        entry: dict[str, Any] = {
            "name": self.node,
            "role": report_role(epoch, self.runner.state, shared.intent.paused),
            "epoch": epoch if epoch is not None else (lease.epoch if lease else 0),
            "drbd": self.runner.volume_reports(),
            "services": self._service_reports(),
            "resources": self.monitor.reports(),
            "eligible": shared.eligibility.eligible,
            **ineligible_report(shared.eligibility.why),
            "message": message[:1024],
            "appliedGeneration": shared.applied_generation,
            "pendingChange": shared.pending_change[:1024],
        }
        if self.last_recovery is not None:
            entry["lastRecovery"] = self.last_recovery
        if shared.force_report is not None:
            entry["forcedFailover"] = shared.force_report
        recoveries = [r for v, r in sorted(self.split_brain.items()) if v in self.runner.volumes]
        if recoveries:
            entry["splitBrainRecoveries"] = recoveries
        self._change(postgres_seen=pg)
        if self.runner.postgres is not None:
            entry["postgres"] = _postgres_report(pg)
        now = time.monotonic()
        if _significant(entry) == _significant(self._last_report) and now - self._last_report_at < HEARTBEAT_SECONDS:
            return
        body = entry | {"heartbeatTime": _utc_stamp()}
        try:
            self.kube.report(self.name, body)
        except KubeError as exc:
            log.debug("report failed: %s", exc)
            return
        self._last_report, self._last_report_at = entry, now

    def _service_reports(self) -> list[dict[str, Any]]:
        reports = []
        idle = self.runner.state is ChainState.DOWN
        for name in self.runner.primary_services + self.runner.everywhere_services:
            slow = idle and name not in self.runner.everywhere_services
            try:
                status = self.runner.backend.recent(name, IDLE_SERVICE_SECONDS if slow else None)
            except Exception as exc:
                reports.append({"name": name, "state": "Unknown", "exitStatus": str(exc)[:64]})
                continue
            state = {"active": "Running", "activating": "Starting", "failed": "Failed", "inactive": "Stopped"}.get(
                status.state.value, "Unknown"
            )
            report: dict[str, Any] = {"name": name, "state": state, "restarts": len(self.restarts)}
            if state == "Failed":
                report["exitStatus"] = status.describe()[:64]
            reports.append(report)
        return reports


VOLATILE = {"lsn", "outOfSyncBytes", "resyncPercent", "lastCheckTime"}


def _utc_stamp() -> str:
    """Now, as the API's times are written: UTC, whole seconds."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _significant(entry: Any) -> Any:
    """A report without the counters that move with every write (LSNs, out-of-sync bytes):
    a change of those alone waits for the next heartbeat, so that a busy primary does not
    turn into a stream of API writes."""
    if entry is None:
        return None
    if isinstance(entry, dict):
        return {k: _significant(v) for k, v in entry.items() if k not in VOLATILE}
    if isinstance(entry, list):
        return [_significant(v) for v in entry]
    return entry


def _postgres_report(pg: Any) -> dict[str, Any]:
    if pg is None:
        return {"role": "Unknown"}
    if not pg.running:
        return {"role": "Stopped"} | ({"timeline": pg.timeline} if pg.timeline else {})
    report: dict[str, Any] = {"role": "Primary" if pg.role == "primary" else "Standby"}
    if pg.timeline:
        report["timeline"] = pg.timeline
    if pg.role == "primary":
        report["lsn"] = pg.current_lsn
        report["streamingStandbys"] = pg.streaming_standbys
    else:
        report["lsn"] = pg.replay_lsn
        if pg.replay_lag_s is not None:
            report["lagSeconds"] = int(pg.replay_lag_s)
    return report


def with_dependency(intent: ClusterIntent, ready: bool | None, detail: str) -> ClusterIntent:
    return replace(intent, dependency_ready=ready, dependency_detail=detail)
