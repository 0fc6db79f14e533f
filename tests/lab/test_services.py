"""Services driver against a real systemd: the units of a booted lab node.

One node machine boots the cached node root with a few units written onto its disk: `note@`
(a `sleep` that notes when it starts and stops), `broken` (fails at start), `stubborn`
(ignores SIGTERM) and `web` (an HTTP server on the node's address). The driver runs on the
host and reaches the node's systemd the way the DaemonSet's agent reaches the host's: every
command through `nsenter --target=<the node's PID 1>` (tandem_agent.host, `--host-exec
nsenter`). The fixture powers the node off, unmounts its disk and removes its namespace, also
when a test fails.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tandem_agent import host
from tandem_agent.drivers.base import DriverError, run
from tandem_agent.drivers.services import (
    Monitor,
    ServiceChain,
    ServiceChainError,
    ServiceError,
    ServiceState,
    SystemdBackend,
)
from tandem_lab.machine import Machine, MachineSpec, node_root
from tandem_lab.netns import LabNetwork

pytestmark = pytest.mark.lab

PREFIX = "tsvc"
SUBNET = 233
NOTES = "/var/log/notes"
UNITS = {
    "note@.service": """[Service]
ExecStartPre=/bin/sh -c 'echo start %i >> /var/log/notes'
ExecStart=/bin/sleep infinity
ExecStopPost=/bin/sh -c 'echo stop %i >> /var/log/notes'
""",
    "broken.service": """[Service]
Type=oneshot
ExecStart=/bin/sh -c 'exit 3'
""",
    "stubborn.service": """[Service]
ExecStart=/bin/sh -c 'trap "" TERM; while :; do sleep 0.1; done'
TimeoutStopSec=1
""",
    "web.service": f"""[Service]
ExecStart=/usr/bin/python3 -m http.server 8099 --bind 198.18.{SUBNET}.2 --directory /etc
""",
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    work = tmp_path_factory.mktemp("services")
    network = LabNetwork(PREFIX, SUBNET)
    machine = None
    try:
        network.create()
        hostinfo = network.add_host("svc1", 2)
        machine = Machine(
            MachineSpec(
                name="svc1",
                machine=f"{PREFIX}-svc1",
                netns=hostinfo.namespace,
                directory=work / "svc1",
                lower=(node_root(),),
            )
        )
        machine.attach_disk()
        for name, text in UNITS.items():
            (machine.root / "etc" / "systemd" / "system" / name).write_text(text)
        machine.boot()
        yield machine
    finally:
        if machine is not None:
            machine.destroy()
        network.destroy()


@pytest.fixture
def backend(node: Machine) -> Iterator[SystemdBackend]:
    """A backend whose commands enter the node, and a clean slate of units and notes."""
    pid = node.init_pid()
    assert pid is not None
    before = host.current()
    host.configure(host.HostAccess(exec_mode="nsenter", target_pid=pid))
    units = {
        "a": "note@a.service",
        "b": "note@b.service",
        "c": "note@c.service",
        "broken": "broken.service",
        "stubborn": "stubborn.service",
        "web": "web.service",
        "ghost": "ghost.service",
    }
    try:
        yield SystemdBackend(units, timeout=30)
    finally:
        host.configure(before)
        node.exec(["systemctl", "stop", *[u for u in units.values() if u != "ghost.service"]], check=False)
        node.exec(["systemctl", "reset-failed"], check=False)
        node.exec(["rm", "-f", NOTES])


def notes(node: Machine) -> list[str]:
    return node.exec(["cat", NOTES], check=False).stdout.splitlines()


def main_pid_on_host(node: Machine, unit: str) -> int:
    pid = node.main_pid(unit)
    assert pid is not None, f"{unit} has no main process"
    return pid


def test_commands_reach_the_nodes_systemd_through_nsenter(node: Machine, backend: SystemdBackend) -> None:
    # The host has no systemd as PID 1; only the entered node can answer.
    out = run(["systemctl", "is-system-running"], check=False).stdout.strip()
    assert out in ("running", "degraded")
    assert run(["hostname"]).stdout.strip() == "svc1"


def test_chain_starts_in_order_and_stops_in_reverse(node: Machine, backend: SystemdBackend) -> None:
    chain = ServiceChain(backend, ["a", "b", "c"])
    assert chain.start_all().changed
    assert notes(node) == ["start a", "start b", "start c"]
    assert [backend.status(n).state for n in "abc"] == [ServiceState.ACTIVE] * 3
    assert not chain.start_all().changed  # idempotent
    assert chain.stop_all().changed
    assert notes(node)[3:] == ["stop c", "stop b", "stop a"]
    assert not chain.stop_all().changed
    assert Monitor(backend, ["a", "b", "c"]).check()[0].status.state is ServiceState.INACTIVE


def test_kill_9_is_reported_with_its_signal_and_restart_in_place_works(node: Machine, backend: SystemdBackend) -> None:
    backend.start("a")
    old = main_pid_on_host(node, "note@a.service")
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not (failures := Monitor(backend, ["a"]).check()):
        assert time.monotonic() < deadline, "the monitor never saw the killed service"
        time.sleep(0.1)
    [failure] = failures
    assert failure.status.state is ServiceState.FAILED
    assert failure.status.signal == signal.SIGKILL and failure.reason.startswith("killed by SIGKILL")
    assert backend.reset_failed("a").changed
    assert backend.start("a").changed
    assert main_pid_on_host(node, "note@a.service") != old
    assert Monitor(backend, ["a"]).check() == []


def test_a_unit_that_fails_stops_the_chain_there_with_its_exit_status(node: Machine, backend: SystemdBackend) -> None:
    chain = ServiceChain(backend, ["a", "broken", "c"])
    with pytest.raises(ServiceChainError) as raised:
        chain.start_all()
    assert raised.value.name == "broken" and raised.value.done == ("a",)
    assert "exited with status 3" in str(raised.value)
    assert backend.status("c").state is ServiceState.INACTIVE, "nothing after the failure starts"
    [failure] = Monitor(backend, ["broken"]).check()
    assert failure.status.exit_status == 3


def test_stop_escalates_to_sigkill_and_an_unknown_unit_is_a_clear_error(node: Machine, backend: SystemdBackend) -> None:
    backend.start("stubborn")
    started = time.monotonic()
    assert backend.stop("stubborn").changed
    assert time.monotonic() - started < 10
    assert backend.status("stubborn").state in (ServiceState.INACTIVE, ServiceState.FAILED)
    with pytest.raises(ServiceError, match=r"ghost.service is not-found .*spec.chain.services"):
        backend.start("ghost")
    with pytest.raises(DriverError, match="unknown service"):
        backend.start("nobody")


def test_a_unit_serves_on_the_nodes_own_address(node: Machine, backend: SystemdBackend) -> None:
    """The host reaches the node over the management bridge, as a client would."""
    backend.start("web")
    url = f"http://198.18.{SUBNET}.2:8099/hostname"
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 - lab address
                body = answer.read().decode().strip()
            break
        except OSError:
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.2)
    assert body == "svc1"
