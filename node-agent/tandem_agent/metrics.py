"""The agent's Prometheus metrics and its `/primary` and `/replica` health endpoints.

Gauges are read at scrape time from the ClusterAgents as they are (`view_of`): attributes their
threads replace whole, the agent's lock through `acting_epoch()` and the monitor's through its
reports; no I/O, so a hung PostgreSQL or API server never holds a scrape up. Counters are
incremented where things happen: the keeper's Lease writes, takeovers, step-downs and repairs
(agent.py, through `ClusterEvents`) and failed API calls (kube.py). Everything goes to a
private registry (docs/monitoring.md lists each metric).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tandem.api.hacluster import INVALID_SPEC
from tandem.metrics_server import MetricsServer, Reply, serve
from tandem_agent.core import Serving, Verdict, primary_verdict, replica_verdict

if TYPE_CHECKING:
    from tandem_agent.agent import ClusterAgent

OPTION = "--metrics-address"
CLUSTER_LABELS = ("namespace", "cluster", "node")
# The monitor's states that make a member unhealthy; Unknown (not checked since the chain came
# up or was repaired) is not, as for the operator's ResourcesHealthy condition.
UNHEALTHY = ("Failing", "Failed", "Repairing")
# A renew write's timeout is 1 s (kube.TIMEOUT); renewDeadline is a few seconds.
RENEW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class AgentEvents:
    """The counters and the histogram, updated by the agent's threads as things happen."""

    def __init__(self) -> None:
        self.renew_seconds = Histogram(
            "tandem_agent_lease_renew_seconds",
            "How long each Lease renew write took, failed ones included.",
            CLUSTER_LABELS,
            buckets=RENEW_BUCKETS,
            registry=None,
        )
        self.renew_failures = Counter(
            "tandem_agent_lease_renew_failures",
            "Lease renew writes that failed (refused, timed out, no answer).",
            CLUSTER_LABELS,
            registry=None,
        )
        self.takeovers = Counter(
            "tandem_agent_takeovers",
            "Times this node took the Lease, by reason.",
            (*CLUSTER_LABELS, "reason"),
            registry=None,
        )
        self.stepdowns = Counter(
            "tandem_agent_stepdowns",
            "Times this node tore down a chain that was up, by reason.",
            (*CLUSTER_LABELS, "reason"),
            registry=None,
        )
        self.repairs = Counter(
            "tandem_agent_repairs",
            "Repairs in place attempted, by kind of member.",
            (*CLUSTER_LABELS, "kind"),
            registry=None,
        )
        self.api_errors = Counter(
            "tandem_agent_api_errors", "API server calls that failed, by kind of failure.", ("kind",), registry=None
        )

    def collectors(self) -> tuple[Collector, ...]:
        return (self.renew_seconds, self.renew_failures, self.takeovers, self.stepdowns, self.repairs, self.api_errors)


EVENTS = AgentEvents()


class ClusterEvents:
    """The events of one cluster on this node: what agent.py calls."""

    def __init__(self, namespace: str, cluster: str, node: str, events: AgentEvents = EVENTS) -> None:
        self.labels = (namespace, cluster, node)
        self.events = events

    @contextlib.contextmanager
    def lease_write(self, renew: bool) -> Iterator[None]:
        """Time a renew write; one that raises counts as failed. Taking the Lease is not a
        renew: losing that race to another node is no trouble."""
        started = time.monotonic()
        try:
            yield
        except Exception:
            if renew:
                self.events.renew_failures.labels(*self.labels).inc()
            raise
        finally:
            if renew:
                self.events.renew_seconds.labels(*self.labels).observe(time.monotonic() - started)

    def took_over(self, cause: str) -> None:
        self.events.takeovers.labels(*self.labels, cause).inc()

    def stepped_down(self, cause: str) -> None:
        self.events.stepdowns.labels(*self.labels, cause).inc()

    def repair_attempted(self, kind: str) -> None:
        self.events.repairs.labels(*self.labels, kind).inc()


def api_error_kind(status: int | None) -> str | None:
    """One word for a failed API server call (`status`: its HTTP status, None: no answer).
    None for 404, an answer rather than a failure (a Lease not created yet)."""
    if status is None:
        return "Unavailable"
    if status == 404:
        return None
    known = {401: "Unauthorized", 403: "Forbidden", 409: "Conflict", 422: "Invalid", 429: "TooManyRequests"}
    return known.get(status, "ServerError" if status >= 500 else "Rejected")


def count_api_error(status: int | None, events: AgentEvents = EVENTS) -> None:
    kind = api_error_kind(status)
    if kind is not None:
        events.api_errors.labels(kind).inc()


# --- what a scrape or a health check reads ---------------------------------------------------


@dataclass(frozen=True)
class ClusterView:
    """One cluster on this node, as read at one scrape."""

    namespace: str
    cluster: str
    serving: Serving
    epoch: int
    resources: tuple[tuple[str, str, bool], ...] = ()  # (kind, name, healthy) on the primary
    postgres_lag_seconds: float | None = None  # a running standby's replay lag
    drbd_out_of_sync: tuple[tuple[str, int], ...] = ()  # (volume, bytes)


@dataclass(frozen=True)
class NodeState:
    node: str
    clusters: Mapping[str, ClusterView]  # by namespace/name
    refused: Mapping[str, str]  # namespace/name: why this node refuses it


