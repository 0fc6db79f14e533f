"""The SpecApplied condition: every node runs the newest generation of the spec, or it says
which node waits and why (issue 14, item 3)."""

from __future__ import annotations

from typing import Any

from tandem_operator import core
from tests.unit.test_operator_core import cluster, cond, report, snap


def running(name: str, role: str = "Standby", generation: int = 3, pending: str = "") -> dict[str, Any]:
    return report(name, role) | {"appliedGeneration": generation, "pendingChange": pending}


def test_every_node_on_the_newest_generation_is_applied() -> None:
    s = snap(cluster(running("n1", "Primary"), running("n2")), generation=3)
    assert cond(core.reconcile(s), "SpecApplied") == ("True", "Applied", "n1 and n2 run generation 3 of the spec")


def test_a_node_behind_is_applying_without_an_event() -> None:
    s = snap(cluster(running("n1", "Primary", 2), running("n2")), generation=3)
    decision = core.reconcile(s)
    status, reason, message = cond(decision, "SpecApplied")
    assert (status, reason) == ("False", "Applying") and "n1 runs generation 2" in message
    assert "Applying" not in [e.reason for e in decision.events]


def test_a_change_waiting_for_a_switchover_names_the_node_and_posts_one_event() -> None:
    waiting = (
        "WaitingForSwitchover: spec.chain.mounts changed: applied once the chain is "
        "down on this node (the next switchover or failover)"
    )
    s = snap(cluster(running("n1", "Primary", 2, waiting), running("n2")), generation=3)
    decision = core.reconcile(s)
    status, reason, message = cond(decision, "SpecApplied")
    assert (status, reason) == ("False", "WaitingForSwitchover")
    assert message.startswith("n1: WaitingForSwitchover: spec.chain.mounts changed")
    event = next(e for e in decision.events if e.reason == "WaitingForSwitchover")
    assert event.type == "Normal"


def test_an_unsafe_timing_change_is_a_warning() -> None:
    refused = "NotApplicable: spec.leases: ...; this node keeps running the spec it has"
    s = snap(cluster(running("n1", "Primary", 2, refused), running("n2", generation=2, pending=refused)), generation=3)
    decision = core.reconcile(s)
    assert cond(decision, "SpecApplied")[1] == "NotApplicable"
    assert [e.type for e in decision.events if e.reason == "NotApplicable"] == ["Warning"]


def test_no_report_with_a_generation_is_unknown() -> None:
    s = snap(cluster(report("n1", "Primary"), report("n2")), generation=3)
    assert cond(core.reconcile(s), "SpecApplied")[:2] == ("Unknown", "NoReport")
