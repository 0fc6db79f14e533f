"""HACluster: an active/standby pair, its ordered resource chain and its failover policy."""

from __future__ import annotations

import enum
import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema, model_validator

from tandem.api.common import (
    AbsolutePath,
    Conditions,
    IPAddress,
    Message,
    Model,
    MountOption,
    NodeName,
    ObjectName,
    Reason,
    cel,
    refuse,
    validations,
)
from tandem.api.drbdvolume import DRBDNodeStatus

ServiceName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9@._-]*$")]
Argument = Annotated[str, Field(max_length=512)]

# The rules below are checked twice with the same expressions: at the API server (CEL, so a bad
# spec is refused with a message naming the field) and in the agent (pydantic and the drivers),
# so a value the API server accepted is never refused later on a node.

# systemd units the agent may start and stop (systemd.unit(5)): systemd's charset, not starting
# with "-" or ".", and a suffix of a unit type that is started and stopped.
UNIT_SUFFIXES = ("service", "timer", "socket", "target", "mount", "path")
UNIT_NAME_RE = r"^[a-zA-Z0-9:_\\][a-zA-Z0-9:_.@\\-]*\.(" + "|".join(UNIT_SUFFIXES) + r")$"
UNIT_NAME_RULE = (
    "must be a systemd unit name such as postfix.service: letters, digits and : _ . @ \\ -, "
    "not starting with - or ., ending in ." + ", .".join(UNIT_SUFFIXES)
)

# PostgreSQL role names tandem writes into pg_hba.conf, a passfile and SQL: plain lower-case
# identifiers, none that PostgreSQL or pg_hba.conf reserve, and not the superuser.
ROLE_NAME_RE = r"^[a-z_][a-z0-9_]{0,62}$"
RESERVED_ROLE_NAMES = (
    "all",
    "replication",
    "sameuser",
    "samerole",
    "samegroup",
    "public",
    "none",
    "current_role",
    "current_user",
    "session_user",
    "postgres",
)
ROLE_NAME_RULE = (
    "must be a lower-case PostgreSQL name (a-z, 0-9, _; at most 63 characters, not starting "
    "with a digit), not starting with pg_ and not one of " + ", ".join(RESERVED_ROLE_NAMES)
)
DATABASE_NAME_RULE = (
    "must be a lower-case PostgreSQL database name (a-z, 0-9, _; at most 63 characters, not "
    "starting with a digit), not all, replication, sameuser, samerole or samegroup"
)
_HBA_KEYWORDS = ("all", "replication", "sameuser", "samerole", "samegroup")


def unit_name_problem(name: str) -> str | None:
    """Why `name` is not a unit the agent may drive (None: it is)."""
    return None if re.fullmatch(UNIT_NAME_RE, name) else f"{name!r} {UNIT_NAME_RULE}"


def role_name_problem(name: str) -> str | None:
    """Why `name` is not a role name tandem can write safely (None: it is)."""
    if re.fullmatch(ROLE_NAME_RE, name) and not name.startswith("pg_") and name not in RESERVED_ROLE_NAMES:
        return None
    return f"{name!r} {ROLE_NAME_RULE}"


def database_name_problem(name: str) -> str | None:
    if re.fullmatch(ROLE_NAME_RE, name) and name not in _HBA_KEYWORDS:
        return None
    return f"{name!r} {DATABASE_NAME_RULE}"


def _cidr_problem(text: str) -> str | None:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return f"{text!r} must be an IPv4 or IPv6 network such as 198.18.0.0/24 or 2001:db8::/64"
    return None if "/" in text else f"{text!r} needs a prefix length, e.g. {text}/32"


