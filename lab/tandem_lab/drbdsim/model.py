"""The pure DRBD 9 state machine of the stand-in: no sockets, no clocks, no files.

Everything the "kernel" daemon decides is decided here, from explicit inputs (the time and a
random generator are parameters), so that it can be unit-tested without a network:

- roles, disk states, connection and replication states (DRBD 9 user's guide, "Checking DRBD
  status": s-roles, s-disk-states, s-connection-states, s-replication-states);
- refusals of state changes, in the order of `__is_valid_soft_transition()` in DRBD's
  drbd_state.c, with DRBD's codes and texts (drbd-headers drbd_strings.c) and drbdsetup's exit
  codes (`print_config_error()` in drbd-utils drbdsetup.c);
- generation identifiers and the connect-time decision: no sync, resync direction, full or
  bitmap-based, split brain, unrelated data (user's guide, "Generation identifiers", s-gi);
- the automatic split-brain recovery policies (user's guide, s-split-brain-notification-and-
  recovery and s-automatic-split-brain-recovery-configuration; `drbd_asb_recover_0p()`);
- quorum with a diskless tiebreaker (user's guide, s-configuring-quorum; `calc_quorum()`);
- the `drbdsetup status --json` document (`resource_status_json()` and friends in drbdsetup.c).

Data is tracked in blocks of `BLOCK_KIB` KiB (DRBD's bitmap granularity): the model decides
which blocks a write goes to, which peers must get it, which blocks are out of sync and what a
resync sends; the bytes themselves live in the daemon's backing file (kernel.py), which this
module never touches.
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

BLOCK_KIB = 4
BLOCK_BYTES = BLOCK_KIB * 1024
DEFAULT_BLOCKS = 256  # the backing disk `create-md` makes when none exists: 1 MiB
HISTORY_UUIDS = 32

PRIMARY, SECONDARY, UNKNOWN = "Primary", "Secondary", "Unknown"
DISKLESS, INCONSISTENT, OUTDATED = "Diskless", "Inconsistent", "Outdated"
DUNKNOWN, CONSISTENT, UP_TO_DATE = "DUnknown", "Consistent", "UpToDate"
STANDALONE, CONNECTING, CONNECTED = "StandAlone", "Connecting", "Connected"
OFF, ESTABLISHED, SYNC_SOURCE, SYNC_TARGET = "Off", "Established", "SyncSource", "SyncTarget"

# enum drbd_state_rv (drbd-headers linux/drbd.h) and their texts (drbd_strings.c).
SS_TWO_PRIMARIES = -1
SS_NO_UP_TO_DATE_DISK = -2
SS_CONNECTED_OUTDATES = -6
SS_IS_DISKLESS = -11
SS_DEVICE_IN_USE = -12
SS_LOWER_THAN_OUTDATED = -16
SS_NO_QUORUM = -25
SS_MESSAGES = {
    SS_TWO_PRIMARIES: "Multiple primaries not allowed by config",
    SS_NO_UP_TO_DATE_DISK: "Need access to UpToDate data",
    SS_CONNECTED_OUTDATES: "Refusing to be Outdated while Connected",
    SS_IS_DISKLESS: "Device is diskless, the requested operation requires a disk",
    SS_DEVICE_IN_USE: "Device is held open by someone",
    SS_LOWER_THAN_OUTDATED: "Disk state is lower than outdated",
    SS_NO_QUORUM: "No quorum",
}

# enum drbd_ret_code (linux/drbd.h) and drbdsetup's error_to_string() texts.
ERR_MD_INVALID = 119
ERR_DISK_CONFIGURED = 124
ERR_NET_CONFIGURED = 125
ERR_RES_NOT_KNOWN = 158
ERR_MINOR_OR_VOLUME_EXISTS = 161
ERR_INVALID_REQUEST = 162
ERR_ALREADY_EXISTS = 174
ERR_MESSAGES = {
    ERR_MD_INVALID: "No valid meta-data signature found.\n\t==> Use 'drbdadm create-md res' "
    "to initialize meta-data area. <==",
    ERR_DISK_CONFIGURED: "Device is attached to a disk (use detach first)",
    ERR_NET_CONFIGURED: "Device has a net-config (use disconnect first)",
    ERR_RES_NOT_KNOWN: "Unknown resource",
    ERR_MINOR_OR_VOLUME_EXISTS: "Minor or volume exists already (delete it first)",
    ERR_INVALID_REQUEST: "Kernel does not know how to handle your request.",
    ERR_ALREADY_EXISTS: "Already exists",
}


class StateChangeFailed(Exception):
    """DRBD refused a state change (a negative `drbd_state_rv`)."""

    def __init__(self, code: int, info: str = "") -> None:
        self.code = code
        self.text = SS_MESSAGES.get(code, "?")
        self.info = info
        super().__init__(f"State change failed: ({code}) {self.text}")

    @property
    def exit_code(self) -> int:
        """drbdsetup's exit status for this refusal (`print_config_error()`)."""
        if self.code == SS_NO_UP_TO_DATE_DISK:
            return 17
        if self.code == SS_LOWER_THAN_OUTDATED:
            return 5
        return 11

    def stderr(self, objname: str) -> str:
        out = f"{objname}: State change failed: ({self.code}) {self.text}\n"
        if self.info:
            out += f"additional info from kernel:\n{self.info}\n"
        return out


class Failure(Exception):
    """A configuration request failed (a `drbd_ret_code` above 100); drbdsetup exits 10."""

    def __init__(self, code: int, text: str | None = None) -> None:
        self.code = code
        self.text = text or ERR_MESSAGES.get(code, "?")
        super().__init__(f"Failure: ({code}) {self.text}")

    exit_code = 10

    def stderr(self, objname: str) -> str:
        return f"{objname}: Failure: ({self.code}) {self.text}\n"


class WriteRefused(Exception):
    """A lab write to the device failed, as an application's write would (errno text)."""

    def __init__(self, message: str, exit_code: int) -> None:
        self.exit_code = exit_code
        super().__init__(message)


# --------------------------------------------------------------------------- metadata


