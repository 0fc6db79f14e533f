"""Runs the checks of the chain's members on the primary, each on its own schedule.

Every check runs in a worker thread of its own, so that a hung resource (a stopped postmaster,
a dead disk under an fsync) costs its check a timeout and never stalls the other checks, the
chain runner or the Lease keeper. A check still running past its timeout counts as failed once
per period until it returns; no second check of that resource starts meanwhile. Whether a
resource has failed is decided by `core.after_check`; what to do about it by
`core.chain_decision`.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tandem_agent.core import (
    FailedResource,
    Health,
    MonitorSettings,
    MonitorState,
    after_check,
    check_due,
    consequences,
)
from tandem_agent.drivers.base import Outcome


@dataclass(frozen=True)
class Monitored:
    """One member of the chain: how to check it and how to repair it in place.

    `check` returns None when healthy, else what is wrong; it may raise (that is a failure
    too). `repair` brings the member back as bring-up would."""

    kind: str  # ResourceReport.kind: Volume, Mount, BindMount, FloatingIP, PostgreSQL, Service
    name: str
    what: str  # for people: "PostgreSQL", "mount /srv/mail"
    settings: MonitorSettings
    check: Callable[[], str | None]
    repair: Callable[[], Outcome]

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class _Running:
    started_at: float
    result: tuple[str | None] | None = None  # set by the worker when the check returns
    timed_out_at: float | None = None  # last time its overrun was counted


class ChainMonitor:
    """The monitors of one cluster's chain; `tick()` is called often by the agent."""

    def __init__(self, members: Sequence[Monitored]) -> None:
        self.members = {m.key: m for m in members}
        self._lock = threading.Lock()
        self._states = {key: MonitorState() for key in self.members}
        self._running: dict[str, _Running] = {}
        self._checked_wall: dict[str, dt.datetime] = {}
        self._repairs: dict[str, list[float]] = {key: [] for key in self.members}
        self._messages: dict[str, str] = {}
        self.active = False

    def activate(self, active: bool) -> None:
        """Monitor while the chain is up on this primary; every change starts afresh, and a
        check begun before it is ignored when it returns (it is no longer in `_running`)."""
        with self._lock:
            if active == self.active:
                return
            self.active = active
            self._states = {key: MonitorState() for key in self.members}
            self._running = {}

    def tick(self, now: float) -> None:
        """Collect what finished, count overruns, start what is due."""
        with self._lock:
            if not self.active:
                return
            for key, member in self.members.items():
                running = self._running.get(key)
                if running is not None:
                    self._collect(key, member, running, now)
                    continue
                if check_due(self._states[key], member.settings, now):
                    self._start(key, member, now)

    def _collect(self, key: str, member: Monitored, running: _Running, now: float) -> None:
        if running.result is not None:
            del self._running[key]
            self._record(key, member, running.result[0], running.started_at)
            return
        overrun_since = running.timed_out_at or running.started_at
        limit = member.settings.timeout if running.timed_out_at is None else member.settings.period
        if now - overrun_since >= limit:
            running.timed_out_at = now
            waited = now - running.started_at
            self._record(key, member, f"no answer within {member.settings.timeout:g}s (waiting {waited:.1f}s)", now)

    def _start(self, key: str, member: Monitored, now: float) -> None:
        running = _Running(started_at=now)
        self._running[key] = running

        def work() -> None:
            try:
                problem = member.check()
            except Exception as exc:
                problem = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            running.result = (problem,)

        threading.Thread(target=work, name=f"check-{key}", daemon=True).start()

    def _record(self, key: str, member: Monitored, problem: str | None, started_at: float) -> None:
        self._states[key] = after_check(self._states[key], member.settings, problem, started_at)
        self._checked_wall[key] = dt.datetime.now(dt.UTC)

    # --- what the runner reads and does -----------------------------------------------------
    def failed(self, now: float) -> tuple[FailedResource, ...]:
        """The members whose checks reached failureThreshold, in chain order."""
        with self._lock:
            if not self.active:
                return ()
            return tuple(
                FailedResource(
                    key,
                    self.members[key].what,
                    state.detail,
                    state.consecutive_failures,
                    now - (state.first_failure_at or now),
                    self._unsettled_below(key),
                )
                for key, state in self._states.items()
                if state.health is Health.FAILED
            )

    def unsettled_below(self, key: str) -> str | None:
        """The first member below `key` in chain order whose last check did not pass (None:
        every one did, or nothing is monitored). A service without a monitor of its own
        stands on every member that is not a service."""
        with self._lock:
            return self._unsettled_below(key) if self.active else None

    def _unsettled_below(self, key: str) -> str | None:
        order = list(self.members)
        if key in self.members:
            below = order[: order.index(key)]
        else:
            below = [k for k in order if self.members[k].kind != "Service"]
        return next((self.members[k].what for k in below if self._states[k].health is not Health.HEALTHY), None)

    def all_healthy(self) -> bool:
        """Every member's last check passed (monitoring is active)."""
        with self._lock:
            return self.active and all(state.health is Health.HEALTHY for state in self._states.values())

    def in_trouble(self, key: str, now: float | None = None, slow: float = 1.0) -> bool:
        """Whether `key`'s checks are failing, or one has been running for `slow` seconds
        (a hung resource shows here before its timeout makes it a failure)."""
        with self._lock:
            if not self.active or key not in self.members:
                return False
            if self._states[key].health in (Health.FAILING, Health.FAILED, Health.REPAIRING):
                return True
            running = self._running.get(key)
            at = time.monotonic() if now is None else now
            return running is not None and at - running.started_at >= slow

    def repairing(self, key: str) -> None:
        """A check still running began before the repair: what it finds no longer counts. A
        key with no monitor (a service without a health check, repaired because its unit
        stopped being active) has nothing here to update."""
        with self._lock:
            self._running.pop(key, None)
            if key in self._states:
                self._states[key] = replace(self._states[key], health=Health.REPAIRING)

    def repaired(self, key: str, now: float, message: str) -> None:
        """After a repair attempt: the next check decides, one period from now, for it and for
        the members above it that began failing after it did (`core.consequences`)."""
        with self._lock:
            self._running.pop(key, None)
            if key not in self.members:
                return
            self._repairs[key].append(now)
            self._messages[key] = message
            for stale in [key, *consequences(list(self._states.items()), key)]:
                self._running.pop(stale, None)
                self._states[stale] = MonitorState(Health.UNKNOWN, last_check_at=now)

    def forget_repairs(self, before: float) -> None:
        with self._lock:
            for times in self._repairs.values():
                times[:] = [t for t in times if t >= before]

    def reports(self) -> list[dict[str, Any]]:
        """Each member as ResourceReport (status.nodes[].resources); none on a standby."""
        with self._lock:
            out: list[dict[str, Any]] = []
            if not self.active:
                return out
            for key, member in self.members.items():
                state = self._states[key]
                report: dict[str, Any] = {
                    "name": member.name,
                    "kind": member.kind,
                    "state": state.health.value,
                    "consecutiveFailures": state.consecutive_failures,
                    "repairs": len(self._repairs[key]),
                }
                if key in self._checked_wall:
                    report["lastCheckTime"] = self._checked_wall[key].strftime("%Y-%m-%dT%H:%M:%SZ")
                message = state.detail or self._messages.get(key, "")
                if message:
                    report["message"] = message[:1024]
                out.append(report)
            return out