UnitName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        description="A systemd unit, e.g. postfix.service.",
        json_schema_extra=validations(cel(f"self.matches(r'{UNIT_NAME_RE}')", UNIT_NAME_RULE)),
    ),
    refuse(unit_name_problem),
]
_RESERVED_CEL = "[" + ", ".join(f"'{n}'" for n in RESERVED_ROLE_NAMES) + "]"
RoleName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        json_schema_extra=validations(
            cel(
                f"self.matches(r'{ROLE_NAME_RE}') && !self.startsWith('pg_') && !(self in {_RESERVED_CEL})",
                ROLE_NAME_RULE,
            )
        ),
    ),
    refuse(role_name_problem),
]
_HBA_KEYWORDS_CEL = "[" + ", ".join(f"'{n}'" for n in _HBA_KEYWORDS) + "]"
DatabaseName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        json_schema_extra=validations(
            cel(f"self.matches(r'{ROLE_NAME_RE}') && !(self in {_HBA_KEYWORDS_CEL})", DATABASE_NAME_RULE)
        ),
    ),
    refuse(database_name_problem),
]
CIDR = Annotated[
    str,
    Field(
        min_length=3,
        max_length=49,
        description="An IPv4 or IPv6 network, e.g. 198.18.0.0/24.",
        json_schema_extra=validations(
            cel("isCIDR(self)", "must be an IPv4 or IPv6 network such as 198.18.0.0/24 or 2001:db8::/64")
        ),
    ),
    refuse(_cidr_problem),
]


class ClusterNode(Model):
    """A data node: a Kubernetes Node that can be primary."""

    name: NodeName
    replication_address: IPAddress | None = Field(
        default=None,
        description="Address on the replication network (PostgreSQL streaming connects here).",
    )


class LeaseTimings(Model):
    """Timings of the primary Lease; the CRD refuses values that break the safety inequality.

    renewDeadline + demotionTimeout + maxStall + margin < leaseDuration x (1 - clockRateError),
    so the old holder has stopped writing before anyone may take the Lease.
    """

    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.renewIntervalMs < self.renewDeadlineMs",
                "spec.leases.renewIntervalMs must be less than renewDeadlineMs so a holder "
                "gets at least one retry before it demotes",
                ".renewIntervalMs",
            ),
            cel(
                "(self.renewDeadlineMs + self.demotionTimeoutMs + self.maxStallMs + self.marginMs)"
                " * 1000 < self.leaseDurationMs * (1000 - self.clockRateErrorPermille)",
                "spec.leases: renewDeadlineMs + demotionTimeoutMs + maxStallMs + marginMs must be "
                "less than leaseDurationMs x (1 - clockRateErrorPermille/1000): raise "
                "leaseDurationMs or lower the others, or two nodes could both act as primary",
                ".leaseDurationMs",
            ),
        )
    }

    lease_duration_ms: Annotated[int, Field(ge=500, le=300_000)] = 3000
    renew_interval_ms: Annotated[
        int, Field(ge=100, le=60_000, description="Above 1000 keeps renewals under 1 write/s.")
    ] = 1200
    renew_deadline_ms: Annotated[int, Field(ge=200, le=120_000, description="Leaves 600 ms to retry a slow renew.")] = (
        1800
    )
    demotion_timeout_ms: Annotated[
        int, Field(ge=50, le=120_000, description="Worst-case time to tear the chain down.")
    ] = 600
    max_stall_ms: Annotated[
        int, Field(ge=0, le=60_000, description="Worst scheduling stall the agent must survive.")
    ] = 200
    margin_ms: Annotated[int, Field(ge=0, le=60_000)] = 200
    clock_rate_error_permille: Annotated[int, Field(ge=0, le=500)] = 10


class FencePolicy(Model):
    """What the agent does when a demotion cannot finish before the Lease could be taken."""

    method: Literal["SysrqReboot", "Watchdog"] = "SysrqReboot"
    watchdog_device: AbsolutePath = "/dev/watchdog"


class FailoverPolicy(Model):
    auto_failback: bool = Field(default=False, description="Move back to spec.primary once it is healthy again.")
    max_lag_seconds: Annotated[int, Field(ge=0, le=86_400)] = Field(
        default=0,
        description="A standby further behind than this never takes over automatically.",
    )
    restart_limit: Annotated[int, Field(ge=0, le=100)] = Field(
        default=3,
        description="Repairs in place of any failed member of the chain (restart, "
        "remount, re-add) within restartWindowSeconds; one more failure fails over.",
    )
    restart_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 300
    min_failover_interval_seconds: Annotated[int, Field(ge=0, le=86_400)] = Field(
        default=10, description="Rate limit: no automatic failover sooner than this after one."
    )
    api_server_outage: Literal["Demote"] = Field(
        default="Demote",
        description="Demote (the only policy): without the API server the holder cannot "
        "renew, so it stops at renewDeadline like after any failed renew, and nothing is "
        "promoted until the API server returns.",
    )
    fence: FencePolicy = FencePolicy()


