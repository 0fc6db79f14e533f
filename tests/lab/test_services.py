"""Services driver with real programs: the process backend, chains, the monitor, a netns.

The programs are small Python scripts written into the test's temporary directory: one that
notes when it starts and stops, and an HTTP server that answers with its name. Each test's
fixture stops every service it defined and kills whatever is left of their process groups,
also when the test fails; the network-namespace test destroys its namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

_AGENT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "node-agent"))
if _AGENT not in sys.path:  # the node agent is its own deployable, not installed in dev
    sys.path.insert(0, _AGENT)

import pytest  # noqa: E402

from tandem.lab.netns import LabNetwork, run_ip  # noqa: E402
from tandem_agent.drivers.base import Outcome  # noqa: E402
from tandem_agent.drivers.services import (  # noqa: E402
    Monitor,
    ProcessBackend,
    ProcessService,
    ServiceChain,
    ServiceChainError,
    ServiceError,
    ServiceState,
    proc_start_time,
    read_proc_stat,
    session_members,
)

pytestmark = pytest.mark.lab

NOTER = """\
import os, signal, subprocess, sys, time
name, journal, ready, mode = sys.argv[1:5]
def note(what):
    with open(journal, "a") as fh:
        fh.write(f"{what} {name}\\n")
note("start")
if mode.startswith("exit:"):
    sys.exit(int(mode[5:]))
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: (note("stop"), sys.exit(0)))
if mode == "with-child":
    child = subprocess.Popen(["sleep", "300"])
    with open(ready + ".child", "w") as fh:
        fh.write(str(child.pid))
open(ready, "w").close()
while True:
    time.sleep(60)