@dataclass
class Metadata:
    """What DRBD keeps on the backing device: generation identifiers, bitmaps, flags, data."""

    current_uuid: int = 0
    bitmap_uuids: dict[int, int] = field(default_factory=dict)
    history: list[int] = field(default_factory=list)
    bitmaps: dict[int, set[int]] = field(default_factory=dict)
    consistent: bool = False  # MDF_CONSISTENT: the data is not Inconsistent
    outdated: bool = False  # the data was marked Outdated
    peer_outdated: set[int] = field(default_factory=set)  # MDF_PEER_OUTDATED per peer
    peer_seen: set[int] = field(default_factory=set)  # MDF_PEER_DEVICE_SEEN per peer
    primary_since: float = 0.0  # wall time of the last promotion (for discard-*-primary)
    primary_ind: bool = False  # MDF_PRIMARY_IND: Primary now, or when the node went down uncleanly
    writes: int = 0  # lab token writes so far (control.write puts the next one at writes % size)
    size_blocks: int = DEFAULT_BLOCKS

    def bits(self, peer_id: int) -> set[int]:
        return self.bitmaps.setdefault(peer_id, set())

    def to_json(self) -> dict[str, Any]:
        return {
            "current_uuid": self.current_uuid,
            "bitmap_uuids": {str(k): v for k, v in self.bitmap_uuids.items()},
            "history": self.history,
            "bitmaps": {str(k): sorted(v) for k, v in self.bitmaps.items()},
            "consistent": self.consistent,
            "outdated": self.outdated,
            "peer_outdated": sorted(self.peer_outdated),
            "peer_seen": sorted(self.peer_seen),
            "primary_since": self.primary_since,
            "primary_ind": self.primary_ind,
            "writes": self.writes,
            "size_blocks": self.size_blocks,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Metadata:
        return cls(
            current_uuid=int(data["current_uuid"]),
            bitmap_uuids={int(k): int(v) for k, v in data["bitmap_uuids"].items()},
            history=[int(u) for u in data["history"]],
            bitmaps={int(k): set(v) for k, v in data["bitmaps"].items()},
            consistent=bool(data["consistent"]),
            outdated=bool(data["outdated"]),
            peer_outdated=set(data["peer_outdated"]),
            peer_seen=set(data["peer_seen"]),
            primary_since=float(data.get("primary_since", 0.0)),
            primary_ind=bool(data.get("primary_ind", False)),
            writes=int(data["writes"]),
            size_blocks=int(data.get("size_blocks", DEFAULT_BLOCKS)),
        )

    def disk_state(self) -> str:
        """The disk state read at attach (`disk_state_from_md()`): nothing is UpToDate yet."""
        if not self.consistent:
            return INCONSISTENT
        if self.outdated:
            return OUTDATED
        return CONSISTENT


# --------------------------------------------------------------------------- kernel state


@dataclass
class Peer:
    """One connection of a resource (`new-peer`), with its single volume's peer device."""

    node_id: int
    name: str
    protocol: str = "C"
    after_sb_0pri: str = "disconnect"
    after_sb_1pri: str = "disconnect"
    after_sb_2pri: str = "disconnect"
    allow_two_primaries: bool = False
    bitmap: bool = True  # False: an intentionally diskless peer (`--bitmap=no`)
    local_addr: tuple[str, int] | None = None
    remote_addr: tuple[str, int] | None = None
    resync_rate_kib: int | None = None
    cstate: str = STANDALONE
    peer_role: str = UNKNOWN
    peer_disk: str = DUNKNOWN
    peer_client: bool = False
    repl: str = OFF
    primaries_seen: list[int] = field(default_factory=list)  # primaries the peer is connected to
    discard_my_data: bool = False
    rs_total: int = 0
    received_kib: int = 0
    sent_kib: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "name": self.name,
            "protocol": self.protocol,
            "after_sb_0pri": self.after_sb_0pri,
            "after_sb_1pri": self.after_sb_1pri,
            "after_sb_2pri": self.after_sb_2pri,
            "allow_two_primaries": self.allow_two_primaries,
            "bitmap": self.bitmap,
            "local_addr": list(self.local_addr) if self.local_addr else None,
            "remote_addr": list(self.remote_addr) if self.remote_addr else None,
            "resync_rate_kib": self.resync_rate_kib,
            "cstate": self.cstate,
            "peer_disk": self.peer_disk if self.peer_disk in (INCONSISTENT, OUTDATED) else DUNKNOWN,
            "discard_my_data": self.discard_my_data,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Peer:
        peer = cls(node_id=int(data["node_id"]), name=str(data["name"]))
        for key in ("protocol", "after_sb_0pri", "after_sb_1pri", "after_sb_2pri"):
            setattr(peer, key, str(data[key]))
        peer.allow_two_primaries = bool(data["allow_two_primaries"])
        peer.bitmap = bool(data["bitmap"])
        peer.local_addr = (data["local_addr"][0], int(data["local_addr"][1])) if data["local_addr"] else None
        peer.remote_addr = (data["remote_addr"][0], int(data["remote_addr"][1])) if data["remote_addr"] else None
        peer.resync_rate_kib = data.get("resync_rate_kib")
        # After a restart of the "kernel" every configured connection tries again.
        peer.cstate = CONNECTING if data["cstate"] != STANDALONE else STANDALONE
        peer.peer_disk = str(data["peer_disk"])
        peer.discard_my_data = bool(data["discard_my_data"])
        return peer

    def reset_view(self) -> None:
        """Forget what the peer told us when the connection goes (`sanitize_state()`)."""
        self.peer_role = UNKNOWN
        if self.peer_disk not in (INCONSISTENT, OUTDATED):
            self.peer_disk = DUNKNOWN
        self.repl = OFF
        self.primaries_seen = []
        self.rs_total = 0


@dataclass
class Resource:
    """One DRBD resource on this node, with at most one volume (volume 0)."""

    name: str
    node_id: int
    quorum: str = "off"
    on_no_quorum: str = "io-error"
    role: str = SECONDARY
    minor: int | None = None
    volume: int = 0
    intentional_diskless: bool = False
    disk: str = DISKLESS
    backing: str | None = None
    md: Metadata | None = None
    peers: dict[int, Peer] = field(default_factory=dict)
    have_quorum: bool = True
    new_cur_uuid: bool = False  # NEW_CUR_UUID: start a new data generation on the next write
    settle_primary: int | None = None  # lost this primary by a network failure ...
    settle_at: float = 0.0  # ... at this time; decide UpToDate/Outdated after a delay
    split_brain: dict[int, str] = field(default_factory=dict)  # peer -> what happened
    crashed_primary: bool = False  # CRASHED_PRIMARY: attached after going down as Primary
    read_kib: int = 0
    written_kib: int = 0

    # ----- persistence of the "kernel" configuration (the md lives on the backing device)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node_id": self.node_id,
            "quorum": self.quorum,
            "on_no_quorum": self.on_no_quorum,
            "role": self.role,
            "minor": self.minor,
            "intentional_diskless": self.intentional_diskless,
            "backing": self.backing,
            "disk": self.disk,
            "peers": [p.to_json() for p in self.peers.values()],
            "new_cur_uuid": self.new_cur_uuid,
            "split_brain": {str(k): v for k, v in self.split_brain.items()},
            "crashed_primary": self.crashed_primary,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], md: Metadata | None) -> Resource:
        res = cls(name=str(data["name"]), node_id=int(data["node_id"]))
        res.quorum = str(data["quorum"])
        res.on_no_quorum = str(data["on_no_quorum"])
        res.role = str(data["role"])
        res.minor = data["minor"]
        res.intentional_diskless = bool(data["intentional_diskless"])
        res.backing = data["backing"]
        res.md = md
        # The "kernel" state survives a restart of the daemon; only the links are gone.
        res.disk = str(data["disk"]) if md is not None else DISKLESS
        res.peers = {p.node_id: p for p in (Peer.from_json(x) for x in data["peers"])}
        res.new_cur_uuid = bool(data["new_cur_uuid"]) or (
            res.role == PRIMARY and any(p.cstate != STANDALONE for p in res.diskful_peers())
        )
        res.split_brain = {int(k): str(v) for k, v in data.get("split_brain", {}).items()}
        res.crashed_primary = bool(data.get("crashed_primary", False))
        recalc(res)
        return res

    # ----- small helpers

    def peer(self, node_id: int) -> Peer:
        try:
            return self.peers[node_id]
        except KeyError:
            raise Failure(ERR_INVALID_REQUEST, f"Unknown peer node id {node_id}") from None

    def diskful_peers(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.bitmap]

    def connected(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.cstate == CONNECTED]

    def connected_primaries(self) -> list[int]:
        return [p.node_id for p in self.connected() if p.peer_role == PRIMARY]

    def data_accessible(self) -> bool:
        """`drbd_data_accessible()`: UpToDate data here or on a connected peer."""
        if self.disk == UP_TO_DATE:
            return True
        return any(p.repl != OFF and p.peer_disk == UP_TO_DATE for p in self.peers.values())

    def suspended(self) -> bool:
        return self.role == PRIMARY and not self.have_quorum and self.on_no_quorum == "suspend-io"


