"""DRBD split brain, recovered as DRBD's user's guide documents it ("Manual split brain
recovery"): the standby whose connection to the Lease holder is StandAlone is the victim
(Secondary, `drbdadm connect --discard-my-data`), the holder only connects again; the victim
reports what it discarded and the operator says it once, on the HACluster and the DRBDVolume."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tandem.api.drbdvolume import DRBDVolumeSpec, DRBDVolumeStatus
from tandem.api.hacluster import HAClusterSpec, NodeReport
from tandem_agent import agent as agent_module
from tandem_agent.agent import ClusterAgent, intent_of
from tandem_agent.chain import Aborted, ChainRunner, NodeEnvironment, ResolvedCluster
from tandem_agent.core import (
    Action,
    ChainSnapshot,
    ChainState,
    Decision,
    FailedResource,
    Holding,
    LeaseView,
    StandAlone,
    Switchover,
    chain_decision,
)
from tandem_agent.drivers import drbd
from tandem_agent.drivers.base import Outcome
from tandem_agent.drivers.drbd import ResourceStatus, parse_status
from tandem_agent.volumes import DrbdVolume, resynced_from, standalone_peers
from tandem_agent.watchdog import NoWatchdog
from tandem_operator import core
from tandem_operator.snapshot import Snapshot
from tests.unit.test_agent_core import chain_snap
from tests.unit.test_forced_failover import FakeVolume as PromotedVolume
from tests.unit.test_metrics import FakeKube
from tests.unit.test_operator_core import (
    NOW,
    cluster,
    cond,
    iso,
    reasons,
    report,
    settle,
    snap,
    volume,
    with_reports,
)

TOWARD_HOLDER = StandAlone("mail-store", "n2", 24 * 1024)
TOWARD_WITNESS = StandAlone("mail-store", "witness")


def standby(**kw: Any) -> ChainSnapshot:
    """n1, a standby of the Lease holder n2: chain down, following n2, one volume StandAlone."""
    fields: dict[str, Any] = {
        "acting_epoch": None,
        "lease_holder": "n2",
        "chain": ChainState.DOWN,
        "replicating": True,
        "volumes_joined": False,
        "standalone": (TOWARD_HOLDER,),
    }
    return chain_snap(**(fields | kw))


def holder(**kw: Any) -> ChainSnapshot:
    """n1, the Lease holder with its chain up at epoch 4, its connection to n2 StandAlone."""
    return chain_snap(**({"standalone": (StandAlone("mail-store", "n2", 8192),)} | kw))


def never_says_split_brain(reason: str) -> bool:
    """The operator reads those words in a report's message as DRBD's own (two primaries)."""
    return "split brain" not in reason.lower() and "split-brain" not in reason.lower()


# --- the decision -----------------------------------------------------------------------------


def test_a_standby_standalone_toward_the_holder_discards_its_own_data() -> None:
    d = chain_decision(standby())
    assert d.action is Action.DISCARD_MY_DATA and d.target == "n2"
    assert d.connections == (TOWARD_HOLDER,)
    assert d.reason == (
        "DRBD mail-store is StandAlone toward n2 (24 KiB changed here that n2 "
        "lacks): reconnecting with --discard-my-data, so that n2's data wins and "
        "this node resyncs from it"
    )
    assert never_says_split_brain(d.reason)
    # Before the standby has rejoined the new holder too: DRBD is not held up by PostgreSQL.
    assert chain_decision(standby(replicating=False)).action is Action.DISCARD_MY_DATA


def test_only_the_connection_toward_the_holder_is_discarded() -> None:
    d = chain_decision(standby(standalone=(TOWARD_WITNESS, TOWARD_HOLDER)))
    assert d.action is Action.DISCARD_MY_DATA and d.connections == (TOWARD_HOLDER,)
    # Toward another node the standby joins plainly, as before.
    other = chain_decision(standby(standalone=(TOWARD_WITNESS,)))
    assert other.action is Action.REJOIN and other.target is None


def test_the_holder_connects_again_plainly() -> None:
    d = chain_decision(holder())
    assert d.action is Action.RECONNECT and d.epoch == 4
    assert d.connections == (StandAlone("mail-store", "n2", 8192),)
    assert d.reason == (
        "DRBD mail-store is StandAlone toward n2: connecting again; this node holds the Lease, so its data wins"
    )
    assert never_says_split_brain(d.reason)


def test_nothing_is_done_without_a_standalone_connection() -> None:
    quiet = chain_decision(standby(standalone=(), volumes_joined=True))
    assert (quiet.action, quiet.reason) == (Action.WAIT, "standby")
    assert chain_decision(holder(standalone=())) == Decision(Action.WAIT, "primary at epoch 4", epoch=4)


def test_a_node_that_is_not_a_standby_of_another_holder_never_discards() -> None:
    # It holds the Lease but missed renewDeadline: no survivor to give way to.
    own = standby(lease_holder="n1")
    assert chain_decision(own).action is Action.REJOIN
    nobody = standby(lease_holder=None)
    assert chain_decision(nobody).action is Action.REJOIN
    assert all(chain_decision(s).action is not Action.DISCARD_MY_DATA for s in (own, nobody))


def test_paused_standby_mode_deletion_and_a_tear_down_are_left_alone() -> None:
    paused = chain_decision(standby(paused=True))
    assert paused.action is Action.WAIT and "paused" in paused.reason
    assert chain_decision(holder(paused=True)).action is Action.WAIT

    kept = chain_decision(standby(in_standby_mode=True))
    assert kept.action is Action.WAIT
    assert kept.reason == (
        "DRBD mail-store is StandAlone toward n2 (24 KiB changed here that "
        "n2 lacks): in standby mode (spec.standbyNodes), this node keeps its "
        "data; online, it reconnects with --discard-my-data and resyncs from n2"
    )
    stepping_down = chain_decision(holder(in_standby_mode=True))
    assert (stepping_down.action, stepping_down.cause) == (Action.TEAR_DOWN, "StandbyMode")

    assert chain_decision(standby(deleting=True)).action is Action.WAIT
    assert chain_decision(holder(deleting=True)).action is Action.TEAR_DOWN
    for state in (ChainState.UP, ChainState.UNKNOWN):
        assert chain_decision(standby(chain=state)).action is Action.TEAR_DOWN


def test_the_holder_brings_up_repairs_and_hands_over_before_it_reconnects() -> None:
    assert chain_decision(holder(chain=ChainState.DOWN)).action is Action.BRING_UP
    web = FailedResource("Service/web", "service web", "its unit is not active")
    assert chain_decision(holder(failed=(web,))).action is Action.REPAIR
    switchover = holder(switchover=Switchover(target="n2", from_epoch=4))
    assert chain_decision(switchover).action is Action.TEAR_DOWN


# --- the volume: the commands of the user's guide ---------------------------------------------


def status_json(
    *, role: str = "Secondary", disk: str = "UpToDate", conn: str = "StandAlone", repl: str = "Off", oos_kib: int = 24
) -> str:
    return json.dumps(
        [
            {
                "name": "mail-store",
                "node-id": 0,
                "role": role,
                "devices": [{"volume": 0, "disk-state": disk}],
                "connections": [
                    {
                        "peer-node-id": 1,
                        "name": "mail2",
                        "connection-state": conn,
                        "peer-role": "Unknown",
                        "peer_devices": [
                            {
                                "volume": 0,
                                "replication-state": repl,
                                "peer-disk-state": "DUnknown",
                                "out-of-sync": oos_kib,
                            }
                        ],
                    }
                ],
            }
        ]
    )


def seen(**kw: Any) -> ResourceStatus:
    return parse_status(status_json(**kw))[0]


SPEC = DRBDVolumeSpec.model_validate(
    {
        "cluster": "mail",
        "resourceName": "mail-store",
        "minor": 0,
        "nodes": [
            {"name": "mail1", "disk": "/dev/vg0/mail", "address": "198.19.0.201", "nodeId": 0},
            {"name": "mail2", "disk": "/dev/vg0/mail", "address": "198.19.0.202", "nodeId": 1},
        ],
    }
)


def drbdadm_calls(monkeypatch: pytest.MonkeyPatch, status: str) -> list[list[str]]:
    """The drbdadm commands the driver runs, each answered with success; every look at DRBD
    answers `status`."""
    ran: list[list[str]] = []

    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        if "status" in argv:
            return subprocess.CompletedProcess(argv, 0, status, "")
        ran.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(drbd, "run", run)
    return ran


def test_the_victim_demotes_then_connects_with_discard_my_data(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = drbdadm_calls(monkeypatch, status_json(role="Primary"))
    vol = DrbdVolume(drbd.Drbd("/etc/drbd.d", node_name="mail1"), SPEC)
    assert vol.reconnect("mail2", discard_my_data=True).changed
    assert [argv[-2:] for argv in ran] == [["secondary", "mail-store"], ["--discard-my-data", "mail-store:mail2"]]
    assert ran[-1][-3] == "connect"


def test_the_survivor_connects_plainly_and_a_connected_peer_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = drbdadm_calls(monkeypatch, status_json(role="Primary"))
    vol = DrbdVolume(drbd.Drbd("/etc/drbd.d", node_name="mail1"), SPEC)
    assert vol.reconnect("mail2").changed
    assert [argv[-2:] for argv in ran] == [["connect", "mail-store:mail2"]]
    ran.clear()
    connected = drbdadm_calls(monkeypatch, status_json(conn="Connected", repl="Established"))
    assert not vol.reconnect("mail2", discard_my_data=True).changed and connected == []


def test_standalone_peers_carry_their_out_of_sync_and_a_resync_ends_established() -> None:
    found = standalone_peers(seen())
    assert [(p.name, p.out_of_sync_bytes) for p in found] == [("mail2", 24 * 1024)]
    assert standalone_peers(seen(conn="Connecting")) == () and standalone_peers(None) == ()
    assert resynced_from(seen(conn="Connected", repl="Established", oos_kib=0), "mail2")
    assert not resynced_from(seen(conn="Connected", repl="SyncTarget", disk="Inconsistent"), "mail2")
    assert not resynced_from(seen(conn="Connected", repl="WFBitMapT"), "mail2")
    assert not resynced_from(seen(), "mail2") and not resynced_from(None, "mail2")
    assert not resynced_from(seen(conn="Connected", repl="Established"), "mail3")


# --- the agent: who acts, and what it reports --------------------------------------------------


class FakeVolume(PromotedVolume):
    def __init__(self) -> None:
        super().__init__()
        self.connects: list[tuple[str, bool]] = []

    def reconnect(self, peer: str, *, discard_my_data: bool = False) -> Outcome:
        self.connects.append((peer, discard_my_data))
        return Outcome(True, f"mail-store: connecting to {peer}")

    def observe(self) -> ResourceStatus | None:
        return None

    def report(self, status: ResourceStatus | None) -> dict[str, Any]:
        return {}


class ReportingKube(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.reports: list[dict[str, Any]] = []

    def report(self, cluster: str, entry: dict[str, Any]) -> None:
        self.reports.append(entry)


RECORD = {"volume": "mail-store", "peer": "mail2", "discardedBytes": 24 * 1024, "time": "2026-12-01T10:00:00Z"}
DISCARD = Decision(
    Action.DISCARD_MY_DATA,
    "reconnecting with --discard-my-data",
    target="mail2",
    connections=(StandAlone("mail-store", "mail2", 24 * 1024),),
)


def agent_on_mail1(tmp_path: Path, own: list[dict[str, Any]] | None = None) -> tuple[ClusterAgent, FakeVolume]:
    """mail1's agent, a standby of mail2 at epoch 7 (its threads never run)."""
    vol = FakeVolume()
    spec = HAClusterSpec.model_validate(
        {"nodes": [{"name": "mail1"}, {"name": "mail2"}], "chain": {"volumes": ["mail-store"]}}
    )
    env = NodeEnvironment(
        node="mail1",
        state_dir=tmp_path,
        volume_driver=lambda *_: vol,  # type: ignore[arg-type, return-value]
        service_backend=lambda *_: None,  # type: ignore[arg-type, return-value]
        postgres_config=None,  # type: ignore[arg-type]
        replication_password=lambda *_: "pw",
    )
    runner = ChainRunner(ResolvedCluster("mail", spec, {"mail-store": SPEC}, {}), env)
    body = {
        "metadata": {"name": "mail", "generation": 1},
        "spec": {},
        "status": {"nodes": [{"name": "mail1", "splitBrainRecoveries": own}] if own else []},
    }
    kube: Any = ReportingKube()
    agent = ClusterAgent(kube, runner.cluster, runner, intent_of(body, "mail1"), lambda why: None, NoWatchdog())
    agent._change(lease=LeaseView("mail2", 7, "5", 1.0))
    return agent, vol