class FilesystemMount(Model):
    volume: ObjectName = Field(description="DRBDVolume whose device is mounted.")
    mount_point: AbsolutePath
    fs_type: Literal["xfs", "ext4"] = "xfs"
    options: Annotated[list[MountOption], Field(max_length=16)] = []


class BindMount(Model):
    source: AbsolutePath = Field(description="Directory under a mounted volume.")
    target: AbsolutePath = Field(description="Standard path of the service's data.")


class ClientAccess(Model):
    """One pg_hba.conf rule for applications: `host <database> <user> <address> scram-sha-256`."""

    database: DatabaseName
    user: RoleName
    address: CIDR = Field(description="Network the clients connect from, e.g. 198.18.0.0/24.")


# Who runs an exec health check: a plain login name, never root (a namespaced object must
# not run code as root on a node).
PROBE_USER_RE = r"^[a-z_][a-z0-9_-]{0,31}$"
PROBE_USER_RULE = "must be a login name such as nobody or postfix (a-z, 0-9, _ -), not root"
HTTP_URL_RE = r"^http://[A-Za-z0-9.:\[\]_-]+(/[A-Za-z0-9._~/?&=%+:@-]*)?$"
HTTP_URL_RULE = "must be a plain http:// URL such as http://127.0.0.1:8080/health (no credentials, spaces or quotes)"
ProbeUser = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        json_schema_extra=validations(cel(f"self.matches(r'{PROBE_USER_RE}') && self != 'root'", PROBE_USER_RULE)),
    ),
    refuse(lambda v: None if re.fullmatch(PROBE_USER_RE, v) and v != "root" else f"{v!r} {PROBE_USER_RULE}"),
]
HttpURL = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2048,
        json_schema_extra=validations(cel(f"self.matches(r'{HTTP_URL_RE}')", HTTP_URL_RULE)),
    ),
    refuse(lambda v: None if re.fullmatch(HTTP_URL_RE, v) else f"{v!r} {HTTP_URL_RULE}"),
]


class MonitorSettings(Model):
    """How often a resource is checked on the primary and when it counts as failed."""

    period_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(default=1, description="Time between two checks.")
    timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=2,
        description="A check that has not answered by then has failed (a hung "
        "resource counts as failed, not only a dead one).",
    )
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = Field(
        default=1, description="Consecutive failed checks before the resource is repaired."
    )


class ExecCheck(Model):
    command: Annotated[list[Argument], Field(min_length=1, max_length=32)] = Field(
        description="Argument list run on the node (no shell); exit status 0 is healthy."
    )
    user: ProbeUser = Field(default="nobody", description="Runs as this user, never root.")


class TCPCheck(Model):
    host: IPAddress = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)]


class HTTPCheck(Model):
    url: HttpURL
    expected_status: Annotated[int, Field(ge=100, le=599)] = 200


class HealthCheck(MonitorSettings):
    """A probe in the style of a Kubernetes probe, run on the primary besides ActiveState."""

    model_config = MonitorSettings.model_config | {
        "json_schema_extra": validations(
            cel(
                "[has(self.exec), has(self.tcp), has(self.http)].filter(x, x).size() == 1",
                "healthCheck must set exactly one of exec, tcp or http",
            )
        )
    }

    exec: ExecCheck | None = None
    tcp: TCPCheck | None = None
    http: HTTPCheck | None = None
    period_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = 1
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3


class PostgresSpec(Model):
    """PostgreSQL streaming replication between the nodes (not on DRBD)."""

    data_directory: AbsolutePath = "/var/lib/postgresql/15/main"
    config_directory: AbsolutePath | None = Field(
        default=None,
        description="Where postgresql.conf lives when it is not in dataDirectory, e.g. "
        "/etc/postgresql/15/main on Debian; tandem writes its files (tandem.conf, pg_hba.conf, "
        "pg_ident.conf) there.",
    )
    bin_directory: AbsolutePath | None = None
    port: Annotated[int, Field(ge=1024, le=65535)] = 5432
    replication_user: RoleName = "replicator"
    credentials_secret: ObjectName | None = Field(
        default=None,
        description="Secret in this namespace whose key `password` is the replication user's "
        "password (scram-sha-256). Unset: the agent's --pg-password-file, or the chain does not "
        "come up.",
    )
    client_access: Annotated[list[ClientAccess], Field(max_length=32)] = Field(
        default=[],
        description="Who may connect over the network besides the replication user; always "
        "scram-sha-256. Local (Unix socket) connections authenticate by peer.",
    )
    synchronous: bool = Field(
        default=False,
        description="Synchronous replication: an isolated primary cannot acknowledge writes.",
    )
    monitor: MonitorSettings = Field(
        default=MonitorSettings(),
        description="On the primary: the postmaster runs, a "
        "query answers within timeoutSeconds, the server is a primary and commits a write.",
    )
    start_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=60, description="Start and crash recovery must finish by then."
    )
    stop_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] | None = Field(
        default=None,
        description="A fast shutdown that has not finished by then becomes an "
        "immediate one. Unset: the tear-down's whole budget, spec.leases.demotionTimeoutMs, "
        "then the fence.",
    )


