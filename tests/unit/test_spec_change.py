"""Live changes (issue 14, item 3): which differences of a running cluster's spec apply on a
running primary without moving the Lease, which wait until the chain is down on the node, and
which cannot apply; and what the runner does on a running chain to apply one.

Clusters are built as the agent builds them (`resolve` from the objects it lists); the runner
test replaces only the address and systemd calls."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tandem_agent import chain
from tandem_agent.__main__ import node_environment, parse_args, resolve
from tandem_agent.chain import ChainRunner, ResolvedCluster
from tandem_agent.core import ChainState
from tandem_agent.drivers.base import Outcome
from tandem_agent.spec_change import (
    NOT_APPLICABLE,
    PAUSED,
    WAITING_FOR_SWITCHOVER,
    SpecChange,
    spec_change,
    timings_problem,
    verdict,
)
from tests.unit.test_refused_clusters import MAIL, obj, world

SECOND_VIP = obj(
    "mail-vips2", {"cluster": "mail", "addresses": [{"start": "198.18.0.3"}], "prefixLength": 24, "interface": "mgmt"}
)


def objects(*extra: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    w = world(MAIL)
    w["floatingips"] += list(extra)
    return w


def edited(edit: Any, *extra: dict[str, Any]) -> ResolvedCluster:
    """MAIL resolved after `edit(spec)` changed a copy of its spec."""
    changed = copy.deepcopy(MAIL)
    edit(changed["spec"])
    return resolve(changed, objects(*extra))


def running() -> ResolvedCluster:
    return resolve(MAIL, objects(SECOND_VIP))


def change(edit: Any, *extra: dict[str, Any]) -> SpecChange:
    return spec_change(running(), edited(edit, SECOND_VIP, *extra))


def add_vip(spec: dict[str, Any]) -> None:
    spec["chain"]["floatingIPs"].append("mail-vips2")


def append_service(spec: dict[str, Any]) -> None:
    spec["chain"]["services"].append({"name": "dovecot", "unit": "dovecot.service"})


def test_no_difference_is_empty_and_applies() -> None:
    nothing = change(lambda spec: None)
    assert nothing.empty
    assert verdict(nothing, chain_down=False, paused=False).apply


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        (add_vip, "spec.chain.floatingIPs: mail-vips2 added"),
        (lambda spec: spec["chain"].update(floatingIPs=[]), "spec.chain.floatingIPs: mail-vips removed"),
        (append_service, "spec.chain.services: dovecot added at the end"),
        (lambda spec: spec["chain"]["services"].clear(), "spec.chain.services: postfix removed from the end"),
        (
            lambda spec: spec["chain"]["services"][0].update(healthCheck={"tcp": {"port": 25}, "periodSeconds": 5}),
            "spec.chain.services[0] (postfix): health check or timeouts",
        ),
        (lambda spec: spec["chain"].update(monitors={"mounts": {"periodSeconds": 30}}), "spec.chain.monitors"),
        (lambda spec: spec["chain"]["postgres"].update(monitor={"failureThreshold": 5}), "spec.chain.postgres.monitor"),
        (lambda spec: spec.update(failover={"restartLimit": 5}), "spec.failover"),
        (lambda spec: spec.update(leases={"leaseDurationMs": 4000}), "spec.leases"),
    ],
)
def test_live_changes_apply_on_a_running_chain(edit: Any, what: str) -> None:
    found = change(edit)
    assert found.live == (what,) and not found.deferred and not found.not_applicable
    assert verdict(found, chain_down=False, paused=False).apply


def test_a_changed_floating_ip_object_is_live() -> None:
    moved = obj(
        "mail-vips",
        {"cluster": "mail", "addresses": [{"start": "198.18.0.4"}], "prefixLength": 24, "interface": "mgmt"},
    )
    newest = copy.deepcopy(MAIL)
    w = world(newest)
    w["floatingips"] = [moved]
    found = spec_change(resolve(MAIL, world(MAIL)), resolve(newest, w))
    assert found.live == ("FloatingIP mail-vips",) and not found.deferred


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        (lambda spec: spec["chain"]["mounts"][0].update(options=["noatime"]), "spec.chain.mounts"),
        (lambda spec: spec["chain"]["postgres"].update(port=5433), "spec.chain.postgres"),
        (
            lambda spec: spec["chain"]["services"].insert(0, {"name": "amavis", "unit": "amavis.service"}),
            "spec.chain.services: services reordered, or one changed or added before the last "
            "(only the end of the chain changes live)",
        ),
        (
            lambda spec: spec["chain"]["services"][0].update(unit="exim4.service"),
            "spec.chain.services: services reordered, or one changed or added before the last "
            "(only the end of the chain changes live)",
        ),
        (lambda spec: spec["nodes"][1].update(replicationAddress="198.19.0.203"), "spec.nodes"),
    ],
)
def test_changes_that_need_the_chain_down_wait_on_the_primary_and_apply_on_a_standby(edit: Any, what: str) -> None:
    found = change(edit)
    assert found.deferred == (what,)
    waiting = verdict(found, chain_down=False, paused=False)
    assert not waiting.apply
    assert waiting.pending.startswith(f"{WAITING_FOR_SWITCHOVER}: {what} changed")
    assert verdict(found, chain_down=True, paused=False).apply


def test_a_live_change_made_with_a_deferred_one_waits_with_it() -> None:
    def both(spec: dict[str, Any]) -> None:
        add_vip(spec)
        spec["chain"]["postgres"]["port"] = 5433

    found = change(both)
    assert found.live and found.deferred
    waiting = verdict(found, chain_down=False, paused=False)
    assert not waiting.apply and "nothing else is applied before" in waiting.pending


def test_a_changed_drbd_volume_object_waits_for_the_chain_to_go_down() -> None:
    newest = world(MAIL)
    newest["drbdvolumes"][0]["spec"]["port"] = 7790
    found = spec_change(resolve(MAIL, world(MAIL)), resolve(MAIL, newest))
    assert found.deferred == ("DRBDVolume mail-store",)


def test_paused_clusters_apply_nothing_until_resumed() -> None:
    found = change(add_vip)
    waiting = verdict(found, chain_down=False, paused=True)
    assert not waiting.apply and waiting.pending.startswith(f"{PAUSED}: ")
    assert "mail-vips2 added" in waiting.pending


def test_lease_timings_unsafe_across_the_switch_are_not_applied_and_say_how_to_split() -> None:
    # Each spec is valid alone (3000 > 1800 + 600 + 200 + 200; 10000 > 8000 + ...), but a
    # holder on the new renewDeadline and a standby still on the old leaseDuration could both
    # act as primary.
    def slower(spec: dict[str, Any]) -> None:
        spec["leases"] = {"leaseDurationMs": 10000, "renewIntervalMs": 2000, "renewDeadlineMs": 8000}

    found = change(slower)
    assert found.not_applicable and not found.live
    for chain_down in (True, False):
        refused = verdict(found, chain_down=chain_down, paused=False)
        assert not refused.apply and refused.pending.startswith(f"{NOT_APPLICABLE}: spec.leases")
        assert "raise leaseDurationMs first" in refused.pending


def test_timings_split_in_two_edits_are_each_safe() -> None:
    base = running().spec.leases
    first = base.model_copy(update={"lease_duration_ms": 10000})
    second = first.model_copy(update={"renew_interval_ms": 2000, "renew_deadline_ms": 8000})
    assert timings_problem(base, first) is None
    assert timings_problem(first, second) is None
    assert timings_problem(base, second) is not None


# --- the runner applies a live change on a running chain ---------------------------------


class Units:
    """The systemd calls, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def start(self, name: str) -> Outcome:
        self.calls.append(("start", name))
        return Outcome(True, f"{name} started")

    def stop(self, name: str) -> Outcome:
        self.calls.append(("stop", name))
        return Outcome(True, f"{name} stopped")


