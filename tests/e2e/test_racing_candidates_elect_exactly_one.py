"""Scenario 10: in a three-node group the primary is powered off, so two standbys see the
same Lease expire and race for it. Exactly one wins, leaseTransitions grows by exactly one,
and only the winner holds the floating IP. The race itself is the API server's guarded update:
two writers of the same Lease version, one gets HTTP 409."""

from __future__ import annotations

import threading
import time

import pytest

from tandem.kube.connect import load_client
from tandem.kube.errors import Conflict
from tandem_agent.kube import AgentWatches, Kube
from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Observer, holds, lease_holder, wait_until

pytestmark = pytest.mark.lab

SAMPLES = ["trio.yaml"]
NODES = ["trio1", "trio2", "trio3"]
VIP = "198.18.60.140"


def test_racing_candidates_elect_exactly_one(lab: LabCluster) -> None:
    wait_until(lambda: lease_holder(lab, "trio")[0] == "trio1" and holds(lab, "trio1", VIP), 90, "trio1 primary")
    _, epoch = lease_holder(lab, "trio")
    observer = Observer(lab, NODES, VIP, lease_name="trio").start()
    try:
        lab.power_off("trio1")
        wait_until(lambda: lease_holder(lab, "trio")[0] in ("trio2", "trio3"), 30, "a standby taking the Lease")
        winner, new_epoch = lease_holder(lab, "trio")
        wait_until(lambda: holds(lab, winner, VIP), 30, f"{winner} holding the VIP")
        time.sleep(3.0)
        assert lease_holder(lab, "trio") == (winner, epoch + 1)
        assert [n for n in NODES if holds(lab, n, VIP)] == [winner]
    finally:
        observer.stop()
    observer.assert_single_primary()
    loser = "trio3" if winner == "trio2" else "trio2"
    tried = "taking the Lease at epoch" in lab.agent_log(loser)
    print(f"{winner} won epoch {new_epoch}; {loser} {'lost a write race' if tried else 'saw it first'}")

    api = load_client(str(lab.plane.kubeconfig))
    racers = [Kube(api, lab.namespace, n, AgentWatches(api, [lab.namespace])) for n in ("a", "b")]
    for racer in racers:
        assert racer.read_lease_now("trio") is not None
    start = threading.Barrier(2)
    results: dict[str, str] = {}

    def race(racer: Kube) -> None:
        start.wait()
        try:
            racer.write_lease("trio", racer.node, epoch + 2, acquire=True)
            results[racer.node] = "won"
        except Conflict:
            results[racer.node] = "409"

    threads = [threading.Thread(target=race, args=(r,)) for r in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == ["409", "won"], results
    holder, transitions = lease_holder(lab, "trio")
    assert transitions == epoch + 2 and results[holder or ""] == "won"
