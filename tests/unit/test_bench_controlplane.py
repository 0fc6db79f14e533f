"""`tandem bench controlplane` writes what tandem writes: objects and reports the API accepts."""

from __future__ import annotations

from bench import controlplane
from tandem.api.hacluster import HAClusterSpec, NodeReport


def test_each_cluster_is_a_valid_pair_with_its_own_unit() -> None:
    specs = [HAClusterSpec.model_validate(controlplane.hacluster(i)["spec"]) for i in range(6)]
    assert all(len({n.name for n in spec.nodes}) == 2 for spec in specs)
    assert len({spec.chain.services[0].unit for spec in specs}) == 6


def test_the_status_entry_is_a_node_report_of_its_node() -> None:
    report = NodeReport.model_validate(controlplane.node_entry("load2", 7))
    assert (report.name, report.epoch, report.eligible) == ("load2", 7, True)
