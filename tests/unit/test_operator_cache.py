"""The operator's watch-fed cache (operator/tandem_operator/cache.py): lookups over kopf-shaped
indexes, waiting for the operator's own writes, and when a decision must read fresh."""

from __future__ import annotations

from typing import Any

import pytest

from tandem.api.common import (
    ACCEPT_DATA_LOSS_ANNOTATION,
    FORCE_FAILOVER_ANNOTATION,
    FORCE_FAILOVER_ID_ANNOTATION,
    SWITCHOVER_ANNOTATION,
    SWITCHOVER_ID_ANNOTATION,
)
from tandem.api.drbdvolume import DRBDVolume
from tandem.api.floatingip import FloatingIP
from tandem.kube.lease import LeaseRecord
from tandem_operator.cache import Cache, Catchup, ClusterEntry, Entry, fresh_read_needed, slim
from tandem_operator.kube import parse_cluster, parse_member, parse_node
from tandem_operator.snapshot import NodeInfo

CLUSTER = ("ns", "c")


def hacluster(
    name: str = "c", *, annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "tandem.dev/v1alpha1",
        "kind": "HACluster",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": "7",
            "annotations": annotations or {},
            "managedFields": [{"manager": "tandem-operator"}],
        },
        "spec": {"nodes": [{"name": "n1"}, {"name": "n2"}]},
        "status": status or {},
    }


def cluster_entry(body: dict[str, Any]) -> Entry[ClusterEntry]:
    meta = body["metadata"]
    return Entry(meta["name"], meta["resourceVersion"], ClusterEntry(slim(body), parse_cluster(body)))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- Catchup -------------------------------------------------------------------------------------

LEASE = ("leases", "ns", "c-primary")
STATUS = ("haclusters", "ns", "c")


def test_a_write_is_awaited_until_the_watch_delivers_its_version() -> None:
    catchup = Catchup(timeout=10, clock=Clock())
    catchup.wrote(CLUSTER, STATUS, "12", cached="11")
    catchup.wrote(CLUSTER, LEASE, "13", cached=None)
    assert catchup.pending(CLUSTER) == [STATUS, LEASE]
    assert catchup.pending(("ns", "other")) == [], "another cluster does not wait"
    catchup.seen(STATUS, "11")  # an event from before the write
    assert catchup.pending(CLUSTER) == [STATUS, LEASE]
    catchup.seen(STATUS, "12")
    catchup.seen(LEASE, "13")
    assert catchup.pending(CLUSTER) == []


def test_a_write_already_in_the_cache_or_without_change_is_not_awaited() -> None:
    catchup = Catchup(timeout=10, clock=Clock())
    catchup.wrote(CLUSTER, STATUS, "12", cached="12")  # the watch was quicker, or a no-op apply
    catchup.wrote(CLUSTER, LEASE, "", cached=None)  # no version to wait for
    catchup.seen(LEASE, "13")
    catchup.wrote(CLUSTER, LEASE, "13", cached="12")  # delivered before the write's answer
    assert catchup.pending(CLUSTER) == []


def test_a_watch_that_never_shows_the_write_is_given_up_on_after_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    catchup = Catchup(timeout=10, clock=clock)
    catchup.wrote(CLUSTER, STATUS, "12", cached="11")
    clock.now += 9.9
    assert catchup.pending(CLUSTER) == [STATUS]
    clock.now += 0.1
    assert catchup.pending(CLUSTER) == []
    assert "the watch has not shown the operator's write of haclusters c (resourceVersion 12)" in caplog.text
    catchup.seen(STATUS, "12")  # late: nothing left to clear
    assert catchup.pending(CLUSTER) == []


def test_a_newer_write_replaces_the_awaited_version_and_forget_drops_the_cluster() -> None:
    catchup = Catchup(timeout=10, clock=Clock())
    catchup.wrote(CLUSTER, STATUS, "12", cached="11")
    catchup.wrote(CLUSTER, STATUS, "14", cached="11")
    catchup.seen(STATUS, "12")
    assert catchup.pending(CLUSTER) == [STATUS]
    catchup.forget(CLUSTER)
    assert catchup.pending(CLUSTER) == []


# --- Cache lookups -------------------------------------------------------------------------------