# --------------------------------------------------------------------------- quorum


@dataclass(frozen=True)
class QuorumInfo:
    have: bool
    up_to_date: int
    present: int
    voters: int
    quorum_at: int
    diskless: int
    tiebreaker: bool


def _quorum_at(setting: str, voters: int) -> int:
    if setting == "majority":
        return voters // 2 + 1
    if setting == "all":
        return voters
    return int(setting)


def calc_quorum(res: Resource) -> QuorumInfo:
    """DRBD 9's `calc_quorum()`: count UpToDate/present voters, outdated and unknown peers.

    Absent peers that are known to be Outdated do not vote when no peer is unknown ("last
    man standing"); when a node fails by exactly one vote with an even number of voters, a
    majority of connected intentionally diskless nodes keeps (never gives) quorum.
    """
    up_to_date = present = outdated = unknown = diskless = missing_diskless = 0
    if res.disk != DISKLESS and res.md is not None:
        if res.disk == UP_TO_DATE:
            up_to_date += 1
        else:
            present += 1
        for peer in res.peers.values():
            intentional = not peer.bitmap
            if not intentional and peer.node_id not in res.md.peer_seen:
                continue
            if peer.repl == OFF:
                if intentional:
                    missing_diskless += 1
                elif peer.peer_disk in (INCONSISTENT, OUTDATED) or peer.node_id in res.md.peer_outdated:
                    outdated += 1
                else:
                    unknown += 1
            elif peer.peer_disk == DISKLESS and intentional:
                diskless += 1
            elif peer.peer_disk == UP_TO_DATE:
                up_to_date += 1
            else:
                present += 1
    else:
        if res.intentional_diskless:
            diskless += 1
        else:
            unknown += 1
        for peer in res.peers.values():
            intentional = not peer.bitmap
            if peer.repl == OFF:
                if intentional:
                    missing_diskless += 1
                elif peer.peer_disk in (INCONSISTENT, OUTDATED):
                    outdated += 1
                else:
                    unknown += 1
            elif peer.peer_disk == DISKLESS and intentional:
                diskless += 1
            elif peer.peer_disk == UP_TO_DATE:
                up_to_date += 1
            else:
                present += 1
    voters = outdated + unknown + up_to_date + present if unknown else up_to_date + present
    quorum_at = _quorum_at(res.quorum, voters) if res.quorum != "off" else 0
    diskless_majority_at = (diskless + missing_diskless) // 2 + 1
    have = up_to_date + present >= quorum_at
    tiebreaker = False
    if (
        not have
        and voters != 0
        and voters % 2 == 0
        and up_to_date + present == quorum_at - 1
        and diskless >= diskless_majority_at
        and res.have_quorum
    ):
        have = tiebreaker = True
    return QuorumInfo(have, up_to_date, present, voters, quorum_at, diskless, tiebreaker)


def recalc(res: Resource) -> list[str]:
    """Recompute quorum after any change; returns kernel-log lines for what changed."""
    before = res.have_quorum
    res.have_quorum = True if res.quorum == "off" else calc_quorum(res).have
    if before and not res.have_quorum:
        return [f"{res.name}: quorum( yes -> no )"]
    if not before and res.have_quorum:
        return [f"{res.name}: quorum( no -> yes )"]
    return []


# --------------------------------------------------------------------------- roles


def new_current_uuid(res: Resource, rng: random.Random) -> None:
    """Start a new data generation (s-gi-changes-newgen).

    The old current UUID becomes the bitmap UUID towards every diskful peer that is not
    connected (and has none yet) and goes into the history; connected peers are told the new
    UUID by the caller.
    """
    md = _md(res)
    old = md.current_uuid
    if old:
        md.history.insert(0, old)
        del md.history[HISTORY_UUIDS:]
        for peer in res.diskful_peers():
            if peer.repl == OFF and not md.bitmap_uuids.get(peer.node_id):
                md.bitmap_uuids[peer.node_id] = old
    md.current_uuid = rng.getrandbits(63) | 1 << 62


