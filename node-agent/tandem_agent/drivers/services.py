"""Services: start, stop and watch the programs a primary runs.

``ServiceBackend`` is the narrow interface the agent uses. Two backends implement it:

* ``SystemdBackend`` (production) drives each service's systemd unit (``unit`` in the spec;
  the service's ``name`` stays its identity in status) with ``systemctl`` argument lists and
  reads its state from ``systemctl show`` key=value output.
* ``ProcessBackend`` (the lab) runs real programs as child processes, each in its own session
  and process group, optionally inside a network namespace, and keeps a state file per service
  so that a restarted agent finds its processes again.

On top of a backend, ``ServiceChain`` starts services in order and stops them in reverse, and
``Monitor`` reports the services that are not running, with how they ended, so that the HA
loop can restart them in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from tandem.api.hacluster import unit_name_problem

from .base import CommandError, DriverError, Outcome, in_netns, run

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
            f"could not {action} service {name} (the chain stopped there; {state} before it: "
            f"{before}): {cause}"
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

    def status(self, name: str) -> ServiceStatus: ...

    def is_active(self, name: str) -> bool: ...

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


def status_from_show(name: str, props: Mapping[str, str]) -> ServiceStatus:
    """Turn the properties of ``systemctl show`` into a ServiceStatus.

    A unit that does not exist shows ``LoadState=not-found``; that is a DriverError, since
    starting it could never succeed.
    """
    load = props.get("LoadState", "")
    if load in ("not-found", "bad-setting", "error", "masked"):
        unit = props.get("Id") or "its unit"
        raise ServiceError(name, f"{unit} is {load} (LoadState={load}): install or unmask it, "
                                 "or fix spec.chain.services[].unit")
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
    detail = ", ".join(
        p for p in (f"sub-state {sub}" if sub else "", f"result {result}" if result else "") if p
    )
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

    `units` maps each service name (its identity in status) to its unit. This backend cannot be
    exercised against a real systemd in the lab (there is no systemd as PID 1 there): its tests
    check the argument lists it builds and parse recorded ``systemctl show`` output of the real
    format. The lab runs services with ProcessBackend.
    """

    units: Mapping[str, str] = field(default_factory=dict)
    systemctl: str = "systemctl"
    timeout: float = 90.0

    def __post_init__(self) -> None:
        for name, unit in self.units.items():
            validate_name(name)
            validate_unit(unit)

    def unit(self, name: str) -> str:
        try:
            return self.units[name]
        except KeyError:
            raise DriverError(f"unknown service {name!r}; defined: {sorted(self.units)}") from None

    def argv(self, verb: str, unit: str, *extra: str) -> list[str]:
        """The systemctl command for `verb` on `unit` (validated; never a shell string)."""
        if verb not in ("start", "stop", "is-active", "reset-failed", "show"):
            raise DriverError(f"unsupported systemctl verb {verb!r}")
        return [self.systemctl, "--no-ask-password", verb, *extra, "--", validate_unit(unit)]

    def show_argv(self, unit: str) -> list[str]:
        return self.argv("show", unit, "--property=" + ",".join(SHOW_PROPERTIES))

    def status(self, name: str) -> ServiceStatus:
        proc = run(self.show_argv(self.unit(name)), timeout=self.timeout)
        return status_from_show(name, parse_show(proc.stdout))

    def is_active(self, name: str) -> bool:
        # `systemctl is-active --quiet` exits 0 exactly when the unit is active.
        argv = self.argv("is-active", self.unit(name), "--quiet")
        return run(argv, check=False).returncode == 0

    def start(self, name: str) -> Outcome:
        unit = self.unit(name)
        before = self.status(name)
        if before.active:
            return Outcome(False, f"{name} ({unit}) already active")
        try:
            run(self.argv("start", unit), timeout=self.timeout)
        except CommandError as exc:
            after = self.status(name)
            raise ServiceError(name, f"start of {unit} failed: {after.describe()}: {exc}",
                               after) from exc
        return Outcome(True, f"started {name} ({unit})")

    def stop(self, name: str) -> Outcome:
        unit = self.unit(name)
        before = self.status(name)
        if before.state in (ServiceState.INACTIVE, ServiceState.FAILED):
            return Outcome(False, f"{name} ({unit}) already {before.state.value}")
        try:
            run(self.argv("stop", unit), timeout=self.timeout)
        except CommandError as exc:
            raise ServiceError(name, f"stop of {unit} failed: {exc}", self.status(name)) from exc
        return Outcome(True, f"stopped {name} ({unit})")

    def reset_failed(self, name: str) -> Outcome:
        unit = self.unit(name)
        if self.status(name).state is not ServiceState.FAILED:
            return Outcome(False, f"{name} ({unit}) is not failed")
        run(self.argv("reset-failed", unit), timeout=self.timeout)
        return Outcome(True, f"reset the failed state of {name} ({unit})")