class ServiceSpec(Model):
    name: ServiceName
    unit: UnitName = Field(description="The systemd unit the agent starts and stops.")
    run_on: Literal["Primary", "AllNodes"] = Field(
        default="Primary", description="AllNodes: runs everywhere and never fails over."
    )
    health_check: HealthCheck | None = Field(
        default=None,
        description="Checked on the primary while the unit is active; "
        "failureThreshold failures in a row restart the unit in place.",
    )
    start_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=90, description="A start that has not finished by then has failed."
    )
    stop_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] | None = Field(
        default=None,
        description="After this the unit is killed (SIGKILL). Unset: the "
        "tear-down's whole budget, spec.leases.demotionTimeoutMs, then the fence.",
    )


class ChainMonitors(Model):
    """Monitors of the chain's members on the primary (PostgreSQL's are spec.chain.postgres.
    monitor, a service's its healthCheck)."""

    volumes: MonitorSettings = Field(default=MonitorSettings(), description="DRBD still Primary with an UpToDate disk.")
    mounts: MonitorSettings = Field(
        default=MonitorSettings(),
        description="Still mounted "
        "from the right source, and a small file written and "
        "fsynced under each mount point answers in time.",
    )
    floating_ips: MonitorSettings = Field(
        default=MonitorSettings(), alias="floatingIPs", description="Every address still on its interface."
    )


class ResourceChain(Model):
    """Brought up in this order on the primary and down in reverse."""

    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.services.all(s, self.services.exists_one(t, t.name == s.name))",
                "spec.chain.services[*].name must be unique",
                ".services",
            ),
        )
    }

    volumes: Annotated[list[ObjectName], Field(max_length=8)] = []
    mounts: Annotated[list[FilesystemMount], Field(max_length=8)] = []
    bind_mounts: Annotated[list[BindMount], Field(max_length=32)] = []
    floating_ips: Annotated[list[ObjectName], Field(max_length=8)] = Field(default=[], alias="floatingIPs")
    postgres: PostgresSpec | None = None
    services: Annotated[list[ServiceSpec], Field(max_length=32)] = []
    monitors: ChainMonitors = ChainMonitors()


class Dependency(Model):
    name: ObjectName = Field(description="HACluster that must be Ready on the same node first.")


STOP_BUDGET_CEL = (
    "self.chain.services.map(s, has(s.stopTimeoutSeconds) ? s.stopTimeoutSeconds : 0).sum()"
    " * 1000 + (has(self.chain.postgres) && has(self.chain.postgres.stopTimeoutSeconds)"
    " ? self.chain.postgres.stopTimeoutSeconds * 1000 : 0) <= self.leases.demotionTimeoutMs"
)


