"""DRBD: the agent's hands on DRBD 9, through the real `drbdadm` (Debian's drbd-utils).

``render_resource`` turns a ``DRBDVolumeSpec`` into ``<name>.res`` (data nodes, the optional
diskless tiebreaker, quorum and split-brain policies); ``Drbd.apply_config`` validates it with
``drbdadm dump`` before it replaces the file. The renderer checks every value again with the
API's own rules (``spec_problems``) and writes every string double-quoted and escaped
(``drbd_quote``), so no value can add a section such as ``handlers``, whose commands drbdadm
runs as root. ``Drbd`` runs ``drbdadm`` with ``-c`` pointing
at a top-level file that includes the managed directory, with ``__DRBD_NODE__`` set to the
node name (drbdadm matches it against the ``on <host>`` sections instead of ``uname -n``),
optionally inside a network namespace and with ``--drbdsetup=``/``--drbdmeta=`` replacements
(the lab's kernel stand-in).

Every operation is idempotent and decided from ``drbdsetup status <res> --json`` first:
``primary()`` on a Primary changes nothing. ``primary(force=True)`` is the only way to pass
``--force`` and must be asked for explicitly. When DRBD refuses a state change the driver
raises a ``DrbdRefused`` (``PeerIsPrimary``, ``NoUpToDateData``, ``NoQuorum``, ...) that carries
DRBD's own code and reason text, e.g. ``(-1) Multiple primaries not allowed by config``.

The JSON parsed by ``parse_status`` is the one drbd-utils' drbdsetup prints
(``resource_status_json()``/``connection_status_json()``/``peer_device_status_json()`` in
drbdsetup.c): ``out-of-sync`` is in KiB, ``percent-resync-done`` only appears while a resync
runs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.api.common import DNS_LABEL, DNS_SUBDOMAIN, path_problem, pattern_problem
from tandem.api.drbdvolume import RESOURCE_NAME_RE, DRBDNodeStatus, DRBDVolumeSpec

from .base import CommandError, DriverError, Outcome, run

TOP_CONFIG = "tandem-drbd.conf"
NO_SUCH_RESOURCE = "No such resource"
NO_METADATA = "No valid meta data found"

# drbdadm's scanner reads a double-quoted string of at most this many characters, in which a
# backslash makes the next character literal; nothing escapes a line break (drbd-utils'
# drbdadm_scanner.fl, confirmed with `drbdadm dump`).
MAX_DRBD_STRING = 255

# drbd_state_rv codes (drbd-headers linux/drbd.h) that callers act on.
SS_TWO_PRIMARIES = -1
SS_NO_UP_TO_DATE_DISK = -2
SS_NO_QUORUM = -25


# --------------------------------------------------------------------------------------------
# Errors


class DrbdConfigInvalid(DriverError):
    """`drbdadm dump` rejected a rendered resource file; nothing was written."""

    def __init__(self, resource: str, output: str) -> None:
        self.resource = resource
        self.output = output
        super().__init__(f"drbdadm rejects the configuration of {resource}: {output}")


class DrbdSpecInvalid(DriverError):
    """A DRBDVolume holds a value the API server should have refused; nothing was written."""

    def __init__(self, resource: str, problems: Sequence[str]) -> None:
        self.resource = resource
        self.problems = tuple(problems)
        super().__init__(f"DRBDVolume of resource {resource!r} is not rendered: {'; '.join(problems)}")


class DrbdRefused(DriverError):
    """DRBD refused a request; `reason` is DRBD's text, `code` its state-change/return code.

    `kind` is one of "peer-primary", "no-uptodate-data", "no-quorum" (subclasses exist for
    those), "state-change" (another refused state change) or "failure" (a configuration
    request failed, e.g. an unknown resource).
    """

    kind = "state-change"

    def __init__(
        self, resource: str, code: int, reason: str, *, info: str = "", command: Sequence[str] = (), returncode: int = 0
    ) -> None:
        self.resource = resource
        self.code = code
        self.reason = reason
        self.info = info
        self.command = list(command)
        self.returncode = returncode
        extra = f" ({info})" if info else ""
        super().__init__(f"DRBD refused {' '.join(command)} for {resource}: ({code}) {reason}{extra}")


class PeerIsPrimary(DrbdRefused):
    """A connected peer is Primary: DRBD allows one Primary (SS_TWO_PRIMARIES)."""

    kind = "peer-primary"


class NoUpToDateData(DrbdRefused):
    """The local data is Inconsistent/Outdated (or absent) and no UpToDate data is reachable."""

    kind = "no-uptodate-data"


class NoQuorum(DrbdRefused):
    """The node is not part of a quorate partition (quorum majority/all)."""

    kind = "no-quorum"


class DrbdFailure(DrbdRefused):
    """A configuration request failed (`Failure: (NNN) ...`, drbd_ret_code)."""

    kind = "failure"


_REFUSALS: dict[int, type[DrbdRefused]] = {
    SS_TWO_PRIMARIES: PeerIsPrimary,
    SS_NO_UP_TO_DATE_DISK: NoUpToDateData,
    SS_NO_QUORUM: NoQuorum,
}
_STATE_CHANGE = re.compile(r"^(?P<obj>\S+): State change failed: \((?P<code>-?\d+)\) ?(?P<reason>.*)$")
_FAILURE = re.compile(r"^(?P<obj>\S+): Failure: \((?P<code>\d+)\) (?P<reason>.*)$")
_NOISE = ("found __DRBD_NODE__", "PRETENDING that I am", "modinfo: not found")


def clean_output(text: str) -> str:
    """drbdadm's output without the lines it adds for __DRBD_NODE__ and a missing modinfo."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not any(n in ln for n in _NOISE)]
    return "\n".join(lines)