def promote(res: Resource, force: bool, now: float, rng: random.Random) -> list[int]:
    """`drbdsetup primary [--force]`; returns the peers that must get a full sync from us.

    Checks follow `__is_valid_soft_transition()`: a connected Primary peer refuses the change
    (unless allow-two-primaries), then the data must be accessible (UpToDate here or on a
    connected peer), then the node needs quorum. `--force` turns an Inconsistent, Outdated or
    Consistent local disk into UpToDate and starts a new data generation, as DRBD does; it does
    not override quorum or the refusal of a second primary.
    """
    if res.role == PRIMARY:
        return []
    for peer in res.connected():
        if peer.peer_role == PRIMARY and not peer.allow_two_primaries:
            raise StateChangeFailed(SS_TWO_PRIMARIES)
    recalc(res)
    forced = False
    if not res.data_accessible():
        if res.disk == CONSISTENT and res.have_quorum and not res.connected_primaries():
            # A Consistent disk that can not be newer elsewhere becomes UpToDate on promotion.
            pass
        elif force and res.disk in (INCONSISTENT, OUTDATED, CONSISTENT):
            forced = True
        else:
            raise StateChangeFailed(SS_NO_UP_TO_DATE_DISK)
    if not res.have_quorum:
        q = calc_quorum(res)
        raise StateChangeFailed(
            SS_NO_QUORUM,
            f"{q.up_to_date + q.present} of {q.voters} nodes visible, need {q.quorum_at} for quorum",
        )
    md = res.md
    full_sync: list[int] = []
    if md is not None and res.disk in (INCONSISTENT, OUTDATED, CONSISTENT):
        res.disk = UP_TO_DATE
        md.consistent, md.outdated = True, False
    res.role = PRIMARY
    res.settle_primary = None
    if md is not None:
        md.primary_since = now
        md.primary_ind = True
        if forced:
            new_current_uuid(res, rng)
            res.new_cur_uuid = False
            full_sync = [p.node_id for p in res.diskful_peers() if p.repl == ESTABLISHED]
        elif any(p.repl == OFF for p in res.diskful_peers()):
            res.new_cur_uuid = True
    recalc(res)
    return full_sync


def demote(res: Resource) -> None:
    """`drbdsetup secondary` (the daemon has checked that nobody holds the device open)."""
    res.role = SECONDARY
    if res.md is not None:
        res.md.primary_ind = False
    recalc(res)


def attach_crashed_primary(res: Resource) -> list[str]:
    """Attaching a disk that went down as Primary (power loss, crash): writes may have reached
    this disk and not the peers, so the activity log's blocks count as out of sync toward every
    peer (`drbd_al_apply_to_bm()`), and the handshake prefers this node as the source when the
    generations are equal (the "crashed primary" rule of `drbd_uuid_compare()`). DRBD's
    activity log covers al-extents x 4 MiB (about 4.8 GiB by default), more than a lab device, so
    here it is the whole device."""
    md = res.md
    if md is None or not md.primary_ind:
        return []
    md.primary_ind = False
    res.crashed_primary = True
    for peer in res.diskful_peers():
        md.bits(peer.node_id).update(range(md.size_blocks))
    return [
        f"{res.name}: was Primary when it went down: {md.size_blocks * BLOCK_KIB} KiB (the activity log)"
        " marked out of sync"
    ]


def outdate(res: Resource) -> None:
    """`drbdsetup outdate`: only a Secondary that is not connected to a Primary."""
    if res.md is None:
        raise StateChangeFailed(SS_IS_DISKLESS)
    if res.disk == OUTDATED:
        return
    if res.disk == INCONSISTENT:
        raise StateChangeFailed(SS_LOWER_THAN_OUTDATED)
    if res.role == PRIMARY or res.connected_primaries():
        raise StateChangeFailed(SS_CONNECTED_OUTDATES)
    res.disk = OUTDATED
    res.md.outdated = True
    recalc(res)


def clear_bitmap_new_uuid(res: Resource, rng: random.Random) -> list[int]:
    """`new-current-uuid --clear-bitmap` on a fresh, connected resource: skip the initial sync.

    Returns the peers that adopt the new UUID and become UpToDate with us.
    """
    md = _md(res)
    peers = res.diskful_peers()
    if md.current_uuid or any(p.repl != ESTABLISHED for p in peers):
        raise Failure(ERR_INVALID_REQUEST, "new-current-uuid --clear-bitmap needs a fresh, connected resource")
    new_current_uuid(res, rng)
    res.disk = UP_TO_DATE
    md.consistent, md.outdated = True, False
    for peer in peers:
        peer.peer_disk = UP_TO_DATE
        md.bits(peer.node_id).clear()
    recalc(res)
    return [p.node_id for p in peers]


def adopt_uuid(res: Resource, uuid: int, up_to_date: bool) -> None:
    """A connected peer started a new data generation or skipped the initial sync with us."""
    md = _md(res)
    if md.current_uuid and md.current_uuid != uuid:
        md.history.insert(0, md.current_uuid)
        del md.history[HISTORY_UUIDS:]
    md.current_uuid = uuid
    if up_to_date:
        res.disk = UP_TO_DATE
        md.consistent, md.outdated = True, False
    recalc(res)


# --------------------------------------------------------------------------- connections


def connect(res: Resource, peer_id: int, discard_my_data: bool) -> None:
    peer = res.peer(peer_id)
    if peer.cstate != STANDALONE:
        raise Failure(ERR_NET_CONFIGURED)
    if discard_my_data and res.role == PRIMARY:
        raise Failure(ERR_INVALID_REQUEST, "--discard-my-data not allowed when primary.")
    peer.cstate = CONNECTING
    peer.discard_my_data = discard_my_data
    res.split_brain.pop(peer_id, None)


def leave(res: Resource, peer_id: int, going_down: bool) -> dict[str, bool]:
    """Our side of a graceful disconnect (`disconnect` or `down`) while connected.

    A node that leaves gracefully tells its peer; a Secondary leaving a Primary (or going
    down while its peers stay) marks its own data Outdated, and a Primary outdates the
    Secondary it leaves (user's guide, s-quorum_last_man_standing and s-outdate). Returns
    the message for the peer.
    """
    peer = res.peer(peer_id)
    msg = {"outdate_you": False, "i_am_outdated": False}
    if peer.cstate == CONNECTED and res.md is not None:
        if res.role == PRIMARY and peer.bitmap:
            msg["outdate_you"] = True
            res.md.peer_outdated.add(peer_id)
            peer.peer_disk = OUTDATED
            res.new_cur_uuid = True
        elif (
            res.role == SECONDARY
            and res.disk in (UP_TO_DATE, CONSISTENT)
            and (peer.peer_role == PRIMARY or going_down)
            and peer.bitmap
        ):
            res.disk = OUTDATED
            res.md.outdated = True
            msg["i_am_outdated"] = True
    elif peer.cstate == CONNECTED and res.role == PRIMARY and peer.bitmap:
        res.new_cur_uuid = True
    peer.cstate = STANDALONE
    peer.reset_view()
    if msg["outdate_you"]:
        peer.peer_disk = OUTDATED
    recalc(res)
    return msg