class HAClusterSpec(Model):
    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel(
                "size(self.nodes) >= 2",
                "spec.nodes must list at least two distinct nodes (Kubernetes Node names)",
                ".nodes",
            ),
            cel(
                "!has(self.primary) || self.nodes.exists(n, n.name == self.primary)",
                "spec.primary must be one of spec.nodes[*].name",
                ".primary",
            ),
            cel(
                "self.standbyNodes.all(s, self.nodes.exists(n, n.name == s))",
                "spec.standbyNodes may only name nodes listed in spec.nodes",
                ".standbyNodes",
            ),
            cel(
                "self.standbyNodes.size() < self.nodes.size()",
                "spec.standbyNodes must leave at least one node able to be primary",
                ".standbyNodes",
            ),
            cel(
                STOP_BUDGET_CEL,
                "spec.chain: the stopTimeoutSeconds set on services and postgres add up to "
                "more than spec.leases.demotionTimeoutMs, so a slow stop would end in a fence: "
                "lower them or raise demotionTimeoutMs (and leaseDurationMs with it)",
                ".chain",
            ),
        )
    }

    nodes: Annotated[
        list[ClusterNode],
        Field(
            max_length=5,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ]
    primary: NodeName | None = Field(
        default=None, description="Desired primary; changing it starts a planned switchover."
    )
    standby_nodes: Annotated[
        list[NodeName],
        Field(
            max_length=5,
            description="Nodes in standby: they never take the Lease.",
            json_schema_extra={"x-kubernetes-list-type": "set"},
        ),
    ] = []
    paused: bool = Field(
        default=False,
        description="Maintenance mode: the agents neither bring up, tear down, "
        "repair nor fail over anything of this cluster; the primary keeps the Lease. Set it "
        "before upgrading the agents; clear it to resume (what runs is adopted).",
    )
    chain: ResourceChain = ResourceChain()
    leases: LeaseTimings = LeaseTimings()
    failover: FailoverPolicy = FailoverPolicy()
    depends_on: Dependency | None = None


class PostgresReport(Model):
    role: Literal["Primary", "Standby", "Stopped", "Unknown"] = "Unknown"
    timeline: Annotated[int, Field(ge=0)] | None = None
    lsn: Annotated[str, Field(max_length=32)] | None = None
    streaming_standbys: Annotated[int, Field(ge=0, le=64)] | None = None
    lag_seconds: Annotated[int, Field(ge=0)] | None = None


ResourceKind = Literal["Volume", "Mount", "BindMount", "FloatingIP", "PostgreSQL", "Service"]
ResourceName = Annotated[str, Field(min_length=1, max_length=255)]
RecoveryAction = Literal["Repaired", "RepairFailed", "SteppedDown"]


class ResourceReport(Model):
    """One member of the chain as this node's monitor last saw it (crm_mon's view)."""

    name: ResourceName
    kind: ResourceKind
    state: Literal["Healthy", "Failing", "Failed", "Repairing", "Unknown"] = "Unknown"
    consecutive_failures: Annotated[int, Field(ge=0)] = 0
    last_check_time: datetime | None = None
    repairs: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Repairs in place within spec.failover.restartWindowSeconds."
    )
    message: Message = ""


class Recovery(Model):
    """The last repair in place (or step-down) this node's agent did, for Events."""

    time: datetime
    resource: ResourceName
    kind: ResourceKind
    action: RecoveryAction
    message: Message


class ServiceReport(Model):
    name: ServiceName
    state: Literal["Running", "Stopped", "Failed", "Starting", "Unknown"] = "Unknown"
    restarts: Annotated[int, Field(ge=0)] = 0
    exit_status: Annotated[str, Field(max_length=64)] | None = None


RequestId = Annotated[str, Field(max_length=63)]


class SplitBrainRecovery(Model):
    """A DRBD split brain this node recovered from as the victim: its changes discarded, the Lease holder's kept.

    See docs/failover-protocol.md, "Split brain"."""

    volume: ObjectName = Field(description="The DRBDVolume.")
    peer: NodeName = Field(description="The survivor: the Lease holder whose data won.")
    discarded_bytes: Annotated[int, Field(ge=0)] = Field(
        description="DRBD's out-of-sync toward the peer when this node reconnected: what it "
        "had changed that the peer lacked, rolled back by the resync."
    )
    time: datetime = Field(description="When it reconnected with --discard-my-data.")
    resynced_time: datetime | None = Field(
        default=None,
        description="When it was first seen connected to the peer again, "
        "UpToDate with no resync running: the recovery is over.",
    )


class ForcedFailoverReport(Model):
    """How this node's agent settled a forced failover to it; written by that agent only."""

    request_id: RequestId
    phase: Literal["Completed", "Refused"]
    epoch: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The epoch it took the Lease at (Completed)."
    )
    message: Message = ""


