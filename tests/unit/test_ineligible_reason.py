"""Why a node may not take the Lease: one word of IneligibleReason (what the operator and the
plugin compare) and a message for a person, from the agent's Eligibility to the report the
operator parses; and the previous agent's "<Reason>: <details>" read in NodeReport alone."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from tandem import crdgen
from tandem.api.hacluster import LEGACY_INELIGIBLE_REASON, IneligibleReason, NodeReport
from tandem_agent.core import Ineligible, LocalHealth, eligibility, ineligible_report


def parsed(entry: dict[str, Any]) -> NodeReport:
    return NodeReport.model_validate({"name": "n1", "eligible": False} | entry)


@pytest.mark.parametrize("reason", list(IneligibleReason))
def test_every_reason_goes_through_the_report_as_itself(reason: IneligibleReason) -> None:
    entry = ineligible_report(Ineligible(reason, "spec.x: bad: fix it"))
    assert entry == {"ineligibleReason": reason.value, "ineligibleMessage": "spec.x: bad: fix it"}
    report = parsed(entry)
    assert report.ineligible_reason is reason
    assert report.ineligible_message == "spec.x: bad: fix it"
    assert report.why_ineligible == f"{reason.value}: spec.x: bad: fix it"
    assert parsed(report.model_dump(by_alias=True, exclude_none=True)) == report


def test_an_eligible_node_reports_neither_field() -> None:
    assert ineligible_report(eligibility(LocalHealth(), 5, 0).why) == {}
    report = parsed({"eligible": True})
    assert report.ineligible_reason is None and report.why_ineligible == ""


def test_the_report_keeps_a_long_message_whole_up_to_its_bound() -> None:
    entry = ineligible_report(Ineligible(IneligibleReason.INVALID_SPEC, "spec: " + "x" * 2000))
    assert len(entry["ineligibleMessage"]) == 1024
    assert parsed(entry).ineligible_message.startswith("spec: xxx")


def test_a_reason_without_a_message_reads_as_the_word() -> None:
    assert parsed({"ineligibleReason": "Paused"}).why_ineligible == "Paused"
    assert str(Ineligible(IneligibleReason.PAUSED)) == "Paused"


@pytest.mark.parametrize(
    ("legacy", "reason", "message"),
    [
        (
            "LagTooHigh: PostgreSQL replay lag 7.0s exceeds spec.failover.maxLagSeconds=5",
            IneligibleReason.LAG_TOO_HIGH,
            "PostgreSQL replay lag 7.0s exceeds spec.failover.maxLagSeconds=5",
        ),
        (
            "InvalidSpec: spec.chain.mounts[0].volume: DRBDVolume x is not in spec.chain.volumes: add it",
            IneligibleReason.INVALID_SPEC,
            "spec.chain.mounts[0].volume: DRBDVolume x is not in spec.chain.volumes: add it",
        ),
        ("Starting: not observed yet", IneligibleReason.STARTING, "not observed yet"),
        (
            "NotSynchronous: n2 lists none as synchronous standbys",
            IneligibleReason.NOT_SYNCHRONOUS,
            "n2 lists none as synchronous standbys",
        ),
        ("", None, ""),
    ],
)
def test_the_previous_agents_report_reads_as_the_two_fields(
    legacy: str, reason: IneligibleReason | None, message: str
) -> None:
    report = parsed({"ineligibleReason": legacy})
    assert (report.ineligible_reason, report.ineligible_message) == (reason, message)
    # The server defaults ineligibleMessage to "" when the previous agent left it out.
    assert parsed({"ineligibleReason": legacy, "ineligibleMessage": ""}) == report


@pytest.mark.parametrize("bad", ["Bogus: x", "lagtoohigh", "LagTooHigh:x", "LagTooHigh extra"])
def test_a_reason_that_is_not_one_of_the_words_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="ineligibleReason"):
        parsed({"ineligibleReason": bad})


def test_the_crd_takes_the_words_and_for_now_the_previous_agents_form() -> None:
    """The API server's rule, checked here with Python's re (the pattern uses nothing where
    Go's RE2 differs)."""
    schema = crdgen.crd(crdgen.KINDS[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    field = schema["properties"]["status"]["properties"]["nodes"]["items"]["properties"]["ineligibleReason"]
    words, legacy = field["anyOf"]
    assert words == {"enum": [r.value for r in IneligibleReason]}
    assert legacy == {"pattern": LEGACY_INELIGIBLE_REASON}

    def accepted(value: str) -> bool:
        return value in words["enum"] or re.search(legacy["pattern"], value) is not None

    for reason in IneligibleReason:
        assert accepted(reason.value) and accepted(f"{reason.value}: details")
    assert accepted("")
    for bad in ("Bogus: x", "lagtoohigh", "LagTooHigh:x", " LagTooHigh: x", "xLagTooHigh: x"):
        assert not accepted(bad), bad
