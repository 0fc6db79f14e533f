"""The executor: one HACluster's resource chain on this node, built from the drivers.

Bring-up runs the steps in order (DRBD primary → mount → bind mounts → floating IPs →
PostgreSQL promote → services) and re-checks before every step that this node may still act
under the epoch it started with; tear-down runs them in reverse. Every step is idempotent, so
after an agent restart the runner simply tears down (or brings up) again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg

from tandem.api.drbdvolume import DRBDVolumeSpec
from tandem.api.floatingip import FloatingIPSpec
from tandem.api.hacluster import HAClusterSpec, PostgresSpec, ServiceSpec, unit_name_problem
from tandem.api.hacluster import MonitorSettings as MonitorSpec
from tandem_agent.core import ChainState, MonitorSettings, StandAlone
from tandem_agent.credentials import CredentialsError
from tandem_agent.drivers import addresses, mounts, probes
from tandem_agent.drivers.base import DriverError, Outcome
from tandem_agent.drivers.drbd import ResourceStatus
from tandem_agent.drivers.postgres import Postgres, PostgresConfig
from tandem_agent.drivers.services import Monitor, ServiceBackend, ServiceChain
from tandem_agent.monitor import Monitored
from tandem_agent.spec_change import postgres_changed
from tandem_agent.volumes import joined, standalone_peers, up_to_date

log = logging.getLogger(__name__)


class Aborted(Exception):
    """Bring-up stopped because this node may no longer act under its epoch."""


class StepFailed(DriverError):
    def __init__(self, step: str, cause: Exception) -> None:
        self.step = step
        super().__init__(f"{step}: {cause}")


class VolumeDriver(Protocol):
    """What the chain needs of the DRBD driver for one volume."""

    def primary(self, *, force: bool = False) -> Outcome: ...
    def secondary(self) -> Outcome: ...
    def join(self) -> Outcome: ...
    def reconnect(self, peer: str, *, discard_my_data: bool = False) -> Outcome: ...
    def observe(self) -> ResourceStatus | None: ...
    def report(self, status: ResourceStatus | None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Step:
    name: str
    up: Callable[[], Outcome]
    down: Callable[[], Outcome]
    forced_up: Callable[[], Outcome] | None = None  # `up` for a forced failover, if it differs


@dataclass
class ResolvedCluster:
    """An HACluster with the DRBDVolumes and FloatingIPs its chain names."""

    name: str
    spec: HAClusterSpec
    volumes: dict[str, DRBDVolumeSpec]
    floating_ips: dict[str, FloatingIPSpec]
    namespace: str = "default"


@dataclass
class NodeEnvironment:
    """How this node does things; the agent's command line fills it in.

    `device_for_volume` maps a DRBDVolume name to the block device to mount (production:
    /dev/drbd<minor>; the lab points it at a loop device, since its DRBD is simulated).
    `postgres_config` builds the PostgreSQL settings of a cluster with the replication password
    (None: not known yet); `replication_password` finds that password or raises
    CredentialsError.
    """

    node: str
    state_dir: Path
    volume_driver: Callable[[str, DRBDVolumeSpec], VolumeDriver]
    service_backend: Callable[[str, Sequence[ServiceSpec]], ServiceBackend]
    postgres_config: Callable[[ResolvedCluster, str | None], PostgresConfig]
    replication_password: Callable[[PostgresSpec, str], str]  # (spec, cluster's namespace)
    device_for_volume: dict[str, str] = field(default_factory=dict)
    address_netns: str | None = None
    # What the floating-IP monitors of every cluster read (one dump per interface, shared).
    recent_addresses: addresses.RecentAddresses = field(default_factory=addresses.RecentAddresses)

    def device(self, name: str, spec: DRBDVolumeSpec) -> str:
        return self.device_for_volume.get(name, f"/dev/drbd{spec.minor}")


def service_problems(services: Sequence[ServiceSpec]) -> list[str]:
    """Units the API server should have refused (an object stored before its rule existed),
    each naming the field: reported instead of raised, and never started."""
    return [
        f"spec.chain.services[{i}].unit: {bad}" for i, s in enumerate(services) if (bad := unit_name_problem(s.unit))
    ]


def runnable(services: Sequence[ServiceSpec]) -> list[ServiceSpec]:
    """The services whose unit may be started (those `service_problems` does not name)."""
    return [s for s in services if not unit_name_problem(s.unit)]


def postgres_problems(spec: HAClusterSpec) -> list[str]:
    """PostgreSQL streams between the nodes' replication addresses and admits the replication
    user only from them, so each node needs one."""
    if spec.chain.postgres is None:
        return []
    return [
        f"spec.nodes[{i}].replicationAddress is not set ({n.name}): PostgreSQL streams to "
        "and admits replication only from the nodes' replication addresses"
        for i, n in enumerate(spec.nodes)
        if n.replication_address is None
    ]


def floating_addresses(spec: FloatingIPSpec) -> tuple[addresses.IPInterface, ...]:
    entries = [f"{a.start}-{a.end}" if a.end else a.start for a in spec.addresses]
    return addresses.parse_addresses(entries, spec.prefix_length)


class ChainRunner:
    """Brings one cluster's chain up and down on this node and observes it."""

    def __init__(self, cluster: ResolvedCluster, env: NodeEnvironment) -> None:
        self.cluster = cluster
        self.env = env
        spec = cluster.spec
        self.volumes = {name: env.volume_driver(name, cluster.volumes[name]) for name in spec.chain.volumes}
        self.postgres = Postgres(env.postgres_config(cluster, None)) if spec.chain.postgres else None
        self.password: str | None = None
        self.credentials_problem: str | None = None
        self._credentials_read_at = float("-inf")
        self.problems = tuple(service_problems(spec.chain.services) + postgres_problems(spec))
        services = runnable(spec.chain.services)
        self.backend = env.service_backend(cluster.name, services)
        self.primary_services = [s.name for s in services if s.run_on == "Primary"]
        self.everywhere_services = [s.name for s in services if s.run_on == "AllNodes"]
        self.steps = self._steps()
        self.state = ChainState.UNKNOWN
        self.epoch: int | None = None
        self.following: tuple[str, int] | None = None  # (primary, epoch) this node rejoined
        self.drbd: dict[str, ResourceStatus | None] = {}
        self._drbd_observed_at = float("-inf")

    # --- steps ----------------------------------------------------------------------------
    def _steps(self) -> list[Step]:
        spec, env = self.cluster.spec, self.env
        steps: list[Step] = []
        for name, driver in self.volumes.items():
            steps.append(
                Step(
                    f"drbd {name} primary",
                    driver.primary,
                    driver.secondary,
                    forced_up=_bind(driver.primary, force=True),
                )
            )
        for m in spec.chain.mounts:
            fs = mounts.FilesystemMount(
                device=env.device(m.volume, self.cluster.volumes[m.volume]),
                target=m.mount_point,
                fstype=m.fs_type,
                options=tuple(m.options),
            )
            steps.append(
                Step(
                    _mount_step(m.mount_point),
                    _bind(mounts.ensure_mounted, fs, create_target=True),
                    _bind(mounts.ensure_unmounted, fs),
                )
            )
        for b in spec.chain.bind_mounts:
            bm = mounts.BindMount(source=b.source, target=b.target)
            steps.append(
                Step(
                    f"bind {b.source} -> {b.target}",
                    _bind(mounts.ensure_bind_mounted, bm, create_target=True),
                    _bind(mounts.ensure_unmounted, bm),
                )
            )
        for name in spec.chain.floating_ips:
            fip = self.cluster.floating_ips[name]
            steps.append(Step(f"floating IPs {name}", _bind(self._addresses_up, fip), _bind(self._addresses_down, fip)))
        if self.postgres is not None:
            steps.append(Step("postgres primary", self._postgres_up, self._postgres_down))
        if self.primary_services:
            services = ServiceChain(self.backend, self.primary_services)
            steps.append(Step("services", services.start_all, services.stop_all))
        return steps

    @contextlib.contextmanager
    def _changing_addresses(self, interface: str) -> Iterator[None]:
        """Around a change of `interface`'s addresses: the monitors' shared view of it is stale
        once it is done (see addresses.RecentAddresses)."""
        try:
            yield
        finally:
            self.env.recent_addresses.forget(self.env.address_netns, interface)

    def _addresses_up(self, fip: FloatingIPSpec) -> Outcome:
        wanted = floating_addresses(fip)
        with self._changing_addresses(fip.interface):
            result = addresses.ensure_present(self.env.address_netns, fip.interface, wanted, announce=None)
        if result.changed:
            # Announce in the background so PostgreSQL and the services need not wait for
            # the spaced repeats; the first round goes out at once.
            settings = addresses.Announce(count=fip.announce.count, interval=fip.announce.interval_ms / 1000)
            threading.Thread(
                target=_announce_quietly,
                args=(self.env.address_netns, fip.interface, result.added, settings),
                daemon=True,
                name=f"announce-{fip.interface}",
            ).start()
        return result

    def _addresses_down(self, fip: FloatingIPSpec) -> Outcome:
        with self._changing_addresses(fip.interface):
            return addresses.ensure_absent(self.env.address_netns, fip.interface, floating_addresses(fip))

    def _postgres_up(self) -> Outcome:
        assert self.postgres is not None
        pg = self.postgres
        if not pg.initialized:
            return pg.init_primary()
        if pg.is_running():
            promoted = pg.promote()
            user = pg.ensure_replication_user()  # a rotated password, on the new primary
            return Outcome(promoted.changed or user.changed, promoted.detail)
        return pg.start_primary()

    def _postgres_down(self) -> Outcome:
        """A fast shutdown; past an explicit stopTimeoutSeconds, an immediate one (still
        crash-safe). Without one, a stop that hangs is bounded by the fence."""
        assert self.postgres is not None
        spec = self.cluster.spec.chain.postgres
        pg = self.postgres
        if not pg.is_running():
            return Outcome(False)
        if spec is None or spec.stop_timeout_seconds is None:
            return pg.stop("fast")
        try:
            return pg.stop("fast", timeout=spec.stop_timeout_seconds)
        except DriverError as exc:
            log.warning("%s: %s; stopping immediately", self.cluster.name, exc)
            return pg.stop("immediate", timeout=spec.stop_timeout_seconds)

    # --- transitions ----------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why this node cannot run the chain at all, naming the field (None: it can); it is
        then ineligible, reason InvalidSpec."""
        found = [*self.problems, *([self.credentials_problem] if self.credentials_problem else [])]
        return "; ".join(found) or None

    def refresh_credentials(self, now: float, max_age: float = 30.0, retry: float = 2.0) -> None:
        """Read the replication password again when the last read is older than `max_age`
        (`retry` while it is missing). A new password rebuilds the PostgreSQL driver and is
        applied at once: the passfile here, and the role's verifier when this node is the
        primary. One that cannot be read now keeps the last good one (the servers already
        use it); only a node that never had one reports the problem."""
        spec = self.cluster.spec.chain.postgres
        wait = retry if self.password is None else max_age
        if spec is None or now - self._credentials_read_at < wait:
            return
        self._credentials_read_at = now
        try:
            password = self.env.replication_password(spec, self.cluster.namespace)
        except CredentialsError as exc:
            if self.password is None:
                self.credentials_problem = str(exc)
            else:
                log.warning("%s: keeping the replication password read earlier: %s", self.cluster.name, exc)
            return
        self.credentials_problem = None
        if password != self.password:
            self.password = password
            self.postgres = Postgres(self.env.postgres_config(self.cluster, password))
            self._apply_password(self.postgres)

    def _apply_password(self, pg: Postgres) -> None:
        try:
            pg.write_passfile()
            if self.state is ChainState.UP and pg.is_running():
                pg.ensure_replication_user()
        except (DriverError, psycopg.Error) as exc:
            log.warning(
                "%s: applying the replication password failed (retried at the next start): %s", self.cluster.name, exc
            )

    def bring_up(self, epoch: int, may_continue: Callable[[], bool], *, force: bool = False) -> list[str]:
        """Run every step in order; stop (and raise Aborted) as soon as this node may not act.
        A node with a configuration problem brings nothing up. `force`: the epoch was taken by
        a forced failover, so DRBD promotes a disk that is not UpToDate."""
        if problem := self.problem():
            raise StepFailed("configuration", DriverError(problem))
        done = []
        self.state = ChainState.UNKNOWN
        self.following = None
        for step in self.steps:
            if not may_continue():
                raise Aborted(f"lost the right to act at epoch {epoch} before {step.name}")
            started = time.monotonic()
            up = step.forced_up if force and step.forced_up is not None else step.up
            try:
                outcome = up()
            except Exception as exc:
                raise StepFailed(step.name, exc) from exc
            detail = outcome.detail or ("done" if outcome.changed else "ok")
            done.append(f"{step.name}: {detail} ({time.monotonic() - started:.2f}s)")
        self.state = ChainState.UP
        self.epoch = epoch
        return done

    def tear_down(self) -> list[str]:
        """Run every step's `down` in reverse order; stops at the first failure (state Unknown)."""
        done = []
        self.state = ChainState.UNKNOWN
        for step in reversed(self.steps):
            started = time.monotonic()
            try:
                outcome = step.down()
            except Exception as exc:
                raise StepFailed(step.name, exc) from exc
            done.append(f"{step.name}: {outcome.detail or 'down'} ({time.monotonic() - started:.2f}s)")
        self.state = ChainState.DOWN
        self.epoch = None
        return done

    def join_volumes(self) -> list[str]:
        """DRBD up as Secondary and connected: the standby side, with or without a primary."""
        done = [f"drbd {name}: {driver.join().detail}" for name, driver in self.volumes.items()]
        self._drbd_observed_at = float("-inf")
        return done

    def reconnect(self, volume: str, peer: str, *, discard_my_data: bool = False) -> Outcome:
        """Connect `volume`'s StandAlone connection to `peer` again (see
        `DrbdVolume.reconnect`); the next look at DRBD shows how it went."""
        outcome = self.volumes[volume].reconnect(peer, discard_my_data=discard_my_data)
        self._drbd_observed_at = float("-inf")
        return outcome

    def rejoin(self, primary: str, epoch: int) -> list[str]:
        """Become a standby of `primary`: DRBD secondary and connected, PostgreSQL following."""
        done = self.join_volumes()
        if self.postgres is not None:
            primary_address = self.replication_address(primary)
            if primary_address is None:
                raise DriverError(f"spec.nodes[{primary}].replicationAddress is needed to stream PostgreSQL from it")
            if self.password is None:
                raise DriverError(self.credentials_problem or "the replication password has not been read yet")
            port = self.cluster.spec.chain.postgres.port if self.cluster.spec.chain.postgres else 5432
            pg = self.postgres
            if not pg.initialized:
                done.append(pg.clone_standby(primary_address, port).detail)
                done.append(pg.start_standby(primary_address, port).detail)
            else:
                done.append(pg.rewind_as_standby(primary_address, port).detail)
        self.following = (primary, epoch)
        return done

    # --- spec changes ---------------------------------------------------------------------
    def apply_spec(self, candidate: ChainRunner) -> list[str]:
        """Run the spec `candidate` was built from (`spec_change.verdict` said it may apply
        now). On a running chain: first what goes away (addresses, services at the end), then
        the new spec, then what comes (addresses added and announced, services started in
        order). A removal that fails raises and the old spec stays; an addition that fails is
        only logged, since the monitors then find it missing and repair it."""
        done = self._remove_for(candidate)
        self._adopt(candidate)
        if self.state is ChainState.UP:
            done += self._add_after_adopting()
        return done

    def _remove_for(self, candidate: ChainRunner) -> list[str]:
        done = [
            f"service {name}: {self.backend.stop(name).detail or 'stopped'}"
            for name in reversed(self.everywhere_services)
            if name not in candidate.everywhere_services
        ]
        if self.state is ChainState.DOWN:  # a standby holds no floating address
            return done
        wanted: dict[str, set[addresses.IPInterface]] = {}
        for fip in candidate.cluster.floating_ips.values():
            wanted.setdefault(fip.interface, set()).update(floating_addresses(fip))
        for name, fip in self.cluster.floating_ips.items():
            gone = [a for a in floating_addresses(fip) if a not in wanted.get(fip.interface, set())]
            if gone:
                with self._changing_addresses(fip.interface):
                    outcome = addresses.ensure_absent(self.env.address_netns, fip.interface, gone)
                done.append(f"floating IPs {name}: {outcome.detail or 'removed'}")
        done += [
            f"service {name}: {self.backend.stop(name).detail or 'stopped'}"
            for name in reversed(self.primary_services)
            if name not in candidate.primary_services
        ]
        return done

    def _adopt(self, candidate: ChainRunner) -> None:
        """Take the drivers and steps of `candidate`; keep what this node runs and knows (the
        chain's state and epoch, whom it follows, the replication password), unless PostgreSQL
        itself changed: then its driver is new and it is set up again at the next rejoin."""
        if postgres_changed(self.cluster.spec, candidate.cluster.spec):
            self.postgres = candidate.postgres
            self.password, self.credentials_problem = None, None
            self._credentials_read_at = float("-inf")
            self.following = None
        self.cluster = candidate.cluster
        self.volumes = candidate.volumes
        self.problems = candidate.problems
        self.backend = candidate.backend
        self.primary_services = candidate.primary_services
        self.everywhere_services = candidate.everywhere_services
        self.steps = self._steps()
        self._drbd_observed_at = float("-inf")

    def _add_after_adopting(self) -> list[str]:
        done = []
        for name, fip in self.cluster.floating_ips.items():
            try:
                outcome = self._addresses_up(fip)
            except Exception as exc:
                log.warning("%s: floating IPs %s: %s (the monitor repairs it)", self.cluster.name, name, exc)
                continue
            if outcome.changed:
                done.append(f"floating IPs {name}: {outcome.detail or 'added'}")
        if self.primary_services:
            try:
                outcome = ServiceChain(self.backend, self.primary_services).start_all()
            except Exception as exc:
                log.warning("%s: starting services: %s (repaired in place)", self.cluster.name, exc)
            else:
                if outcome.changed:
                    done.append(f"services: {outcome.detail or 'started'}")
        return done

    def ensure_everywhere_services(self) -> None:
        """Start the services that run on every node where their recent state says they do
        not run (start reads the state afresh before it acts)."""
        for name in self.everywhere_services:
            if not self.backend.recent(name).active:
                self.backend.start(name)

    def _mount_again(self, fs: mounts.FilesystemMount, volume: str) -> Outcome:
        """The mount's repair. Nothing mounted there: mount it. Its filesystem still mounted
        but failing the write check or read-only (ext4 aborts its journal after I/O errors,
        or errors=remount-ro): only unmounting and mounting it again mends that, and what is
        above it in the chain holds it (open files, bind mounts), so all of that is restarted
        with it (`restart_from`), unless the DRBD volume under it is what failed: its own
        check may not have told yet, and its repair comes first. Another filesystem there is
        a conflict, left alone."""
        if not mounts.filesystem_mounted(fs):
            return mounts.ensure_mounted(fs, create_target=True)
        driver = self.volumes.get(volume)
        if driver is not None and (problem := _volume_problem(driver)):
            raise DriverError(f"DRBD volume {volume} under it failed: {problem}; that is repaired first")
        restarted = self.restart_from(_mount_step(fs.target))
        return Outcome(True, f"unmounted and mounted again, {restarted.detail}")

    def restart_from(self, name: str) -> Outcome:
        """Stop step `name` and every step after it, in reverse order, then start them again
        in order, as a resource group restarts a member with everything above it. When a
        stop fails, the steps already stopped are started again before the failure is raised."""
        names = [step.name for step in self.steps]
        above = self.steps[names.index(name) :]
        stopped: list[Step] = []
        failure: StepFailed | None = None
        for step in reversed(above):
            try:
                step.down()
            except Exception as exc:
                failure = StepFailed(step.name, exc)
                break
            stopped.append(step)
        for step in reversed(stopped):
            try:
                step.up()
            except Exception as exc:
                raise StepFailed(step.name, exc) from exc
        if failure is not None:
            raise failure
        return Outcome(True, f"stopped and started again: {', '.join(step.name for step in above)}")

    def restart(self, service: str) -> Outcome:
        self.backend.stop(service)
        self.backend.reset_failed(service)
        return self.backend.start(service)

    # --- monitors ------------------------------------------------------------------------
    def monitored(self) -> list[Monitored]:
        """Every member of the chain with its check and its repair in place, in chain order."""
        spec, env = self.cluster.spec, self.env
        monitors = spec.chain.monitors
        found: list[Monitored] = []
        for name, driver in self.volumes.items():
            found.append(
                Monitored(
                    "Volume",
                    name,
                    f"DRBD volume {name}",
                    _settings(monitors.volumes),
                    _bind(_volume_problem, driver),
                    driver.primary,
                )
            )
        for m in spec.chain.mounts:
            fs = mounts.FilesystemMount(
                device=env.device(m.volume, self.cluster.volumes[m.volume]),
                target=m.mount_point,
                fstype=m.fs_type,
                options=tuple(m.options),
            )
            found.append(
                Monitored(
                    "Mount",
                    m.mount_point,
                    f"mount {m.mount_point}",
                    _settings(monitors.mounts),
                    _bind(_mount_problem, fs),
                    _bind(self._mount_again, fs, m.volume),
                )
            )
        for b in spec.chain.bind_mounts:
            bm = mounts.BindMount(source=b.source, target=b.target)
            found.append(
                Monitored(
                    "BindMount",
                    b.target,
                    f"bind mount {b.target}",
                    _settings(monitors.mounts),
                    _bind(mounts.bind_problem, bm),
                    _bind(mounts.ensure_bind_mounted, bm, create_target=True),
                )
            )
        for name in spec.chain.floating_ips:
            fip = self.cluster.floating_ips[name]
            found.append(
                Monitored(
                    "FloatingIP",
                    name,
                    f"floating IP {name}",
                    _settings(monitors.floating_ips),
                    _bind(self._addresses_problem, fip),
                    _bind(self._addresses_up, fip),
                )
            )
        if spec.chain.postgres is not None:
            found.append(
                Monitored(
                    "PostgreSQL",
                    "postgresql",
                    "PostgreSQL",
                    _settings(spec.chain.postgres.monitor),
                    self._postgres_problem,
                    self._postgres_repair,
                )
            )
        for service in runnable(spec.chain.services):
            check = service.health_check
            if check is None or service.run_on != "Primary":
                continue
            found.append(
                Monitored(
                    "Service",
                    service.name,
                    f"service {service.name}",
                    _settings(check),
                    _bind(probes.health_problem, check),
                    _bind(self.restart, service.name),
                )
            )
        return found

    def _addresses_problem(self, fip: FloatingIPSpec) -> str | None:
        held = set(self.env.recent_addresses.present(self.env.address_netns, fip.interface))
        missing = [str(a) for a in floating_addresses(fip) if a not in held]
        return f"{', '.join(missing)} missing from {fip.interface}" if missing else None

    def _postgres_problem(self) -> str | None:
        assert self.postgres is not None
        return self.postgres.serving_problem()

    def _postgres_repair(self) -> Outcome:
        """A failed server owes nothing to a clean shutdown: an immediate stop gets one
        second before the postmaster is killed (a hung one never handles the request)."""
        assert self.postgres is not None
        return self.postgres.restart_primary(stop_timeout=1)

    # --- observation ----------------------------------------------------------------------
    def inactive_primary_services(self) -> list[str]:
        """The primary's services whose unit is not active, whatever the chain's state."""
        names = self.primary_services
        return [f.name for f in Monitor(self.backend, names).check()] if names else []

    def primary_leftovers(self) -> list[str]:
        """What of the primary's side of the chain is up here: floating addresses, mounts,
        primary services (anything that cannot be read counts as up)."""
        found: list[str] = []
        for name, fip in self.cluster.floating_ips.items():
            try:
                held = set(addresses.present(self.env.address_netns, fip.interface))
            except DriverError as exc:
                found.append(f"floating IPs {name} ({exc})")
                continue
            if held & set(floating_addresses(fip)):
                found.append(f"floating IPs {name}")
        spec = self.cluster.spec.chain
        for target in [m.mount_point for m in spec.mounts] + [b.target for b in spec.bind_mounts]:
            try:
                if mounts.is_mounted(target):
                    found.append(f"mount {target}")
            except OSError as exc:
                found.append(f"mount {target} ({exc})")
        for name in self.primary_services:
            try:
                if self.backend.status(name).active:
                    found.append(f"service {name}")
            except DriverError as exc:
                found.append(f"service {name} ({exc})")
        return found

    def replication_address(self, node: str) -> str | None:
        """`node`'s spec.nodes[].replicationAddress (None: not set, or not a node of it)."""
        return next((n.replication_address for n in self.cluster.spec.nodes if n.name == node), None)

    def standby_address(self, primary: str) -> str | None:
        """Where this node's PostgreSQL streams from when it follows `primary`."""
        pg = self.cluster.spec.chain.postgres
        address = self.replication_address(primary)
        return f"{address}:{pg.port}" if pg is not None and address is not None else None

    def failed_services(self) -> list[str]:
        names = self.primary_services if self.state is ChainState.UP else []
        names = names + self.everywhere_services
        return [f.name for f in Monitor(self.backend, names).check()] if names else []

    def observe_volumes(self, now: float, max_age: float) -> None:
        """Refresh the DRBD status of every volume when it is older than `max_age` seconds
        (each look is a drbdsetup call, too costly for every tick)."""
        if now - self._drbd_observed_at >= max_age:
            self.drbd = {name: driver.observe() for name, driver in self.volumes.items()}
            self._drbd_observed_at = now

    def disks(self) -> tuple[bool, str]:
        problems = []
        for name in self.volumes:
            ok, detail = up_to_date(self.drbd.get(name))
            if not ok:
                problems.append(f"{name} {detail}")
        return (not problems, "; ".join(problems))

    def volumes_joined(self) -> bool:
        return all(joined(self.drbd.get(name)) for name in self.volumes)

    def standalone(self) -> tuple[StandAlone, ...]:
        """Every StandAlone DRBD connection of the chain's volumes, as last observed, with
        what this node changed that the peer lacks."""
        return tuple(
            StandAlone(name, p.name, p.out_of_sync_bytes)
            for name in self.volumes
            for p in standalone_peers(self.drbd.get(name))
        )

    def volume_reports(self) -> list[dict[str, Any]]:
        return [driver.report(self.drbd.get(name)) | {"name": name} for name, driver in self.volumes.items()]

    def postgres_status(self) -> Any:
        return self.postgres.status() if self.postgres is not None else None


