"""What the node's clusters read of systemd and of the addresses, shared: UnitStates (one
`systemctl show` for every unit watched) and RecentAddresses (one dump per interface)."""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path
from typing import Any

import pytest

from tandem_agent.drivers import addresses, services
from tandem_agent.drivers.base import DriverError
from tandem_agent.drivers.services import ServiceState, SystemdBackend, UnitStates, parse_show_many
from tandem_lab.harness import wait_until

# A stand-in systemctl: records its arguments; `start` and `stop` add a unit to the file
# `active` and remove it; `show` describes each unit after `--` as systemctl does (a block per
# unit, an empty line between blocks), active when `active` names it. `drop` makes it
# describe one unit fewer than asked.
STAND_IN = """#!/bin/sh
echo "$@" >> {calls}
verb=$2
while [ "$1" != "--" ]; do shift; done
shift
case $verb in
  start) echo "$1" >> {active}; exit 0 ;;
  stop) grep -vx "$1" {active} > {active}.new; mv {active}.new {active}; exit 0 ;;
esac
[ -e {drop} ] && shift
first=1
for unit in "$@"; do
  [ $first = 1 ] || echo
  first=0
  if grep -qx "$unit" {active} 2>/dev/null; then state=active; else state=inactive; fi
  printf 'Id=%s\\nLoadState=loaded\\nActiveState=%s\\nResult=success\\n' "$unit" "$state"
done
"""


@pytest.fixture
def systemctl(tmp_path: Path) -> Path:
    fake = tmp_path / "systemctl"
    fake.write_text(STAND_IN.format(calls=tmp_path / "calls", active=tmp_path / "active", drop=tmp_path / "drop"))
    fake.chmod(0o755)
    return fake


def calls(systemctl: Path) -> list[str]:
    path = systemctl.parent / "calls"
    return path.read_text().splitlines() if path.exists() else []


def slowed(systemctl: Path, tmp_path: Path) -> Path:
    """From now on the stand-in waits until the returned gate file exists: a slow systemd."""
    gate = tmp_path / "gate"
    systemctl.write_text(
        systemctl.read_text().replace("#!/bin/sh\n", f"#!/bin/sh\nwhile [ ! -e {gate} ]; do sleep 0.01; done\n", 1)
    )
    return gate


def test_parse_show_many_splits_blocks_in_order() -> None:
    text = "Id=a.service\nActiveState=active\n\nId=b.service\nResult=\n"
    assert parse_show_many(text) == [{"Id": "a.service", "ActiveState": "active"}, {"Id": "b.service", "Result": ""}]
    assert parse_show_many("") == []


def test_one_call_describes_every_unit_read_lately(systemctl: Path) -> None:
    (systemctl.parent / "active").write_text("a.service\n")
    states = UnitStates(str(systemctl), max_age=60)
    assert states.show("a.service")["ActiveState"] == "active"
    assert states.show("b.service")["ActiveState"] == "inactive"  # new unit: a refresh of both
    assert states.show("a.service")["ActiveState"] == "active"  # fresh enough: no call
    assert calls(systemctl) == [
        "--no-ask-password show --property=Id,LoadState,ActiveState,SubState,Result,MainPID,ExecMainPID,"
        "ExecMainCode,ExecMainStatus -- a.service",
        "--no-ask-password show --property=Id,LoadState,ActiveState,SubState,Result,MainPID,ExecMainPID,"
        "ExecMainCode,ExecMainStatus -- a.service b.service",
    ]


def test_a_state_older_than_max_age_is_read_again(systemctl: Path) -> None:
    states = UnitStates(str(systemctl), max_age=0)
    assert states.show("a.service")["ActiveState"] == "inactive"
    (systemctl.parent / "active").write_text("a.service\n")
    assert states.show("a.service")["ActiveState"] == "active"
    assert len(calls(systemctl)) == 2


def test_units_nobody_read_lately_are_no_longer_asked_for(systemctl: Path) -> None:
    states = UnitStates(str(systemctl), max_age=0, forget_after=0)
    states.show("gone.service")
    states.show("kept.service")
    assert calls(systemctl)[-1].endswith("-- kept.service")


