"""PostgreSQL driver: one node's server, as primary or as a streaming standby.

Interface (all operations idempotent, each returns an `Outcome` saying whether it changed
anything): `init_primary`, `clone_standby`, `start_primary`, `start_standby`, `promote`,
`stop`, `rewind_as_standby`, `set_synchronous_standbys`; `status()` returns a
`PostgresStatus`, `writable()` a bool.

How it runs things:

- Server programs (initdb, pg_ctl, pg_basebackup, pg_rewind, pg_controldata) come from
  `PostgresConfig.bin_dir`, or from `pg_config --bindir` when that is unset. PostgreSQL refuses
  to run as root, so when the agent is not already the configured OS user every such command
  is prefixed with ``runuser -u <os_user> --`` (runuser: no password, no setuid helper of our
  own, and it keeps the environment we pass, such as ``LC_ALL=C`` for parseable messages).
- Commands that open network connections or start the server (``pg_ctl start``,
  pg_basebackup, pg_rewind) run in `PostgresConfig.netns` when it is set, so the server
  listens on that namespace's addresses and streams over its links. The driver itself talks to
  the server over the Unix socket in `runtime_dir` (a path, so it works across namespaces),
  authenticated by ``peer`` with an ident map that lets `admin_os_users` (root) in as the
  superuser.
- Settings live in files the driver owns and rewrites before every start, which is what
  makes repeated starts idempotent: ``tandem.conf`` (included from the end of
  ``postgresql.conf``; it names the two others as ``hba_file`` and ``ident_file``),
  ``pg_hba.conf`` and ``pg_ident.conf``, all in `PostgresConfig.conf_dir`: the data directory
  (initdb's layout) or a separate configuration directory such as Debian's
  ``/etc/postgresql/15/main``. Runtime policy that may change while the server runs
  (``synchronous_standby_names``) goes through ``ALTER SYSTEM`` into ``postgresql.auto.conf``.
- Authentication: ``peer`` over the Unix socket; over the network only ``scram-sha-256``, for
  the replication user from the nodes' replication addresses and for the `client_access` rules;
  no ``trust`` rule for any network connection. The replication password is set on the role as
  a SCRAM verifier computed here (the cleartext never reaches the server or its log), only when
  the stored verifier does not match it, and never reset. The standby reads it from a passfile
  in `runtime_dir` (mode 0600, owned by the OS user), never from a command line or from the
  configuration files that pg_basebackup and pg_rewind copy between nodes.
- pg_rewind needs ``wal_log_hints = on`` (always set) and initdb also enables data checksums.
  The replication user gets the four function grants pg_rewind documents and membership in
  ``pg_checkpoint``, so rewinding never needs a superuser connection over the network. Before
  pg_rewind the driver runs CHECKPOINT on the source: a freshly promoted server records its
  new timeline in the control file only at its next checkpoint, and until then pg_rewind
  would report "no rewind required" for a former primary that did diverge.
- When pg_rewind itself fails (not an unreachable source), the data directory may be half
  rewound and unusable: a rewind interrupted by the source restarting leaves timelines that
  the next attempt cannot reconcile ("could not find common ancestor"), and pg_rewind's own
  documentation says to take a fresh backup then. `rewind_as_standby` does exactly that: the
  old directory is kept beside the new one as ``<data>.failed-rewind`` (one, the latest) and
  the node is cloned from the primary. Under synchronous replication the discarded divergence
  holds no acknowledged commit, as with a successful rewind.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import DictRow, dict_row

from tandem.api.common import path_problem
from tandem.api.hacluster import database_name_problem, role_name_problem
from tandem_agent.drivers.base import CommandError, DriverError, Outcome, run

Role = Literal["primary", "standby"]
StopMode = Literal["smart", "fast", "immediate"]
SyncMethod = Literal["ANY", "FIRST"]

SETTINGS_FILE = "tandem.conf"
INCLUDE_LINE = f"include_if_exists = '{SETTINGS_FILE}'"
IDENT_MAP = "tandem"
STANDBY_SIGNAL = "standby.signal"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
_LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)
MAX_PASSWORD = 1024


# --------------------------------------------------------------------------- errors


class PostgresError(DriverError):
    """PostgreSQL could not do what was asked; the message says what to do."""


class NotInitializedError(PostgresError):
    """The data directory holds no cluster yet."""


class NotRunningError(PostgresError):
    """The operation needs a running server."""


class WrongRoleError(PostgresError):
    """The server runs in the other role (primary vs standby) than the operation needs."""


class SourceUnreachableError(PostgresError):
    """The primary to clone from or rewind from cannot be reached."""


class SourceRefusedError(PostgresError):
    """The primary refused the replication user's login (password or pg_hba.conf)."""


class SourceNotPrimaryError(PostgresError):
    """The server to rewind from is still in recovery: the new primary has not promoted yet."""


