"""Services: start, stop and watch the programs a primary runs.

``ServiceBackend`` is the narrow interface the agent uses. ``SystemdBackend`` implements it:
it drives each service's systemd unit (``unit`` in the spec; the service's ``name`` stays its
identity in status) with ``systemctl`` argument lists and reads its state from
``systemctl show`` key=value output. The lab's nodes run systemd as PID 1, so the lab runs
exactly this backend.

On top of a backend, ``ServiceChain`` starts services in order and stops them in reverse, and
``Monitor`` reports the services that are not running, with how they ended, so that the HA
loop can restart them in place.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from tandem.api.hacluster import ServiceSpec, unit_name_problem

from .base import CommandError, CommandTimeout, DriverError, Outcome, run

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:\\-]*$")


class ServiceError(DriverError):
    """A service could not be started or stopped; `status` says how it ended, when known."""

    def __init__(self, name: str, message: str, status: ServiceStatus | None = None) -> None:
        self.name = name
        self.status = status
        super().__init__(f"service {name}: {message}")


class ServiceChainError(DriverError):
    """A chain stopped at the service `name`; `done` are those handled before it."""

    def __init__(self, name: str, action: str, done: Sequence[str], cause: Exception) -> None:
        self.name = name
        self.action = action
        self.done = tuple(done)
        self.cause = cause
        before = ", ".join(self.done) if self.done else "none"
        state = "running" if action == "start" else "stopped"
        super().__init__(
            f"could not {action} service {name} (the chain stopped there; {state} before it: {before}): {cause}"
        )


def validate_name(name: str) -> str:
    """A service or unit name: letters, digits and ``_ . @ : - \\``; no leading dash."""
    if not NAME_RE.match(name):
        raise DriverError(f"invalid service name {name!r}")
    return name


# --------------------------------------------------------------------------------------------
# Status


class ServiceState(StrEnum):
    """The state of a service, named as systemd names its ActiveState."""

    ACTIVE = "active"
    ACTIVATING = "activating"
    DEACTIVATING = "deactivating"
    INACTIVE = "inactive"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ServiceStatus:
    """State of one service and, once its main process ended, how it ended.

    `exit_status` is the exit code of a process that exited; `signal` the number of the signal
    that killed it (then `exit_status` is None). Both are None while it runs, when it never
    ran, or when the way it ended is unknown.
    """

    name: str
    state: ServiceState
    pid: int | None = None
    exit_status: int | None = None
    signal: int | None = None
    core_dumped: bool = False
    detail: str = ""

    @property
    def active(self) -> bool:
        return self.state is ServiceState.ACTIVE

    def describe(self) -> str:
        """How the service stands, for humans: ``killed by SIGKILL``, ``exited with status 3``."""
        if self.active:
            return f"running as pid {self.pid}" if self.pid else "running"
        if self.signal is not None:
            how = f"killed by {signal_name(self.signal)}"
            if self.core_dumped:
                how += " (core dumped)"
        elif self.exit_status is not None:
            how = f"exited with status {self.exit_status}"
        else:
            how = self.state.value
        return f"{how}; {self.detail}" if self.detail else how


def is_stopped(status: ServiceStatus) -> bool:
    """Whether nothing of the service runs any more (a unit that failed has stopped too)."""
    return status.state in (ServiceState.INACTIVE, ServiceState.FAILED)


def kill_needed(status_at_deadline: ServiceStatus) -> bool:
    """After a stop that did not finish within the service's stop timeout: SIGKILL unless the
    unit stopped just as the deadline passed."""
    return not is_stopped(status_at_deadline)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class ServiceBackend(Protocol):
    """What the agent needs from a service manager. Every call is idempotent."""

    def start(self, name: str) -> Outcome:
        """Start the service unless it runs; raise ServiceError when it does not come up."""
        ...

    def stop(self, name: str) -> Outcome:
        """Stop the service unless it is stopped; raise ServiceError when it will not stop."""
        ...

    def status(self, name: str) -> ServiceStatus:
        """The service's state now: what an action reads before it acts."""
        ...

    def recent(self, name: str, max_age: float | None = None) -> ServiceStatus:
        """The service's state, read at most a moment ago (or `max_age` seconds ago): what
        monitoring and reports read on every tick of every cluster (see UnitStates)."""
        ...

    def reset_failed(self, name: str) -> Outcome:
        """Forget that the service failed (its state becomes inactive)."""
        ...


