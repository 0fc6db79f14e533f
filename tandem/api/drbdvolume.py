"""DRBDVolume: one replicated block device between the data nodes of an HACluster."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tandem.api.common import (
    AbsolutePath,
    Conditions,
    IPAddress,
    Model,
    NodeName,
    ObjectName,
    cel,
    immutable,
    validations,
)

# drbdadm's resource names; the renderer checks them again (tandem_agent.drivers.drbd).
RESOURCE_NAME_RE = r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$"

DiskState = Literal[
    "Diskless",
    "Attaching",
    "Detaching",
    "Failed",
    "Negotiating",
    "Inconsistent",
    "Outdated",
    "DUnknown",
    "Consistent",
    "UpToDate",
]
Role = Literal["Primary", "Secondary", "Unknown"]
ConnectionState = Literal[
    "StandAlone",
    "Disconnecting",
    "Unconnected",
    "Timeout",
    "BrokenPipe",
    "NetworkFailure",
    "ProtocolError",
    "TearDown",
    "Connecting",
    "Connected",
]
ReplicationState = Literal[
    "Off",
    "Established",
    "StartingSyncS",
    "StartingSyncT",
    "WFBitMapS",
    "WFBitMapT",
    "WFSyncUUID",
    "SyncSource",
    "SyncTarget",
    "VerifyS",
    "VerifyT",
    "PausedSyncS",
    "PausedSyncT",
    "Ahead",
    "Behind",
]


class DRBDNode(Model):
    """A data node's side of the volume: its backing disk and replication address."""

    name: NodeName
    disk: AbsolutePath = Field(description="Backing block device, e.g. /dev/vg0/mail.")
    address: IPAddress = Field(description="Address on the replication network.")
    node_id: Annotated[int, Field(ge=0, le=31, description="DRBD node-id, unique per volume.")]


class Tiebreaker(Model):
    """A diskless node that only votes for DRBD quorum (the witness): no data, no services."""

    name: NodeName
    address: IPAddress
    node_id: Annotated[int, Field(ge=0, le=31)]


class Quorum(Model):
    """DRBD 9 quorum: with a tiebreaker, an isolated node loses quorum and cannot write."""

    mode: Literal["off", "majority", "all"] = "majority"
    on_no_quorum: Literal["io-error", "suspend-io"] = "io-error"


class SplitBrainPolicy(Model):
    """DRBD's automatic split-brain recovery policies, spelled as in drbd.conf."""

    after_sb_0pri: Literal[
        "disconnect",
        "discard-younger-primary",
        "discard-older-primary",
        "discard-zero-changes",
        "discard-least-changes",
    ] = Field(default="discard-zero-changes", alias="afterSb0pri")
    after_sb_1pri: Literal["disconnect", "consensus", "discard-secondary"] = Field(
        default="discard-secondary", alias="afterSb1pri"
    )
    after_sb_2pri: Literal["disconnect"] = Field(default="disconnect", alias="afterSb2pri")


class DRBDVolumeSpec(Model):
    """Desired DRBD resource; the agent renders /etc/drbd.d/<resourceName>.res from it."""

    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.tiebreaker) || self.nodes.all(n, n.name != self.tiebreaker.name)",
                "spec.tiebreaker.name must not be one of spec.nodes: the witness holds no data",
                ".tiebreaker.name",
            ),
            cel(
                "self.nodes.all(a, self.nodes.exists_one(b, b.nodeId == a.nodeId))"
                " && (!has(self.tiebreaker) || self.nodes.all(n, n.nodeId != self.tiebreaker.nodeId))",
                "spec.nodes[*].nodeId and spec.tiebreaker.nodeId must be distinct: give each node its own DRBD node-id",
                ".nodes",
            ),
            cel(
                "!has(self.tiebreaker) || self.quorum.mode != 'off'",
                "spec.quorum.mode must be majority or all when spec.tiebreaker is set: "
                "a witness only helps with quorum",
                ".quorum.mode",
            ),
        )
    }

    cluster: ObjectName = Field(description="The HACluster this volume belongs to.")
    resource_name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=48,
            pattern=RESOURCE_NAME_RE,
            description="DRBD resource name (letters, digits, '-' and '_'). Immutable.",
            json_schema_extra=immutable("spec.resourceName"),
        ),
    ]
    minor: Annotated[
        int,
        Field(
            ge=0,
            le=1048575,
            description="Device minor: the device is /dev/drbd<minor>. Immutable.",
            json_schema_extra=immutable("spec.minor"),
        ),
    ]
    nodes: Annotated[
        list[DRBDNode],
        Field(
            min_length=2,
            max_length=3,
            description="The data nodes (two, or three); each holds a full copy.",
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ]
    port: Annotated[int, Field(ge=1024, le=65535, description="TCP port of the replication link.")] = 7789
    protocol: Literal["A", "B", "C"] = Field(
        default="C", description="Replication protocol; C (synchronous) loses no acknowledged write."
    )
    quorum: Quorum = Quorum()
    split_brain: SplitBrainPolicy = SplitBrainPolicy()
    tiebreaker: Tiebreaker | None = None


class DRBDNodeStatus(Model):
    """One node's view of the volume, as `drbdsetup status` reports it."""

    name: NodeName
    role: Role = "Unknown"
    disk_state: DiskState = "DUnknown"
    connection_state: ConnectionState = "StandAlone"
    peer_role: Role = "Unknown"
    peer_disk_state: DiskState = "DUnknown"
    replication_state: ReplicationState = "Off"
    out_of_sync_bytes: Annotated[int, Field(ge=0)] = 0
    resync_percent: Annotated[int, Field(ge=0, le=100)] | None = None
    quorum: bool | None = None


class DRBDVolumeStatus(Model):
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    roles: Annotated[str, Field(max_length=256, description="Roles per node, e.g. Primary/Secondary.")] = ""
    disks: Annotated[str, Field(max_length=256, description="Disk states per node, e.g. UpToDate/UpToDate.")] = ""
    connection: Annotated[str, Field(max_length=64)] = ""
    nodes: Annotated[
        list[DRBDNodeStatus],
        Field(
            max_length=4,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ] = []
    conditions: Conditions = []


class DRBDVolume(Model):
    spec: DRBDVolumeSpec
    status: DRBDVolumeStatus | None = None