def peer_left(res: Resource, peer_id: int, msg: dict[str, Any]) -> list[str]:
    """The peer disconnected gracefully; we keep trying to connect (Connecting)."""
    peer = res.peer(peer_id)
    log = [f"{res.name} {peer.name}: peer disconnected gracefully"]
    if peer.peer_role == PRIMARY and res.md is not None and res.role == SECONDARY:
        res.settle_primary = None
    if msg.get("outdate_you") and res.md is not None and res.role == SECONDARY and res.disk != INCONSISTENT:
        res.disk = OUTDATED
        res.md.outdated = True
        log.append(f"{res.name}: disk( -> Outdated ) by {peer.name}")
    if res.role == PRIMARY and peer.bitmap and peer.repl != OFF:
        res.new_cur_uuid = True
    peer.cstate = CONNECTING if peer.cstate != STANDALONE else STANDALONE
    peer.reset_view()
    if msg.get("i_am_outdated") and res.md is not None:
        res.md.peer_outdated.add(peer_id)
        peer.peer_disk = OUTDATED
    log += recalc(res)
    return log


def connection_lost(res: Resource, peer_id: int, now: float) -> list[str]:
    """The link broke (ping timeout, reset): NetworkFailure, then Connecting again.

    A Primary starts a new data generation with its next write; a Secondary that loses its
    Primary this way is Consistent until it has decided whether the Primary goes on elsewhere
    (`sanitize_state()`: maybe_crashed_primary).
    """
    peer = res.peer(peer_id)
    log = [f"{res.name} {peer.name}: conn( {peer.cstate} -> NetworkFailure -> Connecting )"]
    lost_primary = peer.cstate == CONNECTED and peer.peer_role == PRIMARY
    was_replicating = peer.repl != OFF
    if peer.cstate != STANDALONE:
        peer.cstate = CONNECTING
    peer.reset_view()
    if res.role == PRIMARY and peer.bitmap and was_replicating:
        res.new_cur_uuid = True
    if lost_primary and res.role == SECONDARY and res.disk == UP_TO_DATE and not res.connected_primaries():
        res.disk = CONSISTENT
        res.settle_primary = peer_id
        res.settle_at = now
        log.append(f"{res.name}: disk( UpToDate -> Consistent )")
    log += recalc(res)
    return log


def settle(res: Resource, now: float, delay: float) -> list[str]:
    """After losing a Primary: Outdated if another peer still reaches it, else UpToDate again.

    DRBD outdates a Secondary that is only "weakly" connected to a Primary that goes on
    writing (user's guide, s-configuring-quorum-tiebreaker: "the secondary node demotes its
    DRBD resource to an out-of-date state").
    """
    if res.settle_primary is None or now < res.settle_at + delay or res.disk != CONSISTENT:
        if res.disk != CONSISTENT:
            res.settle_primary = None
        return []
    lost = res.settle_primary
    res.settle_primary = None
    md = _md(res)
    weak = any(lost in p.primaries_seen for p in res.connected())
    if weak:
        res.disk = OUTDATED
        md.outdated = True
        log = [f"{res.name}: disk( Consistent -> Outdated ): the primary is still reachable through a peer"]
    else:
        res.disk = UP_TO_DATE
        log = [f"{res.name}: disk( Consistent -> UpToDate )"]
    return log + recalc(res)


# --------------------------------------------------------------------------- handshake


def report(res: Resource, peer_id: int) -> dict[str, Any]:
    """What we tell a peer when a connection is being established (UUIDs, role, disk)."""
    md = res.md
    return {
        "node_id": res.node_id,
        "role": res.role,
        "disk": res.disk if md is not None else DISKLESS,
        "client": res.intentional_diskless,
        "current_uuid": md.current_uuid if md else 0,
        "bitmap_uuid": md.bitmap_uuids.get(peer_id, 0) if md else 0,
        "history": list(md.history) if md else [],
        "bits": sorted(md.bits(peer_id)) if md else [],
        "size_blocks": md.size_blocks if md else 0,
        "primary_since": md.primary_since if md else 0.0,
        "discard_my_data": res.peers[peer_id].discard_my_data,
        "crashed_primary": res.crashed_primary,
    }


def state_message(res: Resource) -> dict[str, Any]:
    """What we keep telling connected peers (also our ping)."""
    return {
        "role": res.role,
        "disk": res.disk if res.md is not None else DISKLESS,
        "client": res.intentional_diskless,
        "primaries_seen": res.connected_primaries(),
    }


def compare_uuids(a: dict[str, Any], b: dict[str, Any]) -> tuple[int, str]:
    """Compare generation identifier tuples (s-gi-use) from a's point of view.

    Returns (decision, rule): 0 no resync; 1/-1 bitmap-based resync with a as source/target;
    2/-2 full resync with a as source/target; 100 split brain with a common parent;
    -100 split brain without one; -1000 unrelated data.
    """
    ac, bc = a["current_uuid"], b["current_uuid"]
    ab, bb = a["bitmap_uuid"], b["bitmap_uuid"]
    if ac == 0 and bc == 0:
        return 0, "current UUIDs empty on both nodes"
    if bc == 0:
        return 2, "current UUID empty on the peer"
    if ac == 0:
        return -2, "current UUID empty here"
    if ac == bc:
        crashed = (a.get("crashed_primary", False), b.get("crashed_primary", False))
        if crashed == (True, False):
            return 1, "equal current UUIDs, this node crashed as Primary"
        if crashed == (False, True):
            return -1, "equal current UUIDs, the peer crashed as Primary"
        if crashed == (True, True):
            return (1 if a["node_id"] < b["node_id"] else -1), "equal current UUIDs, both crashed as Primary"
        return 0, "equal current UUIDs"
    if ab and ab == bc and not bb:
        return 1, "bitmap UUID matches the peer's current UUID"
    if bb and bb == ac and not ab:
        return -1, "peer's bitmap UUID matches our current UUID"
    if ab and bb and ab == bb:
        return 100, "bitmap UUIDs match, current UUIDs do not"
    if ac in b["history"]:
        return -2, "current UUID matches a historical UUID of the peer"
    if bc in a["history"]:
        return 2, "peer's current UUID matches one of our historical UUIDs"
    if ab or bb:
        return -100, "neither current nor bitmap UUIDs match"
    return -1000, "no UUIDs match"


