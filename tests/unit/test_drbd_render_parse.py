"""Pure parts of DRBD: rendering the resource file, parsing `drbdsetup status --json` and
drbdsetup's refusals, and the lab stand-in's state machine (no sockets, no processes)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tandem.api.drbdvolume import DRBDVolumeSpec
from tandem_agent.drivers.drbd import (
    DrbdFailure,
    DrbdRefused,
    NoQuorum,
    NoUpToDateData,
    PeerIsPrimary,
    clean_output,
    parse_refusal,
    parse_status,
    render_resource,
    render_top_config,
)
from tandem_lab.drbdsim import model as m

# ------------------------------------------------------------------------------ rendering


def spec(**over: Any) -> DRBDVolumeSpec:
    doc: dict[str, Any] = {
        "cluster": "mail",
        "resourceName": "mail-store",
        "minor": 3,
        "port": 7790,
        "nodes": [
            {"name": "mail1", "disk": "/dev/vg0/mail", "address": "198.19.1.2", "nodeId": 0},
            {"name": "mail2", "disk": "/dev/vg0/mail", "address": "198.19.1.3", "nodeId": 1},
        ],
        "tiebreaker": {"name": "witness", "address": "198.19.1.4", "nodeId": 2},
        "quorum": {"mode": "majority", "onNoQuorum": "suspend-io"},
        "splitBrain": {"afterSb0pri": "discard-least-changes", "afterSb1pri": "consensus", "afterSb2pri": "disconnect"},
    }
    doc.update(over)
    return DRBDVolumeSpec.model_validate(doc)


def test_render_resource_with_tiebreaker_quorum_and_policies() -> None:
    text = render_resource(spec())
    assert 'resource "mail-store" {' in text
    for line in (
        "    quorum majority;",
        "    on-no-quorum suspend-io;",
        "    protocol C;",
        "    after-sb-0pri discard-least-changes;",
        "    after-sb-1pri consensus;",
        "    after-sb-2pri disconnect;",
        '  on "mail1" {',
        "    node-id 0;",
        "    device /dev/drbd3 minor 3;",
        '    disk "/dev/vg0/mail";',
        "    meta-disk internal;",
        "    address ipv4 198.19.1.2:7790;",
        '  on "witness" {',
        "    disk none;",
        "    address ipv4 198.19.1.4:7790;",
        '    hosts "mail1" "mail2" "witness";',
    ):
        assert line in text.splitlines(), line
    witness = text.split('on "witness"')[1]
    assert "meta-disk" not in witness and "node-id 2;" in witness
    assert text.count("{") == text.count("}")


def test_render_without_tiebreaker_and_with_ipv6() -> None:
    nodes = [
        {"name": "a", "disk": "/dev/sdb", "address": "2001:db8::2", "nodeId": 5},
        {"name": "b", "disk": "/dev/sdb", "address": "2001:db8::3", "nodeId": 7},
    ]
    text = render_resource(spec(nodes=nodes, tiebreaker=None, quorum={"mode": "off"}, protocol="A"))
    assert "disk none;" not in text
    assert "    address ipv6 [2001:db8::2]:7790;" in text
    assert "    quorum off;" in text and "    protocol A;" in text
    assert '    hosts "a" "b";' in text


def test_top_config_includes_the_managed_directory() -> None:
    text = render_top_config("/var/lib/tandem/drbd.d")
    assert 'include "/var/lib/tandem/drbd.d/*.res";' in text
    assert "usage-count no;" in text


# ------------------------------------------------------------------------------ status --json

# Shaped as drbd-utils' drbdsetup.c prints it (resource_status_json, device_status_json,
# connection_status_json, peer_device_status_json), including the odd ", \n" after
# connection-state and the resync details block.
REAL_STATUS = """[
{
  "name": "mail-store",
  "node-id": 1,
  "role": "Secondary",
  "suspended": false,
  "write-ordering": "flush",
  "devices": [
    {
      "volume": 0,
      "minor": 3,
      "disk-state": "Inconsistent",
      "client": false,
      "quorum": true,
      "size": 1048576,
      "read": 0,
      "written": 524288,
      "al-writes": 0,
      "bm-writes": 12,
      "upper-pending": 0,
      "lower-pending": 0
    } ],
  "connections": [
    {
      "peer-node-id": 0,
      "name": "mail1",
      "connection-state": "Connected",@SP@
      "congested": false,
      "peer-role": "Primary",
      "ap-in-flight": 0,
      "rs-in-flight": 0,
      "peer_devices": [
        {
          "volume": 0,
          "replication-state": "SyncTarget",
          "peer-disk-state": "UpToDate",
          "peer-client": false,
          "resync-suspended": "no",
          "received": 524288,
          "sent": 0,
          "out-of-sync": 393216,
          "pending": 0,
          "unacked": 0,
          "has-sync-details": true,
          "has-online-verify-details": false,
          "percent-in-sync": 62.50,
          "rs-total": 1048576,
          "rs-dt-start-ms": 5210,
          "rs-paused-ms": 0,
          "rs-dt0-ms": 0,
          "rs-db0-sectors": 0,
          "rs-dt1-ms": 0,
          "rs-db1-sectors": 0,
          "rs-failed": 0,
          "rs-same-csum": 0,
          "want": 0.00,
          "db0/dt0 [MiB/s]": 0.00,
          "db1/dt1 [MiB/s]": 0.00,
          "estimated-seconds-to-finish": 987654321,
          "db/dt [MiB/s]": 50.00,
          "percent-resync-done": 25.00
        } ]
    },
    {
      "peer-node-id": 2,
      "name": "witness",
      "connection-state": "Connecting",@SP@
      "congested": false,
      "peer-role": "Unknown",
      "peer_devices": [
        {
          "volume": 0,
          "replication-state": "Off",
          "peer-disk-state": "DUnknown",
          "peer-client": true,
          "resync-suspended": "no",
          "received": 0,
          "sent": 0,
          "out-of-sync": 0,
          "pending": 0,
          "unacked": 0,
          "has-sync-details": false,
          "has-online-verify-details": false,
          "percent-in-sync": 100.00
        } ]
    } ]
}
]
""".replace("@SP@", " ")


def test_parse_status_json_as_drbdsetup_prints_it() -> None:
    [st] = parse_status(REAL_STATUS)
    assert (st.name, st.node_id, st.role, st.suspended) == ("mail-store", 1, "Secondary", False)
    assert (st.disk_state, st.client, st.quorum) == ("Inconsistent", False, True)
    mail1 = st.peer("mail1")
    assert mail1 is not None
    assert (mail1.connection_state, mail1.role, mail1.disk_state) == ("Connected", "Primary", "UpToDate")
    assert (mail1.replication_state, mail1.resync_percent) == ("SyncTarget", 25.0)
    assert mail1.out_of_sync_bytes == 393216 * 1024  # drbdsetup prints KiB
    witness = st.peer("witness")
    assert witness is not None and witness.client and not witness.connected
    assert witness.resync_percent is None
    assert st.data_peers == (mail1,)

    api = st.to_api("mail2")
    assert (api.name, api.role, api.disk_state, api.connection_state) == (
        "mail2",
        "Secondary",
        "Inconsistent",
        "Connected",
    )
    assert (api.peer_role, api.peer_disk_state, api.replication_state) == ("Primary", "UpToDate", "SyncTarget")
    assert (api.out_of_sync_bytes, api.resync_percent, api.quorum) == (402653184, 25, True)
    assert st.to_api("mail2", peer="witness").connection_state == "Connecting"


def test_parse_status_edge_cases() -> None:
    assert parse_status("[\n]\n") == []
    [bare] = parse_status(
        json.dumps([{"name": "r", "node-id": 0, "role": "Primary", "devices": [], "connections": []}])
    )
    assert (bare.disk_state, bare.quorum, bare.peers) == ("Diskless", None, ())
    api = bare.to_api("n")
    assert (api.connection_state, api.peer_role, api.replication_state) == ("StandAlone", "Unknown", "Off")
    odd = json.loads(REAL_STATUS)
    odd[0]["connections"][0]["connection-state"] = "SomethingNew"
    assert parse_status(json.dumps(odd))[0].to_api("x").connection_state == "StandAlone"
    with pytest.raises(Exception, match="not JSON"):
        parse_status("r0 role:Primary")


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("stderr", "cls", "code", "reason", "info"),
    [
        (
            "r0: State change failed: (-1) Multiple primaries not allowed by config\n"
            "Command 'drbdsetup primary r0' terminated with exit code 11\n",
            PeerIsPrimary,
            -1,
            "Multiple primaries not allowed by config",
            "",
        ),
        (
            "\n   found __DRBD_NODE__ in environment\n   PRETENDING that I am >>a<<\n\nsh: 1: modinfo: not found\n"
            "r0: State change failed: (-2) Need access to UpToDate data\n"
            "Command 'drbdsetup primary r0' terminated with exit code 17\n",
            NoUpToDateData,
            -2,
            "Need access to UpToDate data",
            "",
        ),
        (
            "r0: State change failed: (-25) No quorum\nadditional info from kernel:\n"
            "1 of 2 nodes visible, need 2 for quorum\nCommand 'drbdsetup primary r0' terminated with exit code 11\n",
            NoQuorum,
            -25,
            "No quorum",
            "1 of 2 nodes visible, need 2 for quorum",
        ),
        (
            "r0: State change failed: (-6) Refusing to be Outdated while Connected\n",
            DrbdRefused,
            -6,
            "Refusing to be Outdated while Connected",
            "",
        ),
        (
            "r0: Failure: (125) Device has a net-config (use disconnect first)\n",
            DrbdFailure,
            125,
            "Device has a net-config (use disconnect first)",
            "",
        ),
    ],
)
def test_parse_refusal(stderr: str, cls: type[DrbdRefused], code: int, reason: str, info: str) -> None:
    refusal = parse_refusal(stderr, ["primary", "r0"], 11, "r0")
    assert type(refusal) is cls
    assert refusal is not None and (refusal.code, refusal.reason, refusal.info) == (code, reason, info)
    assert refusal.resource == "r0" and reason in str(refusal)


def test_no_refusal_in_unrelated_errors() -> None:
    assert parse_refusal("'r9' not defined in your config (for this host).\n", ["up", "r9"], 10, "r9") is None
    assert clean_output("\n   found __DRBD_NODE__ in environment\nsh: 1: modinfo: not found\nreal\n") == "real"


# ------------------------------------------------------------------------------ stand-in model


def node(node_id: int, *, quorum: str = "majority", witness: bool = True, disk: str = m.UP_TO_DATE) -> m.Resource:
    """A node of a 2-data-node resource (ids 0, 1) plus the diskless witness (id 2)."""
    res = m.Resource(name="r0", node_id=node_id, quorum=quorum, minor=0)
    md = m.Metadata(current_uuid=0x1000, consistent=disk != m.INCONSISTENT, outdated=disk == m.OUTDATED)
    res.md, res.backing, res.disk = md, f"/dev/d{node_id}", disk
    other = 1 - node_id
    res.peers[other] = m.Peer(node_id=other, name=f"n{other}")
    md.peer_seen.add(other)
    if witness:
        res.peers[2] = m.Peer(node_id=2, name="witness", bitmap=False)
    return res


def connect_all(res: m.Resource, peer_role: str = m.SECONDARY, peer_disk: str = m.UP_TO_DATE) -> None:
    for peer in res.peers.values():
        peer.cstate, peer.repl = m.CONNECTED, m.ESTABLISHED
        peer.peer_role = peer_role if peer.bitmap else m.SECONDARY
        peer.peer_disk = peer_disk if peer.bitmap else m.DISKLESS
    m.recalc(res)


def lose(res: m.Resource, peer_id: int, now: float = 0.0) -> list[str]:
    return m.connection_lost(res, peer_id, now)


def test_quorum_with_tiebreaker() -> None:
    a = node(0)
    connect_all(a)
    q = m.calc_quorum(a)
    assert (q.have, q.voters, q.quorum_at, q.diskless) == (True, 2, 2, 1)
    # Losing the other data node: one vote short with an even number of voters; the connected
    # diskless tiebreaker keeps quorum ...
    lose(a, 1)
    q = m.calc_quorum(a)
    assert (q.have, q.tiebreaker) == (True, True)
    assert a.have_quorum
    # ... but losing the tiebreaker too loses it, and reconnecting only the diskless node
    # does not give it back ("a node that has lost quorum cannot regain quorum by connecting
    # to a diskless node").
    lose(a, 2)
    assert not a.have_quorum
    a.peers[2].cstate, a.peers[2].repl, a.peers[2].peer_disk = m.CONNECTED, m.ESTABLISHED, m.DISKLESS
    m.recalc(a)
    assert not a.have_quorum


def test_quorum_two_nodes_without_tiebreaker_and_last_man_standing() -> None:
    a = node(0, witness=False)
    connect_all(a)
    assert a.have_quorum
    lose(a, 1)
    assert not a.have_quorum  # 1 of 2: a 2-node cluster with quorum majority halts
    a2 = node(0, witness=False)
    connect_all(a2)
    a2.md.peer_outdated.add(1)  # the peer left gracefully and marked itself Outdated
    m.peer_left(a2, 1, {"i_am_outdated": True})
    q = m.calc_quorum(a2)
    assert (q.have, q.voters) == (True, 1)  # Outdated nodes do not vote: last man standing
    never_seen = node(0, witness=False)
    never_seen.md.peer_seen.clear()
    m.recalc(never_seen)
    assert never_seen.have_quorum  # peers never seen do not count
    all_ = node(0, quorum="all", witness=False)
    connect_all(all_)
    assert m.calc_quorum(all_).quorum_at == 2
    lose(all_, 1)
    assert not all_.have_quorum  # quorum all: every voter must be visible


def test_promotion_refusals_in_drbds_order() -> None:
    rng = random.Random(1)
    b = node(1)
    connect_all(b, peer_role=m.PRIMARY)
    with pytest.raises(m.StateChangeFailed) as exc:
        m.promote(b, force=True, now=1.0, rng=rng)  # --force does not allow a second primary
    assert (exc.value.code, exc.value.text, exc.value.exit_code) == (-1, "Multiple primaries not allowed by config", 11)
    assert b.role == m.SECONDARY

    outdated = node(1, disk=m.OUTDATED)
    connect_all(outdated, peer_disk=m.OUTDATED)
    with pytest.raises(m.StateChangeFailed) as exc:
        m.promote(outdated, force=False, now=1.0, rng=rng)
    assert (exc.value.code, exc.value.exit_code) == (-2, 17)
    assert "(-2) Need access to UpToDate data" in exc.value.stderr("r0")

    isolated = node(1)
    for pid in (0, 2):
        lose(isolated, pid)
    assert not isolated.have_quorum
    with pytest.raises(m.StateChangeFailed) as exc:
        m.promote(isolated, force=False, now=1.0, rng=rng)
    assert (exc.value.code, exc.value.info) == (-25, "1 of 2 nodes visible, need 2 for quorum")
    assert "additional info from kernel:\n1 of 2 nodes visible" in exc.value.stderr("r0")


def test_forced_promotion_of_inconsistent_data_starts_a_new_generation() -> None:
    rng = random.Random(2)
    fresh = node(0, disk=m.INCONSISTENT)
    fresh.md.current_uuid = 0
    connect_all(fresh, peer_disk=m.INCONSISTENT)
    with pytest.raises(m.StateChangeFailed):
        m.promote(fresh, force=False, now=1.0, rng=rng)
    full = m.promote(fresh, force=True, now=1.0, rng=rng)
    assert (fresh.role, fresh.disk, full) == (m.PRIMARY, m.UP_TO_DATE, [1])
    assert fresh.md.current_uuid != 0 and fresh.md.consistent
    assert m.promote(fresh, force=False, now=2.0, rng=rng) == []  # already Primary: nothing


def test_secondary_losing_its_primary_is_consistent_then_upto_date_or_outdated() -> None:
    alone = node(1)
    connect_all(alone, peer_role=m.PRIMARY)
    lose(alone, 0, now=10.0)
    assert alone.disk == m.CONSISTENT
    assert m.settle(alone, now=10.5, delay=1.0) == []  # not yet
    m.settle(alone, now=11.0, delay=1.0)
    assert alone.disk == m.UP_TO_DATE  # the primary is gone for everyone

    weak = node(1)
    connect_all(weak, peer_role=m.PRIMARY)
    lose(weak, 0, now=10.0)
    weak.peers[2].primaries_seen = [0]  # the witness still sees the primary
    m.settle(weak, now=11.0, delay=1.0)
    assert (weak.disk, weak.md.outdated) == (m.OUTDATED, True)


def test_graceful_disconnect_from_a_primary_outdates_the_secondary() -> None:
    a, b = node(0), node(1)
    connect_all(a)
    a.role = m.PRIMARY
    connect_all(b, peer_role=m.PRIMARY)
    msg = m.leave(a, 1, going_down=False)
    assert msg == {"outdate_you": True, "i_am_outdated": False}
    assert (a.peers[1].cstate, a.peers[1].peer_disk, a.new_cur_uuid) == (m.STANDALONE, m.OUTDATED, True)
    m.peer_left(b, 0, msg)
    assert (b.disk, b.peers[0].cstate) == (m.OUTDATED, m.CONNECTING)


def test_writes_track_out_of_sync_blocks_and_start_generations_lazily() -> None:
    rng = random.Random(3)
    a = node(0)
    connect_all(a)
    a.role = m.PRIMARY
    targets = m.write(a, m.blocks_of(0, 3 * m.BLOCK_BYTES), rng)
    assert (targets, a.written_kib, a.md.current_uuid, a.md.bits(1)) == ([1], 12, 0x1000, set())
    lose(a, 1)
    assert a.new_cur_uuid and a.md.current_uuid == 0x1000  # no write yet: same generation
    m.write(a, m.blocks_of(m.BLOCK_BYTES - 512, 4 * m.BLOCK_BYTES), rng)  # unaligned: 5 blocks
    assert a.md.current_uuid != 0x1000 and a.md.bitmap_uuids[1] == 0x1000 and a.md.history[0] == 0x1000
    assert a.md.bits(1) == {0, 1, 2, 3, 4}

    with pytest.raises(m.WriteRefused, match="Wrong medium type"):
        m.write(node(1), [0], rng)
    for policy, match in (("io-error", "Input/output error"), ("suspend-io", "suspended")):
        lonely = node(0)
        lonely.on_no_quorum = policy
        connect_all(lonely)
        lonely.role = m.PRIMARY
        lose(lonely, 1)
        lose(lonely, 2)
        assert lonely.suspended() == (policy == "suspend-io")
        with pytest.raises(m.WriteRefused, match=match):
            m.write(lonely, [0], rng)


def rep(
    node_id: int,
    cu: int,
    bm: int = 0,
    *,
    role: str = m.SECONDARY,
    bits: int = 0,
    history: tuple[int, ...] = (),
    disk: str = m.UP_TO_DATE,
    since: float = 0.0,
    discard: bool = False,
) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "role": role,
        "disk": disk,
        "client": False,
        "current_uuid": cu,
        "bitmap_uuid": bm,
        "history": list(history),
        "bits": list(range(100, 100 + bits)),
        "primary_since": since,
        "discard_my_data": discard,
        "size_blocks": m.DEFAULT_BLOCKS,
    }


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (rep(0, 0), rep(1, 0), (0, "current UUIDs empty on both nodes")),
        (rep(0, 5), rep(1, 0), (2, "current UUID empty on the peer")),
        (rep(0, 5), rep(1, 5), (0, "equal current UUIDs")),
        (rep(0, 7, bm=5), rep(1, 5), (1, "bitmap UUID matches the peer's current UUID")),
        (rep(0, 5), rep(1, 7, bm=5), (-1, "peer's bitmap UUID matches our current UUID")),
        (rep(0, 7, bm=5), rep(1, 9, bm=5), (100, "bitmap UUIDs match, current UUIDs do not")),
        (rep(0, 3), rep(1, 9, history=(3,)), (-2, "current UUID matches a historical UUID of the peer")),
        (rep(0, 7, bm=5), rep(1, 9, bm=4), (-100, "neither current nor bitmap UUIDs match")),
        (rep(0, 7), rep(1, 9), (-1000, "no UUIDs match")),
    ],
)
def test_generation_identifier_rules(a: dict[str, Any], b: dict[str, Any], expected: tuple[int, str]) -> None:
    assert m.compare_uuids(a, b) == expected
    mirrored, _ = m.compare_uuids(b, a)
    assert mirrored == (-expected[0] if expected[0] not in (100, -100, -1000) else expected[0])


@pytest.mark.parametrize(
    ("policy", "bits", "since", "winner"),
    [
        ("discard-zero-changes", (0, 4), (0, 0), 1),
        ("discard-zero-changes", (4, 0), (0, 0), 0),
        ("discard-zero-changes", (3, 4), (0, 0), None),
        ("discard-least-changes", (3, 4), (0, 0), 1),
        ("discard-least-changes", (5, 4), (0, 0), 0),
        ("discard-least-changes", (4, 4), (0, 0), 0),  # tie: the higher node-id discards
        ("discard-younger-primary", (9, 1), (10.0, 20.0), 0),  # b promoted last: b discards
        ("discard-older-primary", (9, 1), (10.0, 20.0), 1),
        ("discard-younger-primary", (1, 9), (0, 0), 1),  # no decision: least changes
        ("disconnect", (0, 9), (0, 0), None),
    ],
)
def test_after_sb_0pri(policy: str, bits: tuple[int, int], since: tuple[float, float], winner: int | None) -> None:
    a_bits, b_bits = bits
    a_since, b_since = since
    a = rep(0, 7, bm=5, bits=a_bits, since=a_since)
    b = rep(1, 9, bm=5, bits=b_bits, since=b_since)
    cfg = m.Peer(node_id=1, name="b", after_sb_0pri=policy)
    verdict = m.decide(a, b, cfg)
    cfg_b = m.Peer(node_id=0, name="a", after_sb_0pri=policy)
    mirrored = m.decide(b, a, cfg_b)
    if winner is None:
        assert verdict.kind == mirrored.kind == "split-brain"
        assert "Split-Brain detected but unresolved" in verdict.message
    else:
        assert verdict.kind == mirrored.kind == "sync"
        assert verdict.source == mirrored.source == winner
        assert set(verdict.bits) == set(a["bits"]) | set(b["bits"])
        assert "0 primaries, automatically solved" in verdict.message


def test_after_sb_1pri_2pri_manual_resolution_and_role_conflicts() -> None:
    a = rep(0, 7, bm=5, bits=50, role=m.SECONDARY)
    b = rep(1, 9, bm=5, bits=1, role=m.PRIMARY)
    assert m.decide(a, b, m.Peer(1, "b", after_sb_1pri="discard-secondary")).source == 1
    consensus = m.Peer(1, "b", after_sb_0pri="discard-least-changes", after_sb_1pri="consensus")
    assert m.decide(a, b, consensus).kind == "split-brain"  # 0pri would discard the primary's data
    assert m.decide(rep(0, 7, bm=5, bits=1), rep(1, 9, bm=5, bits=50, role=m.PRIMARY), consensus).source == 1
    both = m.decide(rep(0, 7, bm=5, role=m.PRIMARY), rep(1, 9, bm=5, role=m.PRIMARY), m.Peer(1, "b"))
    assert both.kind == "split-brain" and "after-sb-2pri disconnect" in both.message
    manual = m.decide(rep(0, 7, bm=5, discard=True), rep(1, 9, bm=5, role=m.PRIMARY), m.Peer(1, "b"))
    assert (manual.kind, manual.source) == ("sync", 1)
    two = m.decide(rep(0, 5, role=m.PRIMARY), rep(1, 5, role=m.PRIMARY), m.Peer(1, "b"))
    assert (two.kind, two.message) == ("two-primaries", "Multiple primaries not allowed by config")
    assert (
        m.decide(rep(0, 5, role=m.PRIMARY), rep(1, 5, role=m.PRIMARY), m.Peer(1, "b", allow_two_primaries=True)).kind
        == "established"
    )
    rr = m.decide(rep(0, 5, role=m.PRIMARY), rep(1, 7, bm=5), m.Peer(1, "b"))
    assert rr.kind == "rr-conflict"  # the resync target would be a Primary
    diskless = m.decide(rep(0, 5), {**rep(2, 0), "disk": m.DISKLESS, "client": True}, m.Peer(2, "w", bitmap=False))
    assert diskless.kind == "established"
    assert m.decide(rep(0, 7), rep(1, 9), m.Peer(1, "b")).kind == "unrelated"


def test_resync_sends_every_out_of_sync_block_once_and_the_target_adopts_the_sources_generation() -> None:
    rng = random.Random(4)
    a, b = node(0, witness=False, quorum="off"), node(1, witness=False, quorum="off")
    connect_all(a)
    connect_all(b)
    a.role = m.PRIMARY
    lose(a, 1)
    lose(b, 0)
    m.write(a, range(40), rng)
    m.write(a, range(30, 50), rng)  # overlapping: still one bit per block
    ra, rb = m.report(a, 1), m.report(b, 0)
    verdict = m.decide(ra, rb, a.peers[1])
    assert (verdict.kind, verdict.source, len(verdict.bits)) == ("sync", 0, 50)
    m.apply_verdict(a, 1, verdict, rb)
    m.apply_verdict(b, 0, verdict, ra)
    assert (a.peers[1].repl, b.peers[0].repl, b.disk) == (m.SYNC_SOURCE, m.SYNC_TARGET, m.INCONSISTENT)
    in_flight: set[int] = set()
    sent: list[int] = []
    while a.md.bits(1):
        batch = m.resync_batch(a, 1, 16, in_flight)
        sent += batch
        m.receive_resync(b, 0, batch)
        m.resync_acked(a, 1, batch)
        assert len(b.md.bits(0)) == len(a.md.bits(1))
    assert sent == list(range(50))  # linear order, each block once
    m.finish_resync_target(b, 0, m.finish_resync_source(a, 1))
    assert (b.disk, b.md.current_uuid) == (m.UP_TO_DATE, a.md.current_uuid)
    assert (a.peers[1].repl, a.peers[1].peer_disk, a.md.bitmap_uuids) == (m.ESTABLISHED, m.UP_TO_DATE, {})


def test_a_full_sync_covers_the_whole_device() -> None:
    a, b = node(0, witness=False, quorum="off"), node(1, witness=False, quorum="off")
    a.md.size_blocks = b.md.size_blocks = 8192
    verdict = m.decide(rep(0, 0x5000) | {"size_blocks": 8192}, rep(1, 0) | {"size_blocks": 8192}, a.peers[1])
    assert (verdict.kind, verdict.full, len(verdict.bits)) == ("sync", True, 8192)
    assert list(m.blocks_of(4096 * 8191, 4096)) == [8191]


def test_status_document_has_drbdsetups_keys() -> None:
    a = node(0)
    connect_all(a)
    a.peers[1].repl, a.peers[1].rs_total = m.SYNC_SOURCE, 8
    a.md.bits(1).update(range(6))
    doc = m.status_document([a])
    [res] = doc
    assert list(res) == ["name", "node-id", "role", "suspended", "write-ordering", "devices", "connections"]
    assert list(res["devices"][0]) == [
        "volume",
        "minor",
        "disk-state",
        "client",
        "quorum",
        "size",
        "read",
        "written",
        "al-writes",
        "bm-writes",
        "upper-pending",
        "lower-pending",
    ]
    conn = res["connections"][0]
    assert list(conn)[:5] == ["peer-node-id", "name", "connection-state", "congested", "peer-role"]
    pd = conn["peer_devices"][0]
    assert (pd["out-of-sync"], pd["percent-resync-done"], pd["has-sync-details"]) == (24, 25.0, True)
    [parsed] = parse_status(m.status_json([a]))
    beta = parsed.peer("n1")
    assert beta is not None and (beta.out_of_sync_bytes, beta.resync_percent) == (24 * 1024, 25.0)
    assert parsed.peer("witness") is not None and parsed.peer("witness").client  # type: ignore[union-attr]


def test_a_disk_that_went_down_as_primary_is_resynced_from_wherever_the_data_is_newest() -> None:
    """Writes in flight when a Primary lost power may be on its disk only: the activity log
    (here the whole device) counts as out of sync, and with equal generations the crashed
    Primary is the source; when the peer moved on, the peer is, and overwrites all of it."""
    rng = random.Random(5)
    a, b = node(0, witness=False, quorum="off"), node(1, witness=False, quorum="off")
    connect_all(a)
    m.promote(a, False, 1.0, rng)
    assert a.md.primary_ind
    lose(b, 0)  # a "loses power": its metadata keeps the Primary indicator; it boots Secondary
    a.role = m.SECONDARY
    assert m.attach_crashed_primary(a) and a.crashed_primary and not a.md.primary_ind
    assert a.md.bits(1) == set(range(a.md.size_blocks))
    equal = m.decide(m.report(a, 1), m.report(b, 0), a.peers[1])
    assert (equal.kind, equal.source, len(equal.bits)) == ("sync", 0, a.md.size_blocks)
    moved_on = m.decide(
        m.report(a, 1), m.report(b, 0) | {"current_uuid": 0x7777, "bitmap_uuid": a.md.current_uuid}, a.peers[1]
    )
    assert (moved_on.kind, moved_on.source, len(moved_on.bits)) == ("sync", 1, a.md.size_blocks)
    m.promote(a, False, 2.0, rng)
    m.demote(a)
    assert m.attach_crashed_primary(a) == []  # a clean demotion leaves nothing to redo
