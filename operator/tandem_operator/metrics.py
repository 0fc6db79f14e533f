"""The operator's Prometheus metrics, from the decisions of the pure core.

After each decision the handlers call `METRICS.observe`: the cluster's Ready condition, epoch
and primary are kept for the next scrape, and the failovers and switchovers are counted from
the Events the core decided on (`core.Decision.events`), so they agree with what
`kubectl get events` shows. Everything goes to a private registry (docs/monitoring.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tandem.metrics_server import MetricsServer, serve
from tandem_operator import core

OPTION = "--metrics-address"
# The Events that record a change of primary: planned (a hand-over) or not (a failover).
FAILOVER_EVENTS = {"FailedOver": "false", "LeaseHandedOver": "true"}
# The Events of a switchover's life, and the outcome each counts as.
SWITCHOVER_EVENTS = {
    "SwitchoverRequested": "Requested",
    "SwitchoverRefused": "Refused",
    "SwitchoverInterrupted": "Interrupted",
    "SwitchoverCompleted": "Completed",
}


@dataclass(frozen=True)
class ClusterState:
    ready: bool
    epoch: int | None
    primary: str | None


def state_of(decision: core.Decision) -> ClusterState:
    status = decision.status
    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    return ClusterState(ready is not None and ready.status == "True", status.epoch, status.primary)


def tallies(decision: core.Decision) -> tuple[list[tuple[str, str]], list[str]]:
    """What one decision adds to the counters: (planned, reason) per failover, and the
    outcome per switchover Event."""
    record = decision.status.last_failover
    failovers = [
        (planned, record.reason if record is not None else "Unknown")
        for e in decision.events
        if (planned := FAILOVER_EVENTS.get(e.reason))
    ]
    switchovers = [outcome for e in decision.events if (outcome := SWITCHOVER_EVENTS.get(e.reason))]
    return failovers, switchovers


class OperatorMetrics(Collector):
    """The counters, and the latest state of each HACluster for the gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clusters: dict[tuple[str, str], ClusterState] = {}
        self.failovers = Counter(
            "tandem_failovers",
            "Changes of primary the operator recorded: planned ones (a "
            "switchover's hand-over) and failovers, by reason.",
            ("namespace", "cluster", "planned", "reason"),
            registry=None,
        )
        self.switchovers = Counter(
            "tandem_switchovers",
            "Switchover Events, by outcome: Requested, Refused, Interrupted, Completed.",
            ("namespace", "cluster", "outcome"),
            registry=None,
        )
        self.reconcile_errors = Counter(
            "tandem_operator_reconcile_errors",
            "Reconciles that failed (retried at the next tick), usually an API server error.",
            registry=None,
        )

    def observe(self, namespace: str, name: str, decision: core.Decision) -> None:
        """After a decision whose Events were posted."""
        with self._lock:
            self._clusters[(namespace, name)] = state_of(decision)
        failovers, switchovers = tallies(decision)
        for planned, reason in failovers:
            self.failovers.labels(namespace, name, planned, reason).inc()
        for outcome in switchovers:
            self.switchovers.labels(namespace, name, outcome).inc()

    def forget(self, namespace: str, name: str) -> None:
        """A deleted HACluster: its gauges go; its counters stay until the operator restarts."""
        with self._lock:
            self._clusters.pop((namespace, name), None)

    def reconcile_failed(self) -> None:
        self.reconcile_errors.inc()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            clusters = dict(self._clusters)
        ready = GaugeMetricFamily(
            "tandem_cluster_ready",
            "1 while the HACluster's Ready condition is True, else 0.",
            labels=("namespace", "cluster"),
        )
        epoch = GaugeMetricFamily(
            "tandem_cluster_epoch",
            "The epoch of the HACluster's Lease (status.epoch).",
            labels=("namespace", "cluster"),
        )
        primary = GaugeMetricFamily(
            "tandem_cluster_primary_info",
            "1 for the node holding the HACluster's Lease (status.primary); none while no node does.",
            labels=("namespace", "cluster", "node"),
        )
        for (namespace, name), state in sorted(clusters.items()):
            ready.add_metric([namespace, name], float(state.ready))
            if state.epoch is not None:
                epoch.add_metric([namespace, name], float(state.epoch))
            if state.primary is not None:
                primary.add_metric([namespace, name, state.primary], 1.0)
        yield from (ready, epoch, primary)
        for counter in (self.failovers, self.switchovers, self.reconcile_errors):
            yield from counter.collect()

    def registry(self) -> CollectorRegistry:
        found = CollectorRegistry()
        found.register(self)
        ProcessCollector(registry=found)
        return found


METRICS = OperatorMetrics()


def start(address: tuple[str, int] | None, metrics: OperatorMetrics = METRICS) -> MetricsServer | None:
    """Serve /metrics and /healthz (None: disabled, or the port could not be bound, which is
    logged and otherwise ignored)."""
    return serve(address, metrics.registry(), None, OPTION)
