"""An agent restarted on a standby adopts what runs instead of tearing it down: stopping a
streaming PostgreSQL only to start it again would stall the primary's synchronous commits.
Only a clean standby is adopted (nothing of the primary's side up); anything else is torn
down as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tandem_agent import chain
from tandem_agent.core import Action, ChainState, chain_decision
from tandem_agent.drivers.addresses import InterfaceNotFound
from tests.unit.test_agent_core import chain_snap
from tests.unit.test_spec_change import Units, runner_for, running


def restarted(**changes: Any) -> Any:
    fields: dict[str, Any] = {
        "acting_epoch": None,
        "lease_holder": "n2",
        "chain": ChainState.UNKNOWN,
        "found_running": True,
    }
    return chain_snap(**(fields | changes))


def test_a_clean_standby_is_adopted_and_anything_else_torn_down() -> None:
    adopted = chain_decision(restarted())
    assert adopted.action is Action.ADOPT and "standby of n2" in adopted.reason
    assert chain_decision(restarted(found_running=False)).action is Action.TEAR_DOWN
    assert chain_decision(restarted(deleting=True)).action is Action.TEAR_DOWN
    assert chain_decision(restarted(lease_holder="n1")).action is Action.TEAR_DOWN
    assert chain_decision(restarted(lease_holder=None)).action is Action.TEAR_DOWN
    assert chain_decision(restarted(chain=ChainState.UP)).action is Action.TEAR_DOWN


def test_a_restarted_holder_is_adopted_only_while_paused() -> None:
    holder = chain_snap(chain=ChainState.UNKNOWN, found_running=True)
    assert chain_decision(holder).action is Action.BRING_UP


class Active(Units):
    def __init__(self, active: set[str]) -> None:
        super().__init__()
        self.active = active

    def status(self, name: str) -> Any:
        return type("Status", (), {"active": name in self.active})()


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `primary_leftovers` reads of the node, to be set by each test."""
    seen: dict[str, Any] = {"addresses": (), "mounted": set(), "interface": True}

    def present(netns: Any, interface: str) -> tuple[Any, ...]:
        if not seen["interface"]:
            raise InterfaceNotFound(f"no interface {interface}")
        return tuple(seen["addresses"])

    monkeypatch.setattr(chain.addresses, "present", present)
    monkeypatch.setattr(chain.mounts, "is_mounted", lambda target: target in seen["mounted"])
    return seen


def test_a_standby_with_nothing_of_the_primary_up_is_clean(tmp_path: Path, node: dict[str, Any]) -> None:
    runner = runner_for(running(), tmp_path, Active(set()))
    assert runner.primary_leftovers() == []


def test_addresses_mounts_and_services_of_the_primary_are_leftovers(tmp_path: Path, node: dict[str, Any]) -> None:
    cluster = running()
    node["addresses"] = chain.floating_addresses(cluster.floating_ips["mail-vips"])
    node["mounted"] = {"/srv/mail"}
    runner = runner_for(cluster, tmp_path, Active({"postfix"}))
    assert runner.primary_leftovers() == ["floating IPs mail-vips", "mount /srv/mail", "service postfix"]
    node["interface"] = False
    node["mounted"] = set()
    runner = runner_for(cluster, tmp_path, Active(set()))
    assert runner.primary_leftovers() == ["floating IPs mail-vips (no interface mgmt)"]