class ConfigError(ValueError):
    """A `PostgresConfig` value the driver refuses; `field` names it, so that the agent can
    name the spec field it came from."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --------------------------------------------------------------------------- config


def password_problem(password: str) -> str | None:
    """Why `password` cannot be the replication password (None: it can).

    Printable ASCII only: a passfile is line-based and has no escape for a line break, libpq
    strips a trailing carriage return, and PostgreSQL normalizes non-ASCII passwords (SASLprep)
    before hashing; any printable character, quotes and backslashes included, is escaped where
    it is written."""
    if not password:
        return "is empty"
    if len(password) > MAX_PASSWORD:
        return f"is longer than {MAX_PASSWORD} characters"
    if not all(" " <= c <= "~" for c in password):
        return (
            "holds a line break, another control character or a non-ASCII character: use "
            "printable ASCII, e.g. the output of `openssl rand -base64 32`"
        )
    return None


@dataclass(frozen=True)
class ClientRule:
    """``host <database> <user> <network> scram-sha-256``: applications over the network."""

    database: str
    user: str
    network: str

    def __post_init__(self) -> None:
        problem = database_name_problem(self.database) or role_name_problem(self.user)
        if problem:
            raise ValueError(f"client access rule: {problem}")
        try:
            ipaddress.ip_network(self.network, strict=False)
        except ValueError as exc:
            raise ValueError(f"client access rule: {self.network!r} is not a network") from exc


@dataclass(frozen=True)
class PostgresConfig:
    """Where one node's PostgreSQL lives and how it is reached.

    `replication_peers` are the nodes' replication addresses: the only places the replication
    user may connect from. `replication_password` None means "not known": the driver then sets
    no password and writes no passfile, so nothing can stream until it is known. `config_dir`
    holds postgresql.conf when it is not the data directory (Debian). `settings` are extra
    server settings written to ``tandem.conf`` (e.g. ``{"shared_buffers": "32MB"}``).
    """

    node_name: str
    data_dir: Path
    port: int = 5432
    listen_addresses: tuple[str, ...] = ("localhost",)
    os_user: str = "postgres"
    bin_dir: Path | None = None
    netns: str | None = None
    replication_user: str = "replicator"
    replication_password: str | None = field(default=None, repr=False)
    replication_peers: tuple[str, ...] = ()
    client_access: tuple[ClientRule, ...] = ()
    config_dir: Path | None = None
    runtime_dir: Path | None = None
    admin_os_users: tuple[str, ...] = ("root",)
    settings: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    initdb_args: tuple[str, ...] = ("--encoding=UTF8", "--locale=C")
    wal_keep_size: str = "256MB"
    connect_timeout: int = 5
    start_timeout: int = 60
    clone_timeout: float = 3600.0

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.node_name):
            raise ConfigError(
                "node_name",
                f"node_name {self.node_name!r} must be 1-63 characters of letters, "
                "digits, '_', '.', '-' (it becomes application_name and cluster_name)",
            )
        if not 1 <= self.port <= 65535:
            raise ConfigError("port", f"port must be within 1..65535, got {self.port}")
        if not self.listen_addresses:
            raise ConfigError("listen_addresses", "listen_addresses must name at least one address (or '*')")
        for address in self.replication_peers:
            try:
                ipaddress.ip_address(address)
            except ValueError as exc:
                raise ConfigError("replication_peers", f"replication_peers: {address!r} is not an IP address") from exc
        if problem := role_name_problem(self.replication_user):
            raise ConfigError("replication_user", f"replication user {problem}")
        for name in (self.os_user, *self.admin_os_users):
            if not _NAME_RE.match(name):
                raise ConfigError("os_user", f"user name {name!r} is not a plain identifier")
        if self.replication_user == self.superuser:
            raise ConfigError("replication_user", f"the replication user must not be the superuser {self.superuser}")
        if self.replication_password is not None and (problem := password_problem(self.replication_password)):
            raise ConfigError("replication_password", f"the replication password {problem}")
        for what, path in (("data_dir", self.data_dir), ("config_dir", self.config_dir)):
            if path is not None and (problem := path_problem(str(path))):
                raise ConfigError(what, f"{what} {problem}")

    @property
    def conf_dir(self) -> Path:
        """Where postgresql.conf and the files tandem writes live."""
        return self.config_dir or self.data_dir

    @property
    def superuser(self) -> str:
        """The cluster's bootstrap superuser: initdb names it after the OS user."""
        return self.os_user

    @property
    def run_dir(self) -> Path:
        """Per-instance directory for the Unix socket, the log and the passfile."""
        if self.runtime_dir is not None:
            return self.runtime_dir
        return self.data_dir.with_name(self.data_dir.name + ".run")

    @property
    def log_file(self) -> Path:
        return self.run_dir / "postgres.log"

    @property
    def passfile(self) -> Path:
        return self.run_dir / "pgpass"


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ControlData:
    """The parts of ``pg_controldata`` the driver reads (valid while the server is stopped)."""

    cluster_state: str
    timeline: int | None
    checkpoint_lsn: str | None


@dataclass(frozen=True)
class PostgresStatus:
    """What one node's PostgreSQL is doing.

    Running: `role`, `timeline` and the LSNs come from SQL. A primary reports `current_lsn`
    `streaming_standbys` (rows of ``pg_stat_replication`` in state ``streaming``) and their
    application names (`streaming_names`), with the
    application names of those acknowledged synchronously in `sync_standbys`, and how far
    each streaming one has flushed WAL to its disk (`flushed`, name and LSN). A standby
    reports `receive_lsn`, `replay_lsn`, whether its WAL receiver is streaming, from where
    (`upstream`, ``host:port``), and `replay_lag_s`.

    `replay_lag_s` is ``now() - pg_last_xact_replay_timestamp()``, except that it is 0 while
    the standby streams and has replayed everything it received. The raw value keeps growing
    while the primary is idle (no new transactions to replay), so it is only meaningful when
    something is pending; a standby that is not streaming keeps the raw value, which is the
    honest upper bound for "how far behind may it be". None on a primary or before any
    transaction was replayed.

    Stopped: `cluster_state`, `timeline` and `checkpoint_lsn` come from the control file
    (``shut down`` after a clean primary stop, ``shut down in recovery`` for a standby,
    ``in production`` after a crash). `error` says why a running server could not be queried.
    """

    running: bool
    role: Role | None = None
    timeline: int | None = None
    current_lsn: str | None = None
    receive_lsn: str | None = None
    replay_lsn: str | None = None
    streaming_standbys: int = 0
    sync_standbys: tuple[str, ...] = ()
    streaming_names: tuple[str, ...] = ()
    flushed: tuple[tuple[str, str], ...] = ()  # (standby, flush_lsn) of each streaming one
    receiving: bool = False
    upstream: str | None = None
    replay_lag_s: float | None = None
    cluster_state: str | None = None
    checkpoint_lsn: str | None = None
    error: str | None = None


