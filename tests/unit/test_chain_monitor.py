"""ChainMonitor: checks run on their schedule in worker threads; a hung check fails by its
timeout without a second check piling up; results from before a restart are ignored."""

from __future__ import annotations

import datetime as dt
import threading
import time

from tandem_agent.agent import eligible_peers
from tandem_agent.core import MonitorSettings
from tandem_agent.drivers.base import Outcome
from tandem_agent.monitor import ChainMonitor, Monitored

FAST = MonitorSettings(period=1.0, timeout=2.0, failure_threshold=2)


def member(check: object, name: str = "postgresql") -> Monitored:
    return Monitored(
        "PostgreSQL",
        name,
        "PostgreSQL",
        FAST,
        check,  # type: ignore[arg-type]
        lambda: Outcome(True, "restarted"),
    )


def settle(monitor: ChainMonitor, now: float) -> None:
    """Tick until the worker threads started at `now` have answered (or 1 s passed)."""
    deadline = time.monotonic() + 1.0
    while monitor._running and time.monotonic() < deadline:  # noqa: SLF001
        monitor.tick(now)
        time.sleep(0.005)


def test_failing_checks_reach_the_threshold_and_are_reported() -> None:
    monitor = ChainMonitor([member(lambda: "the postmaster is not running")])
    monitor.activate(True)
    monitor.tick(0.0)
    settle(monitor, 0.0)
    assert monitor.failed(0.5) == ()
    monitor.tick(1.0)
    settle(monitor, 1.0)
    (failed,) = monitor.failed(1.5)
    assert failed.key == "PostgreSQL/postgresql" and failed.checks == 2
    (report,) = monitor.reports()
    assert report["state"] == "Failed" and report["consecutiveFailures"] == 2
    assert report["message"] == "the postmaster is not running"


def test_a_hung_check_fails_by_its_timeout_and_no_second_one_starts() -> None:
    release = threading.Event()
    started = []

    def hung() -> str | None:
        started.append(1)
        release.wait(5)
        return None

    monitor = ChainMonitor([member(hung)])
    monitor.activate(True)
    monitor.tick(0.0)
    monitor.tick(1.9)
    assert monitor.failed(1.9) == () and monitor.reports()[0]["state"] == "Unknown"
    monitor.tick(2.0)  # the timeout: one failure
    monitor.tick(2.5)
    monitor.tick(3.0)  # one more period still hung: the second failure
    (failed,) = monitor.failed(3.0)
    assert "no answer within 2s" in failed.detail and failed.checks == 2
    assert len(started) == 1
    release.set()


def test_an_exception_in_a_check_is_a_failure() -> None:
    def broken() -> str | None:
        raise OSError("Input/output error")

    monitor = ChainMonitor([member(broken)])
    monitor.activate(True)
    monitor.tick(0.0)
    settle(monitor, 0.0)
    assert monitor.reports()[0]["message"] == "Input/output error"


def test_after_a_repair_the_member_waits_for_a_fresh_check() -> None:
    monitor = ChainMonitor([member(lambda: "down")])
    monitor.activate(True)
    for at in (0.0, 1.0):
        monitor.tick(at)
        settle(monitor, at)
    assert monitor.failed(1.0)
    monitor.repairing("PostgreSQL/postgresql")
    assert monitor.reports()[0]["state"] == "Repairing"
    monitor.repaired("PostgreSQL/postgresql", 1.2, "PostgreSQL restarted in place (1 of 3)")
    assert monitor.failed(1.2) == ()
    (report,) = monitor.reports()
    assert report["repairs"] == 1 and report["state"] == "Unknown"
    monitor.forget_repairs(before=2.0)
    assert monitor.reports()[0]["repairs"] == 0


def named(kind: str, name: str, check: object) -> Monitored:
    return Monitored(kind, name, f"{kind} {name}", FAST, check, lambda: Outcome(True, "again"))  # type: ignore[arg-type]


def test_a_repair_below_gives_the_members_it_broke_a_fresh_check() -> None:
    """The volume fails first, the mount on it after; the service above was failing before
    both (its own fault). Repairing the volume starts the mount afresh, not the service."""
    volume_down = {"down": False}
    monitor = ChainMonitor(
        [
            named("Volume", "store", lambda: "Secondary" if volume_down["down"] else None),
            named("Mount", "/srv", lambda: "Input/output error" if volume_down["down"] else None),
            named("Service", "web", lambda: "no answer"),
        ]
    )
    monitor.activate(True)
    monitor.tick(0.0)  # the service fails on its own
    settle(monitor, 0.0)
    volume_down["down"] = True
    for now in (1.0, 2.0):
        monitor.tick(now)
        settle(monitor, now)
    failed = monitor.failed(2.5)
    assert [f.key for f in failed] == ["Volume/store", "Mount//srv", "Service/web"]
    # Bottom-up: only the volume may be repaired now; what stands on it waits for it.
    assert [f.waiting_for for f in failed] == [None, "Volume store", "Volume store"]
    assert monitor.unsettled_below("Service/unmonitored") == "Volume store"
    volume_down["down"] = False
    monitor.repairing("Volume/store")
    monitor.repaired("Volume/store", 2.5, "promoted again")
    states = {r["name"]: r["state"] for r in monitor.reports()}
    assert states == {"store": "Unknown", "/srv": "Unknown", "web": "Failed"}
    assert [f.key for f in monitor.failed(2.6)] == ["Service/web"]
    assert monitor.failed(2.6)[0].waiting_for == "Volume store"  # not checked since its repair
    for now in (3.5, 4.5):
        monitor.tick(now)
        settle(monitor, now)
    assert monitor.failed(4.6)[0].waiting_for is None
    assert monitor.unsettled_below("Service/unmonitored") is None


def test_a_standby_monitors_nothing_and_reports_nothing() -> None:
    calls = []
    monitor = ChainMonitor([member(lambda: calls.append(1))])  # type: ignore[arg-type,func-returns-value]
    monitor.tick(0.0)
    assert calls == [] and monitor.reports() == [] and monitor.failed(0.0) == ()
    monitor.activate(True)
    monitor.tick(0.0)
    settle(monitor, 0.0)
    monitor.activate(False)
    assert monitor.reports() == [] and monitor.failed(0.0) == ()


def test_only_fresh_reports_of_other_nodes_count_as_eligible_peers() -> None:
    now = dt.datetime(2026, 11, 30, 12, 0, 0, tzinfo=dt.UTC)
    reports = [
        {"name": "n1", "eligible": True, "heartbeatTime": "2026-11-30T11:59:59Z"},  # itself
        {"name": "n2", "eligible": True, "heartbeatTime": "2026-11-30T11:59:00Z"},
        {"name": "n3", "eligible": True, "heartbeatTime": "2026-11-30T11:50:00Z"},  # stale
        {"name": "n4", "eligible": False, "heartbeatTime": "2026-11-30T11:59:59Z"},
        {"name": "n5", "eligible": True},  # never heartbeat
    ]
    assert eligible_peers(reports, "n1", now) == ("n2",)


def test_a_service_without_a_health_check_is_repaired_without_a_monitor() -> None:
    """Its unit stopped being active: the agent restarts it, and the monitor, which has no
    entry for it, neither fails nor reports it (found by the metrics work: a KeyError made
    every such repair count as failed)."""
    monitor = ChainMonitor([member(lambda: None)])
    monitor.activate(True)
    monitor.repairing("Service/postfix")
    monitor.repaired("Service/postfix", 10.0, "postfix restarted")
    assert [r["name"] for r in monitor.reports()] == ["postgresql"]
