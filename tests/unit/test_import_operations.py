"""Pacemaker ops -> tandem's monitor settings and timeouts (tandem.importer.operations)."""

from __future__ import annotations

import pytest

from tandem.importer.model import Attribute, Operation, Source
from tandem.importer.operations import map_operation, merge, seconds

HERE = Source("t.crm", 1)


def op(action: str, **attributes: str) -> Operation:
    return Operation(action, tuple(Attribute(k.replace("_", "-"), v, HERE) for k, v in attributes.items()), HERE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20s", 20),
        ("20", 20),
        ("2m", 120),
        ("1min", 60),
        ("1h", 3600),
        ("1500ms", 2),
        ("10msec", 1),
        (" 30 s ", 30),
        ("0", 1),
    ],
)
def test_pacemaker_durations_in_whole_seconds_rounded_up(text: str, expected: int) -> None:
    assert seconds(text) == expected


@pytest.mark.parametrize("text", ["", "s", "20 days", "-5s", "1.5s", "P1D", "20s;reboot"])
def test_unreadable_durations_are_none(text: str) -> None:
    assert seconds(text) is None


def test_a_primary_monitor_carries_its_timeout_not_its_interval() -> None:
    found = map_operation("mount", op("monitor", interval="20s", timeout="40s"))
    assert found.carried and found.target == "monitors.mounts"
    assert found.settings == (("timeoutSeconds", 40),)
    assert "periodSeconds stays 1" in found.outcome


def test_postgres_monitor_and_start_timeout_go_to_chain_postgres() -> None:
    monitor = map_operation("PostgreSQL", op("monitor", interval="15s", timeout="10s", role="Promoted"))
    assert (monitor.target, monitor.settings) == ("postgres.monitor", (("timeoutSeconds", 10),))
    start = map_operation("PostgreSQL", op("start", timeout="60s", interval="0"))
    assert (start.carried, start.target, start.settings) == (True, "postgres", (("startTimeoutSeconds", 60),))


@pytest.mark.parametrize("role", ["Unpromoted", "Slave"])
def test_a_standby_monitor_is_not_carried(role: str) -> None:
    found = map_operation("volume", op("monitor", interval="31s", timeout="20s", role=role))
    assert not found.carried and not found.settings and "standby" in found.outcome


@pytest.mark.parametrize("kind", ["PostgreSQL", "service"])
def test_a_stop_timeout_is_not_carried_because_it_must_fit_the_demotion_budget(kind: str) -> None:
    found = map_operation(kind, op("stop", timeout="60s"))
    assert not found.carried and not found.settings and "demotionTimeoutMs" in found.outcome


def test_a_service_start_timeout_is_carried_and_its_monitor_is_not() -> None:
    assert map_operation("service", op("start", timeout="2min")).settings == (("startTimeoutSeconds", 120),)
    monitor = map_operation("service", op("monitor", interval="30s", timeout="100s"))
    assert not monitor.carried and "healthCheck" in monitor.outcome


@pytest.mark.parametrize(
    ("operation", "why"),
    [
        (op("monitor", interval="10s", timeout="soon"), "timeout=soon is not a duration"),
        (op("monitor", interval="often"), "interval=often is not a duration"),
        (op("monitor", interval="0"), "interval 0 checks nothing"),
        (op("monitor", interval="10s", timeout="2h"), "over tandem's 3600 s"),
        (op("promote", timeout="30s"), "tandem's own promote"),
        (op("start", timeout="30s"), "tandem's own start of floating IPs"),
    ],
)
def test_what_cannot_be_carried_says_why(operation: Operation, why: str) -> None:
    kind = "floating IP"
    found = map_operation(kind, operation)
    assert not found.carried and not found.settings and why in found.outcome


def test_extra_op_attributes_are_named_as_not_carried() -> None:
    found = map_operation("volume", op("monitor", interval="10s", timeout="20s", on_fail="restart"))
    assert found.carried and "on-fail=restart not carried over" in found.outcome


def test_members_of_one_kind_share_one_setting_and_a_clash_keeps_the_first() -> None:
    entry: dict[str, int] = {}
    assert merge(entry, (("timeoutSeconds", 20),)) is None
    assert merge(entry, (("timeoutSeconds", 20),)) is None
    assert merge(entry, (("timeoutSeconds", 40),)) == "timeoutSeconds 20"
    assert entry == {"timeoutSeconds": 20}
