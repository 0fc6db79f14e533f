"""The chain's view of one DRBDVolume on this node, over the DRBD driver."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tandem.api.drbdvolume import DRBDNodeStatus, DRBDVolumeSpec
from tandem_agent.drivers.base import DriverError, Outcome
from tandem_agent.drivers.drbd import Drbd, DrbdRefused, PeerStatus, ResourceStatus


class DrbdVolume:
    """Config, metadata and resource brought up on demand; every call idempotent."""

    def __init__(self, drbd: Drbd, spec: DRBDVolumeSpec) -> None:
        self.drbd = drbd
        self.spec = spec
        self.resource = spec.resource_name

    def _ensure_up(self) -> list[str]:
        done = []
        for outcome in (
            self.drbd.apply_config(self.spec),
            self.drbd.create_md(self.resource),
            self.drbd.up(self.resource),
        ):
            if outcome.changed:
                done.append(outcome.detail)
        return done

    def primary(self, *, force: bool = False) -> Outcome:
        """Promote; brings the resource up first only when it is not (each look at DRBD is a
        drbdsetup call, and this is on the failover path). `force` (a forced failover only)
        promotes a disk that is not UpToDate: `drbdadm primary --force`."""
        done: list[str] = []
        try:
            outcome = self.drbd.primary(self.resource, force=force)
        except DrbdRefused:
            raise
        except DriverError:
            done = self._ensure_up()
            outcome = self.drbd.primary(self.resource, force=force)
        return Outcome(outcome.changed or bool(done), "; ".join([*done, outcome.detail]))

    def secondary(self) -> Outcome:
        if self.drbd.status(self.resource) is None:
            return Outcome(False, f"{self.resource} is not up")
        return self.drbd.secondary(self.resource)

    def join(self) -> Outcome:
        """Secondary and connected to every peer, so the Primary resyncs this node."""
        done = self._ensure_up()
        for outcome in (self.drbd.secondary(self.resource), self.drbd.connect(self.resource)):
            if outcome.changed:
                done.append(outcome.detail)
        return Outcome(bool(done), "; ".join(done) or f"{self.resource} secondary and connected")

    def reconnect(self, peer: str, *, discard_my_data: bool = False) -> Outcome:
        """Connect the StandAlone connection to `peer` again. `discard_my_data`: this node is
        the split-brain victim (DRBD user's guide, "Manual split brain recovery"): Secondary
        first, then `drbdadm connect --discard-my-data`, so that the peer's data wins."""
        steps = [self.drbd.secondary(self.resource)] if discard_my_data else []
        steps.append(self.drbd.connect(self.resource, peer, discard_my_data=discard_my_data))
        done = [o.detail for o in steps if o.changed]
        return Outcome(bool(done), "; ".join(done) or f"{self.resource}: nothing to connect")

    def observe(self) -> ResourceStatus | None:
        return self.drbd.status(self.resource)

    def report(self, status: ResourceStatus | None) -> dict[str, Any]:
        node = self.drbd.node_name or ""
        api = status.to_api(node) if status else DRBDNodeStatus.model_validate({"name": node})
        return api.model_dump(by_alias=True, exclude_none=True, mode="json")


def up_to_date(status: ResourceStatus | None) -> tuple[bool, str]:
    if status is None:
        return False, "not up"
    if status.disk_state != "UpToDate":
        return False, status.disk_state
    return True, ""


def joined(status: ResourceStatus | None) -> bool:
    """Up as Secondary with no StandAlone connection: ready to be resynced by a Primary."""
    return status is not None and status.role == "Secondary" and not standalone_peers(status)


def standalone_peers(status: ResourceStatus | None) -> tuple[PeerStatus, ...]:
    """The peers this node does not even try to reach: a split brain DRBD left unresolved, or
    a disconnect by hand."""
    if status is None:
        return ()
    return tuple(p for p in status.peers if p.connection_state == "StandAlone")


def resynced_from(status: ResourceStatus | None, peer: str) -> bool:
    """Connected to `peer`, replication Established (no resync running or starting) and the
    disk UpToDate: whatever it had to send this node has arrived."""
    other = status.peer(peer) if status is not None else None
    return (
        status is not None
        and other is not None
        and other.connected
        and other.replication_state == "Established"
        and status.disk_state == "UpToDate"
    )


def drbd_volume_factory(
    node: str,
    config_dir: Path,
    drbdsetup: str | None = None,
    drbdmeta: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Callable[[str, DRBDVolumeSpec], DrbdVolume]:
    drbd = Drbd(config_dir, node_name=node, drbdsetup=drbdsetup, drbdmeta=drbdmeta, env=env)

    def make(_name: str, spec: DRBDVolumeSpec) -> DrbdVolume:
        return DrbdVolume(drbd, spec)

    return make
