"""The operator's metrics: gauges from the last decision of each HACluster, failovers and
switchovers counted from the Events the core decided on, and /metrics over HTTP."""

from __future__ import annotations

import http.client
from datetime import timedelta

from prometheus_client import CollectorRegistry

from tandem.kube.lease import LeaseRecord
from tandem_operator import core, metrics
from tandem_operator.lease import EpochRecord
from tandem_operator.metrics import OperatorMetrics
from tandem_operator.snapshot import PrimaryChange
from tests.unit.test_operator_core import (
    NOW,
    failed_over,
    healthy,
    report,
    settle,
    snap,
    with_reports,
)

CLUSTER = {"namespace": "ns", "cluster": "c"}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_healthy_cluster_is_ready_with_its_epoch_and_primary() -> None:
    seen = OperatorMetrics()
    registry = seen.registry()
    seen.observe("ns", "c", core.reconcile(snap(healthy())))
    assert sample(registry, "tandem_cluster_ready", **CLUSTER) == 1
    assert sample(registry, "tandem_cluster_epoch", **CLUSTER) == 1
    assert sample(registry, "tandem_cluster_primary_info", **CLUSTER, node="n1") == 1
    assert sample(registry, "tandem_cluster_primary_info", **CLUSTER, node="n2") is None


def test_a_failover_is_counted_once_with_its_reason_and_moves_the_primary() -> None:
    seen = OperatorMetrics()
    registry = seen.registry()
    renewed = NOW - timedelta(seconds=5)
    s = failed_over({1: EpochRecord("n1", renewed), 2: EpochRecord("n2", NOW)})
    seen.observe("ns", "c", core.reconcile(s))
    seen.observe("ns", "c", core.reconcile(settle(s)))  # the next tick says nothing new
    assert sample(registry, "tandem_failovers_total", **CLUSTER, planned="false", reason="LeaseExpired") == 1
    assert sample(registry, "tandem_cluster_epoch", **CLUSTER) == 2
    assert sample(registry, "tandem_cluster_primary_info", **CLUSTER, node="n2") == 1
    assert sample(registry, "tandem_cluster_primary_info", **CLUSTER, node="n1") is None


def test_a_switchover_counts_its_request_and_its_hand_over() -> None:
    seen = OperatorMetrics()
    registry = seen.registry()
    requested = snap(healthy(), primary_change=PrimaryChange("n1", "n2"))
    seen.observe("ns", "c", core.reconcile(requested))
    assert sample(registry, "tandem_switchovers_total", **CLUSTER, outcome="Requested") == 1
    assert sample(registry, "tandem_cluster_ready", **CLUSTER) == 0  # SwitchingOver
    handed = LeaseRecord("n2", 2, NOW + timedelta(seconds=3), NOW + timedelta(seconds=3), 3)
    s = with_reports(
        settle(settle(requested), lease=handed, now=NOW + timedelta(seconds=3)),
        report("n1", epoch=1),
        report("n2", epoch=1),
    )
    seen.observe("ns", "c", core.reconcile(s))
    assert sample(registry, "tandem_failovers_total", **CLUSTER, planned="true", reason="Requested") == 1
    assert sample(registry, "tandem_failovers_total", **CLUSTER, planned="false", reason="LeaseExpired") is None


def test_a_deleted_cluster_loses_its_gauges_and_errors_are_counted() -> None:
    seen = OperatorMetrics()
    registry = seen.registry()
    seen.observe("ns", "c", core.reconcile(snap(healthy())))
    seen.forget("ns", "c")
    assert sample(registry, "tandem_cluster_ready", **CLUSTER) is None
    seen.reconcile_failed()
    seen.reconcile_failed()
    assert sample(registry, "tandem_operator_reconcile_errors_total") == 2


def test_metrics_over_http() -> None:
    seen = OperatorMetrics()
    seen.observe("ns", "c", core.reconcile(snap(healthy())))
    server = metrics.start(("127.0.0.1", 0), seen)
    assert server is not None
    try:
        answers = {}
        for path in ("/metrics", "/healthz", "/primary/ns/c"):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", path)
            response = conn.getresponse()
            answers[path] = (response.status, response.read().decode())
            conn.close()
    finally:
        server.stop()
    assert answers["/metrics"][0] == 200
    assert 'tandem_cluster_ready{cluster="c",namespace="ns"} 1.0' in answers["/metrics"][1]
    assert answers["/healthz"] == (200, "ok\n")
    assert answers["/primary/ns/c"][0] == 404  # the agents serve those, not the operator


def test_the_operator_takes_the_option() -> None:
    from tandem_operator.__main__ import parse_args

    assert parse_args([]).metrics_address == ("", 9465)
    assert parse_args(["--metrics-address", "127.0.0.1:8080"]).metrics_address == ("127.0.0.1", 8080)