class IneligibleReason(enum.StrEnum):
    """Why a node may not take the Lease now: status.nodes[].ineligibleReason, the word the
    operator and the plugin compare. What a person reads is beside it, in ineligibleMessage."""

    STARTING = "Starting"  # the agent has not observed this node yet
    # This node cannot act on the spec and runs none of the chain; the message is
    # "<field>: <problem and fix>".
    INVALID_SPEC = "InvalidSpec"
    PAUSED = "Paused"  # spec.paused: no node takes the Lease
    STANDBY_MODE = "StandbyMode"  # the node is listed in spec.standbyNodes
    DISK_NOT_UP_TO_DATE = "DiskNotUpToDate"
    LAG_TOO_HIGH = "LagTooHigh"  # PostgreSQL replay lag above spec.failover.maxLagSeconds
    RESTART_BACKOFF = "RestartBackoff"  # stepped down after restartLimit repairs
    DEPENDENCY_NOT_READY = "DependencyNotReady"
    # The Lease does not list this standby as synchronous. The Lease is the authority: the
    # operator judges that rule from the Lease itself, as the report may trail it.
    NOT_SYNCHRONOUS = "NotSynchronous"


def said(reason: IneligibleReason, message: str) -> str:
    """A reason and its message as a person reads them in logs and the operator's messages."""
    return f"{reason.value}: {message}" if message else reason.value


# The Ready reason the operator shows, and the pendingChange word, when a node cannot act on
# the spec: the same word as its own cross-object checks, since either way the spec (or an
# object it names) needs fixing.
INVALID_SPEC = IneligibleReason.INVALID_SPEC.value

# An agent before the reason and its message were two fields reported "<Reason>: <message>"
# in ineligibleReason (at most 128 characters), and "" when eligible. The CRD still accepts
# that form so that such an agent keeps reporting during a rolling upgrade; NodeReport reads
# it (see `_legacy_ineligible_reason`) and nothing else ever does.
_REASONS = tuple(r.value for r in IneligibleReason)
LEGACY_INELIGIBLE_REASON = "^$|^(" + "|".join(_REASONS) + "): "
IneligibleReasonField = Annotated[
    IneligibleReason | None,
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 128,
            "anyOf": [{"enum": list(_REASONS)}, {"pattern": LEGACY_INELIGIBLE_REASON}],
        }
    ),
]


class NodeReport(Model):
    """What one node's agent says about itself; written only by that node's agent."""

    name: NodeName
    role: Literal["Primary", "Standby", "Demoting", "Fenced", "Unknown"] = "Unknown"
    epoch: Annotated[int, Field(ge=0)] = 0
    heartbeat_time: datetime | None = None
    drbd: Annotated[list[DRBDNodeStatus], Field(max_length=8)] = []
    postgres: PostgresReport | None = None
    services: Annotated[list[ServiceReport], Field(max_length=32)] = []
    resources: Annotated[list[ResourceReport], Field(max_length=96)] = Field(
        default=[], description="Each monitored member of the chain on the primary."
    )
    last_recovery: Recovery | None = None
    eligible: bool | None = Field(default=None, description="Whether this node may take the Lease now.")
    ineligible_reason: IneligibleReasonField = Field(
        default=None,
        description="Why not, one word: " + ", ".join(IneligibleReason) + " "
        "(InvalidSpec: this node cannot act on the spec and runs none of the chain). Unset "
        'when eligible. (An agent of the previous version writes "<Reason>: <details>" '
        "here; read as the reason and its message.)",
    )
    ineligible_message: Message = Field(
        default="",
        description="The details of ineligibleReason for a person, e.g. "
        "InvalidSpec's \"<field>: <problem and fix>\" or LagTooHigh's lag and limit.",
    )
    message: Message = ""
    applied_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The HACluster generation whose spec this node runs."
    )
    pending_change: Message = Field(
        default="",
        description="Why the newest spec is not applied here yet: one word, "
        "then details: WaitingForSwitchover (it changes what only a chain that is down can "
        "change: applied at the next switchover), NotApplicable (Lease timings unsafe while "
        "the nodes switch: split the edit), Paused, InvalidSpec, ApplyFailed.",
    )
    forced_failover: ForcedFailoverReport | None = Field(
        default=None,
        description="The last forced failover to this node its agent settled: "
        "each request id is acted on once, across restarts too.",
    )
    split_brain_recoveries: Annotated[
        list[SplitBrainRecovery],
        Field(
            max_length=8,
            description="Per DRBD volume, the last split brain this node recovered from by discarding its own changes.",
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["volume"],
            },
        ),
    ] = []

    @model_validator(mode="before")
    @classmethod
    def _legacy_ineligible_reason(cls, data: Any) -> Any:
        """An agent of the previous version's ineligibleReason ("<Reason>: <message>", or ""
        when eligible) as the reason and its message: the one place that splits that text."""
        if not isinstance(data, dict) or not isinstance(data.get("ineligibleReason"), str):
            return data
        word, colon, message = data["ineligibleReason"].partition(": ")
        if word and not (colon and word in _REASONS):
            return data  # a reason already, or nothing to read: validation says which
        return data | {"ineligibleReason": word or None, "ineligibleMessage": data.get("ineligibleMessage") or message}

    @property
    def why_ineligible(self) -> str:
        """The reason and its message as a person reads them; "" when none was given."""
        if self.ineligible_reason is None:
            return ""
        return said(self.ineligible_reason, self.ineligible_message)