def test_concurrent_readers_share_one_call(systemctl: Path) -> None:
    states = UnitStates(str(systemctl), max_age=60)
    states.show("a.service")
    threads = [threading.Thread(target=states.show, args=("a.service",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls(systemctl)) == 1


def test_an_answer_that_does_not_match_the_units_asked_is_an_error(systemctl: Path) -> None:
    (systemctl.parent / "drop").touch()
    states = UnitStates(str(systemctl))
    with pytest.raises(DriverError, match="systemctl show of 1 units described 0"):
        states.show("a.service")


def test_unit_names_are_validated_before_any_call(systemctl: Path) -> None:
    with pytest.raises(DriverError, match="invalid systemd unit"):
        UnitStates(str(systemctl)).show("-a.service")
    assert calls(systemctl) == []


def test_recent_reads_the_shared_states_and_status_reads_afresh(systemctl: Path) -> None:
    states = UnitStates(str(systemctl), max_age=60)
    backend = SystemdBackend({"web": "web.service"}, systemctl=str(systemctl), states=states)
    assert backend.recent("web").state is ServiceState.INACTIVE
    (systemctl.parent / "active").write_text("web.service\n")
    assert backend.recent("web").state is ServiceState.INACTIVE  # still the shared answer
    assert backend.status("web").state is ServiceState.ACTIVE
    assert backend.recent("web").name == "web"
    assert len(calls(systemctl)) == 2


def test_without_shared_states_recent_is_status(systemctl: Path) -> None:
    backend = SystemdBackend({"web": "web.service"}, systemctl=str(systemctl))
    backend.recent("web")
    backend.recent("web")
    assert len(calls(systemctl)) == 2


def test_recent_addresses_share_a_dump_until_it_is_old_or_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    dumps: list[str] = []
    held = {"eth0": (ipaddress.ip_interface("198.18.74.2/24"),)}

    def present(netns: str | None, ifname: str) -> tuple[Any, ...]:
        dumps.append(ifname)
        return held[ifname]

    monkeypatch.setattr(addresses, "present", present)
    recent = addresses.RecentAddresses(max_age=60)
    assert recent.present(None, "eth0") == held["eth0"]
    assert recent.present(None, "eth0") == held["eth0"]
    assert dumps == ["eth0"]
    held["eth0"] = ()
    recent.forget(None, "eth0")  # the agent changed eth0: the next read dumps it again
    assert recent.present(None, "eth0") == ()
    assert dumps == ["eth0", "eth0"]
    assert addresses.RecentAddresses(max_age=0).present(None, "eth0") == ()
    assert len(dumps) == 3


@pytest.mark.parametrize(
    ("changed", "dumps_of_eth0"),
    [("eth0", 2), ("eth1", 1)],  # a change of eth0 drops the dump of eth0; one of eth1 does not
)
def test_a_dump_that_ran_across_a_change_of_its_interface_is_not_kept(
    monkeypatch: pytest.MonkeyPatch, changed: str, dumps_of_eth0: int
) -> None:
    recent = addresses.RecentAddresses(max_age=60)
    dumps: list[str] = []

    def present(netns: str | None, ifname: str) -> tuple[Any, ...]:
        dumps.append(ifname)
        if len(dumps) == 1:
            recent.forget(None, changed)  # another cluster changed it while this dump ran
        return ()

    monkeypatch.setattr(addresses, "present", present)
    recent.present(None, "eth0")
    recent.present(None, "eth0")
    assert dumps == ["eth0"] * dumps_of_eth0


def test_while_a_refresh_runs_others_get_the_last_answer_not_a_wait(systemctl: Path, tmp_path: Path) -> None:
    states = UnitStates(str(systemctl), max_age=0)
    states.show("a.service")
    gate = slowed(systemctl, tmp_path)
    slow = threading.Thread(target=states.show, args=("a.service",))
    slow.start()
    wait_until(
        lambda: len(calls(systemctl)) == 1 and states._refreshing, 5.0, "the slow refresh started", interval=0.01
    )
    assert states.show("a.service")["ActiveState"] == "inactive"  # the last answer, at once
    gate.touch()
    slow.join(5.0)
    assert not slow.is_alive() and len(calls(systemctl)) == 2


def test_a_failed_refresh_lets_the_next_reader_try_again(systemctl: Path) -> None:
    (systemctl.parent / "drop").touch()
    states = UnitStates(str(systemctl))
    with pytest.raises(DriverError):
        states.show("a.service")
    (systemctl.parent / "drop").unlink()
    assert states.show("a.service")["LoadState"] == "loaded"


def test_an_action_on_a_unit_forgets_its_shared_state(systemctl: Path) -> None:
    """Monitoring must never see a unit's state from before the agent started or stopped it:
    a service just started would look failed and be restarted in place for nothing."""
    states = UnitStates(str(systemctl), max_age=60)
    backend = SystemdBackend({"web": "web.service"}, systemctl=str(systemctl), states=states)
    assert not backend.recent("web").active
    assert backend.start("web").changed
    assert backend.recent("web").active
    assert backend.stop("web").changed
    assert not backend.recent("web").active


def test_a_refresh_that_ran_across_an_action_is_not_kept(systemctl: Path, tmp_path: Path) -> None:
    states = UnitStates(str(systemctl), max_age=60)
    gate = slowed(systemctl, tmp_path)
    slow = threading.Thread(target=states.show, args=("a.service",))
    slow.start()
    wait_until(lambda: states._refreshing, 5.0, "the slow refresh started", interval=0.01)
    states.forget("a.service")  # the agent acted on a.service meanwhile
    gate.touch()
    slow.join(5.0)
    states.show("a.service")
    assert len(calls(systemctl)) == 2  # the first answer predates the action: asked again


def test_a_refresh_across_an_action_on_one_unit_is_kept_for_the_others(systemctl: Path, tmp_path: Path) -> None:
    """While a node brings up its clusters some unit is acted on at every moment: a refresh
    thrown away whole for it would leave every other unit to be asked again, call after call."""
    states = UnitStates(str(systemctl), max_age=60)
    states.show("a.service")
    states.show("b.service")
    assert len(calls(systemctl)) == 2
    states.forget("a.service")
    states.forget("b.service")
    gate = slowed(systemctl, tmp_path)
    slow = threading.Thread(target=states.show, args=("b.service",))
    slow.start()
    wait_until(lambda: states._refreshing, 5.0, "the slow refresh started", interval=0.01)
    states.forget("a.service")  # the agent acted on a.service while systemd described both
    gate.touch()
    slow.join(5.0)
    assert not slow.is_alive() and len(calls(systemctl)) == 3
    states.show("b.service")
    assert len(calls(systemctl)) == 3  # b's answer was kept
    states.show("a.service")
    assert len(calls(systemctl)) == 4  # a's predates the action: asked again


def test_readers_of_an_interface_wait_for_the_dump_under_way_instead_of_starting_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recent = addresses.RecentAddresses(max_age=60)
    release = threading.Event()
    dumps: list[str] = []

    def present(netns: str | None, ifname: str) -> tuple[Any, ...]:
        dumps.append(ifname)
        if ifname == "eth0":
            release.wait(5)
        return (ipaddress.ip_interface("198.18.74.2/24"),)

    monkeypatch.setattr(addresses, "present", present)
    answers: list[tuple[Any, ...]] = []
    readers = [threading.Thread(target=lambda: answers.append(recent.present(None, "eth0"))) for _ in range(5)]
    for reader in readers:
        reader.start()
    wait_until(lambda: dumps == ["eth0"], 5, "the first dump under way", interval=0.01)
    assert recent.present(None, "eth1")  # another interface does not wait for eth0's dump
    release.set()
    for reader in readers:
        reader.join(5)
    assert len(answers) == 5 and dumps == ["eth0", "eth1"]


def test_a_unit_read_with_a_longer_max_age_joins_only_the_refreshes_it_needs(
    systemctl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [0.0]
    monkeypatch.setattr(services.time, "monotonic", lambda: clock[0])
    states = UnitStates(str(systemctl), max_age=1)
    states.show("fast.service")
    states.show("idle.service", max_age=10)
    for clock[0] in (2.0, 4.0, 6.0, 8.0, 9.5):
        states.show("fast.service")
    clock[0] = 10.0
    states.show("idle.service", max_age=10)  # read in the refresh at 9.5: no call
    asked = [line.split(" -- ")[1] for line in calls(systemctl)]
    assert asked == ["fast.service", "fast.service idle.service", *["fast.service"] * 4, "fast.service idle.service"]
