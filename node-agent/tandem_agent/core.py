"""The agent's pure core: a snapshot of the world in, one decision with a reason out.

Two decisions run side by side, each in its own thread of the agent, so that a slow step of the
chain (say, a PostgreSQL promotion) can never delay a Lease renewal:

- `lease_decision` (the Lease keeper): renew, take an expired Lease, or fence when a demotion
  overran. It is the only place that applies the single-primary timing rule.
- `chain_decision` (the chain runner): bring the chain up when this node may act as primary,
  tear it down when it may not, hand over, release, restart a failed service, or rejoin as a
  standby.

All times are seconds on the agent's monotonic clock. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tandem.api.hacluster import IneligibleReason, LeaseTimings, said


class Action(enum.Enum):
    WAIT = "Wait"
    RENEW = "Renew"
    ACQUIRE = "Acquire"
    FENCE = "Fence"
    BRING_UP = "BringUp"
    TEAR_DOWN = "TearDown"
    HAND_OVER = "HandOver"
    RELEASE = "Release"
    REPAIR = "Repair"
    REJOIN = "Rejoin"
    FORGET_HOLDING = "ForgetHolding"
    FORCE_REFUSED = "ForceRefused"  # a forced failover this node may never carry out now
    ADOPT = "Adopt"  # paused, chain unknown: take what runs here as this node's chain state
    RECONNECT = "Reconnect"  # the holder: connect its StandAlone DRBD connections again
    DISCARD_MY_DATA = "DiscardMyData"  # a standby: reconnect to the holder, whose data wins


class ChainState(enum.Enum):
    DOWN = "Down"
    UP = "Up"
    UNKNOWN = "Unknown"  # partly up, or not yet observed since the agent started


@dataclass(frozen=True)
class StandAlone:
    """A DRBD connection of a chain volume that is StandAlone on this node: DRBD found a split
    brain its policies (spec.splitBrain) left unresolved, or someone disconnected it.
    `out_of_sync_bytes` is what this node changed that `peer` lacks (drbdsetup's out-of-sync
    toward it): what this node loses if it reconnects with --discard-my-data."""

    volume: str  # the DRBDVolume's name
    peer: str
    out_of_sync_bytes: int = 0


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    epoch: int | None = None
    target: str | None = None
    # One CamelCase word for a takeover (ACQUIRE, a reclaiming RENEW, the RENEW taking a Lease
    # handed over), a step-down (TEAR_DOWN) or a release (RELEASE): the metrics count takeovers
    # and step-downs by it, never by the free-text reason.
    cause: str = ""
    connections: tuple[StandAlone, ...] = ()  # what RECONNECT and DISCARD_MY_DATA connect
    # A primary's hand-off (TEAR_DOWN, RELEASE, HAND_OVER): why it gives the Lease up, without
    # what it does about it (see ChainSnapshot.stepping_down).
    stepping_down: str = ""
    # TEAR_DOWN for restartLimit: the member whose failures it is for. Once the chain is down
    # the failure no longer shows, so the runner remembers it (and `stepping_down`) until the
    # Lease is released.
    failed_member: FailedResource | None = None
    # RELEASE after restartLimit: this node is ineligible (RestartBackoff) until then, from
    # before the Lease is free, or its own keeper would take the Lease back.
    backoff_until: float | None = None


@dataclass(frozen=True)
class Timings:
    """HACluster.spec.leases, in seconds."""

    lease_duration: float = 3.0
    renew_interval: float = 1.2
    renew_deadline: float = 1.8
    demotion_timeout: float = 0.6

    @classmethod
    def of(cls, leases: LeaseTimings) -> Timings:
        return cls(
            leases.lease_duration_ms / 1000,
            leases.renew_interval_ms / 1000,
            leases.renew_deadline_ms / 1000,
            leases.demotion_timeout_ms / 1000,
        )


@dataclass(frozen=True)
class LeaseView:
    """The Lease as this agent last read it, and when it first saw this version of it."""

    holder: str | None
    epoch: int
    resource_version: str
    observed_at: float
    sync_standbys: tuple[str, ...] | None = None  # None: the holder publishes no such list


@dataclass(frozen=True)
class Ineligible:
    """Why this node may not take the Lease: the word its report gives the operator, and the
    details for a person (the report's ineligibleReason and ineligibleMessage)."""

    reason: IneligibleReason
    message: str = ""

    def __str__(self) -> str:
        return said(self.reason, self.message)


def not_synchronous(lease: LeaseView | None, node: str) -> Ineligible | None:
    """Why `node` may not take over from this version of the Lease (None: it may).

    A holder whose chain has PostgreSQL lists on the Lease the standbys that confirm every
    write before it is acknowledged. Any other node may lack acknowledged writes."""
    if lease is None or lease.sync_standbys is None or node in lease.sync_standbys or lease.holder == node:
        return None
    listed = ", ".join(lease.sync_standbys) or "none"
    return Ineligible(
        IneligibleReason.NOT_SYNCHRONOUS,
        f"{lease.holder or 'the last primary'} lists {listed} as synchronous "
        "standbys; taking over could lose acknowledged writes",
    )


@dataclass(frozen=True)
class Holding:
    """This agent's own record of holding the Lease: the epoch it won and when it last *sent*
    a renew that succeeded (acquiring counts as a renew)."""

    epoch: int
    last_renew_sent_at: float


@dataclass(frozen=True)
class Eligibility:
    eligible: bool
    why: Ineligible | None = None  # set when not eligible
    # Under a forced failover: the reasons it was not eligible that the force overrides.
    overridden: tuple[Ineligible, ...] = ()


# An agent's eligibility until it has looked at its node.
NOT_OBSERVED_YET = Ineligible(IneligibleReason.STARTING, "not observed yet")


def ineligible_report(why: Ineligible | None) -> dict[str, str]:
    """The ineligibleReason and ineligibleMessage of a node report; neither when eligible (a
    server-side apply without them removes what the agent said before)."""
    if why is None:
        return {}
    return {"ineligibleReason": why.reason.value, "ineligibleMessage": why.message[:1024]}


@dataclass(frozen=True)
class LocalHealth:
    """What the chain runner observed on this node, as inputs to eligibility."""

    node: str = ""
    lease: LeaseView | None = None  # as last read, for its list of synchronous standbys
    chain_down: bool = False

    spec_problem: str | None = None  # "<field>: <problem and fix>": this node cannot act on it
    in_standby_mode: bool = False
    disks_up_to_date: bool = True
    disk_detail: str = ""
    postgres_lag_seconds: float | None = None
    restart_backoff_until: float | None = None
    dependency_ready: bool | None = None
    dependency_detail: str = ""
    paused: bool = False
    forced: bool = False  # a forced failover to this node is pending (see `eligibility`)


FORCED_FAILOVER = "ForcedFailover"
# Why a node may not take the Lease that no forced failover overrides: the spec (InvalidSpec,
# spec.paused, spec.standbyNodes) says so, and a person must change the spec, not force it.
NEVER_FORCED = (IneligibleReason.INVALID_SPEC, IneligibleReason.PAUSED, IneligibleReason.STANDBY_MODE)


def eligibility(health: LocalHealth, max_lag_seconds: float, now: float) -> Eligibility:
    """May this node take the Lease? If not, the reason (one word) and the details.

    `health.forced` (a person accepted losing data) overrides what only protects data (disk
    not UpToDate, lag, restart back-off, the Lease's synchronous list): those reasons go to
    `overridden` (the last one is left to `lease_decision`). The spec's word (InvalidSpec,
    Paused, StandbyMode) and a dependency that is not ready still refuse.

    Last, with the chain down here: a node the Lease's synchronous list lacks may lack
    acknowledged writes (NotSynchronous). `lease_decision` refuses it the Lease in any case;
    saying so here puts it in the node's report."""

    def not_eligible(reason: IneligibleReason, message: str) -> Eligibility:
        return Eligibility(False, Ineligible(reason, message))

    if health.spec_problem:
        return not_eligible(IneligibleReason.INVALID_SPEC, health.spec_problem)
    if health.paused:
        return not_eligible(IneligibleReason.PAUSED, "spec.paused is set: no node takes the Lease")
    if health.in_standby_mode:
        return not_eligible(IneligibleReason.STANDBY_MODE, "this node is listed in spec.standbyNodes")
    data: list[Ineligible] = []
    if not health.disks_up_to_date:
        data.append(Ineligible(IneligibleReason.DISK_NOT_UP_TO_DATE, health.disk_detail))
    if health.postgres_lag_seconds is not None and health.postgres_lag_seconds > max_lag_seconds:
        if math.isinf(health.postgres_lag_seconds):
            lag = "PostgreSQL here is not a running standby that has streamed from the primary, so its lag is unknown"
        else:
            lag = (
                f"PostgreSQL replay lag {health.postgres_lag_seconds:.1f}s exceeds "
                f"spec.failover.maxLagSeconds={max_lag_seconds:g}"
            )
        data.append(Ineligible(IneligibleReason.LAG_TOO_HIGH, lag))
    if health.restart_backoff_until is not None and now < health.restart_backoff_until:
        data.append(
            Ineligible(
                IneligibleReason.RESTART_BACKOFF,
                f"members of the chain kept failing here; eligible again in {health.restart_backoff_until - now:.0f}s",
            )
        )
    if data and not health.forced:
        return Eligibility(False, data[0])
    if health.dependency_ready is False:
        return not_eligible(IneligibleReason.DEPENDENCY_NOT_READY, health.dependency_detail)
    if health.chain_down and not health.forced and (unsynced := not_synchronous(health.lease, health.node)):
        return Eligibility(False, unsynced)
    return Eligibility(True, overridden=tuple(data))


@dataclass(frozen=True)
class StandbyStream:
    """This node's PostgreSQL, a running standby: whether it receives WAL now, and its replay
    lag (None: not known)."""

    receiving: bool
    replay_lag: float | None = None


def standby_lag(
    lease: LeaseView | None, has_data: bool, standby: StandbyStream | None, lag_when_streaming: float | None
) -> tuple[float, float | None]:
    """How far behind this standby was when it last streamed, and the lag to remember as the
    last one seen while streaming (`lag_when_streaming`, None: it never streamed).

    While streaming, the replay lag now. Once the stream stops (the primary died or shut
    down), the lag it had at that moment: the time since the last replayed transaction
    would grow on an idle primary and block every failover. Not a running standby at all
    (`standby` None): infinitely behind, except before the very first primary (the Lease
    was never held), when no node can hold an acknowledged write: a node with no cluster yet,
    or with one tandem never configured (`has_data` False: Debian's initial cluster, or a
    database being migrated in), may then become the first primary."""
    if lease is not None and lease.epoch == 0 and not has_data:
        return 0.0, lag_when_streaming
    if standby is None:
        return math.inf, lag_when_streaming
    if standby.receiving:
        lag_when_streaming = standby.replay_lag if standby.replay_lag is not None else 0.0
    return (lag_when_streaming if lag_when_streaming is not None else math.inf), lag_when_streaming


# --- the Lease keeper --------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseSnapshot:
    now: float
    node: str
    timings: Timings
    lease: LeaseView | None
    holding: Holding | None
    chain_down: bool
    eligibility: Eligibility
    preferred_primary: str | None = None
    min_failover_interval: float = 0.0
    last_takeover_seen_at: float | None = None
    deleting: bool = False
    # The synchronous standbys the holder writes on the Lease at its next renew (None: leave
    # the list as it is; see SyncLists.to_publish).
    sync_to_publish: tuple[str, ...] | None = None
    paused: bool = False  # spec.paused: a holder keeps its Lease, nobody takes one
    force: ForceRequest | None = None  # a pending forced failover to this node
    switchover: Switchover | None = None  # a planned switchover Pending in the HACluster


@dataclass(frozen=True)
class ForceRequest:
    """A forced failover to this node that a person asked for and accepted data loss for
    (the tandem.dev/force-failover annotations, Pending in status.forcedFailover)."""

    request_id: str
    seen_at: float  # when this agent first saw the request


def slow_renew(t: Timings, since_previous: float, took: float) -> str | None:
    """Why a renew that succeeded came close to renewDeadline, or None when it did not.

    It was sent `since_previous` seconds after the last successful one and answered in `took`.
    renewDeadline leaves `renew_deadline - renew_interval` for a late keeper and a slow API
    server together; past half of that, a loaded node or API server is about to make this
    primary step down (and, if its demotion is slow too, fence the node)."""
    margin = t.renew_deadline - t.renew_interval
    late = max(0.0, since_previous - t.renew_interval)
    if late + took <= margin / 2:
        return None
    return (
        f"renew sent {late:.2f}s late and answered in {took:.2f}s, of the {margin:.2f}s "
        f"renewDeadline ({t.renew_deadline:g}s) leaves after renewInterval ({t.renew_interval:g}s)"
    )


def may_act(holding: Holding | None, lease: LeaseView | None, node: str, timings: Timings, now: float) -> bool:
    """True while this node may act as primary: it won the Lease, the last read still shows it
    as holder of that epoch, and a renew succeeded within renewDeadline."""
    return (
        holding is not None
        and lease is not None
        and lease.holder == node
        and lease.epoch == holding.epoch
        and now - holding.last_renew_sent_at <= timings.renew_deadline
    )


def chain_may_be_up(chain: ChainState, paused: bool, holding: Holding | None) -> bool:
    """The chain runs, or may: a paused holder does not bring its chain up, so after an
    agent restart it cannot know what a previous process left running. It then keeps the
    fence deadline and the watchdog as if the chain ran (the single-primary rule does not
    pause)."""
    return chain is not ChainState.DOWN or (paused and holding is not None)


def monitoring(acting_epoch: int | None, chain: ChainState, chain_epoch: int | None, paused: bool) -> bool:
    """Whether the chain's members are monitored: while the chain is up on this primary for
    its epoch, and while a paused holder does not know yet what runs (so that it can adopt
    it)."""
    return acting_epoch is not None and (
        (chain is ChainState.UP and chain_epoch == acting_epoch) or (paused and chain is ChainState.UNKNOWN)
    )


def report_role(acting_epoch: int | None, chain: ChainState, paused: bool) -> str:
    """The role this node reports: Primary while it acts with its chain up, Standby with the
    chain down, Unknown when paused after a restart with what runs not adopted yet (neither
    of the two), Demoting otherwise."""
    if acting_epoch is not None and chain is ChainState.UP:
        return "Primary"
    if chain is ChainState.DOWN:
        return "Standby"
    return "Unknown" if paused and chain is ChainState.UNKNOWN else "Demoting"


def lease_decision(s: LeaseSnapshot) -> Decision:
    """Renew, take, fence or wait. Applies the single-primary rule of docs/failover-protocol.md."""
    t = s.timings
    if s.holding is not None:
        since_renew = s.now - s.holding.last_renew_sent_at
        if not s.chain_down and since_renew > t.renew_deadline + t.demotion_timeout:
            return Decision(
                Action.FENCE,
                f"demotion not finished {since_renew:.2f}s after the last successful renew "
                f"(renewDeadline {t.renew_deadline:g}s + demotionTimeout {t.demotion_timeout:g}s)",
                epoch=s.holding.epoch,
            )
        if s.lease is not None and (s.lease.holder != s.node or s.lease.epoch != s.holding.epoch):
            lost = f"the Lease passed to {s.lease.holder or 'nobody'} at epoch {s.lease.epoch}"
            if s.chain_down:
                return Decision(Action.FORGET_HOLDING, lost, epoch=s.holding.epoch)
            return Decision(Action.WAIT, f"{lost}; waiting for the chain to go down", epoch=s.holding.epoch)
        if since_renew >= t.renew_interval:
            return Decision(Action.RENEW, f"{since_renew:.2f}s since the last renew", epoch=s.holding.epoch)
        if s.sync_to_publish is not None and s.lease is not None and s.sync_to_publish != s.lease.sync_standbys:
            return Decision(Action.RENEW, "publishing a new list of synchronous standbys", epoch=s.holding.epoch)
        return Decision(Action.WAIT, "holding the Lease", epoch=s.holding.epoch)

    lease = s.lease
    if lease is None:
        return Decision(Action.WAIT, "the Lease does not exist yet (the operator creates it)")
    if lease.holder == s.node:
        # We hold it in the API but have no record of winning it: a guarded renew proves it
        # is still ours, and starts this node's renewals (and with them its fence deadline).
        sw = s.switchover
        if sw is not None and sw.target == s.node and lease.epoch > sw.from_epoch:
            # The holder tore its chain down and wrote this node into the Lease at the next
            # epoch (chain_decision's HAND_OVER): the hand-over as the operator sees it.
            return Decision(
                Action.RENEW,
                f"the primary of epoch {sw.from_epoch} handed the Lease over to this node "
                f"(planned switchover): taking it at epoch {lease.epoch} with a guarded update",
                epoch=lease.epoch,
                cause="HandedOver",
            )
        # An agent restart, a takeover whose answer was lost, or renewals that failed past
        # the deadline.
        return Decision(
            Action.RENEW,
            "the Lease names this node; reclaiming it with a guarded update",
            epoch=lease.epoch,
            cause="Reclaimed",
        )
    if s.force is not None:
        return _forced_decision(s, lease, s.force)
    if s.deleting:
        return Decision(Action.WAIT, "the HACluster is being deleted")
    if s.paused:
        return Decision(Action.WAIT, "paused (spec.paused): no take-over, no failover")
    if not s.eligibility.eligible:
        return Decision(Action.WAIT, f"not eligible: {s.eligibility.why}")
    unsynced = not_synchronous(lease, s.node)
    if unsynced is not None:
        return Decision(Action.WAIT, f"not eligible: {unsynced}")
    if not s.chain_down:
        return Decision(Action.WAIT, "the local chain is not down yet")
    waited = s.now - lease.observed_at
    if lease.holder is None:
        first_election = lease.epoch == 0
        if first_election and s.preferred_primary not in (None, s.node) and waited < t.lease_duration:
            return Decision(
                Action.WAIT,
                f"the Lease is free; giving the preferred primary "
                f"{s.preferred_primary} {t.lease_duration - waited:.1f}s to take it",
            )
        return Decision(Action.ACQUIRE, "the Lease is free", epoch=lease.epoch + 1, cause="LeaseFree")
    if waited < t.lease_duration:
        return Decision(
            Action.WAIT, f"{lease.holder} holds the Lease; unchanged for {waited:.2f}s of {t.lease_duration:g}s"
        )
    if s.last_takeover_seen_at is not None and s.now - s.last_takeover_seen_at < s.min_failover_interval:
        return Decision(
            Action.WAIT,
            f"failover rate limit: the last takeover was "
            f"{s.now - s.last_takeover_seen_at:.0f}s ago "
            f"(minFailoverIntervalSeconds {s.min_failover_interval:g})",
        )
    return Decision(
        Action.ACQUIRE,
        f"the Lease of {lease.holder} expired: unchanged for {waited:.2f}s >= leaseDuration {t.lease_duration:g}s",
        epoch=lease.epoch + 1,
        cause="LeaseExpired",
    )


def _forced_decision(s: LeaseSnapshot, lease: LeaseView, force: ForceRequest) -> Decision:
    """A forced failover: the same single-primary timing rule (the Lease is free, or unchanged
    for a full leaseDuration since this agent saw it), without what only protects data (the
    Lease's synchronous list, lag, disk state, restart back-off, the failover rate limit).

    Ends in FORCE_REFUSED when the cluster's spec forbids it or the holder shows it is alive
    (the Lease changed after the request was seen): a switchover is then the way."""
    t = s.timings
    asked = f"forced failover (request {force.request_id})"
    if s.deleting:
        return Decision(Action.FORCE_REFUSED, f"{asked} refused: the HACluster is being deleted")
    if s.paused:
        return Decision(Action.FORCE_REFUSED, f"{asked} refused: {said(IneligibleReason.PAUSED, 'spec.paused is set')}")
    elig = s.eligibility
    if not elig.eligible:
        if elig.why is not None and elig.why.reason in NEVER_FORCED:
            return Decision(Action.FORCE_REFUSED, f"{asked} refused: {elig.why}")
        return Decision(Action.WAIT, f"{asked}: not eligible yet: {elig.why}")
    overridden = [str(o) for o in elig.overridden]
    unsynced = not_synchronous(lease, s.node)
    if unsynced is not None:
        overridden.append(str(unsynced))
    if not s.chain_down:
        return Decision(Action.WAIT, f"{asked}: the local chain is not down yet")
    waited = s.now - lease.observed_at
    if lease.holder is None:
        why = "the Lease is free"
    elif lease.observed_at > force.seen_at:
        return Decision(
            Action.FORCE_REFUSED,
            f"{asked} refused: {lease.holder} holds the Lease "
            f"and renews it (it changed at epoch {lease.epoch} after the request): "
            "use switchover",
        )
    elif waited < t.lease_duration:
        return Decision(
            Action.WAIT,
            f"{asked}: {lease.holder} holds the Lease; unchanged for {waited:.2f}s of {t.lease_duration:g}s",
        )
    else:
        why = f"the Lease of {lease.holder} expired: unchanged for {waited:.2f}s >= leaseDuration {t.lease_duration:g}s"
        if s.last_takeover_seen_at is not None and s.now - s.last_takeover_seen_at < s.min_failover_interval:
            overridden.append(
                f"failover rate limit: the last takeover was "
                f"{s.now - s.last_takeover_seen_at:.0f}s ago "
                f"(minFailoverIntervalSeconds {s.min_failover_interval:g})"
            )
    over = f"; overriding {'; '.join(overridden)}" if overridden else ""
    return Decision(Action.ACQUIRE, f"{asked}: {why}{over}", epoch=lease.epoch + 1, cause=FORCED_FAILOVER)


# --- monitors of the chain's members ------------------------------------------------------


class Health(enum.Enum):
    HEALTHY = "Healthy"
    FAILING = "Failing"  # failed checks, fewer than failureThreshold
    FAILED = "Failed"  # failureThreshold failed checks in a row: repair it
    REPAIRING = "Repairing"
    UNKNOWN = "Unknown"  # not checked since the chain came up or was repaired


@dataclass(frozen=True)
class MonitorSettings:
    """spec's periodSeconds, timeoutSeconds and failureThreshold, in seconds."""

    period: float = 1.0
    timeout: float = 2.0
    failure_threshold: int = 1


@dataclass(frozen=True)
class MonitorState:
    """What the checks of one resource found so far."""

    health: Health = Health.UNKNOWN
    consecutive_failures: int = 0
    last_check_at: float | None = None  # when the last check started
    first_failure_at: float | None = None  # start of the current run of failed checks
    detail: str = ""


def check_due(state: MonitorState, settings: MonitorSettings, now: float) -> bool:
    return state.last_check_at is None or now - state.last_check_at >= settings.period


def after_check(state: MonitorState, settings: MonitorSettings, problem: str | None, started_at: float) -> MonitorState:
    """The state after one check that began at `started_at` found `problem` (None: healthy).
    A check that did not answer within its timeout counts as a failed one."""
    if problem is None:
        return MonitorState(Health.HEALTHY, 0, started_at, None, "")
    failures = state.consecutive_failures + 1
    first = state.first_failure_at if state.first_failure_at is not None else started_at
    health = Health.FAILED if failures >= settings.failure_threshold else Health.FAILING
    return MonitorState(health, failures, started_at, first, problem)


def consequences(states: Sequence[tuple[str, MonitorState]], repaired: str) -> list[str]:
    """The members above `repaired` (in chain order) whose failures may have been its
    consequences: failing since it began to fail, or later. A mount's writes fail while the
    DRBD volume under it is Secondary; once the volume is promoted again, the mount's next
    checks decide, rather than failures it saw while it had no disk. A member that was
    failing before (its own fault) keeps its count."""
    keys = [key for key, _ in states]
    if repaired not in keys:
        return []
    since = dict(states)[repaired].first_failure_at
    if since is None:
        return []
    return [
        key
        for key, state in states[keys.index(repaired) + 1 :]
        if state.health in (Health.FAILING, Health.FAILED)
        and state.first_failure_at is not None
        and state.first_failure_at >= since
    ]


@dataclass(frozen=True)
class FailedResource:
    """A member of the chain that must be repaired, as the runner's snapshot carries it."""

    key: str  # the monitor's key, e.g. "PostgreSQL/postgresql" or "Service/postfix"
    what: str  # for people: "PostgreSQL", "floating IP mail-vip", "service postfix"
    detail: str
    checks: int = 1
    failing_for: float = 0.0
    # A member below it whose last check did not pass: repairs go bottom-up, since a mount
    # mounted again on a Secondary volume, or a service started on a missing mount, builds
    # on a broken base (None: nothing below it is in doubt).
    waiting_for: str | None = None

    def describe(self, node: str = "") -> str:
        """ "PostgreSQL on mail1 failed: ... (3 checks, 1.5 s)"."""
        where = f" on {node}" if node else ""
        tally = f" ({self.checks} checks, {self.failing_for:.1f} s)" if self.checks > 1 else ""
        return f"{self.what}{where} failed: {self.detail}{tally}"


# --- the chain runner --------------------------------------------------------------------


@dataclass(frozen=True)
class Switchover:
    target: str
    from_epoch: int


@dataclass(frozen=True)
class ChainSnapshot:
    now: float
    node: str
    acting_epoch: int | None  # epoch this node may act under now (None: it may not act)
    lease_holder: str | None
    lease_epoch: int | None
    chain: ChainState
    chain_epoch: int | None  # epoch under which the chain was brought up
    replicating: bool  # standby side is set up (DRBD secondary + connected, PG standby)
    volumes_joined: bool = True  # every DRBD volume up as Secondary and connected
    failed: tuple[FailedResource, ...] = ()  # members of the chain that need a repair
    restarts_in_window: int = 0
    restart_limit: int = 3
    in_standby_mode: bool = False
    switchover: Switchover | None = None
    deleting: bool = False
    dependency_ready: bool | None = None
    dependency_detail: str = ""
    nodes: tuple[str, ...] = field(default_factory=tuple)
    stepping_down: str | None = None  # why this primary decided to give the Lease up
    restart_window: float = 300.0  # spec.failover.restartWindowSeconds
    eligible_peers: tuple[str, ...] = ()  # nodes that could take the Lease if released
    sync_standbys: tuple[str, ...] | None = None  # the Lease's list (None: it has none)
    paused: bool = False  # spec.paused: act on nothing, except to stop a chain without a Lease
    # The chain is Unknown (an agent restarted): what runs here was checked and fits this
    # node's role. A standby: volumes joined as Secondary, PostgreSQL streaming from the
    # holder, no address, mount or primary service of the chain up. A paused holder: every
    # member healthy and every service active.
    found_running: bool = False
    forced_epoch: int | None = None  # the epoch this node took by a forced failover
    standalone: tuple[StandAlone, ...] = ()  # the chain's StandAlone DRBD connections here
    # The keeper tried the Lease once since the agent started. Before, a chain a previous
    # agent process left up is not torn down: the Lease may still name this node, and the
    # keeper reclaims it (the watchdog armed by that process guards the node meanwhile).
    lease_tried: bool = True


RESTART_LIMIT = "RestartLimit"


def successors(s: ChainSnapshot) -> tuple[str, ...]:
    """The peers that could take the Lease if this primary released it: eligible by their own
    fresh report and, when the Lease carries a list of synchronous standbys, listed in it. A
    peer the list leaves out waits as NotSynchronous (`not_synchronous`), however eligible
    its report says it is."""
    if s.sync_standbys is None:
        return s.eligible_peers
    return tuple(peer for peer in s.eligible_peers if peer in s.sync_standbys)


def restart_limit_reached(s: ChainSnapshot) -> bool:
    """Repairs are used up and a standby could take over: step down. With no successor a
    release would leave the cluster without any primary, so repairs go on in place."""
    return bool(s.failed) and s.restarts_in_window >= s.restart_limit and bool(successors(s))


# How long a chain runner that only waits sleeps before it looks again, unless woken.
IDLE_PAUSE_SECONDS = 0.5


def runner_pause(decision: Decision, poll_interval: float, syncing: bool = False) -> float:
    """How long the chain runner waits for a wake before its next tick: `poll_interval` while
    it acts or brings its synchronous standbys in line (`syncing`: a `sync_step` is due, each
    taken on a tick of its own), IDLE_PAUSE_SECONDS once it only waits. What a waiting runner
    waits for wakes it at once: the keeper (a Lease written, the Lease seen to change, the
    right to act gained or lost), the monitor (a failed check), the discovery loop (a new
    intent or spec). A node with a hundred clusters then ticks a few hundred runners a
    second, not a thousand."""
    return IDLE_PAUSE_SECONDS if decision.action is Action.WAIT and not syncing else poll_interval


def chain_decision(s: ChainSnapshot) -> Decision:
    """What the chain runner does next on this node, and why."""
    decision = _chain_decision(s)
    if decision.action is Action.TEAR_DOWN and not s.lease_tried:
        return Decision(Action.WAIT, "waiting for the first Lease read")
    return decision


def _chain_decision(s: ChainSnapshot) -> Decision:
    if s.acting_epoch is None:
        if (
            s.chain is ChainState.UNKNOWN
            and s.found_running
            and not s.deleting
            and s.lease_holder not in (None, s.node)
        ):
            # An agent restarted on a standby: stopping a streaming PostgreSQL only to start it
            # again would stall the primary's synchronous commits.
            return Decision(
                Action.ADOPT,
                f"found this node a standby of {s.lease_holder} "
                "(volumes Secondary, PostgreSQL streaming from it, nothing of the "
                "primary's running here): adopting that, touching nothing",
            )
        # Paused, an agent that just started leaves what it finds; a chain it brought up
        # itself goes down without the Lease.
        unknown_while_paused = s.paused and s.chain is ChainState.UNKNOWN
        if s.chain is not ChainState.DOWN and not unknown_while_paused:
            cause, why = (
                ("LeaseLost", "this node does not hold the Lease")
                if s.lease_holder != s.node
                else ("RenewDeadlineMissed", "no renew succeeded within renewDeadline")
            )
            return Decision(Action.TEAR_DOWN, f"{why}: stopping the chain in reverse order", cause=cause)
        if s.paused:
            return Decision(Action.WAIT, "paused (spec.paused): nothing is brought up, torn down or joined")
        toward_holder = tuple(c for c in s.standalone if c.peer == s.lease_holder)
        if toward_holder and not s.deleting:
            return _rejoin_the_holder(s, toward_holder)
        if s.lease_holder and s.lease_holder != s.node and not s.replicating and not s.deleting:
            return Decision(Action.REJOIN, f"rejoining as a standby of {s.lease_holder}", target=s.lease_holder)
        if not s.volumes_joined and not s.deleting:
            return Decision(Action.REJOIN, "bringing the DRBD volumes up as Secondary")
        return Decision(Action.WAIT, "standby" if s.replicating else "waiting for a primary")

    epoch = s.acting_epoch
    if s.paused:
        if s.chain is ChainState.UNKNOWN and s.found_running:
            return Decision(
                Action.ADOPT,
                f"paused (spec.paused): every member of the chain "
                f"checked healthy: adopting it as up at epoch {epoch}, touching "
                "nothing",
                epoch=epoch,
            )
        return Decision(
            Action.WAIT,
            "paused (spec.paused): holding the Lease; the chain is "
            "left as it is (no bring-up, repair, step-down or hand-over)",
            epoch=epoch,
        )
    handoff = _handoff_reason(s)
    held_back = None
    if (
        handoff is not None
        and handoff[2] is not None
        and s.sync_standbys is not None
        and handoff[2] not in s.sync_standbys
    ):
        # The target may lack acknowledged writes: the Lease must list it (found by the
        # protocol simulation, docs/failover-protocol.md). Stay primary until it is listed.
        held_back = (
            f"{handoff[1]} held back: the Lease does not list {handoff[2]} as a "
            "synchronous standby, so it may lack acknowledged writes"
        )
        handoff = None
    if handoff is not None:
        cause, reason, target = handoff
        if s.chain is not ChainState.DOWN:
            return Decision(
                Action.TEAR_DOWN,
                f"{reason}: demoting fully first",
                epoch=epoch,
                cause=cause,
                stepping_down=reason,
                failed_member=s.failed[0] if cause == RESTART_LIMIT and restart_limit_reached(s) else None,
            )
        if target is None:
            # A step-down for restartLimit remembered, though deletion or standby mode came
            # since, still backs off: as long as this node would have.
            backoff = cause == RESTART_LIMIT or bool(s.stepping_down)
            return Decision(
                Action.RELEASE,
                f"{reason}: releasing the Lease",
                epoch=epoch,
                cause=cause,
                stepping_down=reason,
                backoff_until=s.now + s.restart_window if backoff else None,
            )
        return Decision(
            Action.HAND_OVER,
            f"{reason}: handing the Lease to {target}",
            epoch=epoch,
            target=target,
            stepping_down=reason,
        )
    if s.dependency_ready is False:
        if s.chain is not ChainState.DOWN:
            return Decision(
                Action.TEAR_DOWN,
                f"dependency not ready: {s.dependency_detail}",
                epoch=epoch,
                cause="DependencyNotReady",
            )
        return Decision(Action.WAIT, f"dependency not ready: {s.dependency_detail}", epoch=epoch)
    if s.chain is not ChainState.UP or s.chain_epoch != epoch:
        if s.forced_epoch == epoch:
            # A forced failover: DRBD promotes a disk that is not UpToDate (--force).
            return Decision(
                Action.BRING_UP,
                f"holding the Lease at epoch {epoch} by a forced "
                "failover: bringing the chain up in order, DRBD promoted with "
                "--force",
                epoch=epoch,
                cause=FORCED_FAILOVER,
            )
        return Decision(
            Action.BRING_UP, f"holding the Lease at epoch {epoch}: bringing the chain up in order", epoch=epoch
        )
    if s.failed:
        # The first in chain order: repairing it may repair those above it too.
        failed = s.failed[0]
        if failed.waiting_for is not None:
            return Decision(
                Action.WAIT,
                f"{failed.describe()}; repaired once {failed.waiting_for} below it checks healthy",
                epoch=epoch,
            )
        attempt = f"repair {s.restarts_in_window + 1} of {s.restart_limit}"
        if s.restarts_in_window >= s.restart_limit:
            attempt = (
                f"repair {s.restarts_in_window + 1}, past restartLimit "
                f"{s.restart_limit}: no standby is eligible to take over"
            )
        return Decision(Action.REPAIR, f"{failed.describe()}; {attempt}", epoch=epoch, target=failed.key)
    if s.standalone:
        # The survivor's side of DRBD's manual recovery: a peer that diverged reconnects with
        # --discard-my-data (DISCARD_MY_DATA), and this node only has to listen again.
        return Decision(
            Action.RECONNECT,
            f"{_standalone(s.standalone)}: connecting again; this node holds the Lease, so its data wins",
            epoch=epoch,
            connections=s.standalone,
        )
    return Decision(Action.WAIT, held_back or f"primary at epoch {epoch}", epoch=epoch)


def _standalone(connections: tuple[StandAlone, ...], *, changes: bool = False) -> str:
    """ "DRBD mail-store is StandAlone toward mail2 (24 KiB changed here that mail2 lacks)";
    `changes`: with those KiB (not for a primary: its count grows with every write).

    Never the words "split brain": the operator reads them in a report's message as DRBD's
    own (two primaries), and a standby rejoining the holder is not that."""
    said = []
    for c in connections:
        changed = (
            f" ({c.out_of_sync_bytes // 1024} KiB changed here that {c.peer} lacks)"
            if changes and c.out_of_sync_bytes
            else ""
        )
        said.append(f"DRBD {c.volume} is StandAlone toward {c.peer}{changed}")
    return "; ".join(said)


def _rejoin_the_holder(s: ChainSnapshot, connections: tuple[StandAlone, ...]) -> Decision:
    """A standby whose DRBD connections to the Lease holder are StandAlone. Only the holder may
    have acknowledged writes, so this node is the victim of DRBD's manual split-brain recovery
    (user's guide, "Manual split brain recovery"): Secondary, then `drbdadm connect
    --discard-my-data`; it then resyncs from the holder. A node a person put in standby mode
    keeps its data until it is online again."""
    holder = connections[0].peer
    what = _standalone(connections, changes=True)
    if s.in_standby_mode:
        return Decision(
            Action.WAIT,
            f"{what}: in standby mode (spec.standbyNodes), this node "
            "keeps its data; online, it reconnects with --discard-my-data and "
            f"resyncs from {holder}",
        )
    return Decision(
        Action.DISCARD_MY_DATA,
        f"{what}: reconnecting with --discard-my-data, so that {holder}'s data wins and this node resyncs from it",
        target=holder,
        connections=connections,
    )


def _handoff_reason(s: ChainSnapshot) -> tuple[str, str, str | None] | None:
    """Why the primary must step down (a word, then the details), and to whom (None: release
    for any eligible node)."""
    if s.deleting:
        return "Deleting", "the HACluster is being deleted", None
    if s.in_standby_mode:
        return "StandbyMode", "this node is in standby mode", None
    if s.stepping_down:  # set only once the restart limit was reached
        return RESTART_LIMIT, s.stepping_down, None
    if restart_limit_reached(s):
        return (
            RESTART_LIMIT,
            f"{s.failed[0].describe()} after {s.restarts_in_window} repairs in place (restartLimit {s.restart_limit})",
            None,
        )
    sw = s.switchover
    if sw is not None and sw.target != s.node and sw.from_epoch == s.acting_epoch:
        return "Switchover", f"planned switchover to {sw.target}", sw.target
    return None


# --- synchronous standbys ------------------------------------------------------------------


@dataclass(frozen=True)
class SyncLists:
    """The holder's bookkeeping of its synchronous standbys, between `sync_step`s."""

    # What the keeper writes on the Lease at its next renew (None: leave the list as it is).
    to_publish: tuple[str, ...] | None = None
    configured: tuple[str, ...] | None = None  # what PostgreSQL requires (None: not known yet)
    # The primary's LSN once PostgreSQL applied the last change of its synchronous standbys:
    # a standby joins the Lease's list only once it has flushed that far (`not_caught_up`).
    required_from: int | None = None
    # The list a Lease write carries that may still land (sent, no answer yet, or no answer
    # at all): until a later answer shows the Lease, PostgreSQL is not reconfigured.
    in_flight: tuple[str, ...] | None = None


def sync_for_lease_write(
    lists: SyncLists, action: Action, has_postgres: bool
) -> tuple[tuple[str, ...] | None, SyncLists]:
    """The list of synchronous standbys a Lease write for `action` carries (None: it leaves the
    Lease's list as it is), and the writer's bookkeeping once it is sent.

    A RENEW publishes what is queued. Any other write makes a new holder, or none, and the
    writer forgets what it published and configured: a new holder (ACQUIRE, or the target
    of a HAND_OVER) has no synchronous standby yet (each joins once it streams), so it starts
    from an empty list when PostgreSQL is in the chain; a RELEASE leaves the list."""
    if action is Action.RENEW:
        carried = lists.to_publish
        return carried, replace(lists, in_flight=carried)
    carried = () if action in (Action.ACQUIRE, Action.HAND_OVER) and has_postgres else None
    return carried, SyncLists(in_flight=carried)


@dataclass(frozen=True)
class SyncStep:
    """One step towards the wanted synchronous standbys; at most one of the two is set."""

    publish: tuple[str, ...] | None = None  # write this list on the Lease first
    configure: tuple[str, ...] | None = None  # then require these in PostgreSQL


def sync_step(
    published: tuple[str, ...],
    configured: tuple[str, ...] | None,
    streaming: tuple[str, ...],
    queued: tuple[str, ...] | None = None,
    in_flight: tuple[str, ...] | None = None,
) -> SyncStep:
    """Move the Lease's list (`published`) and PostgreSQL's required standbys (`configured`,
    None when unknown) towards the standbys that stream now, keeping published ⊆ configured at
    every instant: a standby leaves the Lease before PostgreSQL stops waiting for it, and joins
    the Lease only after PostgreSQL waits for it.

    `queued`: a list waiting to be written on the Lease, or in flight. It counts as published,
    and PostgreSQL is not reconfigured before the Lease carries it: it may name a standby that
    PostgreSQL must keep waiting for (found by the protocol simulation).

    `in_flight`: the list a Lease write carries that may still land (no answer yet, or none
    at all). While it differs from the Lease as last read, nothing moves."""
    if in_flight is not None and set(in_flight) != set(published):
        return SyncStep()
    if queued is not None and set(queued) != set(published):
        step = sync_step(queued, configured, streaming)
        return step if step.publish is not None else SyncStep()
    wanted = tuple(sorted(set(streaming)))
    if not set(published) <= set(wanted):
        return SyncStep(publish=tuple(sorted(set(published) & set(wanted))))
    if configured is None or set(configured) != set(wanted):
        return SyncStep(configure=wanted)
    if set(published) != set(wanted):
        return SyncStep(publish=wanted)
    return SyncStep()


def departure_confirmed(leaving: tuple[str, ...], role: str | None, streaming: tuple[str, ...]) -> bool:
    """Whether standbys that a status read found not streaming may leave the Lease's list,
    judged from a second, fresh read (`role`: None when it found no running server): it must
    show a running primary that still lacks them.

    When the postmaster dies, its WAL senders exit with it while a backend already connected
    still answers that nobody streams. Dropping the standbys from the Lease on that answer
    left the primary, failing past its restartLimit, with no successor (CI saw it). A fresh
    read of a dead postmaster cannot connect."""
    return role == "primary" and not set(leaving) & set(streaming)


def not_caught_up(joining: tuple[str, ...], flushed: dict[str, int], required_from: int | None) -> tuple[str, ...]:
    """The standbys of `joining` that may still lack a write acknowledged without them.

    Commits acknowledged before PostgreSQL started waiting for a standby did not wait for it;
    its `flush_lsn` must reach the primary's LSN of that moment (`required_from`, None: not
    known) before the Lease may list it (found by the protocol simulation, fix 3)."""
    if required_from is None:
        return joining
    return tuple(n for n in joining if flushed.get(n, -1) < required_from)


# --- the /primary and /replica health endpoints ---------------------------------------------


@dataclass(frozen=True)
class Serving:
    """What this node's agent does for one cluster, as the health endpoints judge it."""

    node: str
    acting_epoch: int | None
    lease_holder: str | None
    lease_epoch: int | None
    chain: ChainState
    chain_epoch: int | None
    following: tuple[str, int] | None  # (primary, epoch) this node last rejoined as a standby
    volumes_joined: bool = True
    has_postgres: bool = False
    postgres_streaming: bool | None = None  # a running standby receiving WAL; None: not known


@dataclass(frozen=True)
class Verdict:
    """200 (`ok`) or 503, and why: one CamelCase word, then details."""

    ok: bool
    reason: str


def primary_verdict(s: Serving) -> Verdict:
    """Primary: this node may act under the Lease and its chain is up for that epoch, so a
    load balancer may send it the clients."""
    if s.acting_epoch is None:
        if s.lease_holder == s.node:
            return Verdict(False, "NotActing: the Lease names this node but no renew succeeded within renewDeadline")
        return Verdict(False, f"NotPrimary: {s.lease_holder or 'nobody'} holds the Lease")
    if s.chain is not ChainState.UP or s.chain_epoch != s.acting_epoch:
        return Verdict(
            False, f"ChainNotUp: this node holds the Lease at epoch {s.acting_epoch}; its chain is {s.chain.value}"
        )
    return Verdict(True, f"Primary: chain up at epoch {s.acting_epoch}")


def replica_verdict(s: Serving) -> Verdict:
    """Replica: nothing of the chain runs here and this node follows the current holder, its
    DRBD volumes connected and its PostgreSQL (if any) streaming from it."""
    if s.acting_epoch is not None or s.chain is not ChainState.DOWN:
        return Verdict(False, f"NotStandby: the chain is {s.chain.value} on this node")
    if s.lease_holder is None or s.lease_holder == s.node:
        return Verdict(False, "NoPrimary: no other node holds the Lease")
    if s.following != (s.lease_holder, s.lease_epoch):
        return Verdict(
            False, f"NotFollowing: not rejoined as a standby of {s.lease_holder} at epoch {s.lease_epoch} yet"
        )
    if not s.volumes_joined:
        return Verdict(False, "VolumesNotJoined: a DRBD volume is not up as a connected Secondary")
    if s.has_postgres and not s.postgres_streaming:
        return Verdict(False, f"NotStreaming: PostgreSQL here is not streaming from {s.lease_holder}")
    return Verdict(True, f"Replicating: standby of {s.lease_holder} at epoch {s.lease_epoch}")