class FailoverRecord(Model):
    from_node: NodeName | None = Field(default=None, alias="from")
    to_node: NodeName = Field(alias="to")
    reason: Reason
    duration_ms: Annotated[int, Field(ge=0)] | None = None
    time: datetime
    planned: bool = False


class Switchover(Model):
    """A planned switchover requested by a change of spec.primary; written by the operator.

    The holder acts only on phase Pending with fromEpoch equal to the current epoch.
    """

    target: NodeName
    from_epoch: Annotated[int, Field(ge=0)]
    phase: Literal["Pending", "Completed", "Refused"] = "Pending"
    reason: Reason = ""
    message: Message = ""
    requested_at: datetime
    request_id: Annotated[str, Field(max_length=63)] | None = Field(
        default=None,
        description="The tandem.dev/switchover-id of the request that started it; unset for a change of spec.primary.",
    )


class ForcedFailover(Model):
    """A forced failover requested by the tandem.dev/force-failover annotations; written by
    the operator. The named node's agent acts only on phase Pending with this requestId."""

    request_id: RequestId
    target: NodeName | None = Field(default=None, description="Unset when the request names no node of spec.nodes.")
    from_epoch: Annotated[int, Field(ge=0)] = 0
    phase: Literal["Pending", "Completed", "Refused"] = "Pending"
    reason: Reason = ""
    message: Message = ""
    data_at_risk: Message = Field(
        default="",
        description="What may be lost, from the reports and the Lease at the "
        "request: the Lease holder, the target's synchronous status, lag and DRBD disks.",
    )
    requested_at: datetime


class ResourceRef(Model):
    node: NodeName
    kind: ResourceKind
    name: ResourceName


class AnnouncedRecovery(Model):
    """A node's status.nodes[].lastRecovery the operator has posted as an Event."""

    node: NodeName
    time: datetime
    resource: ResourceName
    action: RecoveryAction


class AnnouncedSplitBrainRecovery(Model):
    """A node's status.nodes[].splitBrainRecoveries entry the operator has posted as an Event."""

    node: NodeName
    volume: ObjectName
    time: datetime


class Announced(Model):
    """What the operator has already posted as Events about the agents' monitors.

    Written by the operator only, so neither its restart nor a second reconcile posts anything twice.
    """

    recoveries: Annotated[
        list[AnnouncedRecovery],
        Field(
            max_length=5,
            description="Per node, the lastRecovery last posted (Event reason = its action).",
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["node"],
            },
        ),
    ] = []
    unhealthy: Annotated[list[ResourceRef], Field(max_length=96)] = Field(
        default=[],
        description="The primary's resources not Healthy (Failing, Failed or "
        "Repairing) at the last reconcile; one that joins posts a ResourceFailed Event.",
    )
    split_brain_recoveries: Annotated[
        list[AnnouncedSplitBrainRecovery],
        Field(
            max_length=40,
            description="Per node and volume, the splitBrainRecoveries entry last posted (Event SplitBrainRecovery).",
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["node", "volume"],
            },
        ),
    ] = []


class HAClusterStatus(Model):
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    primary: NodeName | None = None
    epoch: Annotated[int, Field(ge=0)] | None = None
    nodes: Annotated[
        list[NodeReport],
        Field(
            max_length=5,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ] = []
    conditions: Conditions = []
    last_failover: FailoverRecord | None = None
    switchover: Switchover | None = None
    handled_switchover_id: Annotated[str, Field(max_length=63)] | None = Field(
        default=None,
        description="The last tandem.dev/switchover-id the operator acted on: "
        "each request is carried out once, however long the annotation stays.",
    )
    announced: Announced | None = None
    forced_failover: ForcedFailover | None = None


class HACluster(Model):
    spec: HAClusterSpec
    status: HAClusterStatus | None = None
