"""The status of each DRBDVolume and FloatingIP of the chain, gathered from the nodes' reports.

The agents report to the HACluster only; these objects show what concerns them: a volume each
node's view of it (roles, disks, connection, its SplitBrain condition), an address range who
holds it. Only statuses that differ from what is shown are returned, so the steady state
writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tandem.api.drbdvolume import DRBDNodeStatus, DRBDVolume, DRBDVolumeStatus
from tandem.api.floatingip import FloatingIP, FloatingIPStatus
from tandem_operator.addresses import address_summary
from tandem_operator.snapshot import View
from tandem_operator.split_brain import volume_split_brain


@dataclass(frozen=True)
class MemberStatus:
    """The status a DRBDVolume or FloatingIP of the chain should show (`plural`, `name`),
    gathered from the nodes' reports, as JSON for a server-side apply."""

    plural: Literal["drbdvolumes", "floatingips"]
    name: str
    status: dict[str, Any]


def member_statuses(v: View) -> tuple[MemberStatus, ...]:
    """The statuses of this cluster's volumes and addresses that differ from what they show."""
    if v.s.deleting:
        return ()
    chain = v.s.cluster.spec.chain
    found: list[MemberStatus] = []
    for name in chain.volumes:
        volume = v.s.volumes.get(name)
        if volume is not None and volume.spec.cluster == v.s.name:
            wanted = _volume_status(v, name, volume)
            shown = volume.status or DRBDVolumeStatus()
            # Conditions of other types (another controller's) are neither compared nor dropped.
            ours = [c for c in shown.conditions if c.type == "SplitBrain"]
            if wanted != shown.model_copy(update={"conditions": ours}):
                found.append(MemberStatus("drbdvolumes", name, _json(wanted)))
    for name in chain.floating_ips:
        fip = v.s.floating_ips.get(name)
        if fip is not None and fip.spec.cluster == v.s.name:
            wanted_ip = _floating_ip_status(v, name, fip)
            if wanted_ip != (fip.status or FloatingIPStatus()):
                found.append(MemberStatus("floatingips", name, _json(wanted_ip)))
    return tuple(found)


def _volume_status(v: View, name: str, volume: DRBDVolume) -> DRBDVolumeStatus:
    """Each node's own view of the volume (its fresh report), in spec.nodes order."""
    names = v.volume_names(name)
    nodes: list[DRBDNodeStatus] = []
    reported: list[DRBDNodeStatus] = []  # those of nodes with a fresh report
    for node in volume.spec.nodes:
        report = v.reports.get(node.name)
        fresh = report is not None and v.fresh(report)
        seen = next((d for d in report.drbd if d.name in names), None) if report is not None and fresh else None
        status = seen.model_copy(update={"name": node.name}) if seen is not None else DRBDNodeStatus(name=node.name)
        nodes.append(status)
        if fresh:
            reported.append(status)
    primary = next((n for n in reported if n.role == "Primary"), None)
    connection = (primary or reported[0]).connection_state if reported else "Unknown"
    before = volume.status.conditions if volume.status else []
    return DRBDVolumeStatus(
        roles="/".join(n.role for n in nodes),
        disks="/".join(n.disk_state for n in nodes),
        connection=connection,
        nodes=nodes,
        conditions=[volume_split_brain(v, name, before)],
    )


def _floating_ip_status(v: View, name: str, fip: FloatingIP) -> FloatingIPStatus:
    """Held by the Lease holder once its fresh report of the current epoch says Primary."""
    report = v.reports.get(v.holder) if v.holder else None
    held = report is not None and v.fresh(report) and v.current(report) and report.role == "Primary"
    count, summary = address_summary(name, fip)
    return FloatingIPStatus(
        holder=v.holder if held else None, epoch=v.epoch if held else None, address_count=count, summary=summary
    )


def _json(status: DRBDVolumeStatus | FloatingIPStatus) -> dict[str, Any]:
    data: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data
