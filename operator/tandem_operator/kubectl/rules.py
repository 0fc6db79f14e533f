"""What the plugin decides before and after it writes, as pure functions of the objects read.

Each decision is an Outcome (the exit code and the one line that says why) or None (go on), so
the commands stay a thin layer of reads and writes around them and are tested without an API
server. The operator checks a switchover target again, fully; these checks catch what the user
can fix before asking, and say how.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from tandem.api.hacluster import HACluster, HAClusterStatus, IneligibleReason
from tandem.kube.lease import LeaseRecord
from tandem_operator.forced_failover import loss_report, renewal_age
from tandem_operator.messages import human_duration
from tandem_operator.snapshot import stale_after

# Exit codes (docs/kubectl-plugin.md#exit-codes).
DONE = 0
REFUSED = 1  # tandem refuses: the target is not fit, the operator refused, the API's rules
USAGE = 2  # bad input: unknown cluster, node or context, malformed name
TIMED_OUT = 3
UNREACHABLE = 4  # the API server cannot be reached, rejects the credentials or forbids the call


@dataclass(frozen=True)
class Outcome:
    code: int
    message: str


class Stop(Exception):
    """Ends a command early with its Outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def new_request_id() -> str:
    """A request id for the switchover and cleanup annotations: readable (when it was asked)
    and unique (two requests in the same second differ), well under the 63 characters that
    status.switchover.requestId allows."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def listing(names: Iterable[str]) -> str:
    return ", ".join(names) or "none"


def unknown_cluster(name: str, namespace: str, known: Iterable[str]) -> Outcome:
    return Outcome(
        USAGE,
        f"no HACluster {name!r} in namespace {namespace}; its HAClusters: "
        f"{listing(sorted(known))} (or pick another namespace with -n)",
    )


def node_problem(name: str, cluster: HACluster, node: str) -> Outcome | None:
    """Why `node` cannot be named for HACluster `name` (None: it is one of its nodes)."""
    nodes = [n.name for n in cluster.spec.nodes]
    if node in nodes:
        return None
    return Outcome(USAGE, f"{node} is not a node of HACluster {name}; its spec.nodes: {listing(nodes)}")


def switchover_problem(
    name: str, cluster: HACluster, lease: LeaseRecord | None, node: str, now: datetime
) -> Outcome | None:
    """Why `node` should not be asked to take HACluster `name` over (None: ask it), or that
    it already has (an Outcome with code DONE)."""
    unknown = node_problem(name, cluster, node)
    if unknown is not None:
        return unknown
    if lease is not None and lease.holder == node:
        return Outcome(DONE, f"{node} already holds the Lease of {name} (epoch {lease.epoch}): nothing to do")
    spec, status = cluster.spec, cluster.status or HAClusterStatus()
    if spec.paused:
        return Outcome(REFUSED, f"HACluster {name} is paused: nothing moves until `kubectl tandem resume {name}`")
    if status.switchover is not None and status.switchover.phase == "Pending":
        return Outcome(
            REFUSED,
            f"a switchover of {name} to {status.switchover.target} is in "
            f"progress: wait for it (`kubectl tandem status {name}`), then ask again",
        )
    if node in spec.standby_nodes:
        return Outcome(
            REFUSED, f"{node} is in standby (spec.standbyNodes of {name}): `kubectl tandem online {node} {name}` first"
        )
    report = next((r for r in status.nodes if r.name == node), None)
    if report is None or report.heartbeat_time is None:
        return Outcome(REFUSED, f"{node} has not reported for {name}: is its agent running?")
    if now - report.heartbeat_time > stale_after(cluster):
        return Outcome(
            REFUSED,
            f"{node}'s last report for {name} is from "
            f"{report.heartbeat_time:%Y-%m-%d %H:%M:%S}Z: is its agent running?",
        )
    # The Lease is the authority on NotSynchronous; the node's own verdict may trail it.
    listed = lease.sync_standbys if lease is not None else None
    trailing = report.ineligible_reason is IneligibleReason.NOT_SYNCHRONOUS and node in (listed or ())
    if report.eligible is not True and not trailing:
        why = report.why_ineligible or (
            "its agent has not said whether it may" if report.eligible is None else "no reason given"
        )
        return Outcome(REFUSED, f"{node} may not take over {name}: {why}")
    return None


def standby_problem(name: str, cluster: HACluster, node: str) -> Outcome | None:
    """Why `node` may not be put in standby in HACluster `name` (None: it may)."""
    unknown = node_problem(name, cluster, node)
    if unknown is not None:
        return unknown
    spec = cluster.spec
    others = [n.name for n in spec.nodes if n.name != node and n.name not in spec.standby_nodes]
    if not others:
        return Outcome(
            REFUSED,
            f"putting {node} in standby would leave no node of {name} able to "
            f"be primary (in standby: {listing(spec.standby_nodes)}): bring one online "
            "first",
        )
    return None


def standby_nodes_after(cluster: HACluster, node: str, standby: bool) -> list[str]:
    """spec.standbyNodes with `node` added (standby) or removed (online), order kept."""
    current = list(cluster.spec.standby_nodes)
    if standby:
        return current if node in current else [*current, node]
    return [n for n in current if n != node]


def clusters_with_node(clusters: Mapping[str, HACluster], node: str, namespace: str) -> list[str]:
    """The HAClusters whose spec.nodes lists `node`, as `crm node standby` acts on its cluster."""
    found = sorted(name for name, c in clusters.items() if any(n.name == node for n in c.spec.nodes))
    if not found:
        raise Stop(
            Outcome(
                USAGE,
                f"no HACluster in namespace {namespace} lists node {node} in "
                f"spec.nodes; its HAClusters: {listing(sorted(clusters))}",
            )
        )
    return found


def switchover_result(name: str, cluster: HACluster, request_id: str, node: str) -> Outcome | None:
    """How the switchover request `request_id` ended (None: not yet)."""
    status = cluster.status or HAClusterStatus()
    switchover = status.switchover
    if switchover is None or switchover.request_id != request_id:
        return None
    if switchover.phase == "Refused":
        return Outcome(
            REFUSED,
            f"the operator refused the switchover of {name} to {node}: {switchover.reason}: {switchover.message}",
        )
    if switchover.phase == "Completed" and status.primary == node:
        last = status.last_failover
        took = (
            f" in {human_duration(last.duration_ms)}"
            if last is not None and last.to_node == node and last.duration_ms is not None
            else ""
        )
        return Outcome(DONE, f"{node} is the primary of {name} (epoch {status.epoch}){took}")
    return None


def wait_timed_out(name: str, cluster: HACluster, request_id: str, seconds: float) -> Outcome:
    """What a wait that ran out says: whether the operator has taken the request up at all."""
    switchover = (cluster.status or HAClusterStatus()).switchover
    if switchover is None or switchover.request_id != request_id:
        return Outcome(
            TIMED_OUT,
            f"timed out after {seconds:g} s: the operator has not taken "
            f"request {request_id} up (is it running?); the request stands",
        )
    said = f" ({switchover.reason}: {switchover.message})" if switchover.message else ""
    return Outcome(
        TIMED_OUT,
        f"timed out after {seconds:g} s: the switchover of {name} to "
        f"{switchover.target} is {switchover.phase}{said}; follow it with "
        f"`kubectl tandem status {name}`",
    )


# --- forced failover ----------------------------------------------------------------------------


def failover_problem(name: str, cluster: HACluster, lease: LeaseRecord | None, node: str) -> Outcome | None:
    """Why a forced failover of HACluster `name` to `node` cannot be asked for (None: it can),
    or that `node` already is primary (code DONE). The operator and the agent check again."""
    unknown = node_problem(name, cluster, node)
    if unknown is not None:
        return unknown
    if lease is not None and lease.holder == node:
        return Outcome(DONE, f"{node} already holds the Lease of {name} (epoch {lease.epoch}): nothing to force")
    spec, status = cluster.spec, cluster.status or HAClusterStatus()
    if spec.paused:
        return Outcome(
            REFUSED, f"HACluster {name} is paused: nothing moves, forced or not, until `kubectl tandem resume {name}`"
        )
    if node in spec.standby_nodes:
        return Outcome(
            REFUSED, f"{node} is in standby (spec.standbyNodes of {name}): `kubectl tandem online {node} {name}` first"
        )
    forced = status.forced_failover
    if forced is not None and forced.phase == "Pending":
        return Outcome(
            REFUSED,
            f"a forced failover of {name} to {forced.target} is in progress "
            f"(request {forced.request_id}): wait for it (`kubectl tandem status "
            f"{name}`)",
        )
    report = next((r for r in status.nodes if r.name == node), None)
    if report is not None and report.ineligible_reason is IneligibleReason.INVALID_SPEC:
        return Outcome(
            REFUSED, f"{node} refuses the spec of {name} and runs none of its chain: {report.ineligible_message}"
        )
    return None


def loss_screen(name: str, cluster: HACluster, lease: LeaseRecord | None, node: str, now: datetime) -> list[str]:
    """What a forced failover to `node` may lose (operator's `loss_report`), and whether a
    safer way exists: a switchover (the holder alive, `node` fit) or waiting (`node` eligible,
    so it takes over by itself once the Lease expires)."""
    lines = [f"Forcing {node} to be the primary of {name} may lose data:"]
    lines += [f"  - {line}" for line in loss_report(cluster, lease, node, now)]
    holder = lease.holder if lease is not None else None
    report = next((r for r in (cluster.status or HAClusterStatus()).nodes if r.name == node), None)
    renewed = renewal_age(cluster, lease, now)
    alive = renewed is not None and renewed[0] < renewed[1]
    if alive and switchover_problem(name, cluster, lease, node, now) is None:
        lines.append(
            f"{node} is fit for a switchover: if {holder} is alive, `kubectl tandem "
            f"switchover {name} --to {node}` moves the primary without losing anything"
        )
    elif report is not None and report.eligible is True:
        lines.append(f"{node} is eligible: once the Lease is free or expires it takes over by itself, without force")
    lines.append(
        f"A forced failover makes {node} primary with the data it has: what it lacks "
        f"is lost, and the old primary, if it returns, is resynced from {node}."
    )
    return lines


def failover_result(name: str, cluster: HACluster, request_id: str, node: str) -> Outcome | None:
    """How the forced failover request `request_id` ended (None: not yet)."""
    forced = (cluster.status or HAClusterStatus()).forced_failover
    if forced is None or forced.request_id != request_id or forced.phase == "Pending":
        return None
    if forced.phase == "Refused":
        return Outcome(
            REFUSED, f"the forced failover of {name} to {node} was refused: {forced.reason}: {forced.message}"
        )
    return Outcome(DONE, forced.message)


def failover_timed_out(name: str, cluster: HACluster, request_id: str, seconds: float) -> Outcome:
    forced = (cluster.status or HAClusterStatus()).forced_failover
    if forced is None or forced.request_id != request_id:
        return Outcome(
            TIMED_OUT,
            f"timed out after {seconds:g} s: the operator has not taken "
            f"request {request_id} up (is it running?); the request stands",
        )
    return Outcome(
        TIMED_OUT,
        f"timed out after {seconds:g} s: the forced failover of {name} is "
        f"{forced.phase} ({forced.message}); follow it with `kubectl tandem status "
        f"{name}`",
    )