def view_of(agent: ClusterAgent) -> ClusterView:
    """Read one ClusterAgent without I/O (the last PostgreSQL and DRBD status it observed)."""
    shared = agent.shared()
    runner, lease, pg = agent.runner, shared.lease, shared.postgres_seen
    acting = agent.acting_epoch()
    standby = pg is not None and pg.running and pg.role == "standby"
    serving = Serving(
        node=agent.node,
        acting_epoch=acting,
        lease_holder=lease.holder if lease else None,
        lease_epoch=lease.epoch if lease else None,
        chain=runner.state,
        chain_epoch=runner.epoch,
        following=runner.following,
        volumes_joined=runner.volumes_joined(),
        has_postgres=runner.postgres is not None,
        postgres_streaming=None if pg is None else bool(standby and pg.receiving),
    )
    return ClusterView(
        namespace=agent.kube.namespace,
        cluster=agent.cluster.name,
        serving=serving,
        epoch=acting if acting is not None else (lease.epoch if lease else 0),
        resources=tuple((r["kind"], r["name"], r["state"] not in UNHEALTHY) for r in agent.monitor.reports()),
        postgres_lag_seconds=pg.replay_lag_s if standby else None,
        drbd_out_of_sync=tuple(
            (name, status.out_of_sync_bytes) for name, status in runner.drbd.items() if status is not None
        ),
    )


def node_state(node: str, clusters: Mapping[str, ClusterAgent], refused: Mapping[str, str]) -> NodeState:
    # dict() copies in one step: the main thread may start another cluster meanwhile.
    return NodeState(node, {key: view_of(agent) for key, agent in dict(clusters).items()}, dict(refused))


class AgentCollector(Collector):
    """The gauges, from the node's state at each scrape."""

    def __init__(self, state: Callable[[], NodeState]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        primary = GaugeMetricFamily(
            "tandem_agent_primary",
            "1 while this node acts as the cluster's primary with its chain up (GET /primary answers 200), else 0.",
            labels=CLUSTER_LABELS,
        )
        replicating = GaugeMetricFamily(
            "tandem_agent_replicating",
            "1 while this node is a standby following the primary (GET /replica answers 200), else 0.",
            labels=CLUSTER_LABELS,
        )
        epoch = GaugeMetricFamily(
            "tandem_agent_epoch",
            "The epoch this node acts under, else the Lease's as last read.",
            labels=CLUSTER_LABELS,
        )
        healthy = GaugeMetricFamily(
            "tandem_agent_resource_healthy",
            "1 unless the primary's monitor of this member of the chain finds it failing, failed or being repaired.",
            labels=(*CLUSTER_LABELS, "kind", "resource"),
        )
        lag = GaugeMetricFamily(
            "tandem_agent_postgres_lag_seconds",
            "Replay lag of this node's PostgreSQL standby (0 once it replayed all it received).",
            labels=CLUSTER_LABELS,
        )
        out_of_sync = GaugeMetricFamily(
            "tandem_agent_drbd_out_of_sync_bytes",
            "Bytes of the DRBD volume not yet in sync with a peer (the largest over its peers).",
            labels=(*CLUSTER_LABELS, "volume"),
        )
        for view in state.clusters.values():
            labels = [view.namespace, view.cluster, state.node]
            primary.add_metric(labels, float(primary_verdict(view.serving).ok))
            replicating.add_metric(labels, float(replica_verdict(view.serving).ok))
            epoch.add_metric(labels, float(view.epoch))
            for kind, name, ok in view.resources:
                healthy.add_metric([*labels, kind, name], float(ok))
            if view.postgres_lag_seconds is not None:
                lag.add_metric(labels, view.postgres_lag_seconds)
            for volume, size in view.drbd_out_of_sync:
                out_of_sync.add_metric([*labels, volume], float(size))
        yield from (primary, replicating, epoch, healthy, lag, out_of_sync)


VERDICTS: dict[str, Callable[[Serving], Verdict]] = {"primary": primary_verdict, "replica": replica_verdict}


def health_reply(path: str, state: NodeState) -> Reply | None:
    """`/primary/<namespace>/<cluster>` or `/replica/...`: 200 or 503 with the verdict's
    reason, 404 for a cluster this agent does not serve; None for any other path."""
    kind, _, key = path.strip("/").partition("/")
    if kind not in VERDICTS or key.count("/") != 1:
        return None
    if key in state.refused:
        return Reply(503, f"{INVALID_SPEC}: {state.refused[key]}\n")
    view = state.clusters.get(key)
    if view is None:
        return Reply(404, f"NotServed: the agent of {state.node} does not serve HACluster {key}\n")
    verdict = VERDICTS[kind](view.serving)
    return Reply(200 if verdict.ok else 503, f"{verdict.reason}\n")


def registry(state: Callable[[], NodeState], events: AgentEvents = EVENTS) -> CollectorRegistry:
    found = CollectorRegistry()
    for collector in events.collectors():
        found.register(collector)
    found.register(AgentCollector(state))
    ProcessCollector(registry=found)
    return found


def start(
    address: tuple[str, int] | None, state: Callable[[], NodeState], events: AgentEvents = EVENTS
) -> MetricsServer | None:
    """Serve /metrics, /healthz, /primary/... and /replica/... (None: disabled or the port
    could not be bound, which is logged and otherwise ignored)."""

    def route(path: str) -> Reply | None:
        return health_reply(path, state())

    return serve(address, registry(state, events), route, OPTION)
