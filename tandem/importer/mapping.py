"""Pure mapping: a parsed Pacemaker configuration and DRBD resources -> tandem manifests + report.

One HACluster per Pacemaker group. Promotable clones, plain clones and loose primitives join
the group they are colocated (or else ordered) with; two groups colocated and ordered become
two HAClusters, the later one `dependsOn` the earlier. Within a cluster tandem's chain order is
fixed (volumes, mounts, bind mounts, IPs, PostgreSQL, services); the source order is compared
with it and every difference is reported.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tandem.api.common import API_VERSION
from tandem.api.hacluster import UNIT_SUFFIXES
from tandem.importer.model import (
    Attribute,
    DrbdHost,
    DrbdResource,
    InvalidInput,
    PacemakerConfig,
    Primitive,
    Source,
)
from tandem.importer.operations import map_operation, merge
from tandem.importer.report import Entry, mapped, unmapped

CHAIN_ORDER = ("volume", "mount", "bind mount", "floating IP", "PostgreSQL", "service")
SERVICE_CLASSES = ("systemd", "lsb", "service")
POSTGRES_TYPES = ("pgsql", "pgsqlms")
FS_TYPES = ("xfs", "ext4")
SPLIT_BRAIN_VALUES = {
    "after-sb-0pri": (
        "afterSb0pri",
        (
            "disconnect",
            "discard-younger-primary",
            "discard-older-primary",
            "discard-zero-changes",
            "discard-least-changes",
        ),
    ),
    "after-sb-1pri": ("afterSb1pri", ("disconnect", "consensus", "discard-secondary")),
    "after-sb-2pri": ("afterSb2pri", ("disconnect",)),
}
INFINITY = 1_000_000  # Pacemaker's INFINITY
SERVICE_NAME_RE = r"[a-zA-Z0-9][a-zA-Z0-9@._-]{0,62}"  # tandem.api.hacluster.ServiceName
CHAIN_KEYS = ("volumes", "mounts", "bindMounts", "floatingIPs", "postgres", "services", "monitors")


@dataclass(frozen=True)
class Manifest:
    document: dict[str, Any]
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class ClusterManifests:
    name: str
    manifests: tuple[Manifest, ...]


@dataclass(frozen=True)
class Result:
    clusters: tuple[ClusterManifests, ...]
    report: tuple[Entry, ...]


def dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return label or "imported"


def cluster_name(group_id: str) -> str:
    return dns_label(re.sub(r"^(g|grp|group|rg)[_-]", "", group_id, flags=re.IGNORECASE))


def score_value(score: str) -> int:
    text = score.strip().lower().lstrip("+")
    if text in ("inf", "infinity", "mandatory"):
        return INFINITY
    if text in ("-inf", "-infinity"):
        return -INFINITY
    try:
        return max(-INFINITY, min(INFINITY, int(text)))
    except ValueError:
        return 0


def category(primitive: Primitive) -> str:
    agent = primitive.agent.lower()
    if primitive.agent_class == "stonith":
        return "stonith"
    if agent == "ocf:linbit:drbd":
        return "volume"
    if agent == "ocf:heartbeat:filesystem":
        options = (primitive.param("options") or "").split(",")
        return "bind mount" if "bind" in options or "rbind" in options else "mount"
    if agent == "ocf:heartbeat:ipaddr2":
        return "floating IP"
    if primitive.agent_class == "ocf" and primitive.agent_type in POSTGRES_TYPES:
        return "PostgreSQL"
    if primitive.agent_class in SERVICE_CLASSES:
        return "service"
    return "unknown"


@dataclass
class _Cluster:
    name: str
    anchor: str  # group id, or "" for the cluster of a configuration without groups
    units: list[str] = field(default_factory=list)  # top-level resources besides the anchor
    sources: list[Source] = field(default_factory=list)
    depends_on: str | None = None


class _Mapper:
    def __init__(self, config: PacemakerConfig, drbd: list[DrbdResource], namespace: str) -> None:
        self.config = config
        self.drbd = {r.name: r for r in drbd}
        self.namespace = namespace
        self.report: list[Entry] = []
        self.parent: dict[str, str] = {}  # primitive -> the group or clone holding it
        for group in config.groups.values():
            self.parent.update(dict.fromkeys(group.members, group.id))
        for clone in config.clones.values():
            self.parent[clone.child] = clone.id
        self.used_drbd: set[str] = set()
        # (op text, outcome, carried) -> the primitives with that op: reported once
        self.ops: dict[tuple[str, str, bool], list[tuple[str, Source]]] = {}

    # --- structure -----------------------------------------------------------------------------

    def top(self, resource_id: str) -> str:
        while resource_id in self.parent:
            resource_id = self.parent[resource_id]
        return resource_id

    def primitives_of(self, unit: str) -> list[Primitive]:
        if unit in self.config.primitives:
            return [self.config.primitives[unit]]
        if unit in self.config.groups:
            return [self.config.primitives[m] for m in self.config.groups[unit].members]
        return self.primitives_of(self.config.clones[unit].child)

    def chainable(self, unit: str) -> bool:
        return any(category(p) not in ("stonith", "unknown") for p in self.primitives_of(unit))

    def top_units(self) -> list[str]:
        ids = [*self.config.primitives, *self.config.groups, *self.config.clones]
        tops = [i for i in ids if i not in self.parent]
        return sorted(tops, key=lambda i: self.config.source_of(i) or Source("", 0))

    def clusters(self) -> list[_Cluster]:
        """Assign every top-level unit to a cluster; report constraints as they are used."""
        groups = [u for u in self.top_units() if u in self.config.groups]
        clusters = {g: _Cluster(cluster_name(g), g) for g in groups}
        owner: dict[str, str] = {g: g for g in groups}
        loose = [u for u in self.top_units() if u not in clusters and self.chainable(u)]
        if not groups and loose:
            name = next((s.value for s in self.config.settings if s.name == "cluster-name"), "imported")
            clusters[""] = _Cluster(dns_label(name), "")
        changed = True
        while changed:  # join units along colocations first, then orders, until nothing moves
            changed = False
            for unit in loose:
                if unit in owner:
                    continue
                partner = self.partner(unit, owner)
                if partner is not None:
                    owner[unit] = owner[partner]
                    changed = True
        for unit in loose:
            if unit in owner:
                continue
            if len(clusters) == 1:
                owner[unit] = next(iter(clusters))
                self.report.append(
                    mapped(
                        self.config.source_of(unit) or Source("", 0),
                        f"resource {unit}",
                        f"joins HACluster {next(iter(clusters.values())).name}, the only "
                        "cluster (no constraint ties it to a group)",
                    )
                )
            else:
                self.report.append(
                    unmapped(
                        self.config.source_of(unit) or Source("", 0),
                        f"resource {unit}",
                        "no colocation or order ties it to a group, so it belongs to no "
                        "HACluster; add a colocation with the group it runs with",
                    )
                )
        for unit, anchor in owner.items():
            if unit != anchor:
                clusters[anchor].units.append(unit)
        return list(clusters.values())

    def partner(self, unit: str, owner: dict[str, str]) -> str | None:
        for colocation in self.config.colocations:
            ends = (self.top(colocation.dependent.id), self.top(colocation.anchor.id))
            if unit in ends and score_value(colocation.score) > 0:
                other = ends[1] if ends[0] == unit else ends[0]
                if other in owner:
                    return other
        for order in self.config.orders:
            ends = (self.top(order.first.id), self.top(order.then.id))
            if unit in ends:
                other = ends[1] if ends[0] == unit else ends[0]
                if other in owner:
                    return other
        return None

    # --- constraints ---------------------------------------------------------------------------

    def constraints(self, clusters: list[_Cluster]) -> None:
        """Report every colocation and order; colocated + ordered groups become dependsOn."""
        home = {u: c for c in clusters for u in ([c.anchor] if c.anchor else []) + c.units}
        ordered = {(self.top(o.first.id), self.top(o.then.id)): o for o in self.config.orders}
        used_orders: set[str] = set()
        for colocation in self.config.colocations:
            dependent, anchor = self.top(colocation.dependent.id), self.top(colocation.anchor.id)
            construct = f"colocation {colocation.id} {colocation.score}: {dependent} with {anchor}"
            a, b = home.get(dependent), home.get(anchor)
            if score_value(colocation.score) <= 0:
                self.report.append(
                    unmapped(
                        colocation.source, construct, "a negative colocation (keep apart) has no tandem equivalent"
                    )
                )
            elif a is None or b is None:
                self.report.append(unmapped(colocation.source, construct, "names a resource in no HACluster"))
            elif a is b:
                a.sources.append(colocation.source)
                self.report.append(mapped(colocation.source, construct, f"both in HACluster {a.name}"))
            elif (anchor, dependent) in ordered and a.depends_on is None:
                a.depends_on = b.name
                order = ordered[(anchor, dependent)]
                used_orders.add(order.id)
                a.sources += [colocation.source, order.source]
                self.report.append(mapped(colocation.source, construct, f"HACluster {a.name} dependsOn {b.name}"))
                self.report.append(
                    mapped(
                        order.source,
                        f"order {order.id} {anchor} then {dependent}",
                        f"HACluster {a.name} dependsOn {b.name}",
                    )
                )
            else:
                self.report.append(
                    unmapped(
                        colocation.source,
                        construct,
                        "two HAClusters: tandem expresses only one dependsOn, with the order `anchor then dependent`",
                    )
                )
        for order in self.config.orders:
            if order.id in used_orders:
                continue
            first, then = self.top(order.first.id), self.top(order.then.id)
            construct = f"order {order.id} {order.kind}: {first} then {then}"
            a, b = home.get(first), home.get(then)
            if a is None or b is None:
                self.report.append(unmapped(order.source, construct, "names a resource in no HACluster"))
            elif a is b:
                a.sources.append(order.source)
                self.report.append(
                    mapped(
                        order.source,
                        construct,
                        f"chain order of HACluster {a.name} (checked against tandem's fixed order)",
                    )
                )
            else:
                self.report.append(
                    unmapped(
                        order.source,
                        construct,
                        "an order between HAClusters without a "
                        "colocation has no tandem equivalent (dependsOn needs both)",
                    )
                )

    # --- one cluster ---------------------------------------------------------------------------

    def chain_sequence(self, cluster: _Cluster) -> list[Primitive]:
        """The cluster's primitives in Pacemaker's start order: units ordered by `order`
        constraints (a stable topological sort), each group's members in group order. An order
        whose `then` is one member of a group (`ms_pgsql:promote p_http:start`) puts its first
        unit just before that member, not before the whole group."""
        units = ([cluster.anchor] if cluster.anchor else []) + cluster.units
        units.sort(key=lambda u: self.config.source_of(u) or Source("", 0))
        before: dict[str, set[str]] = {u: set() for u in units}
        ahead_of_member: dict[str, list[str]] = {}
        for order in self.config.orders:
            first, then = self.top(order.first.id), self.top(order.then.id)
            if first not in before or then not in before or first == then:
                continue
            if order.then.id != then and then in self.config.groups and first not in self.config.groups:
                ahead_of_member.setdefault(order.then.id, []).append(first)
            else:
                before[then].add(first)
        placed = {u for units_ahead in ahead_of_member.values() for u in units_ahead}
        sequence: list[str] = []
        while len(sequence) < len(units) - len(placed & set(units)):
            left = [u for u in units if u not in sequence and u not in placed]
            ready = [u for u in left if before[u] <= set(sequence) | placed]
            sequence.append(ready[0] if ready else left[0])
        primitives: list[Primitive] = []
        for unit in sequence:
            for primitive in self.primitives_of(unit):
                for ahead in ahead_of_member.pop(primitive.id, []):
                    primitives += [p for p in self.primitives_of(ahead) if p not in primitives]
                primitives.append(primitive)
        return primitives + [
            p
            for units_ahead in ahead_of_member.values()
            for u in units_ahead
            for p in self.primitives_of(u)
            if p not in primitives
        ]

    def map_cluster(self, cluster: _Cluster) -> ClusterManifests:
        sequence = self.chain_sequence(cluster)
        chain: dict[str, Any] = {}
        manifests: list[Manifest] = []
        cluster_sources = list(cluster.sources)
        if cluster.anchor:
            group = self.config.groups[cluster.anchor]
            cluster_sources.append(group.source)
            self.report.append(
                mapped(group.source, f"group {group.id}", f"HACluster {cluster.name} (members in chain order)")
            )
            self.meta(group.meta, f"group {group.id}")
        volumes: dict[str, DrbdResource] = {}
        addresses: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int, str, Primitive]] = []
        highest = -1
        latest = ""
        inversions: set[tuple[str, int]] = set()
        postgres_source: Source | None = None
        for primitive in sequence:
            kind = category(primitive)
            construct = f"primitive {primitive.id} ({primitive.agent})"
            if kind in CHAIN_ORDER:
                rank = CHAIN_ORDER.index(kind)
                if rank < highest and (kind, highest) not in inversions:
                    inversions.add((kind, highest))  # once per kind: a group of 100 IPs is one finding
                    self.report.append(
                        unmapped(
                            primitive.source,
                            f"start order of {primitive.id}",
                            f"Pacemaker starts this {kind} (and any {kind} after it) after "
                            f"{latest}; tandem always starts {kind}s before "
                            f"{CHAIN_ORDER[highest]}s",
                        )
                    )
                elif rank > highest:
                    highest, latest = rank, f"{CHAIN_ORDER[rank]} {primitive.id}"
                cluster_sources.append(primitive.source)
                self.meta(primitive.meta, f"primitive {primitive.id}")
            if kind == "volume":
                volume = self.volume(primitive, cluster.name)
                volumes[dns_label(volume.name)] = volume
                chain.setdefault("volumes", []).append(dns_label(volume.name))
                manifests.append(self.volume_manifest(volume, cluster.name, primitive))
            elif kind in ("mount", "bind mount"):
                self.mount(primitive, kind, volumes, chain)
            elif kind == "floating IP":
                addresses.append(self.address(primitive))
            elif kind == "PostgreSQL":
                if self.postgres(primitive, chain, cluster.name):
                    postgres_source = primitive.source
            elif kind == "service":
                self.service(primitive, chain)
            elif kind == "stonith":
                self.report.append(
                    unmapped(
                        primitive.source,
                        construct,
                        "STONITH device: tandem fences a node itself (spec.failover.fence: SysrqReboot or Watchdog)",
                    )
                )
            else:
                self.report.append(
                    unmapped(
                        primitive.source,
                        construct,
                        "unknown agent: no tandem equivalent; if it manages a systemd unit, use systemd:UNIT instead",
                    )
                )
            if kind in CHAIN_ORDER and (kind != "PostgreSQL" or postgres_source == primitive.source):
                self.operations(primitive, kind, chain)
        for clone_id in [u for u in cluster.units if u in self.config.clones]:
            clone = self.config.clones[clone_id]
            cluster_sources.append(clone.source)
            self.clone(clone_id)
        manifests += self.floating_ips(addresses, cluster.name, chain)
        nodes = self.nodes(cluster, volumes)
        spec: dict[str, Any] = {"nodes": nodes}
        without = [n["name"] for n in nodes if "replicationAddress" not in n]
        if postgres_source is not None and without:
            self.report.append(
                unmapped(
                    postgres_source,
                    f"replication addresses of {', '.join(without)}",
                    "PostgreSQL streams between spec.nodes[].replicationAddress, which only a "
                    "DRBD file gives: set them before applying (the agent refuses the chain "
                    "without them)",
                )
            )
        primary, auto_failback, location_sources = self.placement(cluster, [n["name"] for n in nodes])
        cluster_sources += location_sources
        if primary is not None:
            spec["primary"] = primary
        standby = [n["name"] for n in nodes if self.standby(n["name"])]
        if standby:
            spec["standbyNodes"] = standby
        spec["chain"] = {key: chain[key] for key in CHAIN_KEYS if key in chain}
        if primary is not None:
            spec["failover"] = {"autoFailback": auto_failback}
        if cluster.depends_on:
            spec["dependsOn"] = {"name": cluster.depends_on}
        manifests.append(Manifest(self.document("HACluster", cluster.name, spec), tuple(cluster_sources)))
        return ClusterManifests(cluster.name, tuple(manifests))

    def document(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }

    def leftovers(self, primitive: Primitive, used: Iterable[str]) -> None:
        for param in primitive.params:
            if param.name not in used:
                self.report.append(
                    unmapped(param.source, f"{primitive.id} param {param.name}={param.value}", "no tandem field for it")
                )

    def meta(self, meta: Iterable[Attribute], owner: str) -> None:
        for item in meta:
            construct = f"{owner} meta {item.name}={item.value}"
            if item.name == "resource-stickiness":
                self.report.append(
                    mapped(item.source, construct, "weighed against location scores for spec.failover.autoFailback")
                )
            elif item.name == "target-role" and item.value.lower() == "started":
                self.report.append(mapped(item.source, construct, "tandem starts the chain (the default)"))
            else:
                self.report.append(unmapped(item.source, construct, "no tandem field for it"))

    def operations(self, primitive: Primitive, kind: str, chain: dict[str, Any]) -> None:
        """Carry the primitive's ops over (tandem.importer.operations); `report_operations`
        lists equal findings once."""
        for op in primitive.operations:
            found = map_operation(kind, op)
            outcome, carried = found.outcome, found.carried
            if found.settings:
                kept = merge(self.op_target(found.target, chain), found.settings)
                if kept is not None:
                    outcome, carried = (
                        (
                            f"{found.target} is one setting for all {kind}s of the "
                            f"cluster: it keeps {kept} from an earlier {kind}"
                        ),
                        False,
                    )
            text = " ".join([op.action, *(f"{a.name}={a.value}" for a in op.attributes)])
            self.ops.setdefault((text, outcome, carried), []).append((primitive.id, op.source))

    @staticmethod
    def op_target(target: str, chain: dict[str, Any]) -> dict[str, Any]:
        """The spec.chain entry an op's settings go to: monitors.<key>, postgres,
        postgres.monitor, or the service just mapped."""
        if target == "service":
            entry: dict[str, Any] = chain["services"][-1]
            return entry
        if target.startswith("monitors."):
            monitors: dict[str, dict[str, Any]] = chain.setdefault("monitors", {})
            return monitors.setdefault(target.removeprefix("monitors."), {})
        postgres: dict[str, Any] = chain["postgres"]
        return postgres.setdefault("monitor", {}) if target == "postgres.monitor" else postgres

    def report_operations(self) -> None:
        for (text, outcome, carried), users in self.ops.items():
            ids = [i for i, _ in users]
            who = ", ".join(ids) if len(ids) <= 3 else f"{ids[0]} and {len(ids) - 1} more ({ids[-1]} last)"
            entry = mapped if carried else unmapped
            self.report.append(entry(users[0][1], f"op {text} of {who}", outcome))

    def clone(self, clone_id: str) -> None:
        clone = self.config.clones[clone_id]
        child = self.primitives_of(clone_id)
        kinds = {category(p) for p in child}
        kind = "promotable clone" if clone.promotable else "clone"
        construct = f"{kind} {clone.id} of {clone.child}"
        if clone.child in self.config.groups:
            group = self.config.groups[clone.child]
            self.report.append(
                mapped(group.source, f"group {group.id}", f"cloned by {clone.id}: its members in chain order")
            )
            self.meta(group.meta, f"group {group.id}")
        if clone.promotable and kinds <= {"volume", "PostgreSQL"}:
            self.report.append(
                mapped(clone.source, construct, "one primary, the others replicas: how tandem runs DRBD and PostgreSQL")
            )
        elif not clone.promotable and kinds == {"service"}:
            self.report.append(mapped(clone.source, construct, "runOn: AllNodes"))
        else:
            self.report.append(
                unmapped(clone.source, construct, f"a {kind} of {', '.join(sorted(kinds))} has no tandem equivalent")
            )
        for item in clone.meta:
            if item.name in (
                "promotable",
                "promoted-max",
                "master-max",
                "promoted-node-max",
                "master-node-max",
                "clone-max",
                "clone-node-max",
                "notify",
                "interleave",
                "globally-unique",
            ):
                self.report.append(
                    mapped(
                        item.source,
                        f"{clone.id} meta {item.name}={item.value}",
                        "implied by tandem (one primary per cluster)",
                    )
                )
            else:
                self.meta([item], f"clone {clone.id}")

    # --- resources -----------------------------------------------------------------------------

    def volume(self, primitive: Primitive, cluster: str) -> DrbdResource:
        name = primitive.param("drbd_resource")
        if not name:
            raise InvalidInput(
                primitive.source,
                f"primitive {primitive.id} has no drbd_resource parameter",
                "add params drbd_resource=NAME naming the DRBD resource",
            )
        resource = self.drbd.get(name)
        if resource is None:
            known = ", ".join(sorted(self.drbd)) or "none"
            raise InvalidInput(
                primitive.source,
                f"primitive {primitive.id} manages DRBD resource {name!r}, which "
                f"no DRBD file defines (defined: {known})",
                f"pass the file defining `resource {name}` with --drbd (e.g. /etc/drbd.d/{name}.res)",
            )
        if name in self.used_drbd:
            raise InvalidInput(
                primitive.source,
                f"DRBD resource {name!r} is managed twice",
                "manage each DRBD resource with one primitive",
            )
        self.used_drbd.add(name)
        self.leftovers(primitive, ("drbd_resource",))
        self.report.append(
            mapped(
                primitive.source,
                f"primitive {primitive.id} ({primitive.agent})",
                f"DRBDVolume {dns_label(name)} in HACluster {cluster}",
            )
        )
        return resource

    def volume_manifest(self, resource: DrbdResource, cluster: str, primitive: Primitive) -> Manifest:
        data = [h for h in resource.hosts if h.disk is not None]
        diskless = [h for h in resource.hosts if h.disk is None]
        for host in resource.hosts:
            if host.address is None:
                raise InvalidInput(
                    host.source,
                    f"host {host.name} of DRBD resource {resource.name} has no address",
                    "add `address IP:PORT;` to its `on` section",
                )
        minors = {h.minor for h in resource.hosts if h.minor is not None}
        ports = {h.port for h in resource.hosts if h.port is not None}
        if len(minors) != 1:
            raise InvalidInput(
                resource.source,
                f"DRBD resource {resource.name} has device minors {sorted(minors)}",
                "give every host the same device, e.g. `device /dev/drbd0;` (tandem uses one minor)",
            )
        if len(ports) != 1:
            raise InvalidInput(
                resource.source,
                f"DRBD resource {resource.name} uses ports {sorted(ports)}",
                "use one port on every host (tandem's DRBDVolume has one spec.port)",
            )
        ids = self.node_ids(resource)
        if len(diskless) > 1:
            raise InvalidInput(
                diskless[1].source,
                f"DRBD resource {resource.name} has {len(diskless)} diskless nodes",
                "keep one diskless tiebreaker; tandem's DRBDVolume has one",
            )
        spec: dict[str, Any] = {
            "cluster": cluster,
            "resourceName": resource.name,
            "minor": minors.pop(),
            "port": ports.pop(),
            "protocol": (resource.protocol or "C").upper(),
            "nodes": [{"name": h.name, "disk": h.disk, "address": h.address, "nodeId": ids[h.name]} for h in data],
        }
        self.report.append(
            mapped(
                resource.source,
                f"DRBD resource {resource.name}",
                f"DRBDVolume {dns_label(resource.name)} (data nodes {', '.join(h.name for h in data)})",
            )
        )
        quorum: dict[str, str] = {}
        if diskless:
            witness = diskless[0]
            spec["tiebreaker"] = {"name": witness.name, "address": witness.address, "nodeId": ids[witness.name]}
            self.report.append(
                mapped(
                    witness.source,
                    f"DRBD host {witness.name} (disk none)",
                    f"spec.tiebreaker of DRBDVolume {dns_label(resource.name)}",
                )
            )
        mode = resource.quorum or "off"
        if mode not in ("off", "majority", "all"):
            self.report.append(
                unmapped(resource.source, f"options quorum {mode}", "tandem knows off, majority and all; majority used")
            )
            mode = "majority"
        if diskless and mode == "off":
            self.report.append(
                unmapped(
                    diskless[0].source,
                    f"quorum off with tiebreaker {diskless[0].name}",
                    "a tiebreaker only helps with quorum: quorum majority set",
                )
            )
            mode = "majority"
        quorum["mode"] = mode
        if resource.on_no_quorum:
            if resource.on_no_quorum in ("io-error", "suspend-io"):
                quorum["onNoQuorum"] = resource.on_no_quorum
            else:
                self.report.append(
                    unmapped(
                        resource.source, f"on-no-quorum {resource.on_no_quorum}", "tandem knows io-error and suspend-io"
                    )
                )
        spec["quorum"] = quorum
        split_brain = {}
        for item in resource.after_split_brain:
            field_name, allowed = SPLIT_BRAIN_VALUES[item.name]
            if item.value in allowed:
                split_brain[field_name] = item.value
                self.report.append(
                    mapped(item.source, f"net {item.name} {item.value}", f"spec.splitBrain.{field_name}")
                )
            else:
                self.report.append(
                    unmapped(item.source, f"net {item.name} {item.value}", f"tandem allows {', '.join(allowed)}")
                )
        if split_brain:
            spec["splitBrain"] = split_brain
        for leftover in resource.unsupported:
            self.report.append(unmapped(leftover.source, f"DRBD {leftover.what}", "no DRBDVolume field for it"))
        sources = (primitive.source, resource.source, *(h.source for h in resource.hosts))
        return Manifest(self.document("DRBDVolume", dns_label(resource.name), spec), sources)

    def node_ids(self, resource: DrbdResource) -> dict[str, int]:
        """DRBD 9's node-id; DRBD 8.4 has none, so the `on` sections' order numbers them."""
        given = [h.node_id for h in resource.hosts]
        if all(i is not None for i in given):
            return {h.name: h.node_id for h in resource.hosts if h.node_id is not None}
        if any(i is not None for i in given):
            missing = next(h for h in resource.hosts if h.node_id is None)
            raise InvalidInput(
                missing.source,
                f"host {missing.name} of {resource.name} has no node-id while others do",
                "give every `on` section a node-id",
            )
        self.report.append(
            mapped(
                resource.source,
                f"DRBD resource {resource.name} without node-id (DRBD 8.4)",
                "nodeId numbered 0, 1, ... in the order of its `on` sections",
            )
        )
        return {h.name: number for number, h in enumerate(resource.hosts)}

    def mount(self, primitive: Primitive, kind: str, volumes: dict[str, DrbdResource], chain: dict[str, Any]) -> None:
        construct = f"primitive {primitive.id} ({primitive.agent})"
        device, directory = primitive.param("device"), primitive.param("directory")
        if not device or not directory:
            raise InvalidInput(
                primitive.source, f"Filesystem {primitive.id} needs device= and directory=", "add both parameters"
            )
        options = [o for o in (primitive.param("options") or "").split(",") if o]
        used = ["device", "directory", "options", "fstype"]
        if kind == "bind mount":
            chain.setdefault("bindMounts", []).append({"source": device, "target": directory})
            rest = [o for o in options if o not in ("bind", "rbind")]
            if rest:
                self.report.append(
                    unmapped(
                        primitive.source,
                        f"{primitive.id} bind options {','.join(rest)}",
                        "bind mounts take no options in tandem",
                    )
                )
            self.report.append(mapped(primitive.source, construct, f"bindMounts: {device} -> {directory}"))
            self.leftovers(primitive, used)
            return
        volume = self.volume_of(device, volumes)
        fstype = (primitive.param("fstype") or "").lower()
        if volume is None or fstype not in FS_TYPES:
            why = (
                f"device {device} is not a DRBD volume of this cluster (tandem mounts DRBD volumes only)"
                if volume is None
                else f"fstype {fstype or '(unset)'}: tandem mounts xfs and ext4"
            )
            self.report.append(unmapped(primitive.source, construct, why))
            return
        mount: dict[str, Any] = {"volume": volume, "mountPoint": directory, "fsType": fstype}
        if options:
            mount["options"] = options
        chain.setdefault("mounts", []).append(mount)
        self.report.append(mapped(primitive.source, construct, f"mounts: {volume} at {directory} ({fstype})"))
        self.leftovers(primitive, used)

    @staticmethod
    def volume_of(device: str, volumes: dict[str, DrbdResource]) -> str | None:
        """The volume a device path names: /dev/drbdN or /dev/drbd/by-res/NAME[/0]."""
        for name, resource in volumes.items():
            minors = {h.minor for h in resource.hosts}
            by_res = f"/dev/drbd/by-res/{resource.name}"
            if device in (by_res, f"{by_res}/0") or any(device == f"/dev/drbd{m}" for m in minors):
                return name
        return None

    def address(
        self, primitive: Primitive
    ) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int, str, Primitive]:
        ip, netmask, nic = primitive.param("ip"), primitive.param("cidr_netmask"), primitive.param("nic")
        if not ip or not netmask or not nic:
            missing = ", ".join(n for n, v in (("ip", ip), ("cidr_netmask", netmask), ("nic", nic)) if not v)
            raise InvalidInput(
                primitive.source,
                f"IPaddr2 {primitive.id} has no {missing} (Pacemaker guessed it from the routing table)",
                "add ip=, cidr_netmask= and nic= to the primitive",
            )
        try:
            address = ipaddress.ip_address(ip)
            prefix = int(netmask) if netmask.isdigit() else ipaddress.ip_network(f"0.0.0.0/{netmask}").prefixlen
        except ValueError:
            raise InvalidInput(
                primitive.source,
                f"IPaddr2 {primitive.id}: ip={ip} cidr_netmask={netmask} is not an address and prefix",
                "write ip=198.18.0.10 cidr_netmask=24",
            ) from None
        self.leftovers(primitive, ("ip", "cidr_netmask", "nic"))
        return address, prefix, nic, primitive

    def floating_ips(
        self,
        addresses: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int, str, Primitive]],
        cluster: str,
        chain: dict[str, Any],
    ) -> list[Manifest]:
        """One FloatingIP per (prefix, interface); contiguous addresses become one range."""
        sets: dict[tuple[int, str], list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, Primitive]]] = {}
        for address, prefix, nic, primitive in addresses:
            sets.setdefault((prefix, nic), []).append((address, primitive))
        manifests = []
        for index, ((prefix, nic), members) in enumerate(sets.items(), start=1):
            count = sum(1 for _ in members)
            name = f"{cluster}-vip" if count == 1 else f"{cluster}-vips"
            if len(sets) > 1:
                name = f"{name}-{index}"
            ranges: list[list[ipaddress.IPv4Address | ipaddress.IPv6Address]] = []
            for address in sorted({a for a, _ in members}, key=lambda a: (a.version, int(a))):
                last = ranges[-1][1] if ranges else None
                if last is not None and last.version == address.version and int(address) == int(last) + 1:
                    ranges[-1][1] = address
                else:
                    ranges.append([address, address])
            spec = {
                "cluster": cluster,
                "addresses": [{"start": str(a)} if a == b else {"start": str(a), "end": str(b)} for a, b in ranges],
                "prefixLength": prefix,
                "interface": nic,
            }
            for address, primitive in members:
                self.report.append(
                    mapped(
                        primitive.source,
                        f"primitive {primitive.id} ({primitive.agent})",
                        f"FloatingIP {name}: {address}/{prefix} on {nic}",
                    )
                )
            chain.setdefault("floatingIPs", []).append(name)
            manifests.append(Manifest(self.document("FloatingIP", name, spec), tuple(p.source for _, p in members)))
        return manifests

    def postgres(self, primitive: Primitive, chain: dict[str, Any], cluster: str) -> bool:
        """Map the cluster's PostgreSQL; False for a second one, which tandem cannot run."""
        construct = f"primitive {primitive.id} ({primitive.agent})"
        if "postgres" in chain:
            self.report.append(
                unmapped(primitive.source, construct, "a second PostgreSQL: tandem runs one per HACluster")
            )
            return False
        spec: dict[str, Any] = {}
        used = ["pgport"]
        if primitive.agent_type == "pgsqlms":  # PAF: pgdata is where postgresql.conf is, datadir the data
            used += ["bindir", "pgdata", "datadir"]
            if primitive.param("bindir"):
                spec["binDirectory"] = primitive.param("bindir")
            if primitive.param("datadir"):
                spec["dataDirectory"] = primitive.param("datadir")
                if primitive.param("pgdata"):
                    spec["configDirectory"] = primitive.param("pgdata")
            elif primitive.param("pgdata"):
                spec["dataDirectory"] = primitive.param("pgdata")
        else:
            used += ["pgctl", "pgdata", "config", "rep_mode", "repuser"]
            if primitive.param("pgctl"):
                spec["binDirectory"] = os.path.dirname(primitive.param("pgctl") or "")
            if primitive.param("pgdata"):
                spec["dataDirectory"] = primitive.param("pgdata")
            if primitive.param("config"):
                spec["configDirectory"] = os.path.dirname(primitive.param("config") or "")
            if primitive.param("repuser"):
                spec["replicationUser"] = primitive.param("repuser")
            if primitive.param("rep_mode") == "sync":
                spec["synchronous"] = True
            elif primitive.param("rep_mode") not in (None, "async"):
                used.remove("rep_mode")
        if primitive.param("pgport"):
            port = primitive.param("pgport") or ""
            if not port.isdigit():
                raise InvalidInput(primitive.source, f"pgport={port} is not a port", "write pgport=5432")
            spec["port"] = int(port)
        # Pacemaker's agents leave the replication password to .pgpass or trust; tandem reads
        # it from a Secret, which the administrator creates before applying.
        secret = f"{cluster}-postgres-replication"
        spec["credentialsSecret"] = secret
        chain["postgres"] = spec
        self.report.append(
            mapped(
                primitive.source,
                construct,
                f"chain.postgres (streaming replication); create Secret {secret} (key password) before applying",
            )
        )
        self.leftovers(primitive, used)
        return True

    def service(self, primitive: Primitive, chain: dict[str, Any]) -> None:
        unit = primitive.agent.split(":", 1)[1]
        if not unit or ":" in unit:
            raise InvalidInput(primitive.source, f"{primitive.agent} names no unit", "write systemd:UNIT")
        stem, dot, suffix = unit.rpartition(".")
        if primitive.agent_class != "systemd" or not dot or suffix not in UNIT_SUFFIXES:
            stem, unit = unit, f"{unit}.service"  # what Pacemaker runs for lsb:, service: and bare names
        name = stem if re.fullmatch(SERVICE_NAME_RE, stem) else dns_label(stem)
        service: dict[str, Any] = {"name": name, "unit": unit}
        holder = self.parent.get(primitive.id)
        while holder is not None and holder not in self.config.clones:
            holder = self.parent.get(holder)
        all_nodes = holder is not None and not self.config.clones[holder].promotable
        if all_nodes:
            service["runOn"] = "AllNodes"
        chain.setdefault("services", []).append(service)
        self.report.append(
            mapped(
                primitive.source,
                f"primitive {primitive.id} ({primitive.agent})",
                f"services: {name} ({unit}{', runOn AllNodes' if all_nodes else ''})",
            )
        )
        self.leftovers(primitive, ())

    # --- nodes and placement -------------------------------------------------------------------

    def node_names(self) -> list[str]:
        if self.config.nodes:
            return [n.name for n in self.config.nodes]
        names: list[str] = []
        for resource in self.drbd.values():
            names += [h.name for h in resource.hosts if h.name not in names]
        return names

    def standby(self, node: str) -> bool:
        return any(
            a.name == "standby" and a.value.lower() in ("on", "true", "yes", "1")
            for n in self.config.nodes
            if n.name == node
            for a in n.attributes
        )

    def cluster_units(self, cluster: _Cluster) -> set[str]:
        units = set(([cluster.anchor] if cluster.anchor else []) + cluster.units)
        return units | {p.id for u in units for p in self.primitives_of(u)}

    def nodes(self, cluster: _Cluster, volumes: dict[str, DrbdResource]) -> list[dict[str, Any]]:
        """The cluster's data nodes: not excluded by a -inf location, not diskless in its volumes."""
        units = self.cluster_units(cluster)
        excluded = {
            loc.node
            for loc in self.config.locations
            if loc.resource in units and loc.node and loc.score and score_value(loc.score) <= -INFINITY
        }
        diskless = {h.name for r in volumes.values() for h in r.hosts if h.disk is None}
        replication: dict[str, DrbdHost] = {}
        for resource in volumes.values():
            replication.update({h.name: h for h in resource.hosts if h.disk is not None and h.name not in replication})
        nodes = []
        for name in self.node_names():
            if name in excluded or name in diskless:
                continue
            if volumes and name not in replication:
                source = next((n.source for n in self.config.nodes if n.name == name), Source("", 0))
                self.report.append(
                    unmapped(
                        source,
                        f"node {name}",
                        f"has no disk in the DRBD volumes of {cluster.name}, so it is not one of its nodes",
                    )
                )
                continue
            node: dict[str, Any] = {"name": name}
            if name in replication and replication[name].address:
                node["replicationAddress"] = replication[name].address
            nodes.append(node)
        return nodes

    def placement(self, cluster: _Cluster, nodes: list[str]) -> tuple[str | None, bool, list[Source]]:
        """spec.primary: the node with the highest location score; autoFailback when that
        score beats the stickiness of the cluster's resources (a group's is the sum of its
        members', as Pacemaker adds them up)."""
        units = self.cluster_units(cluster)
        scores: dict[str, int] = {}
        sources: list[Source] = []
        for loc in self.config.locations:
            if loc.resource not in units:
                continue
            if loc.rule is not None:
                self.report.append(
                    unmapped(
                        loc.source,
                        f"location {loc.id} {loc.resource} rule {loc.rule}",
                        "location rules have no tandem equivalent",
                    )
                )
                continue
            assert loc.node is not None and loc.score is not None
            value = score_value(loc.score)
            construct = f"location {loc.id} {loc.resource} {loc.score}: {loc.node}"
            sources.append(loc.source)
            if value <= -INFINITY:
                self.report.append(mapped(loc.source, construct, f"{loc.node} is not a node of {cluster.name}"))
            elif value < 0 or loc.node not in nodes:
                self.report.append(
                    unmapped(
                        loc.source,
                        construct,
                        "a negative preference, or one for a node outside the cluster, has no tandem equivalent",
                    )
                )
            else:
                scores[loc.node] = max(scores.get(loc.node, 0), value)
        for loc in self.config.locations:
            if loc.resource in units and loc.rule is None and loc.node in scores and score_value(loc.score or "0") > 0:
                best = max(scores.values())
                construct = f"location {loc.id} {loc.resource} {loc.score}: {loc.node}"
                if scores[loc.node] == best and loc.node == max(scores, key=lambda n: scores[n]):
                    self.report.append(mapped(loc.source, construct, f"spec.primary: {loc.node}"))
                else:
                    self.report.append(
                        unmapped(loc.source, construct, "a second preference: tandem has one spec.primary")
                    )
        if not scores:
            return None, False, sources
        primary = max(scores, key=lambda n: scores[n])
        stickiness = sum(self.stickiness(p) for p in units if p in self.config.primitives)
        return primary, scores[primary] > stickiness, sources

    def stickiness(self, primitive_id: str) -> int:
        """A primitive's resource-stickiness: its own meta, its group's or clone's, else rsc_defaults."""
        holders = [self.config.primitives[primitive_id].meta]
        parent = self.parent.get(primitive_id)
        while parent is not None:
            holders.append(
                self.config.groups[parent].meta if parent in self.config.groups else self.config.clones[parent].meta
            )
            parent = self.parent.get(parent)
        for meta in holders:
            for item in meta:
                if item.name == "resource-stickiness":
                    return score_value(item.value)
        defaults = [s for s in self.config.settings if s.section == "rsc_defaults" and s.name == "resource-stickiness"]
        return score_value(defaults[-1].value) if defaults else 0

    # --- everything else -----------------------------------------------------------------------

    def settings_and_leftovers(self, clusters: list[_Cluster], results: list[ClusterManifests]) -> None:
        """Report properties, unsupported constructs, resources outside clusters and nodes."""
        homes_of: dict[str, list[str]] = {}
        witness_of: dict[str, list[str]] = {}
        for result in results:
            for manifest in result.manifests:
                spec, name = manifest.document["spec"], manifest.document["metadata"]["name"]
                if manifest.document["kind"] == "HACluster":
                    for node in spec["nodes"]:
                        homes_of.setdefault(node["name"], []).append(name)
                elif "tiebreaker" in spec:
                    witness_of.setdefault(spec["tiebreaker"]["name"], []).append(name)
        names = ", ".join(c.name for c in clusters)
        for setting in self.config.settings:
            construct = f"{setting.section} {setting.name}={setting.value}"
            if setting.section == "rsc_defaults" and setting.name == "resource-stickiness":
                self.report.append(
                    mapped(setting.source, construct, "weighed against location scores for spec.failover.autoFailback")
                )
            elif setting.name == "stonith-enabled":
                self.report.append(
                    unmapped(
                        setting.source,
                        construct,
                        "tandem needs no STONITH: a node that "
                        "cannot demote in time fences itself (spec.failover.fence)",
                    )
                )
            elif setting.name == "no-quorum-policy":
                self.report.append(
                    unmapped(
                        setting.source,
                        construct,
                        "tandem's quorum is the Kubernetes Lease: a node without the API server demotes",
                    )
                )
            else:
                self.report.append(unmapped(setting.source, construct, "no tandem equivalent"))
        for item in self.config.unsupported:
            self.report.append(unmapped(item.source, item.what, "no tandem equivalent"))
        in_cluster = {u for c in clusters for u in self.cluster_units(c)}
        for primitive in self.config.primitives.values():
            if primitive.id not in in_cluster and category(primitive) in ("stonith", "unknown"):
                why = (
                    "STONITH device: tandem fences a node itself (spec.failover.fence: SysrqReboot or Watchdog)"
                    if category(primitive) == "stonith"
                    else "unknown agent: no tandem equivalent"
                )
                self.report.append(unmapped(primitive.source, f"primitive {primitive.id} ({primitive.agent})", why))
        for node in self.config.nodes:
            homes, witness = homes_of.get(node.name, []), witness_of.get(node.name, [])
            if homes:
                self.report.append(
                    mapped(node.source, f"node {node.name}", f"spec.nodes of HACluster {', '.join(homes)}")
                )
            elif witness:
                self.report.append(
                    mapped(node.source, f"node {node.name}", f"DRBD tiebreaker (witness) of {', '.join(witness)}")
                )
            else:
                self.report.append(
                    unmapped(
                        node.source,
                        f"node {node.name}",
                        f"carries no resources of {names}; "
                        "tandem's quorum is the Kubernetes Lease, and a DRBD witness needs an "
                        "`on NODE { disk none; ... }` section in the DRBD resource",
                    )
                )
            for attribute in node.attributes:
                construct = f"node {node.name} attribute {attribute.name}={attribute.value}"
                if attribute.name == "standby":
                    self.report.append(
                        mapped(
                            attribute.source,
                            construct,
                            "spec.standbyNodes" if self.standby(node.name) else "not in spec.standbyNodes",
                        )
                    )
                else:
                    self.report.append(unmapped(attribute.source, construct, "no tandem equivalent"))
        for loc in self.config.locations:
            if loc.resource not in in_cluster:
                self.report.append(
                    unmapped(loc.source, f"location {loc.id} {loc.resource}", f"{loc.resource} is in no HACluster")
                )
        for name, resource in self.drbd.items():
            if name not in self.used_drbd:
                self.report.append(
                    unmapped(resource.source, f"DRBD resource {name}", "no ocf:linbit:drbd primitive manages it")
                )


def map_config(config: PacemakerConfig, drbd: list[DrbdResource], namespace: str) -> Result:
    """The manifests, one set per HACluster, and the report of every construct."""
    mapper = _Mapper(config, drbd, namespace)
    clusters = mapper.clusters()
    if not clusters:
        raise InvalidInput(
            None,
            "the configuration has no resource tandem can run (no group, and no DRBD, "
            "Filesystem, IPaddr2, PostgreSQL or systemd/lsb/service primitive)",
            "pass `crm configure show` output (--crm) or `cibadmin --query` output (--cib)",
        )
    names = [c.name for c in clusters]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise InvalidInput(None, f"two groups become HACluster {duplicate!r}", "rename one of the groups")
    mapper.constraints(clusters)
    results = [mapper.map_cluster(c) for c in clusters]
    mapper.settings_and_leftovers(clusters, results)
    mapper.report_operations()
    return Result(tuple(results), tuple(mapper.report))