def volume(name: str, version: str) -> Entry[DRBDVolume]:
    parsed = parse_member(
        {
            "metadata": {"name": name},
            "spec": {
                "cluster": "c",
                "resourceName": name,
                "minor": 0,
                "nodes": [
                    {"name": "n1", "disk": "/dev/vg0/d", "address": "198.19.0.1", "nodeId": 0},
                    {"name": "n2", "disk": "/dev/vg0/d", "address": "198.19.0.2", "nodeId": 1},
                ],
            },
        },
        DRBDVolume,
    )
    assert parsed is not None
    return Entry(name, version, parsed)


def test_cache_lookups_read_the_indexes_by_namespace_name_and_node() -> None:
    body = hacluster()
    lease = LeaseRecord("n1", 3, resource_version="21")
    cache = Cache(
        clusters_index={"ns": [cluster_entry(body), cluster_entry(hacluster("d"))]},
        volumes_index={"ns": [volume("data", "31")], "elsewhere": [volume("x", "1")]},
        floating_ips_index={},
        leases_index={("ns", "c-primary"): [Entry("c-primary", "21", lease)]},
        nodes_index={"n1": [Entry("n1", "5", NodeInfo("n1", unschedulable=True))]},
    )
    found = cache.cluster("ns", "c")
    assert found is not None and found.value.body["metadata"]["name"] == "c"
    assert "managedFields" not in found.value.body["metadata"], "the bulk is not kept"
    assert cache.cluster("ns", "zulu") is None and cache.cluster("other", "c") is None
    assert set(cache.clusters("ns")) == {"c", "d"}
    assert set(cache.volumes("ns")) == {"data"} and cache.floating_ips("ns") == {}
    assert cache.lease("ns", "c-primary") == lease and cache.lease("ns", "d-primary") is None
    assert cache.nodes(["n1", "n2"]) == {"n1": NodeInfo("n1", unschedulable=True)}
    assert cache.version(("haclusters", "ns", "c")) == "7"
    assert cache.version(("leases", "ns", "c-primary")) == "21"
    assert cache.version(("drbdvolumes", "ns", "data")) == "31"
    assert cache.version(("floatingips", "ns", "vip")) is None


def test_parsers_of_the_index_functions() -> None:
    assert parse_node(
        {"metadata": {"name": "n1", "annotations": {"tandem.dev/maintenance": "True"}}, "spec": {}}
    ) == NodeInfo("n1", maintenance=True)
    assert parse_node({"metadata": {"name": "n2"}, "spec": {"unschedulable": True}}) == NodeInfo(
        "n2", unschedulable=True
    )
    assert parse_member({"metadata": {"name": "vip"}, "spec": {"cluster": 5}}, FloatingIP) is None
    vol = volume("data", "1").value
    assert vol.spec.resource_name == "data"


# --- when a decision reads fresh -----------------------------------------------------------------


def check(annotations: dict[str, str], status: dict[str, Any] | None = None) -> str | None:
    body = hacluster(annotations=annotations, status=status)
    return fresh_read_needed(body, parse_cluster(body))


def test_an_unhandled_switchover_or_forced_failover_request_needs_a_fresh_read() -> None:
    switchover = {SWITCHOVER_ANNOTATION: "n2", SWITCHOVER_ID_ANNOTATION: "r1"}
    assert check({}) is None
    assert check(switchover) == "switchover request r1"
    assert check(switchover, {"handledSwitchoverId": "r1"}) is None, "handled: the cache is enough"
    assert check({SWITCHOVER_ANNOTATION: "n2"}) is None, "no request without an id"
    forced = {FORCE_FAILOVER_ANNOTATION: "n2", FORCE_FAILOVER_ID_ANNOTATION: "f1", ACCEPT_DATA_LOSS_ANNOTATION: "true"}
    assert check(forced) == "forced failover request f1"
    judged = {
        "forcedFailover": {
            "requestId": "f1",
            "target": "n2",
            "fromEpoch": 1,
            "phase": "Completed",
            "requestedAt": "2026-11-22T03:00:00Z",
        }
    }
    assert check(forced, judged) is None
    assert check({**forced, FORCE_FAILOVER_ID_ANNOTATION: "f2"}, judged) == "forced failover request f2"