def _bind(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    def call() -> Any:
        return fn(*args, **kwargs)

    return call


def _mount_step(mount_point: str) -> str:
    """The name of a mount's step: the chain's steps are found by it (`restart_from`)."""
    return f"mount {mount_point}"


def _settings(spec: MonitorSpec) -> MonitorSettings:
    return MonitorSettings(float(spec.period_seconds), float(spec.timeout_seconds), spec.failure_threshold)


def _volume_problem(driver: VolumeDriver) -> str | None:
    status = driver.observe()
    if status is None:
        return "the DRBD resource is not up (no device)"
    if status.role != "Primary":
        return f"it is {status.role}, not Primary"
    if status.disk_state != "UpToDate":
        return f"its disk is {status.disk_state}, not UpToDate"
    if status.suspended:
        return "its I/O is suspended"
    return None


def _mount_problem(fs: mounts.FilesystemMount) -> str | None:
    return mounts.mount_problem(fs) or _probe(fs.target)


def _probe(directory: str) -> str | None:
    try:
        mounts.write_probe(directory)
    except OSError as exc:
        return f"writing {directory}/{mounts.PROBE_FILE} failed: {exc.strerror or exc}"
    return None


def _announce_quietly(
    netns: str | None, interface: str, added: Sequence[addresses.IPInterface], settings: addresses.Announce
) -> None:
    try:
        addresses.announce(netns, interface, added, settings)
    except DriverError as exc:
        log.warning("announcing %s failed: %s", ", ".join(map(str, added)), exc)
