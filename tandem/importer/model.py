"""The parsed Pacemaker and DRBD configuration: the same model from crmsh text and CIB XML."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Source:
    """Where a construct was read: shown in the report, the errors and the manifests' comments."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class InvalidInput(Exception):
    """Input `tandem import` cannot read or resolve: names the place and the fix."""

    def __init__(self, source: Source | None, problem: str, fix: str) -> None:
        self.source = source
        self.problem = problem
        self.fix = fix
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{problem}; fix: {fix}")


@dataclass(frozen=True)
class Attribute:
    """One name=value pair (a crmsh `params`/`meta` entry, a CIB nvpair) and its line."""

    name: str
    value: str
    source: Source


@dataclass(frozen=True)
class Operation:
    action: str
    attributes: tuple[Attribute, ...]
    source: Source


@dataclass(frozen=True)
class Primitive:
    id: str
    agent: str  # class:provider:type, class:type (systemd:postfix) or stonith:type
    params: tuple[Attribute, ...]
    meta: tuple[Attribute, ...]
    operations: tuple[Operation, ...]
    source: Source

    @property
    def agent_class(self) -> str:
        return self.agent.split(":", 1)[0]

    @property
    def agent_type(self) -> str:
        return self.agent.rsplit(":", 1)[-1]

    def param(self, name: str) -> str | None:
        return next((a.value for a in self.params if a.name == name), None)


@dataclass(frozen=True)
class Group:
    id: str
    members: tuple[str, ...]
    meta: tuple[Attribute, ...]
    source: Source


@dataclass(frozen=True)
class Clone:
    id: str
    child: str
    promotable: bool
    meta: tuple[Attribute, ...]
    source: Source


@dataclass(frozen=True)
class ResourceRef:
    """A resource named in a constraint, with its role (colocation) or action (order)."""

    id: str
    qualifier: str | None = None


@dataclass(frozen=True)
class Colocation:
    """`dependent` is placed where `anchor` runs (crmsh: `colocation id score: dependent anchor`)."""

    id: str
    score: str
    dependent: ResourceRef
    anchor: ResourceRef
    source: Source


@dataclass(frozen=True)
class Order:
    id: str
    kind: str  # Mandatory, Optional, Serialize or a score
    first: ResourceRef
    then: ResourceRef
    source: Source


@dataclass(frozen=True)
class Location:
    """A node preference (`node` and `score`) or a rule tandem does not model (`rule`)."""

    id: str
    resource: str
    score: str | None
    node: str | None
    rule: str | None
    source: Source


@dataclass(frozen=True)
class Node:
    name: str
    attributes: tuple[Attribute, ...]
    source: Source


@dataclass(frozen=True)
class Setting:
    """A cluster property, resource default or operation default (`section` says which)."""

    section: str  # property, rsc_defaults, op_defaults
    name: str
    value: str
    source: Source


@dataclass(frozen=True)
class Unsupported:
    """A construct read but not understood (a crmsh keyword, a CIB element, a constraint set)."""

    what: str
    source: Source


@dataclass
class PacemakerConfig:
    nodes: list[Node] = field(default_factory=list)
    primitives: dict[str, Primitive] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    clones: dict[str, Clone] = field(default_factory=dict)
    colocations: list[Colocation] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    locations: list[Location] = field(default_factory=list)
    settings: list[Setting] = field(default_factory=list)
    unsupported: list[Unsupported] = field(default_factory=list)

    def source_of(self, resource_id: str) -> Source | None:
        for table in (self.primitives, self.groups, self.clones):
            if resource_id in table:
                return table[resource_id].source
        return None

    def define(self, resource_id: str, source: Source) -> None:
        """Refuse a second definition of an id: Pacemaker ids are unique across kinds."""
        earlier = self.source_of(resource_id)
        if earlier is not None:
            raise InvalidInput(
                source, f"{resource_id!r} is already defined at {earlier}", "give each resource its own id"
            )

    def check_references(self) -> None:
        """Every resource a group, clone or constraint names must be defined."""
        for group in self.groups.values():
            for member in group.members:
                if member not in self.primitives:
                    what = "a clone or group" if self.source_of(member) else "not defined"
                    raise InvalidInput(
                        group.source,
                        f"group {group.id} names {member!r}, which is {what}",
                        f"define `primitive {member} ...` or remove it from the group",
                    )
        for clone in self.clones.values():
            if self.source_of(clone.child) is None:
                raise InvalidInput(
                    clone.source,
                    f"clone {clone.id} names {clone.child!r}, which is not defined",
                    f"define `primitive {clone.child} ...` or remove the clone",
                )
        named: list[tuple[str, Source]] = []
        for colocation in self.colocations:
            named += [(colocation.dependent.id, colocation.source), (colocation.anchor.id, colocation.source)]
        for order in self.orders:
            named += [(order.first.id, order.source), (order.then.id, order.source)]
        named += [(location.resource, location.source) for location in self.locations]
        for resource_id, source in named:
            if self.source_of(resource_id) is None:
                raise InvalidInput(
                    source,
                    f"constraint names {resource_id!r}, which is not defined",
                    "define the resource or remove the constraint",
                )


@dataclass(frozen=True)
class DrbdHost:
    name: str
    disk: str | None  # None: diskless (`disk none`), a tiebreaker
    address: str | None
    port: int | None
    node_id: int | None
    minor: int | None
    source: Source


@dataclass(frozen=True)
class DrbdResource:
    name: str
    hosts: tuple[DrbdHost, ...]
    protocol: str | None
    quorum: str | None
    on_no_quorum: str | None
    after_split_brain: tuple[Attribute, ...]  # after-sb-0pri, -1pri, -2pri
    unsupported: tuple[Unsupported, ...]
    source: Source