STATUS_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_current_wal_lsn()::text END AS current_lsn,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END AS current_tli_hex,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age_s,
       (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming')::int
           AS streaming_standbys,
       (SELECT coalesce(array_agg(application_name::text ORDER BY application_name), '{}')
          FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')) AS sync_standbys,
       (SELECT coalesce(array_agg(application_name::text ORDER BY application_name), '{}')
          FROM pg_stat_replication WHERE state = 'streaming') AS streaming_names,
       (SELECT coalesce(array_agg(application_name::text || '=' || flush_lsn::text
                                  ORDER BY application_name), '{}')
          FROM pg_stat_replication
         WHERE state = 'streaming' AND flush_lsn IS NOT NULL) AS flushed,
       (SELECT status FROM pg_stat_wal_receiver) AS receiver_status,
       (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver) AS upstream,
       (SELECT received_tli FROM pg_stat_wal_receiver) AS received_tli,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_tli
"""


def parse_lsn(text: str) -> int:
    """``16/B374D848`` -> byte position."""
    match = _LSN_RE.match(text.strip())
    if not match:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(value: int) -> str:
    if not 0 <= value < 1 << 64:
        raise ValueError(f"LSN out of range: {value}")
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def reported_lag(
    in_recovery: bool,
    receiving: bool,
    receive_lsn: str | None,
    replay_lsn: str | None,
    replay_age_s: float | None,
) -> float | None:
    """The replay lag to report (see `PostgresStatus`): 0 when streaming and caught up."""
    if not in_recovery:
        return None
    if (
        receiving
        and receive_lsn is not None
        and replay_lsn is not None
        and parse_lsn(replay_lsn) >= parse_lsn(receive_lsn)
    ):
        return 0.0
    if replay_age_s is None:
        return None
    return max(0.0, float(replay_age_s))


def status_from_row(row: Mapping[str, Any]) -> PostgresStatus:
    """Build the status of a running server from one row of `STATUS_SQL`."""
    in_recovery = bool(row["in_recovery"])
    receiving = row.get("receiver_status") == "streaming"
    if in_recovery:
        tli = row.get("received_tli") or row.get("checkpoint_tli")
        timeline = int(tli) if tli else None
    else:
        hex_tli = row.get("current_tli_hex")
        timeline = int(hex_tli, 16) if hex_tli else None
    return PostgresStatus(
        running=True,
        role="standby" if in_recovery else "primary",
        timeline=timeline,
        current_lsn=row.get("current_lsn"),
        receive_lsn=row.get("receive_lsn") if in_recovery else None,
        replay_lsn=row.get("replay_lsn") if in_recovery else None,
        streaming_standbys=int(row.get("streaming_standbys") or 0),
        sync_standbys=tuple(row.get("sync_standbys") or ()),
        streaming_names=tuple(row.get("streaming_names") or ()),
        flushed=tuple((name, lsn) for name, _, lsn in (item.rpartition("=") for item in row.get("flushed") or ())),
        receiving=receiving,
        upstream=row.get("upstream") if in_recovery else None,
        replay_lag_s=reported_lag(
            in_recovery,
            receiving,
            row.get("receive_lsn"),
            row.get("replay_lsn"),
            row.get("replay_age_s"),
        ),
    )


def parse_controldata(text: str) -> ControlData:
    """Read ``pg_controldata`` output (run with ``LC_ALL=C``)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    state = fields.get("Database cluster state")
    if state is None:
        raise PostgresError(
            "pg_controldata printed no 'Database cluster state': is the data directory a "
            "PostgreSQL cluster, and does pg_controldata run with LC_ALL=C?"
        )
    tli = fields.get("Latest checkpoint's TimeLineID")
    return ControlData(
        cluster_state=state,
        timeline=int(tli) if tli and tli.isdigit() else None,
        checkpoint_lsn=fields.get("Latest checkpoint location"),
    )


# --------------------------------------------------------------------------- rendering


def quote_setting(value: str | int | float | bool) -> str:
    """A value as it must appear in a postgresql.conf line, read back by PostgreSQL as exactly
    `value`. Raises ValueError for a control character: a line break ends the quoted string
    (guc-file.l) and could start a setting of its own."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    if any(c < " " or c == "\x7f" for c in value):
        raise ValueError(f"setting value {value!r} holds a line break or another control character")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def render_settings(config: PostgresConfig, primary_conninfo: str | None) -> str:
    """Content of ``tandem.conf``; `primary_conninfo` None renders a primary."""
    settings: dict[str, str | int | float | bool] = {
        "listen_addresses": ",".join(config.listen_addresses),
        "port": config.port,
        "unix_socket_directories": str(config.run_dir),
        "cluster_name": config.node_name,
        "wal_level": "replica",
        "wal_log_hints": True,
        "max_wal_senders": 10,
        "max_replication_slots": 10,
        "wal_keep_size": config.wal_keep_size,
        "hot_standby": True,
        "recovery_target_timeline": "latest",
        # A cut replication link must show in pg_stat_replication within seconds, so that
        # the primary drops the standby from the synchronous ones instead of blocking commits.
        "wal_sender_timeout": "3s",
        "wal_receiver_status_interval": "1s",
        "wal_receiver_timeout": "3s",
        # A standby reconnects within a second of its primary's restart in place, so that
        # commits waiting for it resume quickly (the default waits 5 s between attempts).
        "wal_retrieve_retry_interval": "1s",
        "primary_conninfo": primary_conninfo or "",
        # Explicit, so that a postgresql.conf naming other files (Debian's) cannot override
        # the rules tandem writes.
        "hba_file": str(config.conf_dir / "pg_hba.conf"),
        "ident_file": str(config.conf_dir / "pg_ident.conf"),
    }
    for key, value in config.settings.items():
        if not re.match(r"^[a-z_][a-z0-9_.]*$", key):
            raise ValueError(f"setting name {key!r} is not a PostgreSQL parameter name")
        settings[key] = value
    lines = [
        f"# Written by tandem for node {config.node_name}; rewritten before every start.",
        f"# Role: {'standby' if primary_conninfo else 'primary'}. Do not edit by hand.",
    ]
    lines += [f"{key} = {quote_setting(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def primary_conninfo(config: PostgresConfig, host: str, port: int) -> str:
    """Conninfo a standby of this node uses to stream from `host`:`port`."""
    params: dict[str, str | int] = {
        "host": host,
        "port": port,
        "user": config.replication_user,
        "application_name": config.node_name,
        "connect_timeout": config.connect_timeout,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "passfile": str(config.passfile),
    }
    return make_conninfo("", **params)


def host_network(address: str) -> str:
    """One address as a pg_hba.conf network: /32 or /128."""
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def render_hba(config: PostgresConfig) -> str:
    """``pg_hba.conf``: peer over the Unix socket; over the network only scram-sha-256, for the
    replication user from the nodes' replication addresses (streaming, and pg_rewind's
    connection to the postgres database) and for the client access rules. No trust rule.

    Names are validated identifiers and double-quoted anyway, so none can act as a keyword."""
    user = f'"{config.replication_user}"'
    lines = [
        "# Written by tandem; rewritten before every start. Do not edit by hand: declare",
        "# network clients in spec.chain.postgres.clientAccess.",
        f"local   all          all                       peer map={IDENT_MAP}",
        f"local   replication  all                       peer map={IDENT_MAP}",
    ]
    for address in dict.fromkeys(config.replication_peers):
        net = host_network(address)
        lines.append(f"host    replication  {user:<14} {net:<20} scram-sha-256")
        lines.append(f"host    postgres     {user:<14} {net:<20} scram-sha-256")
    for rule in config.client_access:
        net = str(ipaddress.ip_network(rule.network, strict=False))
        lines.append(f'host    "{rule.database}"  "{rule.user}"  {net}  scram-sha-256')
    return "\n".join(lines) + "\n"


def render_ident(config: PostgresConfig) -> str:
    """``pg_ident.conf``: admin OS users become the superuser; others keep their own name."""
    lines = ["# Written by tandem; rewritten before every start."]
    for os_user in dict.fromkeys((*config.admin_os_users, config.os_user)):
        lines.append(f"{IDENT_MAP}  {os_user:<12} {config.superuser}")
    lines.append(IDENT_MAP + "  /^(.*)$      \\1")
    return "\n".join(lines) + "\n"


def render_pgpass(user: str, password: str) -> str:
    """One passfile line for `user` on any host, port and database (``:`` and ``\\`` escaped;
    a line break cannot be escaped, so a password holding one is refused)."""
    if problem := password_problem(password):
        raise ValueError(f"the replication password {problem}")

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace(":", "\\:")

    return f"*:*:*:{esc(user)}:{esc(password)}\n"


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, RFC 7677), in its
    ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` form. Set as the role's
    password, it lets the server check logins without ever seeing the cleartext. ASCII
    passwords only (`password_problem`): PostgreSQL leaves those unchanged by SASLprep."""
    if problem := password_problem(password):
        raise ValueError(f"the replication password {problem}")
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def verifier_matches(stored: str | None, password: str) -> bool:
    """Does the stored SCRAM verifier (``rolpassword``) belong to `password`?"""
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+", stored or "")
    if match is None:
        return False
    expected = scram_verifier(password, base64.b64decode(match.group(2)), int(match.group(1)))
    return hmac.compare_digest(expected, stored or "")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sync_standby_names(names: Sequence[str], num_sync: int = 1, method: SyncMethod = "ANY") -> str:
    """The ``synchronous_standby_names`` value: ``ANY 1 ("node1", "node2")``, or '' for none.

    Naming both nodes of a pair is the portable choice: a server never streams from itself,
    so on either node it means "the other one", and it survives a failover unchanged.
    """
    unique = list(dict.fromkeys(names))
    if not unique:
        return ""
    if method not in ("ANY", "FIRST"):
        raise ValueError(f"method must be ANY or FIRST, got {method!r}")
    if not 1 <= num_sync <= len(unique):
        raise ValueError(f"num_sync must be within 1..{len(unique)}, got {num_sync}")
    return f"{method} {num_sync} ({', '.join(quote_ident(n) for n in unique)})"


def scrub_auto_conf(text: str) -> str:
    """Drop ``primary_conninfo``/``primary_slot_name`` from ``postgresql.auto.conf``.

    They would override ``tandem.conf`` (pg_basebackup -R and pg_rewind -R write them there).
    """
    kept = [
        line
        for line in text.splitlines(keepends=True)
        if not re.match(r"^\s*(primary_conninfo|primary_slot_name)\s*=", line)
    ]
    return "".join(kept)


def with_include(postgresql_conf: str) -> str:
    """``postgresql.conf`` with the include of ``tandem.conf`` as its last effective line."""
    if any(line.strip() == INCLUDE_LINE for line in postgresql_conf.splitlines()):
        return postgresql_conf
    sep = "" if postgresql_conf.endswith("\n") or not postgresql_conf else "\n"
    return f"{postgresql_conf}{sep}\n# Added by tandem: settings it manages.\n{INCLUDE_LINE}\n"


def _children(pid: int, proc: str = "/proc") -> list[int]:
    """The processes whose parent is `pid` (PostgreSQL's backends of a postmaster)."""
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                # pid (comm) state ppid ...: comm may hold spaces and parentheses.
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# --------------------------------------------------------------------------- driver


class Postgres:
    """One node's PostgreSQL server, driven with pg_ctl and psycopg."""

    def __init__(self, config: PostgresConfig) -> None:
        self.config = config
        self._bin_dir: Path | None = config.bin_dir

    # ----- helpers: commands

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            try:
                out = run(["pg_config", "--bindir"], timeout=10).stdout.strip()
            except DriverError as exc:
                raise PostgresError(f"cannot find PostgreSQL's programs ({exc}): set PostgresConfig.bin_dir") from exc
            self._bin_dir = Path(out)
        return self._bin_dir

    def _argv(self, tool: str, *args: str) -> list[str]:
        argv = [str(self.bin_dir / tool), *args]
        if pwd.getpwuid(os.geteuid()).pw_name != self.config.os_user:
            argv = ["runuser", "-u", self.config.os_user, "--", *argv]
        return argv

    def _pg(
        self, tool: str, *args: str, netns: bool = False, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LC_ALL": "C", "LC_MESSAGES": "C", "PGCONNECT_TIMEOUT": "10"}
        env.pop("PGPASSWORD", None)
        return run(
            self._argv(tool, *args),
            netns=self.config.netns if netns else None,
            env=env,
            timeout=timeout,
            check=check,
        )

    def _owner(self) -> tuple[int, int]:
        try:
            entry = pwd.getpwnam(self.config.os_user)
        except KeyError as exc:
            raise PostgresError(f"OS user {self.config.os_user!r} does not exist: create it or set os_user") from exc
        return entry.pw_uid, entry.pw_gid

    def _make_dir(self, path: Path, mode: int) -> None:
        uid, gid = self._owner()
        path.mkdir(parents=True, exist_ok=True)
        st = path.stat()
        if (st.st_uid, st.st_gid) != (uid, gid) and os.geteuid() == 0:
            os.chown(path, uid, gid)
        if st.st_mode & 0o7777 != mode:
            path.chmod(mode)

    def _write(self, path: Path, text: str, mode: int = 0o600) -> bool:
        """Write a file owned by the OS user atomically; True when the content changed."""
        try:
            if path.read_text() == text:
                return False
        except FileNotFoundError:
            pass
        tmp = path.with_name(f".{path.name}.tandem-tmp")
        tmp.write_text(text)
        tmp.chmod(mode)
        if os.geteuid() == 0:
            uid, gid = self._owner()
            os.chown(tmp, uid, gid)
        tmp.replace(path)
        return True

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.config.log_file.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    # ----- helpers: state

    @property
    def initialized(self) -> bool:
        return (self.config.data_dir / "PG_VERSION").is_file()

    @property
    def managed(self) -> bool:
        """Has tandem ever configured this cluster? (Debian's initial cluster: not yet.)"""
        return (self.config.conf_dir / SETTINGS_FILE).is_file()

    def _require_initialized(self, what: str) -> None:
        if not self.initialized:
            raise NotInitializedError(
                f"cannot {what}: {self.config.data_dir} holds no PostgreSQL cluster; create it "
                "with init_primary() on the primary or clone_standby(host, port) on a standby"
            )

    def is_running(self) -> bool:
        """``pg_ctl status``: 0 running, 3 stopped, 4 no data directory."""
        if not self.initialized:
            return False
        proc = self._pg("pg_ctl", "status", "-D", str(self.config.data_dir), check=False)
        if proc.returncode == 0:
            return True
        if proc.returncode in (3, 4):
            return False
        raise PostgresError(f"pg_ctl status failed ({proc.returncode}): {proc.stderr.strip()}")

    def controldata(self) -> ControlData:
        self._require_initialized("read the control file")
        proc = self._pg("pg_controldata", "-D", str(self.config.data_dir))
        return parse_controldata(proc.stdout)

    @contextmanager
    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Iterator[psycopg.Connection[DictRow]]:
        """A connection as the superuser over this instance's Unix socket (autocommit)."""
        try:
            conn = psycopg.connect(
                host=str(self.config.run_dir),
                port=self.config.port,
                user=self.config.superuser,
                dbname=dbname,
                connect_timeout=self.config.connect_timeout,
                application_name="tandem-agent",
                autocommit=True,
                row_factory=dict_row,
                **kwargs,
            )
        except psycopg.OperationalError as exc:
            raise NotRunningError(
                f"cannot connect to PostgreSQL of {self.config.node_name} via "
                f"{self.config.run_dir}: {str(exc).strip()}; is it running (status())?"
            ) from exc
        try:
            yield conn
        finally:
            conn.close()

    def status(self) -> PostgresStatus:
        if not self.is_running():
            if not self.initialized:
                return PostgresStatus(running=False, cluster_state="not initialized")
            cd = self.controldata()
            return PostgresStatus(
                running=False,
                timeline=cd.timeline,
                cluster_state=cd.cluster_state,
                checkpoint_lsn=cd.checkpoint_lsn,
            )
        try:
            with self.connect() as conn:
                row = conn.execute(STATUS_SQL).fetchone()
        except (NotRunningError, psycopg.Error) as exc:
            return PostgresStatus(running=True, error=str(exc).strip())
        assert row is not None
        return status_from_row(row)

    def _write_check(self, conn: psycopg.Connection[DictRow]) -> None:
        """Commit a transaction that holds a transaction id (so it writes WAL).

        ``synchronous_commit = local``: this checks the server accepts writes, independent of
        whether a synchronous standby is connected.
        """
        conn.execute("SET synchronous_commit = local")
        row = conn.execute("SELECT current_setting('transaction_read_only') AS ro, txid_current() AS xid").fetchone()
        if row is None or row["ro"] != "off":
            raise PostgresError("the server is in read-only mode (default_transaction_read_only)")

    def writable(self) -> bool:
        """True when the server runs as primary and commits a write."""
        try:
            with self.connect() as conn:
                self._write_check(conn)
            return True
        except (PostgresError, psycopg.Error):
            return False

    def serving_problem(self) -> str | None:
        """Why this server does not serve as a primary now (None: it does): the postmaster
        runs, a new connection gets a query answered, the server is not in recovery and it
        commits a write. The caller bounds the time: a hung server never answers."""
        if not self.is_running():
            return "the postmaster is not running"
        try:
            with self.connect() as conn:
                row = conn.execute("SELECT pg_is_in_recovery() AS standby").fetchone()
                if row is not None and row["standby"]:
                    return "it runs as a standby (in recovery), not as the primary"
                self._write_check(conn)
        except NotRunningError as exc:
            return f"it refuses connections: {exc}"
        except (PostgresError, psycopg.Error) as exc:
            return f"a write failed: {str(exc).strip()}"
        return None

    def restart_primary(self, stop_timeout: int) -> Outcome:
        """Repair in place: stop what is left of the server (immediate: a failed server owes
        no checkpoint; crash recovery replays every committed write), kill a postmaster that
        does not stop in `stop_timeout` seconds (a hung one handles no signal but SIGKILL),
        then start as primary, waiting for crash recovery (start timeout)."""
        done = []
        if self.is_running():
            try:
                done.append(self.stop("immediate", timeout=stop_timeout).detail)
            except PostgresError:
                done.append(self._kill_postmaster())
        started = self.start_primary()
        return Outcome(True, "; ".join([*done, started.detail]))

    def _kill_postmaster(self, wait: float = 10.0) -> str:
        """SIGKILL the postmaster and its children, and wait until they are gone."""
        pid_file = self.config.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return "no postmaster.pid to kill"
        victims = [pid, *_children(pid)]
        for victim in victims:
            with suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + wait
        while any(_alive(v) for v in victims):
            if time.monotonic() >= deadline:
                raise PostgresError(
                    f"PostgreSQL of {self.config.node_name} (pid {pid}) did not "
                    f"die within {wait:g}s of SIGKILL; fence the node"
                )
            time.sleep(0.05)
        return f"killed the postmaster (pid {pid}) and {len(victims) - 1} children"

    # ----- helpers: files

    def _prepare_dirs(self) -> None:
        self._make_dir(self.config.data_dir, 0o700)
        self.write_passfile()

    def write_passfile(self) -> Outcome:
        """The passfile a standby's conninfo names (mode 0600, the OS user's), when the
        password is known; its walreceiver reads it at every (re)connection."""
        self._make_dir(self.config.run_dir, 0o755)
        if self.config.replication_password is None:
            return Outcome(False, "no replication password known")
        line = render_pgpass(self.config.replication_user, self.config.replication_password)
        changed = self._write(self.config.passfile, line)
        return Outcome(changed, f"{'wrote' if changed else 'kept'} {self.config.passfile}")

    def _render(self, conninfo: str | None, *, stopped: bool) -> bool:
        """Write the driver-owned files; True when any changed."""
        self._prepare_dirs()
        conf_dir = self.config.conf_dir
        conf = conf_dir / "postgresql.conf"
        try:
            main = conf.read_text()
        except FileNotFoundError:
            raise PostgresError(
                f"{conf} does not exist: if postgresql.conf lives elsewhere (Debian: "
                "/etc/postgresql/15/main), set spec.chain.postgres.configDirectory to its directory"
            ) from None
        changed = self._write(conf_dir / SETTINGS_FILE, render_settings(self.config, conninfo))
        changed |= self._write(conf_dir / "pg_hba.conf", render_hba(self.config))
        changed |= self._write(conf_dir / "pg_ident.conf", render_ident(self.config))
        changed |= self._write(conf, with_include(main), mode=conf.stat().st_mode & 0o777)
        auto = self.config.data_dir / "postgresql.auto.conf"
        if stopped and auto.exists():
            changed |= self._write(auto, scrub_auto_conf(auto.read_text()))
        return changed

    def _reload(self) -> None:
        with self.connect() as conn:
            conn.execute("SELECT pg_reload_conf()")

    def _start(self, role: Role) -> None:
        try:
            # -D names the configuration directory: pg_ctl finds the data directory from it.
            self._pg(
                "pg_ctl",
                "start",
                "-D",
                str(self.config.conf_dir),
                "-l",
                str(self.config.log_file),
                "-w",
                "-t",
                str(self.config.start_timeout),
                "-s",
                netns=True,
                timeout=self.config.start_timeout + 15,
            )
        except DriverError as exc:
            raise PostgresError(
                f"could not start PostgreSQL of {self.config.node_name} as {role} "
                f"({self.config.data_dir}): {exc}\nlast lines of {self.config.log_file}:\n"
                f"{self._log_tail()}\nfix the cause named in the log, then retry"
            ) from exc

    # ----- operations

    def init_primary(self) -> Outcome:
        """initdb if the data directory is empty, then `start_primary`."""
        created = False
        if not self.initialized:
            data = self.config.data_dir
            if data.exists() and any(data.iterdir()):
                raise PostgresError(
                    f"{data} is not empty but holds no PostgreSQL cluster (no PG_VERSION): "
                    "move its content away or point data_dir elsewhere"
                )
            self._prepare_dirs()
            self._pg(
                "initdb",
                "-D",
                str(data),
                "-U",
                self.config.superuser,
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--data-checksums",
                "--no-instructions",
                *self.config.initdb_args,
                timeout=300,
            )
            created = True
        started = self.start_primary()
        detail = f"initdb done; {started.detail}" if created else started.detail
        return Outcome(created or started.changed, detail)

    def start_primary(self) -> Outcome:
        """Start as a primary (no standby.signal) and make sure the replication user exists.

        Starting a stopped standby this way ends its recovery: that is a promotion, which
        only the Lease holder may do. On a running primary the driver-owned files are rewritten
        and reloaded; settings that need a restart (port, listen_addresses) apply at the next
        start.
        """
        self._require_initialized("start as primary")
        if self.is_running():
            st = self.status()
            if st.role == "standby":
                raise WrongRoleError(f"{self.config.node_name} is running as a standby: promote() it instead")
            reloaded = self._render(None, stopped=False)
            if reloaded:
                self._reload()
            changed = self._ensure_replication_user() or reloaded
            return Outcome(changed, "already running as primary" + (" (configuration reloaded)" if reloaded else ""))
        (self.config.data_dir / STANDBY_SIGNAL).unlink(missing_ok=True)
        (self.config.data_dir / "recovery.signal").unlink(missing_ok=True)
        self._render(None, stopped=True)
        self._start("primary")
        self._ensure_replication_user()
        return Outcome(True, f"started as primary on port {self.config.port}")

    def ensure_replication_user(self) -> Outcome:
        """On a running primary: the replication role as `start_primary` leaves it."""
        changed = self._ensure_replication_user()
        return Outcome(
            changed, f"replication user {self.config.replication_user} {'updated' if changed else 'as it should be'}"
        )

    def _ensure_replication_user(self) -> bool:
        """The replication role exists with LOGIN REPLICATION, the rights pg_rewind needs and,
        when the password is known, a SCRAM verifier of it; True when anything changed. The
        password is replaced only when the stored verifier does not match, and never reset."""
        user = self.config.replication_user
        password = self.config.replication_password
        changed = False
        with self.connect() as conn:
            # Re-applied at every start: it must not wait for a synchronous standby that is
            # not connected yet (that would block the bring-up that later drops it).
            conn.execute("SET synchronous_commit = local")
            row = conn.execute(
                "SELECT r.rolreplication AND r.rolcanlogin AS ok, a.rolpassword AS verifier"
                " FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname = %s",
                (user,),
            ).fetchone()
            if row is None:
                conn.execute(sql.SQL("CREATE ROLE {} WITH LOGIN REPLICATION").format(sql.Identifier(user)))
                changed = True
            elif not row["ok"]:
                conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN REPLICATION").format(sql.Identifier(user)))
                changed = True
            if password is not None and not verifier_matches(row["verifier"] if row else None, password):
                conn.execute(
                    sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                        sql.Identifier(user), sql.Literal(scram_verifier(password))
                    )
                )
                changed = True
            member = conn.execute(
                "SELECT NOT pg_has_role(%s, 'pg_checkpoint', 'MEMBER') AS missing"
                " FROM pg_roles WHERE rolname = 'pg_checkpoint'",
                (user,),
            ).fetchone()
            if member is not None and member["missing"]:  # PostgreSQL 15+: CHECKPOINT right
                conn.execute(sql.SQL("GRANT pg_checkpoint TO {}").format(sql.Identifier(user)))
                changed = True
            for signature in (
                "pg_catalog.pg_ls_dir(text, boolean, boolean)",
                "pg_catalog.pg_stat_file(text, boolean)",
                "pg_catalog.pg_read_binary_file(text)",
                "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
            ):
                granted = conn.execute(
                    "SELECT has_function_privilege(%s, %s, 'EXECUTE') AS ok", (user, signature)
                ).fetchone()
                if granted is None or not granted["ok"]:
                    conn.execute(
                        sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(signature), sql.Identifier(user))
                    )
                    changed = True
        return changed

    def clone_standby(self, primary_host: str, primary_port: int = 5432) -> Outcome:
        """pg_basebackup from the primary into an empty data directory (does not start it)."""
        if self.initialized:
            return Outcome(False, f"{self.config.data_dir} already holds a cluster")
        data = self.config.data_dir
        if data.exists() and any(data.iterdir()):
            raise PostgresError(f"{data} is not empty but holds no PostgreSQL cluster: empty it before cloning")
        self._prepare_dirs()
        conninfo = primary_conninfo(self.config, primary_host, primary_port)
        try:
            self._pg(
                "pg_basebackup",
                "-D",
                str(data),
                "-d",
                conninfo,
                "-X",
                "stream",
                "-c",
                "fast",
                "-w",
                netns=True,
                timeout=self.config.clone_timeout,
            )
        except CommandError as exc:
            raise self._source_error("clone", primary_host, primary_port, exc) from exc
        self._render(primary_conninfo(self.config, primary_host, primary_port), stopped=True)
        return Outcome(True, f"cloned from {primary_host}:{primary_port}")

    def start_standby(self, primary_host: str, primary_port: int = 5432) -> Outcome:
        """Start (or re-point) a standby that streams from `primary_host`:`primary_port`.

        A running standby is re-pointed by rewriting ``tandem.conf`` and reloading
        (``primary_conninfo`` is reloadable). A stopped former primary may be started this way
        only if it did not diverge (clean switchover); otherwise use `rewind_as_standby`.
        """
        self._require_initialized("start as standby")
        conninfo = primary_conninfo(self.config, primary_host, primary_port)
        where = f"{primary_host}:{primary_port}"
        if self.is_running():
            st = self.status()
            if st.role == "primary":
                raise WrongRoleError(
                    f"{self.config.node_name} is running as a primary: stop() it, then "
                    f"rewind_as_standby({primary_host!r}, {primary_port})"
                )
            if self._render(conninfo, stopped=False):
                self._reload()
                return Outcome(True, f"standby now follows {where} (configuration reloaded)")
            return Outcome(False, f"already a standby of {where}")
        self._render(conninfo, stopped=True)
        self._write(self.config.data_dir / STANDBY_SIGNAL, "")
        self._start("standby")
        return Outcome(True, f"started as standby of {where}")

    def promote(self, timeout: float = 30.0) -> Outcome:
        """Promote a standby and wait until it is out of recovery and commits a write."""
        deadline = time.monotonic() + timeout
        if not self.is_running():
            raise NotRunningError(
                f"cannot promote {self.config.node_name}: PostgreSQL is not running; start it "
                "with start_standby(host, port) first (or start_primary() if it was the primary)"
            )
        with self.connect() as conn:
            row = conn.execute("SELECT pg_is_in_recovery() AS r").fetchone()
            if row is not None and not row["r"]:
                self._wait_writable(conn, deadline)
                return Outcome(False, "already primary")
            started = time.monotonic()
            proc = self._pg("pg_ctl", "promote", "-D", str(self.config.data_dir), "-W", check=False)
            if proc.returncode != 0 and "not in standby mode" not in proc.stderr:
                raise PostgresError(f"pg_ctl promote failed on {self.config.node_name}: {proc.stderr.strip()}")
            self._wait_writable(conn, deadline)
            tli = conn.execute("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) AS t").fetchone()
        timeline = int(tli["t"], 16) if tli else None
        return Outcome(True, f"promoted to primary on timeline {timeline} in {time.monotonic() - started:.2f}s")

    def _wait_writable(self, conn: psycopg.Connection[DictRow], deadline: float) -> None:
        last = "still in recovery"
        while True:
            try:
                row = conn.execute("SELECT pg_is_in_recovery() AS r").fetchone()
                if row is not None and not row["r"]:
                    self._write_check(conn)
                    return
            except (psycopg.Error, PostgresError) as exc:
                if conn.closed:
                    raise NotRunningError(
                        f"lost the connection to {self.config.node_name} while waiting for "
                        f"promotion: {exc}; check its log {self.config.log_file}"
                    ) from exc
                last = str(exc).strip()
            if time.monotonic() >= deadline:
                raise PostgresError(
                    f"{self.config.node_name} did not become writable in time ({last}); "
                    f"check {self.config.log_file} and retry promote() with a longer timeout"
                )
            time.sleep(0.01)

    def stop(self, mode: StopMode = "fast", timeout: int = 60) -> Outcome:
        """Stop the server. smart/fast end with a shutdown checkpoint and, on a primary, wait
        until connected standbys have received all WAL; immediate does neither (crash-like).
        """
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"mode must be smart, fast or immediate, got {mode!r}")
        if not self.is_running():
            state = self.controldata().cluster_state if self.initialized else "not initialized"
            return Outcome(False, f"already stopped ({state})")
        try:
            self._pg(
                "pg_ctl",
                "stop",
                "-D",
                str(self.config.data_dir),
                "-m",
                mode,
                "-w",
                "-t",
                str(timeout),
                "-s",
                timeout=timeout + 15,
            )
        except DriverError as exc:
            raise PostgresError(
                f"could not stop PostgreSQL of {self.config.node_name} within {timeout}s "
                f"({exc}); retry with mode='immediate' or fence the node"
            ) from exc
        cd = self.controldata()
        return Outcome(
            True,
            f"stopped ({mode}): {cd.cluster_state}, last checkpoint {cd.checkpoint_lsn} on timeline {cd.timeline}",
        )

    def rewind_as_standby(self, primary_host: str, primary_port: int = 5432, timeout: float = 600.0) -> Outcome:
        """Make a former primary follow `primary_host`: stop, pg_rewind, start as standby.

        A no-op when the server already streams from that primary. Otherwise the source gets
        a CHECKPOINT first (see `_checkpoint_source`), which also proves it reachable: an
        unreachable source leaves a running server here running.
        """
        self._require_initialized("rewind")
        where = f"{primary_host}:{primary_port}"
        if self.is_running():
            st = self.status()
            if st.role == "standby" and st.receiving and st.upstream == where:
                return Outcome(False, f"already streaming from {where}")
        self._checkpoint_source(primary_host, primary_port, timeout)
        if self.is_running():
            self.stop("fast")
        self._prepare_dirs()
        source = make_conninfo(primary_conninfo(self.config, primary_host, primary_port), dbname="postgres")
        # pg_rewind may start the target in single-user mode (crash recovery): it needs the
        # configuration file when that is not in the data directory (PostgreSQL 15+).
        config_file = ("--config-file", str(self.config.conf_dir / "postgresql.conf")) if self.config.config_dir else ()
        try:
            proc = self._pg(
                "pg_rewind",
                "--target-pgdata",
                str(self.config.data_dir),
                *config_file,
                "--source-server",
                source,
                netns=True,
                timeout=timeout,
            )
        except CommandError as exc:
            error = self._source_error("rewind", primary_host, primary_port, exc)
            if isinstance(error, SourceUnreachableError | SourceRefusedError):
                raise error from exc
            return self._reclone(primary_host, primary_port, error)
        summary = "no rewind required" if "no rewind required" in (proc.stdout + proc.stderr) else "rewound"
        self.start_standby(primary_host, primary_port)
        return Outcome(True, f"{summary} from {where}; started as standby")

    def _reclone(self, primary_host: str, primary_port: int, why: PostgresError) -> Outcome:
        """Replace a data directory pg_rewind could not use with a fresh clone (see the module
        docstring), keeping the old one as ``<data>.failed-rewind``."""
        data = self.config.data_dir
        aside = data.with_name(f"{data.name}.failed-rewind")
        if aside.exists():
            shutil.rmtree(aside)
        data.rename(aside)
        cloned = self.clone_standby(primary_host, primary_port)
        self.start_standby(primary_host, primary_port)
        return Outcome(
            True, f"{why}; {cloned.detail} instead, the old data directory kept as {aside}; started as standby"
        )

    def _checkpoint_source(self, host: str, port: int, timeout: float) -> None:
        """CHECKPOINT on the rewind source, from this node's namespace, as the replication user,
        once it is a primary.

        pg_rewind takes the source's timeline from its control file, which a freshly promoted
        server updates only at its next checkpoint; before that pg_rewind sees "the same
        timeline" and wrongly reports "no rewind required". A source still in recovery (the new
        Lease holder has not promoted yet) is refused for the same reason: this node would
        start as its standby on the old timeline with WAL the promotion then forks off, and
        never stream again. This also probes that the source is reachable before anything is
        stopped here.
        """
        source = make_conninfo(primary_conninfo(self.config, host, port), dbname="postgres")
        try:
            proc = self._pg(
                "psql",
                "-X",
                "-w",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                source,
                "-c",
                "SELECT pg_is_in_recovery()",
                "-c",
                "CHECKPOINT",
                netns=True,
                timeout=timeout,
            )
        except CommandError as exc:
            if "permission denied" in exc.stderr or "must be superuser" in exc.stderr:
                raise PostgresError(
                    f"cannot rewind {self.config.node_name}: {host}:{port} refuses CHECKPOINT "
                    f"to {self.config.replication_user} ({exc.stderr}); run start_primary() "
                    "there (it grants pg_checkpoint) or GRANT pg_checkpoint TO "
                    f"{self.config.replication_user}, then retry"
                ) from exc
            raise self._source_error("rewind", host, port, exc) from exc
        if proc.stdout.split()[:1] == ["t"]:
            raise SourceNotPrimaryError(
                f"cannot rewind {self.config.node_name} from {host}:{port} yet: it is still in "
                "recovery (the new primary has not promoted); following it now could leave this "
                "node on the old timeline for good. Retry once it is primary (the data directory "
                "was not modified)"
            )

    def _source_error(self, what: str, host: str, port: int, exc: CommandError) -> PostgresError:
        where = f"{host}:{port}"
        text = exc.stderr
        netns = f"network namespace {self.config.netns}" if self.config.netns else "this host"
        refused = ("password authentication failed", "no password supplied", "no pg_hba.conf entry")
        if any(phrase in text for phrase in refused):
            return SourceRefusedError(
                f"cannot {what} {self.config.node_name}: the primary {where} refused the "
                f"replication user {self.config.replication_user} ({text}); both nodes must use "
                "the same password (spec.chain.postgres.credentialsSecret) and this node's "
                "spec.nodes[].replicationAddress must be the address it connects from (the data "
                "directory was not modified)"
            )
        if "could not connect" in text or "connection to server" in text:
            return SourceUnreachableError(
                f"cannot {what} {self.config.node_name}: the primary {where} is unreachable "
                f"from {netns} ({text}); check that it runs and that the replication link is "
                "up, then retry (the data directory was not modified)"
            )
        return PostgresError(f"{what} of {self.config.node_name} from {where} failed: {exc}")

    def set_synchronous_standbys(
        self,
        names: Sequence[str],
        num_sync: int = 1,
        method: SyncMethod = "ANY",
        timeout: float = 10.0,
    ) -> Outcome:
        """Set ``synchronous_standby_names`` (ALTER SYSTEM + reload); empty `names`: async.

        While it names standbys and none of them is connected, commits on the primary wait.
        """
        value = sync_standby_names(names, num_sync, method)
        if not self.is_running():
            raise NotRunningError(
                f"cannot set synchronous standbys on {self.config.node_name}: not running; start it first"
            )
        with self.connect() as conn:
            current = conn.execute("SELECT current_setting('synchronous_standby_names') AS v").fetchone()
            if current is not None and current["v"] == value:
                return Outcome(False, f"synchronous_standby_names already {value!r}")
            conn.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(sql.Literal(value)))
            conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + timeout
        while True:
            with self.connect() as conn:
                row = conn.execute("SELECT current_setting('synchronous_standby_names') AS v").fetchone()
            if row is not None and row["v"] == value:
                return Outcome(True, f"synchronous_standby_names = {value!r}")
            if time.monotonic() >= deadline:
                raise PostgresError(
                    f"synchronous_standby_names was written but not applied within {timeout}s; "
                    f"check {self.config.log_file}"
                )
            time.sleep(0.02)


__all__ = [
    "ClientRule",
    "ControlData",
    "NotInitializedError",
    "NotRunningError",
    "Postgres",
    "PostgresConfig",
    "PostgresError",
    "PostgresStatus",
    "SourceNotPrimaryError",
    "SourceRefusedError",
    "SourceUnreachableError",
    "WrongRoleError",
    "format_lsn",
    "parse_controldata",
    "parse_lsn",
    "password_problem",
    "primary_conninfo",
    "quote_setting",
    "render_hba",
    "render_ident",
    "render_pgpass",
    "render_settings",
    "reported_lag",
    "scram_verifier",
    "scrub_auto_conf",
    "status_from_row",
    "sync_standby_names",
    "verifier_matches",
    "with_include",
]