# --------------------------------------------------------------------------------------------
# systemd


SHOW_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "MainPID",
    "ExecMainPID",
    "ExecMainCode",
    "ExecMainStatus",
)

# How often a killed unit's state is read while waiting for it to stop.
KILL_POLL_SECONDS = 0.1

# ExecMainCode holds a waitid() si_code: CLD_EXITED, CLD_KILLED, CLD_DUMPED.
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3


def parse_show(text: str) -> dict[str, str]:
    """Parse ``systemctl show`` key=value output (values may contain '=')."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value
    return props


def show_argv(systemctl: str, units: Sequence[str]) -> list[str]:
    """``systemctl show`` of what a ServiceStatus needs, for each of `units` (validated)."""
    checked = [validate_unit(unit) for unit in units]
    return [systemctl, "--no-ask-password", "show", "--property=" + ",".join(SHOW_PROPERTIES), "--", *checked]


def parse_show_many(text: str) -> list[dict[str, str]]:
    """Parse ``systemctl show`` of several units: one block of key=value lines per unit, in
    the order given, separated by an empty line."""
    return [parse_show(block) for block in re.split(r"\n\n+", text.strip("\n"))] if text.strip() else []


class UnitStates:
    """The node's units as one ``systemctl show`` call last described them, shared by every
    cluster on the node.

    Each cluster's runner and monitor read their services' states on every tick. One
    ``systemctl show`` per unit per tick is a fork and a systemd round trip each (and two
    execs through nsenter in the DaemonSet): at a hundred clusters, thousands a second. Here
    a read finding its unit's state older than `max_age` seconds refreshes, in one call, every
    unit read in the last `forget_after` seconds whose readers want it that fresh. A reader may
    ask for an older answer: a standby's report of services it does not run (inactive units,
    which systemd unloads, and loads from disk again for every ``systemctl show``: with
    dozens of them twice a second, a third of a core per node) reads them every
    `max_age` it gives, in the same calls as the rest. While that call runs, other readers get the
    last answer rather than wait (a runner blocked on a slow systemd could not demote in
    time); only a unit with no answer kept waits for it. Actions (start, stop, kill) never
    read from here: they read ``status`` fresh, and `forget` what was kept of their unit once
    they are done, so that nobody reads its state from before them. A call that ran across
    an action is not kept for that unit; it is kept for the others, or while a node brings up
    its clusters (an action somewhere at every moment) no call would be kept at all and each
    reader would start another.
    """

    def __init__(
        self, systemctl: str = "systemctl", max_age: float = 0.5, timeout: float = 30.0, forget_after: float = 60.0
    ) -> None:
        self.systemctl = systemctl
        self.max_age = max_age
        self.timeout = timeout
        self.forget_after = forget_after
        self._lock = threading.Condition()
        self._refreshing = False
        self._actions: dict[str, int] = {}  # unit -> how many times `forget` was called for it
        self._asked: dict[str, tuple[float, float]] = {}  # unit -> (when last read, that read's max_age)
        self._shown: dict[str, tuple[float, dict[str, str]]] = {}  # unit -> (read at, properties)

    def show(self, unit: str, max_age: float | None = None) -> dict[str, str]:
        """The unit's ``systemctl show`` properties, at most `max_age` seconds old (default:
        the shared `max_age`) unless a refresh is under way."""
        validate_unit(unit)
        age = self.max_age if max_age is None else max(max_age, self.max_age)
        with self._lock:
            now = time.monotonic()
            self._asked[unit] = (now, age)
            while True:
                seen = self._shown.get(unit)
                if seen is not None and (now - seen[0] < age or self._refreshing):
                    return seen[1]
                if not self._refreshing:
                    break
                self._lock.wait()
            self._refreshing = True
            self._asked = {u: a for u, a in self._asked.items() if now - a[0] <= self.forget_after}
            units = sorted(u for u in self._asked if u == unit or self._due(u, now))
            actions = {u: self._actions.get(u, 0) for u in units}
        shown: dict[str, tuple[float, dict[str, str]]] = {}
        try:
            blocks = parse_show_many(run(show_argv(self.systemctl, units), timeout=self.timeout).stdout)
            if len(blocks) != len(units):
                raise DriverError(f"systemctl show of {len(units)} units described {len(blocks)}")
            shown = {u: (now, props) for u, props in zip(units, blocks, strict=True)}
        finally:
            with self._lock:
                self._shown.update((u, seen) for u, seen in shown.items() if self._actions.get(u, 0) == actions[u])
                self._refreshing = False
                self._lock.notify_all()
        return shown[unit][1]

    def _due(self, unit: str, now: float) -> bool:
        """Whether `unit` is read in the refresh starting now: its readers' answer would be
        too old before the next one."""
        seen = self._shown.get(unit)
        return seen is None or now - seen[0] >= self._asked[unit][1] - self.max_age

    def forget(self, unit: str) -> None:
        """`unit` was acted on: the next read of it asks systemd."""
        with self._lock:
            self._shown.pop(unit, None)
            self._actions[unit] = self._actions.get(unit, 0) + 1


def status_from_show(name: str, props: Mapping[str, str]) -> ServiceStatus:
    """Turn the properties of ``systemctl show`` into a ServiceStatus.

    A unit that does not exist shows ``LoadState=not-found``; that is a DriverError, since
    starting it could never succeed.
    """
    load = props.get("LoadState", "")
    if load in ("not-found", "bad-setting", "error", "masked"):
        unit = props.get("Id") or "its unit"
        raise ServiceError(
            name, f"{unit} is {load} (LoadState={load}): install or unmask it, or fix spec.chain.services[].unit"
        )
    try:
        state = ServiceState(props.get("ActiveState", "unknown"))
    except ValueError:
        state = ServiceState.UNKNOWN
    code = _int(props.get("ExecMainCode"))
    main_status = _int(props.get("ExecMainStatus"))
    pid = _int(props.get("MainPID")) or None
    exit_status = sig = None
    if state is not ServiceState.ACTIVE and main_status is not None:
        if code == CLD_EXITED:
            exit_status = main_status
        elif code in (CLD_KILLED, CLD_DUMPED):
            sig = main_status
    result = props.get("Result", "")
    sub = props.get("SubState", "")
    detail = ", ".join(p for p in (f"sub-state {sub}" if sub else "", f"result {result}" if result else "") if p)
    return ServiceStatus(
        name=name,
        state=state,
        pid=pid if state is ServiceState.ACTIVE else None,
        exit_status=exit_status,
        signal=sig,
        core_dumped=code == CLD_DUMPED,
        detail=detail,
    )


def _int(value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def validate_unit(unit: str) -> str:
    """A unit systemctl may be asked to start or stop: the API's rule, checked again here."""
    problem = unit_name_problem(unit)
    if problem:
        raise DriverError(f"invalid systemd unit: {problem}")
    return unit