# --------------------------------------------------------------------------------------------
# Processes (the lab)


@dataclass(frozen=True)
class ProcessService:
    """A program the lab runs as a service.

    `argv` runs in network namespace `netns` when given (through ``ip netns exec``, which
    execs the program, so the pid is the program's), with `env` added to the agent's
    environment and in `cwd`. `start` waits `start_grace` seconds and fails when the program
    has already exited; with `ready_check` (an argument list run in the same namespace) it
    waits up to `ready_timeout` until that exits 0. `stop` sends SIGTERM to the process group
    and SIGKILL after `stop_timeout`.
    """

    name: str
    argv: tuple[str, ...]
    netns: str | None = None
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    start_grace: float = 0.1
    ready_check: tuple[str, ...] | None = None
    ready_timeout: float = 10.0
    stop_timeout: float = 10.0

    def validate(self) -> None:
        validate_name(self.name)
        if not self.argv:
            raise DriverError(f"service {self.name}: empty argv")
        if self.ready_check is not None and not self.ready_check:
            raise DriverError(f"service {self.name}: empty ready_check")


def proc_start_time(pid: int, proc: str = "/proc") -> int | None:
    """Start time of `pid` (clock ticks since boot, field 22 of stat), None if it is gone."""
    stat = read_proc_stat(pid, proc)
    return stat.start_time if stat and stat.state not in ("Z", "X") else None


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    pgrp: int
    session: int
    start_time: int


def parse_proc_stat(text: str) -> ProcStat:
    """Parse ``/proc/<pid>/stat``; the command may contain spaces and parentheses."""
    head, sep, rest = text.rpartition(")")
    if not sep:
        raise ValueError(f"not a /proc/<pid>/stat line: {text!r}")
    pid_text, _, comm = head.partition(" (")
    fields = rest.split()
    # fields[0] is field 3 (state); field n is fields[n - 3].
    return ProcStat(
        pid=int(pid_text),
        comm=comm,
        state=fields[0],
        pgrp=int(fields[2]),
        session=int(fields[3]),
        start_time=int(fields[19]),
    )


def read_proc_stat(pid: int, proc: str = "/proc") -> ProcStat | None:
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return parse_proc_stat(fh.read())
    except (OSError, ValueError, IndexError):
        return None


def session_members(session: int, proc: str = "/proc") -> list[int]:
    """Live (not zombie) processes of a session: what is left of a service after its leader."""
    members = []
    for entry in os.listdir(proc):
        if entry.isdigit():
            st = read_proc_stat(int(entry), proc)
            if st and st.session == session and st.state not in ("Z", "X"):
                members.append(st.pid)
    return members


def decode_returncode(returncode: int) -> tuple[int | None, int | None]:
    """subprocess's returncode as (exit status, signal): negative means killed by a signal."""
    return (None, -returncode) if returncode < 0 else (returncode, None)


