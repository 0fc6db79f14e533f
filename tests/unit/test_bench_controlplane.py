"""`tandem bench controlplane` writes what tandem writes: the scale benchmark's objects and
reports the API accepts."""

from __future__ import annotations

import kubernetes

from bench import controlplane
from tandem.api.hacluster import NodeReport


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