@dataclass
class SystemdBackend:
    """Services run as systemd units, through ``systemctl`` argument lists.

    `units` maps each service name (its identity in status) to its unit. `start_timeouts` and
    `stop_timeouts` give a service its own limits in seconds (spec.chain.services[]
    .startTimeoutSeconds, .stopTimeoutSeconds); `timeout` bounds every other call, and a start
    or stop without its own limit. A stop that overruns its own limit becomes ``systemctl
    kill --signal=SIGKILL``, then a wait of at most `kill_wait` seconds for the unit to stop.
    Its tests drive the systemd of a booted lab node (tests/lab/test_services.py) and a
    stand-in ``systemctl`` that prints recorded ``systemctl show`` output (tests/unit).
    """

    units: Mapping[str, str] = field(default_factory=dict)
    systemctl: str = "systemctl"
    timeout: float = 90.0
    # Where `recent` reads, shared by the node's clusters (None: it reads `status`).
    states: UnitStates | None = None
    start_timeouts: Mapping[str, float] = field(default_factory=dict)
    stop_timeouts: Mapping[str, float] = field(default_factory=dict)
    kill_wait: float = 5.0

    def __post_init__(self) -> None:
        for name, unit in self.units.items():
            validate_name(name)
            validate_unit(unit)
        for kind, limits in (("start", self.start_timeouts), ("stop", self.stop_timeouts)):
            for name, seconds in limits.items():
                self.unit(name)
                if seconds <= 0:
                    raise DriverError(f"the {kind} timeout of service {name} must be positive, got {seconds}")

    @classmethod
    def for_services(cls, services: Sequence[ServiceSpec], states: UnitStates | None = None) -> SystemdBackend:
        """The backend of a cluster's services, with the timeouts their specs set."""
        return cls(
            units={s.name: s.unit for s in services},
            states=states,
            start_timeouts={s.name: s.start_timeout_seconds for s in services},
            stop_timeouts={s.name: s.stop_timeout_seconds for s in services if s.stop_timeout_seconds is not None},
        )

    def unit(self, name: str) -> str:
        try:
            return self.units[name]
        except KeyError:
            raise DriverError(f"unknown service {name!r}; defined: {sorted(self.units)}") from None

    def argv(self, verb: str, unit: str, *extra: str) -> list[str]:
        """The systemctl command for `verb` on `unit` (validated; never a shell string)."""
        if verb not in ("start", "stop", "kill", "reset-failed"):
            raise DriverError(f"unsupported systemctl verb {verb!r}")
        return [self.systemctl, "--no-ask-password", verb, *extra, "--", validate_unit(unit)]

    def show_argv(self, unit: str) -> list[str]:
        return show_argv(self.systemctl, [unit])

    def kill_argv(self, unit: str) -> list[str]:
        """SIGKILL to every process of the unit (systemctl kill's default: the whole cgroup)."""
        return self.argv("kill", unit, "--signal=SIGKILL")

    def status(self, name: str) -> ServiceStatus:
        proc = run(self.show_argv(self.unit(name)), timeout=self.timeout)
        return status_from_show(name, parse_show(proc.stdout))

    def _act(self, argv: list[str], unit: str, timeout: float) -> None:
        """Run a command that changes `unit`; what the shared states kept of it is stale after."""
        try:
            run(argv, timeout=timeout)
        finally:
            if self.states is not None:
                self.states.forget(unit)

    def recent(self, name: str, max_age: float | None = None) -> ServiceStatus:
        if self.states is None:
            return self.status(name)
        return status_from_show(name, self.states.show(self.unit(name), max_age))

    def start(self, name: str) -> Outcome:
        unit = self.unit(name)
        before = self.status(name)
        if before.active:
            return Outcome(False, f"{name} ({unit}) already active")
        limit = self.start_timeouts.get(name, self.timeout)
        try:
            self._act(self.argv("start", unit), unit, timeout=limit)
        except CommandTimeout as exc:
            after = self.status(name)
            raise ServiceError(
                name, f"start of {unit} did not finish within {limit:g}s: {after.describe()}", after
            ) from exc
        except CommandError as exc:
            after = self.status(name)
            raise ServiceError(name, f"start of {unit} failed: {after.describe()}: {exc}", after) from exc
        return Outcome(True, f"started {name} ({unit})")

    def stop(self, name: str) -> Outcome:
        """Stop the service; past its own stop timeout (if it has one), kill it with SIGKILL."""
        unit = self.unit(name)
        before = self.status(name)
        if is_stopped(before):
            return Outcome(False, f"{name} ({unit}) already {before.state.value}")
        limit = self.stop_timeouts.get(name)
        try:
            self._act(self.argv("stop", unit), unit, timeout=self.timeout if limit is None else limit)
        except CommandTimeout as exc:
            if limit is None:
                raise ServiceError(
                    name, f"stop of {unit} did not finish within {self.timeout:g}s", self.status(name)
                ) from exc
            return self._kill(name, unit, limit)
        except CommandError as exc:
            raise ServiceError(name, f"stop of {unit} failed: {exc}", self.status(name)) from exc
        return Outcome(True, f"stopped {name} ({unit})")

    def _kill(self, name: str, unit: str, limit: float) -> Outcome:
        """The stop overran `limit`: SIGKILL the unit's processes and wait, boundedly, for it."""
        if not kill_needed(self.status(name)):
            return Outcome(True, f"stopped {name} ({unit})")
        self._act(self.kill_argv(unit), unit, timeout=self.kill_wait)
        after = self._wait_stopped(name)
        if not is_stopped(after):
            raise ServiceError(
                name,
                f"{unit} did not stop within {limit:g}s, nor within {self.kill_wait:g}s of SIGKILL: {after.describe()}",
                after,
            )
        return Outcome(True, f"killed {name} ({unit}) with SIGKILL: it did not stop within {limit:g}s")

    def _wait_stopped(self, name: str) -> ServiceStatus:
        """The service's status once it stopped, or at the end of `kill_wait` seconds."""
        deadline = time.monotonic() + self.kill_wait
        while True:
            status = self.status(name)
            if is_stopped(status) or time.monotonic() >= deadline:
                return status
            time.sleep(KILL_POLL_SECONDS)

    def reset_failed(self, name: str) -> Outcome:
        unit = self.unit(name)
        if self.status(name).state is not ServiceState.FAILED:
            return Outcome(False, f"{name} ({unit}) is not failed")
        self._act(self.argv("reset-failed", unit), unit, timeout=self.timeout)
        return Outcome(True, f"reset the failed state of {name} ({unit})")


