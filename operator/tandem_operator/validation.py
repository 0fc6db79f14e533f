"""Is the spec valid? Cross-object checks, and the nodes' own refusals of the spec.

The API server validates each object alone; what needs several (a chain naming a DRBDVolume
that does not exist or belongs to another HACluster, a volume without a disk on a node,
overlapping FloatingIPs, a dependsOn cycle) is checked here, each message naming the objects
and the fix. `refusals` adds what the agents found they cannot build (ineligibleReason
InvalidSpec). Either makes Ready=False InvalidSpec and refuses a switchover.
"""

from __future__ import annotations

from tandem.api.hacluster import IneligibleReason
from tandem_operator.addresses import floating_ip_conflicts
from tandem_operator.messages import human_list
from tandem_operator.snapshot import Snapshot, View


def validate(s: Snapshot) -> list[str]:
    """Cross-object checks the API server cannot make; each message names the objects and the fix."""
    spec = s.cluster.spec
    problems: list[str] = []
    node_names = [n.name for n in spec.nodes]
    for vname in spec.chain.volumes:
        vol = s.volumes.get(vname)
        if vol is None:
            problems.append(
                f"spec.chain.volumes names DRBDVolume {vname}, which does not exist in "
                f"namespace {s.namespace}: create it or remove it from the chain"
            )
        elif vol.spec.cluster != s.name:
            problems.append(
                f"DRBDVolume {vname} belongs to HACluster {vol.spec.cluster} "
                f"(its spec.cluster), not {s.name}: fix one of them"
            )
    for vname in sorted(s.volumes):
        vol = s.volumes[vname]
        if vol.spec.cluster != s.name and vname not in spec.chain.volumes:
            continue
        disks = {n.name for n in vol.spec.nodes}
        missing = [n for n in node_names if n not in disks]
        if missing:
            problems.append(
                f"DRBDVolume {vname} has no disk for node {human_list(missing)} of HACluster "
                f"{s.name}: add {'it' if len(missing) == 1 else 'them'} to the volume's "
                "spec.nodes"
            )
    for mount in spec.chain.mounts:
        if mount.volume not in spec.chain.volumes:
            problems.append(
                f"spec.chain.mounts mounts {mount.volume}, which is not in spec.chain.volumes: add it there"
            )
    for fname in spec.chain.floating_ips:
        fip = s.floating_ips.get(fname)
        if fip is None:
            problems.append(
                f"spec.chain.floatingIPs names FloatingIP {fname}, which does not exist "
                f"in namespace {s.namespace}: create it or remove it from the chain"
            )
        elif fip.spec.cluster != s.name:
            problems.append(
                f"FloatingIP {fname} belongs to HACluster {fip.spec.cluster} "
                f"(its spec.cluster), not {s.name}: fix one of them"
            )
    mine = {n for n, f in s.floating_ips.items() if f.spec.cluster == s.name} | {
        n for n in spec.chain.floating_ips if n in s.floating_ips
    }
    problems += floating_ip_conflicts(s.floating_ips, mine)
    if spec.depends_on is not None:
        dep = spec.depends_on.name
        if dep == s.name:
            problems.append("spec.dependsOn names this HACluster itself: remove it")
        elif dep not in s.clusters:
            problems.append(
                f"spec.dependsOn names HACluster {dep}, which does not exist in namespace "
                f"{s.namespace}: create it or remove spec.dependsOn"
            )
        else:
            path = [s.name, dep]
            current = s.clusters[dep]
            while current.spec.depends_on is not None and len(path) <= len(s.clusters) + 1:
                nxt = current.spec.depends_on.name
                if nxt in path:
                    problems.append(f"spec.dependsOn makes a cycle ({' -> '.join([*path, nxt])}): break it")
                    break
                path.append(nxt)
                if nxt not in s.clusters:
                    break
                current = s.clusters[nxt]
    return problems


def refusals(v: View) -> list[str]:
    """The spec as the nodes refuse it: each fresh report whose ineligibleReason is
    InvalidSpec (its message "<field>: <problem>"), of any epoch (a refusal is about the spec,
    not the Lease), the nodes that say the same thing together."""
    said: dict[str, list[str]] = {}
    for node in v.s.cluster.spec.nodes:
        r = v.reports.get(node.name)
        if r is not None and v.fresh(r) and r.ineligible_reason is IneligibleReason.INVALID_SPEC:
            said.setdefault(r.ineligible_message, []).append(node.name)
    return [
        f"{human_list(nodes)} {'refuses' if len(nodes) == 1 else 'refuse'} the spec: {detail}"
        for detail, nodes in said.items()
    ]