def recover_0p(policy: str, a: dict[str, Any], b: dict[str, Any]) -> int | None:
    """after-sb-0pri (`drbd_asb_recover_0p()`): 1 a keeps its data, -1 a discards, None undecided.

    Ties are broken by node-id (the higher node-id discards), as DRBD breaks them with a flag
    that only one side of a connection has.
    """
    ch_a, ch_b = len(a["bits"]), len(b["bits"])
    tie = -1 if a["node_id"] > b["node_id"] else 1
    if policy == "disconnect":
        return None
    if policy in ("discard-younger-primary", "discard-older-primary"):
        pa, pb = a["primary_since"], b["primary_since"]
        if pa != pb and pa and pb:
            younger_is_a = pa > pb
            if policy == "discard-younger-primary":
                return -1 if younger_is_a else 1
            return 1 if younger_is_a else -1
        policy = "discard-least-changes"  # "did not find a decision, using discard-least-changes"
    if policy in ("discard-zero-changes", "discard-least-changes"):
        if ch_a == 0 and ch_b == 0:
            return tie
        if ch_b == 0:
            return 1
        if ch_a == 0:
            return -1
        if policy == "discard-zero-changes":
            return None
        if ch_a < ch_b:
            return -1
        if ch_a > ch_b:
            return 1
        return tie
    return None


@dataclass(frozen=True)
class Verdict:
    """The outcome of a connection handshake, from the deciding (initiating) side's view.

    kind: "established" (connected, no resync), "sync" (resync from `source`), "split-brain"
    (unresolved: both go StandAlone), "unrelated" (StandAlone), "two-primaries" (refused, both
    keep Connecting), "rr-conflict" (the resync target is Primary: StandAlone).
    """

    kind: str
    source: int | None = None
    full: bool = False
    bits: tuple[int, ...] = ()
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "full": self.full,
            "bits": list(self.bits),
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        return cls(data["kind"], data["source"], bool(data["full"]), tuple(data["bits"]), data["message"])


def decide(a: dict[str, Any], b: dict[str, Any], peer_cfg: Peer) -> Verdict:
    """Decide a handshake between a (us) and b (the peer), with our net options for b."""
    ida, idb = a["node_id"], b["node_id"]
    a_disk = a["disk"] != DISKLESS
    b_disk = b["disk"] != DISKLESS
    two_pri = a["role"] == PRIMARY and b["role"] == PRIMARY and not peer_cfg.allow_two_primaries
    if not (a_disk and b_disk):
        if two_pri:
            return Verdict("two-primaries", message=SS_MESSAGES[SS_TWO_PRIMARIES])
        return Verdict("established", message="diskless peer: nothing to resync")
    union = tuple(sorted(set(a["bits"]) | set(b["bits"])))
    everything = tuple(range(min(a["size_blocks"], b["size_blocks"])))
    hg, rule = compare_uuids(a, b)
    if hg in (100, -100):
        primaries = (a["role"] == PRIMARY) + (b["role"] == PRIMARY)
        winner: int | None = None
        how = ""
        if a["discard_my_data"] and not b["discard_my_data"]:
            winner, how = idb, "manually resolved (--discard-my-data)"
        elif b["discard_my_data"] and not a["discard_my_data"]:
            winner, how = ida, "manually resolved (--discard-my-data)"
        elif hg == 100:
            if primaries == 0:
                r = recover_0p(peer_cfg.after_sb_0pri, a, b)
                how = f"after-sb-0pri {peer_cfg.after_sb_0pri}"
            elif primaries == 1:
                policy = peer_cfg.after_sb_1pri
                how = f"after-sb-1pri {policy}"
                secondary_is_a = a["role"] == SECONDARY
                if policy == "discard-secondary":
                    r = -1 if secondary_is_a else 1
                elif policy == "consensus":
                    r = recover_0p(peer_cfg.after_sb_0pri, a, b)
                    if r is not None and (r == -1) != secondary_is_a:
                        r = None  # the victim would be the primary: no consensus
                else:
                    r = None
            else:
                r = None
                how = f"after-sb-2pri {peer_cfg.after_sb_2pri}"
            if r is not None:
                winner = ida if r == 1 else idb
        if winner is None:
            why = f"{rule}; {how or 'unrelated ancestors'}"
            return Verdict("split-brain", message=f"Split-Brain detected but unresolved, dropping connection! ({why})")
        loser_role = b["role"] if winner == ida else a["role"]
        if loser_role == PRIMARY:
            return Verdict("rr-conflict", message="I shall become SyncTarget, but I am primary!")
        return Verdict(
            "sync",
            source=winner,
            bits=union,
            message=f"Split-Brain detected, {primaries} primaries, automatically solved ({how}). "
            f"Sync from node-id {winner}",
        )
    if hg == -1000:
        return Verdict("unrelated", message="Unrelated data, aborting!")
    if two_pri:
        return Verdict("two-primaries", message=SS_MESSAGES[SS_TWO_PRIMARIES])
    if hg == 0:
        return Verdict("established", message=rule)
    source = ida if hg > 0 else idb
    target_role = b["role"] if source == ida else a["role"]
    if target_role == PRIMARY:
        return Verdict("rr-conflict", message="I shall become SyncTarget, but I am primary!")
    full = abs(hg) == 2
    return Verdict("sync", source=source, full=full, bits=everything if full else union, message=rule)


