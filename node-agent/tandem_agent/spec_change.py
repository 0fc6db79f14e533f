"""What a change of a running cluster's spec means for this node: pure, no I/O.

A running agent compares the spec it runs with the newest one (the HACluster and the
DRBDVolumes and FloatingIPs it names) and sorts every difference into one of three kinds:

- live: applied on a running primary without moving the Lease (floating IPs added, removed or
  changed; services added or removed at the end of the chain; monitor and health-check
  settings; service timeouts; the failover policy; Lease timings that stay safe while the
  nodes switch from the old values to the new ones);
- deferred: needs the chain down on this node (volumes, mounts, bind mounts, PostgreSQL,
  services reordered or changed in the middle, the node list): a standby applies it at once,
  a primary at its next switchover or failover, and says so meanwhile;
- not applicable: Lease timings whose mix of old and new values breaks the single-primary
  inequality; nothing of the change is applied and the message says how to split it.

`verdict` decides whether to apply now, with the reason reported in the node's status
(`pendingChange`: one CamelCase word, then the details).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tandem.api.drbdvolume import DRBDVolumeSpec
from tandem.api.floatingip import FloatingIPSpec
from tandem.api.hacluster import HAClusterSpec, LeaseTimings, ServiceSpec

WAITING_FOR_SWITCHOVER = "WaitingForSwitchover"
NOT_APPLICABLE = "NotApplicable"
PAUSED = "Paused"


@dataclass(frozen=True)
class SpecChange:
    """The differences between the spec running here and the newest one, by kind."""

    live: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()
    not_applicable: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.live or self.deferred or self.not_applicable)


@dataclass(frozen=True)
class Verdict:
    apply: bool
    pending: str = ""  # why not yet: "<Reason>: <details>"; empty once applied


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True) if model is not None else None


def _service_identity(s: ServiceSpec) -> tuple[str, str, str]:
    """What places a service in the chain; its health check and timeouts may change live."""
    return s.name, s.unit, s.run_on


def _services(old: Sequence[ServiceSpec], new: Sequence[ServiceSpec]) -> tuple[list[str], list[str]]:
    """(live, deferred) differences of spec.chain.services."""
    before = [_service_identity(s) for s in old]
    after = [_service_identity(s) for s in new]
    live: list[str] = []
    if after[: len(before)] == before:
        live += [f"spec.chain.services: {name} added at the end" for name, *_ in after[len(before) :]]
    elif before[: len(after)] == after:
        live += [f"spec.chain.services: {name} removed from the end" for name, *_ in before[len(after) :]]
    else:
        return [], [
            "spec.chain.services: services reordered, or one changed or added before "
            "the last (only the end of the chain changes live)"
        ]
    settings = {s.name: _dump(s) for s in old}
    live += [
        f"spec.chain.services[{i}] ({s.name}): health check or timeouts"
        for i, s in enumerate(new)
        if s.name in settings and settings[s.name] != _dump(s)
    ]
    return live, []


def postgres_changed(old: HAClusterSpec, new: HAClusterSpec) -> bool:
    """PostgreSQL must be set up again: its spec (not its monitor) or the nodes it streams
    between changed."""

    def settings(spec: HAClusterSpec) -> Any:
        pg = spec.chain.postgres
        return None if pg is None else _dump(pg.model_copy(update={"monitor": None}))

    return settings(old) != settings(new) or _dump_list(old.nodes) != _dump_list(new.nodes)


def _dump_list(items: Sequence[Any]) -> list[Any]:
    return [_dump(i) for i in items]


def _hold_ms(t: LeaseTimings) -> int:
    return t.renew_deadline_ms + t.demotion_timeout_ms + t.max_stall_ms + t.margin_ms


def timings_problem(old: LeaseTimings, new: LeaseTimings) -> str | None:
    """While the nodes switch, one may hold the Lease under the old timings and the other wait
    under the new ones (or the reverse): the inequality must hold across the mix."""
    if old == new:
        return None
    hold = max(_hold_ms(old), _hold_ms(new))
    wait = min(t.lease_duration_ms * (1000 - t.clock_rate_error_permille) for t in (old, new))
    if hold * 1000 < wait:
        return None
    return (
        f"spec.leases: a holder on the old timings and a standby on the new ones (or the "
        f"reverse) could both act as primary: renewDeadlineMs + demotionTimeoutMs + "
        f"maxStallMs + marginMs reaches {hold} ms, not below the shortest leaseDurationMs "
        f"x (1 - clockRateErrorPermille/1000) = {wait / 1000:g} ms; make the change in two "
        "edits: raise leaseDurationMs first and the others after, or lower the others "
        "first and leaseDurationMs after"
    )


class Resolved(Protocol):
    """A cluster's spec with the DRBDVolumes and FloatingIPs its chain names
    (`chain.ResolvedCluster`)."""

    spec: HAClusterSpec
    volumes: dict[str, DRBDVolumeSpec]
    floating_ips: dict[str, FloatingIPSpec]


def spec_change(running: Resolved, newest: Resolved) -> SpecChange:
    """Sort every difference between the running spec and the newest one (primary,
    standbyNodes, paused and dependsOn are intent, read live already: not compared)."""
    old, new = running.spec, newest.spec
    old_volumes, new_volumes = running.volumes, newest.volumes
    old_fips, new_fips = running.floating_ips, newest.floating_ips
    live: list[str] = []
    deferred: list[str] = []
    if _dump_list(old.nodes) != _dump_list(new.nodes):
        deferred.append("spec.nodes")
    if old.chain.volumes != new.chain.volumes:
        deferred.append("spec.chain.volumes")
    deferred += [
        f"DRBDVolume {name}"
        for name in new.chain.volumes
        if name in old_volumes and _dump(old_volumes[name]) != _dump(new_volumes.get(name))
    ]
    for field, before, after in (
        ("spec.chain.mounts", old.chain.mounts, new.chain.mounts),
        ("spec.chain.bindMounts", old.chain.bind_mounts, new.chain.bind_mounts),
    ):
        if _dump_list(before) != _dump_list(after):
            deferred.append(field)
    if postgres_changed(old, new) and "spec.nodes" not in deferred:
        deferred.append("spec.chain.postgres")
    elif (
        old.chain.postgres is not None
        and new.chain.postgres is not None
        and old.chain.postgres.monitor != new.chain.postgres.monitor
    ):
        live.append("spec.chain.postgres.monitor")
    service_live, service_deferred = _services(old.chain.services, new.chain.services)
    live += service_live
    deferred += service_deferred
    added = [n for n in new.chain.floating_ips if n not in old.chain.floating_ips]
    removed = [n for n in old.chain.floating_ips if n not in new.chain.floating_ips]
    live += [f"spec.chain.floatingIPs: {name} added" for name in added]
    live += [f"spec.chain.floatingIPs: {name} removed" for name in removed]
    live += [
        f"FloatingIP {name}"
        for name in new.chain.floating_ips
        if name in old.chain.floating_ips and _dump(old_fips[name]) != _dump(new_fips[name])
    ]
    if old.chain.monitors != new.chain.monitors:
        live.append("spec.chain.monitors")
    if old.failover != new.failover:
        live.append("spec.failover")
    problem = timings_problem(old.leases, new.leases)
    if problem is not None:
        return SpecChange(tuple(live), tuple(deferred), (problem,))
    if old.leases != new.leases:
        live.append("spec.leases")
    return SpecChange(tuple(live), tuple(deferred))


def verdict(change: SpecChange, chain_down: bool, paused: bool) -> Verdict:
    """Apply the newest spec now, or say why it waits. Live changes apply on a running chain;
    deferred ones only once the chain is down here (a standby at once, a primary after its
    next switchover); a paused cluster acts on nothing, so its changes wait for resume."""
    if change.not_applicable:
        return Verdict(
            False, f"{NOT_APPLICABLE}: {'; '.join(change.not_applicable)}; this node keeps running the spec it has"
        )
    if change.empty:
        return Verdict(True)
    if paused:
        return Verdict(False, f"{PAUSED}: spec.paused is set: {_listed(change)} applied on resume")
    if change.deferred and not chain_down:
        return Verdict(
            False,
            f"{WAITING_FOR_SWITCHOVER}: {', '.join(change.deferred)} changed: "
            "applied once the chain is down on this node (the next switchover or "
            "failover); "
            + ("nothing else is applied before" if change.live else "the chain keeps running as it is meanwhile"),
        )
    return Verdict(True)


def _listed(change: SpecChange) -> str:
    return ", ".join(change.live + change.deferred)