def reported(agent: ClusterAgent) -> NodeReport:
    agent._last_report = None
    agent._report(DISCARD, "", agent._postgres_status())
    kube: Any = agent.kube
    return NodeReport.model_validate(kube.reports[-1])


def test_the_victim_records_what_it_discards_and_reports_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = {"now": "2026-12-01T10:00:00Z"}
    monkeypatch.setattr(agent_module, "_utc_stamp", lambda: clock["now"])
    agent, vol = agent_on_mail1(tmp_path)
    agent._execute(DISCARD)
    assert vol.connects == [("mail2", True)]
    assert agent.split_brain == {"mail-store": RECORD}
    entry = reported(agent).split_brain_recoveries
    assert [(r.volume, r.peer, r.discarded_bytes, iso(r.time)) for r in entry] == [
        ("mail-store", "mail2", 24 * 1024, "2026-12-01T10:00:00Z")
    ]

    clock["now"] = "2026-12-01T10:00:02Z"
    agent._execute(DISCARD)  # the handshake failed again: the same recovery, said once
    assert vol.connects == [("mail2", True)] * 2 and agent.split_brain == {"mail-store": RECORD}

    agent.runner.drbd = {"mail-store": seen(conn="Connected", repl="SyncTarget", disk="Inconsistent")}
    agent._note_resynced()
    assert "resyncedTime" not in agent.split_brain["mail-store"]
    clock["now"] = "2026-12-01T10:00:05Z"
    agent.runner.drbd = {"mail-store": seen(conn="Connected", repl="Established", oos_kib=0)}
    agent._note_resynced()
    assert agent.split_brain["mail-store"] == RECORD | {"resyncedTime": "2026-12-01T10:00:05Z"}
    assert reported(agent).split_brain_recoveries[0].resynced_time is not None

    clock["now"] = "2026-12-01T11:00:00Z"
    agent._execute(DISCARD)  # a later split brain is a new recovery
    assert agent.split_brain["mail-store"] == RECORD | {"time": "2026-12-01T11:00:00Z"}