def apply_verdict(res: Resource, peer_id: int, verdict: Verdict, peer_report: dict[str, Any]) -> list[str]:
    """Apply a handshake verdict on our side (both sides call this with the same verdict)."""
    peer = res.peer(peer_id)
    md = res.md
    log = [f"{res.name} {peer.name}: handshake: {verdict.kind}: {verdict.message}"]
    if verdict.kind == "two-primaries":
        peer.cstate = CONNECTING
        peer.reset_view()
        return log
    if verdict.kind in ("split-brain", "unrelated", "rr-conflict"):
        peer.cstate = STANDALONE
        peer.reset_view()
        res.split_brain[peer_id] = verdict.message
        log.append(f"{res.name} {peer.name}: conn( Connecting -> StandAlone )")
        return log
    peer.cstate = CONNECTED
    peer.peer_role = peer_report["role"]
    peer.peer_disk = peer_report["disk"]
    peer.peer_client = bool(peer_report["client"])
    peer.discard_my_data = False
    res.crashed_primary = False
    res.split_brain.pop(peer_id, None)
    if res.settle_primary == peer_id:
        res.settle_primary = None
    if md is not None and peer.bitmap:
        md.peer_seen.add(peer_id)
        md.peer_outdated.discard(peer_id)
    if verdict.kind == "established":
        peer.repl = ESTABLISHED
        if md is not None and peer_report["disk"] != DISKLESS:
            res.disk = _upgrade_without_resync(res.disk, peer.peer_disk)
            peer.peer_disk = _upgrade_without_resync(peer.peer_disk, res.disk)
            if res.disk == UP_TO_DATE:
                md.consistent, md.outdated = True, False
        _maybe_clear_new_cur_uuid(res)
        log += recalc(res)
        return log
    # sync
    assert md is not None
    bits = set(verdict.bits)
    md.bits(peer_id).clear()
    md.bits(peer_id).update(bits)
    peer.rs_total = len(bits)
    if verdict.source == res.node_id:
        peer.repl = SYNC_SOURCE
        if res.disk == CONSISTENT:
            res.disk = UP_TO_DATE
        peer.peer_disk = INCONSISTENT
    else:
        peer.repl = SYNC_TARGET
        res.disk = INCONSISTENT
        md.consistent = False
    log.append(f"{res.name} {peer.name}: repl( Off -> {peer.repl} ) {len(bits) * BLOCK_KIB} KiB to sync")
    if not bits:
        log += finish_resync_markers(res, peer_id)
    log += recalc(res)
    return log


def _upgrade_without_resync(mine: str, theirs: str) -> str:
    """Equal data, no resync: Consistent becomes UpToDate, and Outdated follows a stable
    UpToDate/Consistent peer (`sanitize_state()`: "Upgrade myself from D_OUTDATED")."""
    if mine == CONSISTENT:
        return UP_TO_DATE
    if mine == OUTDATED and theirs in (UP_TO_DATE, CONSISTENT):
        return UP_TO_DATE
    return mine


def finish_resync_markers(res: Resource, peer_id: int) -> list[str]:
    """Nothing (left) to resync: the caller finishes the resync with the peer's GI."""
    return [f"{res.name} {res.peer(peer_id).name}: nothing left to resync"]


def _maybe_clear_new_cur_uuid(res: Resource) -> None:
    if all(p.repl != OFF for p in res.diskful_peers()):
        res.new_cur_uuid = False


def start_full_sync(res: Resource, peer_id: int, as_source: bool) -> list[str]:
    """After a forced promotion: full resync towards every connected diskful peer."""
    peer = res.peer(peer_id)
    md = _md(res)
    md.bits(peer_id).update(range(md.size_blocks))
    peer.rs_total = md.size_blocks
    if as_source:
        peer.repl = SYNC_SOURCE
        peer.peer_disk = INCONSISTENT
    else:
        peer.repl = SYNC_TARGET
        res.disk = INCONSISTENT
        md.consistent = False
    recalc(res)
    return [f"{res.name} {peer.name}: repl( Established -> {peer.repl} ) full sync"]


# --------------------------------------------------------------------------- data path