def parse_refusal(stderr: str, command: Sequence[str], returncode: int, resource: str) -> DrbdRefused | None:
    """The typed refusal in drbdsetup's error output (`print_config_error()`), if any."""
    lines = clean_output(stderr).splitlines()
    for i, line in enumerate(lines):
        match = _STATE_CHANGE.match(line.strip())
        if match:
            code = int(match["code"])
            info_lines: list[str] = []
            if i + 1 < len(lines) and lines[i + 1].strip() == "additional info from kernel:":
                for extra in lines[i + 2 :]:
                    if extra.startswith("Command '"):
                        break
                    info_lines.append(extra.strip())
            cls = _REFUSALS.get(code, DrbdRefused)
            return cls(
                resource,
                code,
                match["reason"].strip(),
                info="; ".join(info_lines),
                command=command,
                returncode=returncode,
            )
        match = _FAILURE.match(line.strip())
        if match:
            return DrbdFailure(
                resource, int(match["code"]), match["reason"].strip(), command=command, returncode=returncode
            )
    return None


# --------------------------------------------------------------------------------------------
# Status


@dataclass(frozen=True)
class PeerStatus:
    """One connection of a resource as `drbdsetup status --json` reports it (volume 0)."""

    name: str
    node_id: int
    connection_state: str
    role: str
    disk_state: str
    replication_state: str
    out_of_sync_bytes: int
    resync_percent: float | None
    client: bool

    @property
    def connected(self) -> bool:
        return self.connection_state == "Connected"


@dataclass(frozen=True)
class ResourceStatus:
    """The local view of one resource: role, volume 0's disk, quorum, every peer."""

    name: str
    node_id: int
    role: str
    suspended: bool
    disk_state: str
    client: bool
    quorum: bool | None
    peers: tuple[PeerStatus, ...]

    def peer(self, name: str) -> PeerStatus | None:
        return next((p for p in self.peers if p.name == name), None)

    @property
    def data_peers(self) -> tuple[PeerStatus, ...]:
        """Peers that hold data (not the diskless tiebreaker)."""
        return tuple(p for p in self.peers if not p.client)

    @property
    def out_of_sync_bytes(self) -> int:
        return max((p.out_of_sync_bytes for p in self.peers), default=0)

    def to_api(self, node_name: str, peer: str | None = None) -> DRBDNodeStatus:
        """The API's per-node status, with the (first, or named) data peer's view."""
        other = self.peer(peer) if peer else next(iter(self.data_peers), None)
        percent = None if other is None or other.resync_percent is None else int(other.resync_percent)
        return _node_status(
            name=node_name,
            role=self.role,
            disk_state=self.disk_state,
            connection_state=other.connection_state if other else "StandAlone",
            peer_role=other.role if other else "Unknown",
            peer_disk_state=other.disk_state if other else "DUnknown",
            replication_state=other.replication_state if other else "Off",
            out_of_sync_bytes=other.out_of_sync_bytes if other else 0,
            resync_percent=percent,
            quorum=self.quorum,
        )