"""

HTTP = """\
import http.server, sys
name, host, port = sys.argv[1:4]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((host, int(port)), Handler).serve_forever()
"""


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal = root / "journal"
        self.noter = root / "noter.py"
        self.noter.write_text(NOTER)
        self.http = root / "http_server.py"
        self.http.write_text(HTTP)
        self.backend = ProcessBackend(str(root / "state"))
        self.sessions: set[int] = set()
        self.extra: list[subprocess.Popen[bytes]] = []

    def noting(self, name: str, mode: str = "run", **kw: object) -> ProcessService:
        ready = str(self.root / f"{name}.ready")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ready)
        service = ProcessService(
            name,
            (sys.executable, str(self.noter), name, str(self.journal), ready, mode),
            ready_check=("test", "-e", ready),
            stop_timeout=5.0,
            **kw,  # type: ignore[arg-type]
        )
        self.backend.define(service)
        return service

    def serving(self, name: str, host: str, port: int, netns: str | None = None) -> ProcessService:
        url = f"http://{host}:{port}/"
        service = ProcessService(
            name,
            (sys.executable, str(self.http), name, host, str(port)),
            netns=netns,
            # Ready once it answers (run in the service's namespace).
            ready_check=("curl", "-sf", "--noproxy", "*", "-m", "2", "-o", "/dev/null", url),
        )
        self.backend.define(service)
        return service

    def start(self, name: str) -> int:
        self.restart(name)
        pid = self.backend.status(name).pid
        assert pid is not None
        return pid

    def restart(self, name: str) -> Outcome:
        """Start `name`, first removing a ready file left by an earlier run of it."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.root / f"{name}.ready")
        outcome = self.backend.start(name)
        pid = self.backend.status(name).pid
        if pid is not None:
            self.sessions.add(pid)
        return outcome

    def journal_lines(self) -> list[str]:
        return self.journal.read_text().splitlines() if self.journal.exists() else []

    def cleanup(self) -> None:
        for name in self.backend.services:
            with contextlib.suppress(Exception):
                self.backend.stop(name)
        for path in (self.root / "state").glob("*.json"):
            with contextlib.suppress(Exception):
                pid = json.loads(path.read_text())["pid"]
                if isinstance(pid, int):
                    self.sessions.add(pid)
        for session in self.sessions:
            for pid in session_members(session):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for proc in self.extra:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)

    def leftovers(self) -> list[int]:
        return [pid for s in self.sessions for pid in session_members(s)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.cleanup()
    deadline = time.monotonic() + 5
    while lab.leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lab.leftovers(), "teardown left processes behind"


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def fetch(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy from env
    with opener.open(url, timeout=5) as resp:
        body: bytes = resp.read()
    return body.decode()


def test_chain_starts_in_order_and_stops_in_reverse(lab: Lab) -> None:
    for name in ("a", "b", "c"):
        lab.noting(name)
    chain = ServiceChain(lab.backend, ["a", "b", "c"])

    started = chain.start_all()
    assert started.changed and started.detail == "started a, b, c"
    assert lab.journal_lines() == ["start a", "start b", "start c"]
    pids = {n: lab.backend.status(n).pid for n in ("a", "b", "c")}
    lab.sessions.update(p for p in pids.values() if p)
    for name, pid in pids.items():
        assert pid is not None and lab.backend.is_active(name)
        stat = read_proc_stat(pid)
        assert stat is not None
        assert stat.session == pid and stat.pgrp == pid, "each service is its own session"

    again = chain.start_all()
    assert not again.changed
    assert {n: lab.backend.status(n).pid for n in pids} == pids
    assert lab.journal_lines() == ["start a", "start b", "start c"]

    stopped = chain.stop_all()
    assert stopped.changed
    assert lab.journal_lines()[3:] == ["stop c", "stop b", "stop a"]
    for name, pid in pids.items():
        assert lab.backend.status(name).state is ServiceState.INACTIVE
        assert pid is not None and proc_start_time(pid) is None
    assert not chain.stop_all().changed
    assert Monitor(lab.backend, ["a", "b", "c"]).check()[0].reason == "inactive"


def test_kill_9_is_reported_with_its_signal_and_restart_in_place_works(lab: Lab) -> None:
    port = 18000 + os.getpid() % 1000
    lab.serving("web", "127.0.0.1", port)
    lab.noting("worker", mode="with-child")
    monitor = Monitor(lab.backend, ["worker", "web"])
    web_pid = lab.start("web")
    worker_pid = lab.start("worker")
    assert fetch(f"http://127.0.0.1:{port}/") == "web"
    assert monitor.check() == []

    os.kill(web_pid, signal.SIGKILL)
    wait_for(monitor.check)
    failures = monitor.check()
    assert [f.name for f in failures] == ["web"]
    assert failures[0].status.state is ServiceState.FAILED
    assert failures[0].status.signal == 9
    assert failures[0].reason.startswith("killed by SIGKILL")

    restarted = lab.restart("web")
    assert restarted.changed
    new_pid = lab.backend.status("web").pid
    assert new_pid is not None and new_pid != web_pid
    assert fetch(f"http://127.0.0.1:{port}/") == "web"
    assert monitor.check() == []

    # A service whose leader dies leaves its child behind; restarting in place clears it.
    child = int((lab.root / "worker.ready.child").read_text())
    os.kill(worker_pid, signal.SIGKILL)
    wait_for(lambda: [f.name for f in monitor.check()] == ["worker"])
    assert proc_start_time(child) is not None, "the orphaned child outlives its leader"
    assert lab.restart("worker").changed
    wait_for(lambda: proc_start_time(child) is None)
    assert lab.backend.is_active("worker")
    assert monitor.check() == []


def test_exit_status_is_reported_and_the_chain_stops_at_the_failure(lab: Lab) -> None:
    lab.noting("first")
    lab.noting("broken", mode="exit:3")
    lab.noting("last")
    chain = ServiceChain(lab.backend, ["first", "broken", "last"])
    with pytest.raises(ServiceChainError) as failed:
        chain.start_all()
    err = failed.value
    assert err.name == "broken" and err.done == ("first",)
    assert "exited with status 3" in str(err)
    assert isinstance(err.cause, ServiceError)
    assert err.cause.status is not None and err.cause.status.exit_status == 3
    pid = lab.backend.status("first").pid
    assert pid is not None
    lab.sessions.add(pid)
    assert lab.journal_lines() == ["start first", "start broken"], "last was never started"

    reports = {f.name: f for f in Monitor(lab.backend, chain.names).check()}
    assert set(reports) == {"broken", "last"}
    assert reports["broken"].status.exit_status == 3
    assert reports["broken"].reason.startswith("exited with status 3")
    assert reports["last"].status.state is ServiceState.INACTIVE

    assert lab.backend.reset_failed("broken").changed
    assert lab.backend.status("broken").state is ServiceState.INACTIVE
    assert not lab.backend.reset_failed("broken").changed
    assert not lab.backend.reset_failed("first").changed  # running, not failed
    assert lab.backend.is_active("first")


def test_stop_escalates_to_sigkill_and_start_stop_are_idempotent(lab: Lab) -> None:
    service = lab.noting("stubborn", mode="stubborn")
    lab.backend.define(ProcessService(
        service.name, service.argv, ready_check=service.ready_check, stop_timeout=0.5,
    ))
    pid = lab.start("stubborn")
    again = lab.backend.start("stubborn")
    assert not again.changed and str(pid) in again.detail
    began = time.monotonic()
    stopped = lab.backend.stop("stubborn")
    assert stopped.changed and "SIGKILL" in stopped.detail
    assert time.monotonic() - began >= 0.5
    assert proc_start_time(pid) is None
    assert not lab.backend.stop("stubborn").changed
    assert lab.backend.status("stubborn").state is ServiceState.INACTIVE


def test_a_restarted_agent_finds_its_services_and_ignores_reused_pids(lab: Lab) -> None:
    lab.noting("keeper")
    pid = lab.start("keeper")
    state_dir = lab.backend.state_dir
    fresh = ProcessBackend(state_dir, dict(lab.backend.services))
    assert fresh.status("keeper").pid == pid
    assert not fresh.start("keeper").changed

    # A pid recorded for a service but now belonging to another process (here a session
    # leader, the worst case) is not the service: not reported running, never signalled.
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    lab.extra.append(stranger)
    wait_for(lambda: proc_start_time(stranger.pid) is not None)
    started = proc_start_time(stranger.pid)
    assert started is not None
    fresh.define(lab.noting("ghost"))
    with open(os.path.join(state_dir, "ghost.json"), "w", encoding="utf-8") as fh:
        json.dump({"pid": stranger.pid, "start_time": started - 1}, fh)
    status = fresh.status("ghost")
    assert status.state is ServiceState.FAILED and "unknown" in status.detail
    assert not fresh.stop("ghost").changed
    started_ghost = fresh.start("ghost")
    assert started_ghost.changed
    ghost_pid = fresh.status("ghost").pid
    assert ghost_pid is not None and ghost_pid != stranger.pid
    lab.sessions.add(ghost_pid)
    assert stranger.poll() is None, "the unrelated process was left alone"

    assert fresh.stop("keeper").changed
    assert proc_start_time(pid) is None
    assert fresh.stop("ghost").changed
    assert lab.journal_lines()[-2:] == ["stop keeper", "stop ghost"]


def test_a_service_in_a_network_namespace_answers_on_its_address(lab: Lab) -> None:
    net = LabNetwork(prefix="tds", subnet=40)
    # Leftovers of an interrupted earlier run would make add_host fail.
    run_ip(["netns", "del", "tds-n1"], check=False)
    run_ip(["link", "del", "tds2mgmt"], check=False)
    try:
        net.create()
        host = net.add_host("n1", 2, replication=False)
        lab.serving("vipweb", host.mgmt_address, 8080, netns=host.namespace)
        pid = lab.start("vipweb")
        ns_inode = os.stat(f"/run/netns/{host.namespace}").st_ino
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == ns_inode
        assert os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
        assert read_proc_stat(pid) is not None
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            assert b"http_server.py" in fh.read(), "ip netns exec exec'd the program itself"

        assert fetch(f"http://{host.mgmt_address}:8080/") == "vipweb"

        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: Monitor(lab.backend, ["vipweb"]).check())
        assert Monitor(lab.backend, ["vipweb"]).check()[0].status.signal == 9
        assert lab.restart("vipweb").changed
        assert fetch(f"http://{host.mgmt_address}:8080/") == "vipweb"
        assert lab.backend.stop("vipweb").changed
        with pytest.raises(OSError):
            fetch(f"http://{host.mgmt_address}:8080/")
    finally:
        lab.cleanup()
        net.destroy()
    assert run_ip(["netns", "list"]).stdout.find("tds-n1") == -1