@dataclass
class ProcessBackend:
    """Lab services: real programs as child processes, tracked by state files in `state_dir`.

    Each running service has ``<state_dir>/<name>.json`` with its pid and the pid's start time
    (from ``/proc/<pid>/stat``), so that a new ProcessBackend on the same directory (a
    restarted agent) finds it again, and a recycled pid is never mistaken for it. Output goes
    to ``<name>.log``. A program that exits without being stopped is ``failed`` (exit status 0
    included: a service is meant to keep running); how it ended is known when this backend
    started it (it reaps its children), and "unknown" for one inherited from an earlier agent.
    """

    state_dir: str
    services: dict[str, ProcessService] = field(default_factory=dict)
    _children: dict[str, subprocess.Popen[bytes]] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        os.makedirs(self.state_dir, exist_ok=True)
        for service in self.services.values():
            service.validate()

    @classmethod
    def of(cls, state_dir: str, services: Iterable[ProcessService]) -> ProcessBackend:
        return cls(state_dir, {s.name: s for s in services})

    def define(self, service: ProcessService) -> None:
        service.validate()
        self.services[service.name] = service

    def _service(self, name: str) -> ProcessService:
        try:
            return self.services[name]
        except KeyError:
            known = sorted(self.services)
            raise DriverError(f"unknown service {name!r}; defined: {known}") from None

    def _state_path(self, name: str) -> str:
        return os.path.join(self.state_dir, f"{validate_name(name)}.json")

    def log_path(self, name: str) -> str:
        return os.path.join(self.state_dir, f"{validate_name(name)}.log")

    def _load(self, name: str) -> dict[str, object] | None:
        try:
            with open(self._state_path(name), encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise DriverError(f"unreadable state file {self._state_path(name)}: {exc}") from exc
        return data if isinstance(data, dict) else None

    def _save(self, name: str, data: Mapping[str, object]) -> None:
        path = self._state_path(name)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def _forget(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._state_path(name))
        self._children.pop(name, None)

    # -- status --------------------------------------------------------------------------------

    def status(self, name: str) -> ServiceStatus:
        self._service(name)
        data = self._load(name)
        pid = _as_int(data.get("pid")) if data else None
        stale = self._children.get(name)
        if stale is not None and stale.pid != pid and stale.poll() is not None:
            del self._children[name]  # reaped: someone else (another agent) stopped it
        if data is None:
            return ServiceStatus(name, ServiceState.INACTIVE)
        started = _as_int(data.get("start_time"))
        if "exit_status" in data or "signal" in data:
            return self._ended(name, data)
        child = self._children.get(name)
        if child is not None and child.pid == pid:
            returncode = child.poll()
            if returncode is not None:
                exit_status, sig = decode_returncode(returncode)
                data = {**data, "exit_status": exit_status, "signal": sig}
                self._save(name, data)
                return self._ended(name, data)
        if pid is not None and started is not None and proc_start_time(pid) == started:
            return ServiceStatus(name, ServiceState.ACTIVE, pid=pid)
        return ServiceStatus(
            name,
            ServiceState.FAILED,
            detail=f"pid {pid} is gone; how it ended is unknown (it was not this agent's child)",
        )

    def _ended(self, name: str, data: Mapping[str, object]) -> ServiceStatus:
        return ServiceStatus(
            name,
            ServiceState.FAILED,
            exit_status=_as_int(data.get("exit_status")),
            signal=_as_int(data.get("signal")),
            detail=f"pid {data.get('pid')} ended without being stopped",
        )

    def is_active(self, name: str) -> bool:
        return self.status(name).active

    # -- start ---------------------------------------------------------------------------------

    def start(self, name: str) -> Outcome:
        service = self._service(name)
        current = self.status(name)
        if current.active:
            return Outcome(False, f"{name} already running as pid {current.pid}")
        if current.state is ServiceState.FAILED:
            # Restart in place: whatever is left of the old process group goes first.
            self._kill_leftovers(name, service.stop_timeout)
        env = {**os.environ, **service.env} if service.env else None
        argv = in_netns(service.netns, service.argv)
        with open(self.log_path(name), "ab") as log:
            try:
                # An argument list from the service definition, never a shell string.
                child = subprocess.Popen(  # noqa: S603
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=service.cwd,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServiceError(name, f"cannot run {argv[0]}: {exc}") from exc
        started = proc_start_time(child.pid)
        self._children[name] = child
        self._save(
            name,
            {"pid": child.pid, "start_time": started, "argv": argv, "started_at": time.time()},
        )
        self._await_start(service, child)
        return Outcome(True, f"started {name} as pid {child.pid}")

    def _await_start(self, service: ProcessService, child: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + service.start_grace
        while time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        self._raise_if_ended(service.name)
        if service.ready_check is None:
            return
        deadline = time.monotonic() + service.ready_timeout
        check = service.ready_check
        while True:
            self._raise_if_ended(service.name)
            proc = run(check, netns=service.netns, check=False, timeout=30)
            if proc.returncode == 0:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        self.stop(service.name)
        raise ServiceError(
            service.name,
            f"not ready within {service.ready_timeout:.1f}s ({' '.join(check)} "
            f"exited {proc.returncode}); stopped it again",
        )

    def _raise_if_ended(self, name: str) -> None:
        status = self.status(name)
        if not status.active:
            raise ServiceError(
                name, f"exited during start: {status.describe()} (see {self.log_path(name)})",
                status,
            )

    # -- stop ----------------------------------------------------------------------------------

    def stop(self, name: str) -> Outcome:
        service = self._service(name)
        current = self.status(name)
        if not current.active:
            left = self._kill_leftovers(name, service.stop_timeout)
            if current.state is ServiceState.INACTIVE:
                return Outcome(bool(left), f"{name} not running" + _left(left))
            return Outcome(bool(left), f"{name} not running ({current.describe()})" + _left(left))
        assert current.pid is not None
        how = self._terminate(name, current.pid, service.stop_timeout)
        self._forget(name)
        return Outcome(True, f"stopped {name} (pid {current.pid}, {how})")

    def _terminate(self, name: str, session: int, timeout: float) -> str:
        """SIGTERM the process group, wait for the whole session to go, then SIGKILL."""
        child = self._children.get(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session, signal.SIGTERM)
        if self._wait_session(session, timeout, child):
            return "SIGTERM"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session, signal.SIGKILL)
        for pid in session_members(session):  # members that moved to another group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not self._wait_session(session, 10.0, child):
            raise ServiceError(name, f"processes {session_members(session)} survive SIGKILL")
        return f"SIGKILL after {timeout:.1f}s"

    @staticmethod
    def _wait_session(session: int, timeout: float, child: subprocess.Popen[bytes] | None) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if child is not None:
                child.poll()  # reap our own child so it does not linger as a zombie
            if not session_members(session):
                if child is not None:
                    # Gone from the session means dead or a zombie: reaping is immediate.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.wait(timeout=5)
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _kill_leftovers(self, name: str, timeout: float) -> list[int]:
        """Processes still in the session of a service whose leader has ended."""
        data = self._load(name) or {}
        pid = _as_int(data.get("pid"))
        if pid is None:
            return []
        alive_since = proc_start_time(pid)
        if alive_since is not None and alive_since != _as_int(data.get("start_time")):
            # The pid now belongs to another process. Linux never hands out a pid that is
            # still a session id, so the service's session is gone: nothing is left of it.
            return []
        left = session_members(pid)
        if left:
            self._terminate(name, pid, timeout)
        return left

    def reset_failed(self, name: str) -> Outcome:
        status = self.status(name)
        if status.state is not ServiceState.FAILED:
            return Outcome(False, f"{name} is not failed")
        self._kill_leftovers(name, self._service(name).stop_timeout)
        self._forget(name)
        return Outcome(True, f"reset the failed state of {name} ({status.describe()})")


def _left(pids: Sequence[int]) -> str:
    return f"; killed leftover processes {pids}" if pids else ""


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
            status = self.backend.status(name)
            if status.state in (ServiceState.FAILED, ServiceState.INACTIVE, ServiceState.UNKNOWN):
                failures.append(ServiceFailure(name, status))
        return failures