# --------------------------------------------------------------------------------------------
# Chains and monitoring


def _check_names(names: Sequence[str]) -> tuple[str, ...]:
    if not names:
        raise DriverError("a service chain needs at least one service")
    for name in names:
        validate_name(name)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DriverError(f"service chain lists {dupes} more than once")
    return tuple(names)


class ServiceChain:
    """Services that depend on each other: started in order, stopped in reverse."""

    def __init__(self, backend: ServiceBackend, names: Sequence[str]) -> None:
        self.backend = backend
        self.names = _check_names(list(names))

    def start_all(self) -> Outcome:
        """Start each service in order; stop at the first failure (ServiceChainError).

        The services started before the failing one are left running: the caller decides
        whether to stop the chain or retry.
        """
        done: list[str] = []
        changed: list[str] = []
        for name in self.names:
            try:
                outcome = self.backend.start(name)
            except DriverError as exc:
                raise ServiceChainError(name, "start", done, exc) from exc
            done.append(name)
            if outcome.changed:
                changed.append(name)
        return _chain_outcome("started", changed, self.names)

    def stop_all(self) -> Outcome:
        """Stop each service in reverse order; stop at the first failure (ServiceChainError).

        Going on would stop what the failing service still depends on while it runs.
        """
        done: list[str] = []
        changed: list[str] = []
        for name in reversed(self.names):
            try:
                outcome = self.backend.stop(name)
            except DriverError as exc:
                raise ServiceChainError(name, "stop", done, exc) from exc
            done.append(name)
            if outcome.changed:
                changed.append(name)
        return _chain_outcome("stopped", changed, self.names)


def _chain_outcome(verb: str, changed: Sequence[str], names: Sequence[str]) -> Outcome:
    if not changed:
        return Outcome(False, f"all of {', '.join(names)} already {verb}")
    return Outcome(True, f"{verb} {', '.join(changed)}")


@dataclass(frozen=True)
class ServiceFailure:
    """A watched service that is not running, and how it ended."""

    name: str
    status: ServiceStatus

    @property
    def reason(self) -> str:
        return self.status.describe()

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class Monitor:
    """Watches services that should be running and reports those that are not.

    `check()` returns one ServiceFailure per watched service that is failed or inactive (a
    service that simply stopped is just as down), in chain order, so that the HA loop can
    restart it in place; services that are starting or stopping are not reported.
    """

    def __init__(self, backend: ServiceBackend, names: Sequence[str]) -> None:
        self.backend = backend
        self.names = _check_names(list(names))

    def check(self) -> list[ServiceFailure]:
        failures = []
        for name in self.names:
            status = self.backend.recent(name)
            if status.state in (ServiceState.FAILED, ServiceState.INACTIVE, ServiceState.UNKNOWN):
                failures.append(ServiceFailure(name, status))
        return failures