_ROLES = {"Primary", "Secondary", "Unknown"}
_DISKS = {
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
}
_CONNS = {
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
}
_REPLS = {
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
}


def _node_status(**fields: Any) -> DRBDNodeStatus:
    """Build the API model; a state name it does not know becomes its 'unknown' value."""
    for key, allowed, fallback in (
        ("role", _ROLES, "Unknown"),
        ("peer_role", _ROLES, "Unknown"),
        ("disk_state", _DISKS, "DUnknown"),
        ("peer_disk_state", _DISKS, "DUnknown"),
        ("connection_state", _CONNS, "StandAlone"),
        ("replication_state", _REPLS, "Off"),
    ):
        if fields[key] not in allowed:
            fields[key] = fallback
    if fields["resync_percent"] is not None:
        fields["resync_percent"] = max(0, min(100, fields["resync_percent"]))
    return DRBDNodeStatus.model_validate(fields)


def _peer_status(conn: Mapping[str, Any]) -> PeerStatus:
    devices = conn.get("peer_devices") or []
    dev: Mapping[str, Any] = next((d for d in devices if d.get("volume") == 0), devices[0] if devices else {})
    percent: float | None = None
    if "percent-resync-done" in dev:
        percent = float(dev["percent-resync-done"])
    elif dev.get("replication-state") in ("SyncSource", "SyncTarget") and "percent-in-sync" in dev:
        percent = float(dev["percent-in-sync"])
    return PeerStatus(
        name=str(conn.get("name", "")),
        node_id=int(conn.get("peer-node-id", -1)),
        connection_state=str(conn.get("connection-state", "StandAlone")),
        role=str(conn.get("peer-role", "Unknown")),
        disk_state=str(dev.get("peer-disk-state", "DUnknown")),
        replication_state=str(dev.get("replication-state", "Off")),
        out_of_sync_bytes=int(dev.get("out-of-sync", 0)) * 1024,
        resync_percent=percent,
        client=bool(dev.get("peer-client", False)),
    )