def blocks_of(offset: int, length: int) -> range:
    """The blocks a device write of `length` bytes at `offset` touches (the bitmap's unit)."""
    return range(offset // BLOCK_BYTES, (offset + max(length, 1) - 1) // BLOCK_BYTES + 1)


def write(res: Resource, blocks: Collection[int], rng: random.Random) -> list[int]:
    """A write to the device of a Primary: check it may happen, mark the blocks out of sync
    for every peer that will not get it now, and return the peers to send it to.

    Fails as DRBD fails an application's I/O: EMEDIUMTYPE on a Secondary, EIO without quorum
    (on-no-quorum io-error) or without accessible data; with on-no-quorum suspend-io DRBD would
    block the writer, the stand-in fails it instead so that a lab writer does not hang.
    """
    if res.role != PRIMARY:
        raise WriteRefused(f"write /dev/drbd{res.minor}: Wrong medium type", 124)
    if not res.have_quorum:
        if res.on_no_quorum == "suspend-io":
            raise WriteRefused(f"write /dev/drbd{res.minor}: I/O suspended (no quorum)", 11)
        raise WriteRefused(f"write /dev/drbd{res.minor}: Input/output error (no quorum)", 5)
    if not res.data_accessible():
        raise WriteRefused(f"write /dev/drbd{res.minor}: Input/output error (no UpToDate data)", 5)
    md = res.md
    if md is not None and (res.new_cur_uuid or md.current_uuid == 0):
        new_current_uuid(res, rng)
        res.new_cur_uuid = False
    targets: list[int] = []
    kib = len(blocks) * BLOCK_KIB
    for peer in res.peers.values():
        if not peer.bitmap:
            continue
        if peer.repl in (ESTABLISHED, SYNC_SOURCE, SYNC_TARGET):
            targets.append(peer.node_id)
            peer.sent_kib += kib
        elif md is not None:
            md.bits(peer.node_id).update(blocks)
    res.written_kib += kib
    return targets


def mark_out_of_sync(res: Resource, peer_id: int, blocks: Iterable[int]) -> None:
    if res.md is not None:
        res.md.bits(peer_id).update(blocks)


def receive_write(res: Resource, peer_id: int, blocks: Collection[int]) -> None:
    res.peer(peer_id).received_kib += len(blocks) * BLOCK_KIB


def resync_batch(res: Resource, peer_id: int, limit: int, in_flight: set[int]) -> list[int]:
    """The next blocks a SyncSource sends (in linear order, s-resync)."""
    md = _md(res)
    return sorted(md.bits(peer_id) - in_flight)[:limit]


def receive_resync(res: Resource, peer_id: int, blocks: Collection[int]) -> None:
    md = _md(res)
    md.bits(peer_id).difference_update(blocks)
    res.peer(peer_id).received_kib += len(blocks) * BLOCK_KIB


def resync_acked(res: Resource, peer_id: int, blocks: Iterable[int]) -> None:
    md = _md(res)
    peer = res.peer(peer_id)
    done = set(blocks)
    md.bits(peer_id).difference_update(done)
    peer.sent_kib += len(done) * BLOCK_KIB


def finish_resync_source(res: Resource, peer_id: int) -> dict[str, Any]:
    """SyncSource -> Established; returns our GI for the target to adopt (s-gi-changes-synccomplete)."""
    md = _md(res)
    peer = res.peer(peer_id)
    peer.repl = ESTABLISHED
    peer.rs_total = 0
    md.bitmap_uuids.pop(peer_id, None)
    md.bits(peer_id).clear()
    md.peer_outdated.discard(peer_id)
    peer.peer_disk = res.disk
    _maybe_clear_new_cur_uuid(res)
    recalc(res)
    return {"current_uuid": md.current_uuid, "history": list(md.history), "disk": res.disk}


def finish_resync_target(res: Resource, peer_id: int, gi: dict[str, Any]) -> list[str]:
    """SyncTarget -> Established: adopt the source's generation identifiers."""
    md = _md(res)
    peer = res.peer(peer_id)
    peer.repl = ESTABLISHED
    peer.rs_total = 0
    if md.current_uuid and md.current_uuid != gi["current_uuid"]:
        md.history.insert(0, md.current_uuid)
    md.current_uuid = int(gi["current_uuid"])
    md.history = list(dict.fromkeys([*gi["history"], *md.history]))[:HISTORY_UUIDS]
    md.bitmap_uuids.pop(peer_id, None)
    md.bits(peer_id).clear()
    res.disk = UP_TO_DATE if gi["disk"] == UP_TO_DATE else str(gi["disk"])
    md.consistent = True
    md.outdated = res.disk == OUTDATED
    peer.peer_disk = gi["disk"]
    log = [f"{res.name} {peer.name}: Resync done; disk( Inconsistent -> {res.disk} )"]
    return log + recalc(res)


def update_peer_state(res: Resource, peer_id: int, msg: dict[str, Any]) -> list[str]:
    """A state message (or ping) from a connected peer."""
    peer = res.peer(peer_id)
    before = (peer.peer_role, peer.peer_disk)
    peer.peer_role = msg["role"]
    peer.peer_disk = msg["disk"]
    peer.peer_client = bool(msg["client"])
    peer.primaries_seen = list(msg["primaries_seen"])
    log = []
    if before != (peer.peer_role, peer.peer_disk):
        log.append(
            f"{res.name} {peer.name}: peer( {before[0]} -> {peer.peer_role} ) pdsk( {before[1]} -> {peer.peer_disk} )"
        )
    return log + recalc(res)


# --------------------------------------------------------------------------- status


def _md(res: Resource) -> Metadata:
    if res.md is None:
        raise StateChangeFailed(SS_IS_DISKLESS)
    return res.md


def status_document(resources: Iterable[Resource]) -> list[dict[str, Any]]:
    """The document `drbdsetup status --json` prints (keys and order as drbdsetup.c)."""
    out: list[dict[str, Any]] = []
    for res in sorted(resources, key=lambda r: r.name):
        devices = []
        size_kib = (res.md.size_blocks if res.md is not None else DEFAULT_BLOCKS) * BLOCK_KIB
        if res.minor is not None:
            devices.append(
                {
                    "volume": res.volume,
                    "minor": res.minor,
                    "disk-state": res.disk,
                    "client": res.intentional_diskless,
                    "quorum": res.have_quorum,
                    "size": size_kib,
                    "read": res.read_kib,
                    "written": res.written_kib,
                    "al-writes": 0,
                    "bm-writes": 0,
                    "upper-pending": 0,
                    "lower-pending": 0,
                }
            )
        connections = []
        for peer in sorted(res.peers.values(), key=lambda p: p.node_id):
            peer_devices = []
            if devices:
                oos_blocks = len(res.md.bits(peer.node_id)) if res.md is not None and peer.bitmap else 0
                oos = oos_blocks * BLOCK_KIB
                syncing = peer.repl in (SYNC_SOURCE, SYNC_TARGET)
                pd: dict[str, Any] = {
                    "volume": res.volume,
                    "replication-state": peer.repl,
                    "peer-disk-state": peer.peer_disk,
                    "peer-client": peer.peer_client or not peer.bitmap,
                    "resync-suspended": "no",
                    "received": peer.received_kib,
                    "sent": peer.sent_kib,
                    "out-of-sync": oos,
                    "pending": 0,
                    "unacked": 0,
                    "has-sync-details": syncing and peer.rs_total > 0,
                    "has-online-verify-details": False,
                    "percent-in-sync": round(100 * (1 - oos / size_kib), 2),
                }
                if syncing and peer.rs_total > 0:
                    total = peer.rs_total * BLOCK_KIB * 2  # sectors
                    pd["rs-total"] = total
                    pd["rs-failed"] = 0
                    pd["rs-same-csum"] = 0
                    pd["percent-resync-done"] = round(100.0 * (peer.rs_total - oos_blocks) / peer.rs_total, 2)
                peer_devices.append(pd)
            connections.append(
                {
                    "peer-node-id": peer.node_id,
                    "name": peer.name,
                    "connection-state": peer.cstate,
                    "congested": False,
                    "peer-role": peer.peer_role,
                    "ap-in-flight": 0,
                    "rs-in-flight": 0,
                    "peer_devices": peer_devices,
                }
            )
        out.append(
            {
                "name": res.name,
                "node-id": res.node_id,
                "role": res.role,
                "suspended": res.suspended(),
                "write-ordering": "flush",
                "devices": devices,
                "connections": connections,
            }
        )
    return out


def status_json(resources: Iterable[Resource]) -> str:
    return json.dumps(status_document(resources), indent=2) + "\n"


def status_text(resources: Iterable[Resource]) -> str:
    """The plain `drbdsetup status` form (role, disk, one line per connection)."""
    lines: list[str] = []
    for res in sorted(resources, key=lambda r: r.name):
        lines.append(f"{res.name} role:{res.role}" + (" suspended:quorum" if res.suspended() else ""))
        if res.minor is not None:
            extra = "" if res.have_quorum else " quorum:no"
            lines.append(f"  disk:{res.disk}{extra}")
        for peer in sorted(res.peers.values(), key=lambda p: p.node_id):
            if peer.cstate != CONNECTED:
                lines.append(f"  {peer.name} connection:{peer.cstate}")
                continue
            lines.append(f"  {peer.name} role:{peer.peer_role}")
            line = "    "
            if peer.repl != ESTABLISHED:
                line += f"replication:{peer.repl} "
            line += f"peer-disk:{peer.peer_disk}"
            if peer.repl in (SYNC_SOURCE, SYNC_TARGET) and peer.rs_total and res.md is not None:
                left = len(res.md.bits(peer.node_id))
                line += f" done:{100.0 * (peer.rs_total - left) / peer.rs_total:.2f}"
            lines.append(line)
        lines.append("")
    return "\n".join(lines) + ("\n" if lines else "")