def test_nothing_changed_here_is_nothing_discarded(tmp_path: Path) -> None:
    agent, vol = agent_on_mail1(tmp_path)
    agent._execute(
        Decision(Action.DISCARD_MY_DATA, "", target="mail2", connections=(StandAlone("mail-store", "mail2"),))
    )
    assert vol.connects == [("mail2", True)] and agent.split_brain == {}
    assert reported(agent).split_brain_recoveries == []


def test_the_wrong_side_never_discards_nor_connects(tmp_path: Path) -> None:
    agent, vol = agent_on_mail1(tmp_path)
    agent._change(lease=LeaseView("mail3", 8, "6", 2.0))  # the Lease moved since the decision
    with pytest.raises(Aborted, match="no longer names mail2"):
        agent._execute(DISCARD)
    now = time.monotonic()
    agent._change(holding=Holding(8, now), lease=LeaseView("mail1", 8, "7", now))
    with pytest.raises(Aborted):  # this node acts as primary now
        agent._execute(DISCARD)
    reconnect = Decision(Action.RECONNECT, "", epoch=7, connections=(StandAlone("mail-store", "mail2"),))
    with pytest.raises(Aborted, match="no longer the holder at epoch 7"):
        agent._execute(reconnect)
    assert vol.connects == [] and agent.split_brain == {}
    agent._execute(Decision(Action.RECONNECT, "", epoch=8, connections=reconnect.connections))
    assert vol.connects == [("mail2", False)] and agent.split_brain == {}