def runner_for(cluster: ResolvedCluster, tmp_path: Path, units: Units) -> ChainRunner:
    env = node_environment(parse_args(["--node", "mail1", "--state-dir", str(tmp_path)]), lambda namespace, name: None)
    env = dataclasses.replace(env, service_backend=lambda name, specs: units)
    return ChainRunner(cluster, env)


@pytest.fixture
def address_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, tuple[str, ...]]]:
    calls: list[tuple[str, str, tuple[str, ...]]] = []

    def present(netns: Any, interface: str, wanted: Any, announce: Any = None) -> Outcome:
        calls.append(("add", interface, tuple(map(str, wanted))))
        return Outcome(False)

    def absent(netns: Any, interface: str, unwanted: Any) -> Outcome:
        calls.append(("remove", interface, tuple(map(str, unwanted))))
        return Outcome(True, "removed")

    monkeypatch.setattr(chain.addresses, "ensure_present", present)
    monkeypatch.setattr(chain.addresses, "ensure_absent", absent)
    return calls


def test_a_running_primary_drops_what_goes_then_adds_what_comes(
    tmp_path: Path, address_calls: list[tuple[str, str, tuple[str, ...]]]
) -> None:
    units = Units()
    old = running()
    runner = runner_for(old, tmp_path, units)
    runner.state, runner.epoch = ChainState.UP, 4

    def swap(spec: dict[str, Any]) -> None:
        spec["chain"]["floatingIPs"] = ["mail-vips2"]
        append_service(spec)

    candidate = runner_for(edited(swap, SECOND_VIP), tmp_path, units)
    runner.apply_spec(candidate)
    assert address_calls[0] == ("remove", "mgmt", ("198.18.0.2/24",))
    assert ("add", "mgmt", ("198.18.0.3/24",)) in address_calls
    assert units.calls == [("start", "postfix"), ("start", "dovecot")]
    assert (runner.state, runner.epoch) == (ChainState.UP, 4)
    assert [s.name for s in runner.steps][-2:] == ["postgres primary", "services"]
    assert "floating IPs mail-vips2" in [s.name for s in runner.steps]
    assert runner.cluster is candidate.cluster


def test_a_service_removed_from_the_end_is_stopped_on_the_primary_only(
    tmp_path: Path, address_calls: list[tuple[str, str, tuple[str, ...]]]
) -> None:
    def drop(spec: dict[str, Any]) -> None:
        spec["chain"]["services"].clear()

    for state, expected in ((ChainState.UP, [("stop", "postfix")]), (ChainState.DOWN, [])):
        units = Units()
        runner = runner_for(running(), tmp_path, units)
        runner.state = state
        runner.apply_spec(runner_for(edited(drop, SECOND_VIP), tmp_path, units))
        assert units.calls == expected
        assert runner.primary_services == []
    assert [c for c in address_calls if c[0] == "remove"] == []  # the addresses stayed


def test_a_standby_taking_a_new_postgres_spec_rejoins_with_it(tmp_path: Path) -> None:
    units = Units()
    runner = runner_for(running(), tmp_path, units)
    runner.state, runner.following, runner.password = ChainState.DOWN, ("mail2", 3), "secret"

    def port(spec: dict[str, Any]) -> None:
        spec["chain"]["postgres"]["port"] = 5433

    candidate = runner_for(edited(port, SECOND_VIP), tmp_path, units)
    runner.apply_spec(candidate)
    assert runner.following is None and runner.password is None
    assert runner.postgres is candidate.postgres
