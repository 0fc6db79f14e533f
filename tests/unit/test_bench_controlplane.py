"""`tandem bench controlplane` writes what tandem writes: the scale benchmark's objects and
reports the API accepts."""

from __future__ import annotations

import kubernetes

from bench import controlplane
from tandem.api.common import CLUSTER_LABEL, MEMBERS_ANNOTATION
from tandem.api.hacluster import NodeReport
from tandem_operator.kube import parse_cluster
from tandem_operator.lease import lease_members


def test_the_load_uses_the_scale_benchmarks_clusters_on_three_nodes() -> None:
    load = controlplane.Load(kubernetes.client.ApiClient(), 4)
    assert [d["kind"] for d in load.docs].count("HACluster") == 4
    assert load.pairs == {
        "s000": ["scale1", "scale2"],
        "s001": ["scale2", "scale3"],
        "s002": ["scale3", "scale1"],
        "s003": ["scale1", "scale2"],
    }


def test_the_status_entry_is_a_node_report_of_its_node() -> None:
    report = NodeReport.model_validate(controlplane.node_entry("scale2", 7))
    assert (report.name, report.epoch, report.eligible) == ("scale2", 7, True)


def test_each_lease_is_the_operators_taken_by_the_first_node_of_its_pair() -> None:
    load = controlplane.Load(kubernetes.client.ApiClient(), 3)
    for doc in (d for d in load.docs if d["kind"] == "HACluster"):
        name = doc["metadata"]["name"]
        lease = controlplane.held_lease(doc, "uid-1")
        assert lease["metadata"]["labels"] == {CLUSTER_LABEL: name}
        assert lease["metadata"]["annotations"] == {MEMBERS_ANNOTATION: lease_members(parse_cluster(doc))}
        assert lease["spec"]["holderIdentity"] == load.pairs[name][0]
        assert lease["spec"]["leaseTransitions"] == 1