def parse_status(text: str) -> list[ResourceStatus]:
    """Parse `drbdsetup status --json` (a list of resources; volume 0 of each)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DriverError(f"drbdsetup status --json printed something that is not JSON: {exc}") from exc
    if not isinstance(doc, list):
        raise DriverError("drbdsetup status --json: expected a list of resources")
    out: list[ResourceStatus] = []
    for res in doc:
        devices = res.get("devices") or []
        dev: Mapping[str, Any] = next((d for d in devices if d.get("volume") == 0), devices[0] if devices else {})
        quorum = dev.get("quorum")
        out.append(
            ResourceStatus(
                name=str(res["name"]),
                node_id=int(res.get("node-id", -1)),
                role=str(res.get("role", "Unknown")),
                suspended=bool(res.get("suspended", False)),
                disk_state=str(dev.get("disk-state", "Diskless")),
                client=bool(dev.get("client", False)),
                quorum=None if quorum is None else bool(quorum),
                peers=tuple(_peer_status(c) for c in res.get("connections") or []),
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Rendering


def drbd_quote(value: str) -> str:
    """`value` as a drbd.conf string that drbdadm reads back as exactly `value`.

    Raises ValueError for what no escape can carry: a control character (a line break ends
    the string), any non-ASCII character (drbdadm's scanner reads bytes: a multi-byte
    character such as U+2028 is not one character to it, and the 255-character limit is in
    bytes), or a string longer than drbdadm reads."""
    if any(not " " <= c <= "~" for c in value):
        raise ValueError(
            f"{value!r} holds a line break, a control or a non-ASCII character, which a DRBD configuration cannot carry"
        )
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if len(escaped) > MAX_DRBD_STRING:
        raise ValueError(f"{value[:40]!r}... is longer than the {MAX_DRBD_STRING} characters drbdadm reads")
    return f'"{escaped}"'


def _ip_problem(address: str) -> str | None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IPv4 or IPv6 address such as 198.18.0.10"
    return None


def spec_problems(spec: DRBDVolumeSpec) -> list[str]:
    """The values the API server should have refused, each with its field: checked again here
    because a volume stored before a rule existed never went through it."""
    found = [
        ("spec.cluster", pattern_problem(spec.cluster, DNS_LABEL, "an object name")),
        ("spec.resourceName", pattern_problem(spec.resource_name, RESOURCE_NAME_RE, "a DRBD resource name")),
    ]
    hosts = [(f"spec.nodes[{i}]", n.name, n.address) for i, n in enumerate(spec.nodes)]
    if spec.tiebreaker is not None:
        hosts.append(("spec.tiebreaker", spec.tiebreaker.name, spec.tiebreaker.address))
    for field, name, address in hosts:
        found += [
            (f"{field}.name", pattern_problem(name, DNS_SUBDOMAIN, "a Kubernetes Node name")),
            (f"{field}.address", _ip_problem(address)),
        ]
    found += [(f"spec.nodes[{i}].disk", path_problem(n.disk)) for i, n in enumerate(spec.nodes)]
    return [f"{field}: {problem}" for field, problem in found if problem]


def _address(address: str, port: int) -> str:
    return f"ipv6 [{address}]:{port}" if ":" in address else f"ipv4 {address}:{port}"


def render_resource(spec: DRBDVolumeSpec) -> str:
    """`/etc/drbd.d/<resourceName>.res` for a DRBDVolume: data nodes, tiebreaker, quorum, policies.

    Raises DrbdSpecInvalid, naming each bad field, instead of rendering a value the API's
    rules refuse."""
    if problems := spec_problems(spec):
        raise DrbdSpecInvalid(spec.resource_name, problems)
    sb = spec.split_brain
    lines = [
        f"# Rendered by tandem from DRBDVolume of HACluster {spec.cluster}; do not edit.",
        f"resource {drbd_quote(spec.resource_name)} {{",
        "  options {",
        f"    quorum {spec.quorum.mode};",
        f"    on-no-quorum {spec.quorum.on_no_quorum};",
        "  }",
        "  net {",
        f"    protocol {spec.protocol};",
        f"    after-sb-0pri {sb.after_sb_0pri};",
        f"    after-sb-1pri {sb.after_sb_1pri};",
        f"    after-sb-2pri {sb.after_sb_2pri};",
        "  }",
    ]
    hosts = []
    for node in spec.nodes:
        hosts.append(node.name)
        lines += [
            f"  on {drbd_quote(node.name)} {{",
            f"    node-id {node.node_id};",
            f"    device /dev/drbd{spec.minor} minor {spec.minor};",
            f"    disk {drbd_quote(node.disk)};",
            "    meta-disk internal;",
            f"    address {_address(node.address, spec.port)};",
            "  }",
        ]
    if spec.tiebreaker is not None:
        tb = spec.tiebreaker
        hosts.append(tb.name)
        lines += [
            f"  on {drbd_quote(tb.name)} {{",
            f"    node-id {tb.node_id};",
            f"    device /dev/drbd{spec.minor} minor {spec.minor};",
            "    disk none;",
            f"    address {_address(tb.address, spec.port)};",
            "  }",
        ]
    lines += ["  connection-mesh {", "    hosts " + " ".join(map(drbd_quote, hosts)) + ";", "  }", "}", ""]
    return "\n".join(lines)


def render_top_config(resource_dir: str | Path) -> str:
    """The file given to `drbdadm -c`: includes every managed resource file."""
    return (
        "# Rendered by tandem: the DRBD resources it manages on this node.\n"
        "global {\n  usage-count no;\n}\n"
        f"include {drbd_quote(f'{Path(resource_dir)}/*.res')};\n"
    )


# --------------------------------------------------------------------------------------------
# The driver


class Drbd:
    """DRBD through drbdadm; one instance per node (and network namespace in the lab)."""

    def __init__(
        self,
        config_dir: str | Path = "/etc/drbd.d",
        *,
        node_name: str | None = None,
        netns: str | None = None,
        drbdadm: str = "drbdadm",
        drbdsetup: str | Path | None = None,
        drbdmeta: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.config_dir = Path(config_dir)
        self.config_file = self.config_dir / TOP_CONFIG
        self.node_name = node_name
        self.netns = netns
        self.drbdadm = drbdadm
        self.drbdsetup = str(drbdsetup) if drbdsetup is not None else None
        self.drbdmeta = str(drbdmeta) if drbdmeta is not None else None
        self.extra_env = dict(env or {})
        self.timeout = timeout

    # ----- plumbing

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        if self.node_name:
            env["__DRBD_NODE__"] = self.node_name
        return env

    def _adm_argv(self, args: Sequence[str], config_file: Path | None = None) -> list[str]:
        argv = [self.drbdadm, "-c", str(config_file or self.config_file)]
        if self.drbdsetup:
            argv.append(f"--drbdsetup={self.drbdsetup}")
        if self.drbdmeta:
            argv.append(f"--drbdmeta={self.drbdmeta}")
        return argv + list(args)

    def _adm(self, resource: str, args: Sequence[str], *, config_file: Path | None = None) -> str:
        """Run drbdadm; DRBD's refusals become DrbdRefused, other failures CommandError."""
        argv = self._adm_argv(args, config_file)
        proc = run(argv, netns=self.netns, env=self._env(), timeout=self.timeout, check=False)
        if proc.returncode != 0:
            refusal = parse_refusal(proc.stderr, args, proc.returncode, resource)
            if refusal is not None:
                raise refusal
            raise CommandError(argv, proc.returncode, clean_output(proc.stderr or proc.stdout))
        return proc.stdout

    # ----- configuration

    def resource_file(self, name: str) -> Path:
        return self.config_dir / f"{name}.res"

    def validate(self, text: str, name: str) -> str:
        """Check a resource file with the real `drbdadm dump`; returns drbdadm's normalized dump."""
        with tempfile.TemporaryDirectory(prefix="tandem-drbd-") as tmp:
            res_dir = Path(tmp) / "drbd.d"
            res_dir.mkdir()
            (res_dir / f"{name}.res").write_text(text)
            top = Path(tmp) / "drbd.conf"
            top.write_text(render_top_config(res_dir))
            argv = [self.drbdadm, "-c", str(top), "dump", name]
            proc = run(argv, netns=self.netns, env=self._env(), timeout=self.timeout, check=False)
            if proc.returncode != 0:
                message = clean_output(proc.stderr or proc.stdout).replace(str(res_dir) + "/", "")
                raise DrbdConfigInvalid(name, message or f"drbdadm dump exited {proc.returncode}")
            return proc.stdout

    def apply_config(self, spec: DRBDVolumeSpec) -> Outcome:
        """Render, validate and (atomically) write `<resourceName>.res` and the top-level file."""
        name = spec.resource_name
        text = render_resource(spec)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        top = render_top_config(self.config_dir)
        top_changed = not self.config_file.exists() or self.config_file.read_text() != top
        path = self.resource_file(name)
        if path.exists() and path.read_text() == text and not top_changed:
            return Outcome(False, f"{path} is up to date")
        self.validate(text, name)
        for target, content in ((self.config_file, top), (path, text)):
            if target.exists() and target.read_text() == content:
                continue
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(content)
            os.replace(tmp, target)
        return Outcome(True, f"wrote {path}")

    # ----- status

    def status(self, name: str) -> ResourceStatus | None:
        """The resource's state from `drbdsetup status <name> --json`; None when it is not up."""
        argv = [self.drbdsetup or "drbdsetup", "status", name, "--json"]
        proc = run(argv, netns=self.netns, env=self._env(), timeout=self.timeout, check=False)
        if proc.returncode != 0:
            if NO_SUCH_RESOURCE in proc.stderr:
                return None
            raise CommandError(argv, proc.returncode, proc.stderr)
        return next((r for r in parse_status(proc.stdout) if r.name == name), None)

    def _require(self, name: str) -> ResourceStatus:
        st = self.status(name)
        if st is None:
            raise DriverError(f"DRBD resource {name} is not up on this node: run up() first")
        return st

    # ----- lifecycle

    def create_md(self, name: str) -> Outcome:
        """Initialize DRBD metadata on the backing disk unless valid metadata is there already.

        A node whose disk is `none` (the tiebreaker) and a resource that is up need nothing.
        """
        if self.status(name) is not None:
            return Outcome(False, f"{name} is up: its metadata exists")
        dump = self._adm(name, ["dump", name])
        if self._local_disk_none(dump):
            return Outcome(False, f"{name}: this node is diskless")
        proc = run(
            self._adm_argv(["dump-md", name]), netns=self.netns, env=self._env(), timeout=self.timeout, check=False
        )
        if proc.returncode == 0:
            return Outcome(False, f"{name}: valid metadata found")
        if NO_METADATA not in proc.stderr:
            raise CommandError(self._adm_argv(["dump-md", name]), proc.returncode, clean_output(proc.stderr))
        self._adm(name, ["create-md", "--force", name])
        return Outcome(True, f"{name}: created metadata")

    def _local_disk_none(self, dump: str) -> bool:
        node = self.node_name or os.uname().nodename
        section = re.search(r"\bon\s+\"?" + re.escape(node) + r"\"?\s*\{(?P<body>[^}]*)\}", dump)
        return bool(section and re.search(r"\bdisk\s+none\s*;", section["body"]))

    def up(self, name: str) -> Outcome:
        if self.status(name) is not None:
            return Outcome(False, f"{name} is already up")
        self._adm(name, ["up", name])
        return Outcome(True, f"{name} is up")

    def down(self, name: str) -> Outcome:
        if self.status(name) is None:
            return Outcome(False, f"{name} is already down")
        self._adm(name, ["down", name])
        return Outcome(True, f"{name} is down")

    def primary(self, name: str, *, force: bool = False) -> Outcome:
        """Promote. `force=True` (only when asked explicitly) overrides Inconsistent/Outdated data.

        Raises PeerIsPrimary, NoUpToDateData, NoQuorum (or another DrbdRefused) with DRBD's reason.
        """
        if force is not True and force is not False:
            raise TypeError(f"force must be True or False, not {force!r}")
        if bad := pattern_problem(name, RESOURCE_NAME_RE, "a DRBD resource name"):
            raise DriverError(bad)
        st = self._require(name)
        if st.role == "Primary":
            return Outcome(False, f"{name} is already Primary")
        self._adm(name, ["primary", "--force", name] if force else ["primary", name])
        return Outcome(True, f"{name}: {st.role} -> Primary" + (" (forced)" if force else ""))

    def secondary(self, name: str) -> Outcome:
        st = self._require(name)
        if st.role == "Secondary":
            return Outcome(False, f"{name} is already Secondary")
        self._adm(name, ["secondary", name])
        return Outcome(True, f"{name}: Primary -> Secondary")

    def skip_initial_sync(self, name: str) -> Outcome:
        """`drbdadm new-current-uuid --clear-bitmap`: declare fresh, connected disks identical.

        Only for brand-new resources whose backing disks hold the same (e.g. zeroed) data; DRBD
        refuses otherwise. Changes nothing when the local data is already UpToDate.
        """
        st = self._require(name)
        if st.disk_state == "UpToDate":
            return Outcome(False, f"{name} is already UpToDate")
        self._adm(name, ["new-current-uuid", "--clear-bitmap", name])
        return Outcome(True, f"{name}: initial resync skipped")

    def connect(self, name: str, peer: str | None = None, *, discard_my_data: bool = False) -> Outcome:
        """Connect every StandAlone connection (or the one to `peer`).

        `discard_my_data=True` marks this node as the split-brain victim for the connection.
        """
        st = self._require(name)
        todo = [p.name for p in st.peers if p.connection_state == "StandAlone" and peer in (None, p.name)]
        if peer is not None and st.peer(peer) is None:
            raise DriverError(f"{name} has no peer {peer}")
        if not todo:
            return Outcome(False, f"{name}: no StandAlone connection")
        for other in todo:
            args = ["connect"] + (["--discard-my-data"] if discard_my_data else []) + [f"{name}:{other}"]
            self._adm(name, args)
        return Outcome(True, f"{name}: connecting to {', '.join(todo)}")

    def disconnect(self, name: str, peer: str | None = None) -> Outcome:
        """Disconnect gracefully from every peer (or `peer`): those connections go StandAlone."""
        st = self._require(name)
        if peer is not None and st.peer(peer) is None:
            raise DriverError(f"{name} has no peer {peer}")
        todo = [p.name for p in st.peers if p.connection_state != "StandAlone" and peer in (None, p.name)]
        if not todo:
            return Outcome(False, f"{name}: already StandAlone")
        for other in todo:
            self._adm(name, ["disconnect", f"{name}:{other}"])
        return Outcome(True, f"{name}: disconnected from {', '.join(todo)}")