def test_a_restarted_agent_keeps_reporting_its_last_recovery(tmp_path: Path) -> None:
    agent, _ = agent_on_mail1(tmp_path, own=[RECORD])
    assert agent.split_brain == {"mail-store": RECORD}
    assert [r.peer for r in reported(agent).split_brain_recoveries] == ["mail2"]


# --- the operator: the DRBDVolume's condition and one Event per recovery ----------------------


def victim(
    *, conn: str = "StandAlone", oos: int = 24 * 1024, recoveries: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """n2's report, a standby of the holder n1."""
    entry = report("n2", conn=conn)
    entry["drbd"][0]["outOfSyncBytes"] = oos
    if recoveries:
        entry["splitBrainRecoveries"] = recoveries
    return entry


def recovery(at: str = "2026-11-22T02:59:00Z", resynced: str | None = None) -> dict[str, Any]:
    rec = {"volume": "data", "peer": "n1", "discardedBytes": 24 * 1024, "time": at}
    return rec | ({"resyncedTime": resynced} if resynced else {})


def split_brain(s: Snapshot) -> tuple[str, str, str]:
    status = next(m.status for m in core.reconcile(s).members if m.name == "data")
    c = next(c for c in status["conditions"] if c["type"] == "SplitBrain")
    return c["status"], c["reason"], c["message"]


def test_a_standby_standalone_with_changes_the_holder_lacks_is_detected() -> None:
    primary = report("n1", "Primary")
    assert split_brain(snap(cluster(primary, victim()))) == (
        "True",
        "Detected",
        "n2 is StandAlone with 24.0 KiB changed that the Lease holder n1 lacks: n2 discards them and resyncs from n1",
    )
    paused = split_brain(snap(cluster(primary, victim(), paused=True)))[2]
    assert paused.endswith("paused (spec.paused): nothing is discarded until the cluster is resumed")
    kept = split_brain(snap(cluster(primary, victim(), standbyNodes=["n2"])))[2]
    assert kept.endswith("n2 is in standby mode and keeps them until it is online again")


def test_standalone_without_changes_or_on_the_holder_is_no_split_brain() -> None:
    by_hand = snap(cluster(report("n1", "Primary"), victim(oos=0)))
    assert split_brain(by_hand) == ("False", "NotDetected", "no node's data diverged from the Lease holder's")
    writing = report("n1", "Primary", conn="StandAlone")
    writing["drbd"][0]["outOfSyncBytes"] = 8192  # the holder's own writes since
    assert split_brain(snap(cluster(writing, victim(conn="Connecting", oos=0))))[:2] == ("False", "NotDetected")


def test_a_recovery_is_detected_until_resynced_then_recovered() -> None:
    primary = report("n1", "Primary")
    resyncing = snap(cluster(primary, victim(conn="Connected", oos=0, recoveries=[recovery()])))
    assert split_brain(resyncing) == (
        "True",
        "Detected",
        "n2 discarded 24.0 KiB it had changed that n1 lacked (drbdadm "
        "connect --discard-my-data at 2026-11-22T02:59:00Z) and resyncs from n1",
    )
    done = snap(
        cluster(primary, victim(conn="Connected", oos=0, recoveries=[recovery(resynced="2026-11-22T02:59:30Z")]))
    )
    assert split_brain(done) == (
        "False",
        "Recovered",
        "n2 discarded 24.0 KiB it had changed that n1 lacked (drbdadm "
        "connect --discard-my-data at 2026-11-22T02:59:00Z); resynced from n1 at "
        "2026-11-22T02:59:30Z",
    )


def test_the_condition_is_not_written_again_and_keeps_other_conditions() -> None:
    s = snap(cluster(report("n1", "Primary"), victim()))
    written = next(m.status for m in core.reconcile(s).members if m.name == "data")
    stored = DRBDVolumeStatus.model_validate(written)
    foreign = stored.conditions[0].model_copy(update={"type": "Backup", "reason": "Done"})
    shown = stored.model_copy(update={"conditions": [*stored.conditions, foreign]})
    later = snap(
        s.cluster, now=NOW + timedelta(seconds=30), volumes={"data": volume().model_copy(update={"status": shown})}
    )
    assert [m for m in core.reconcile(later).members if m.plural == "drbdvolumes"] == []


def test_each_recovery_is_one_warning_event_on_the_hacluster() -> None:
    primary = report("n1", "Primary")
    s = snap(cluster(primary, victim(conn="Connected", oos=0, recoveries=[recovery()])))
    d = core.reconcile(s)
    said = [e for e in d.events if e.reason == "SplitBrainRecovery"]
    assert [(e.type, e.message) for e in said] == [
        (
            "Warning",
            "split brain on DRBD data recovered as DRBD documents it: n2 discarded "
            "24.0 KiB it had changed that n1 lacked (drbdadm connect --discard-my-data at "
            "2026-11-22T02:59:00Z) and resyncs from n1, the Lease holder whose data wins",
        )
    ]
    assert d.status.announced is not None
    again = settle(s)
    assert "SplitBrainRecovery" not in reasons(core.reconcile(again))
    resynced = with_reports(
        again, primary, victim(conn="Connected", oos=0, recoveries=[recovery(resynced="2026-11-22T02:59:30Z")])
    )
    assert "SplitBrainRecovery" not in reasons(core.reconcile(resynced))
    later = with_reports(settle(resynced), primary, victim(recoveries=[recovery(at="2026-11-22T03:00:01Z")]))
    assert reasons(core.reconcile(later)).count("SplitBrainRecovery") == 1


def test_the_victims_reason_is_no_split_brain_of_the_hacluster() -> None:
    """Two primaries would be: a standby giving way to the holder keeps the cluster Ready."""
    reason = chain_decision(standby()).reason
    d = core.reconcile(snap(cluster(report("n1", "Primary"), victim() | {"message": reason})))
    assert cond(d, "SplitBrain")[:2] == ("False", "NotDetected")
    assert cond(d, "Ready")[:2] == ("True", "Degraded")
