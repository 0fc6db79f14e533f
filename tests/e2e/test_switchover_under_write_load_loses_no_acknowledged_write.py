"""Changing spec.primary is a planned switchover: the old primary demotes fully, hands the
Lease over, the target promotes; every acknowledged write survives; the gap is measured."""

from __future__ import annotations

import json
import time

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, Observer, lease_holder, missing_acks, missing_files, node_report, wait_until
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab


def ready_on(lab: LabCluster, node: str) -> bool:
    other = "mail2" if node == "mail1" else "mail1"
    return (
        node_report(lab, "mail", node).get("role") == "Primary"
        and node_report(lab, "mail", other).get("postgres", {}).get("lagSeconds") == 0
        and "Replicating" in lab.kubectl("get", "hac", "mail", "-n", lab.namespace)
    )


@pytest.mark.parametrize("target", ["mail2", "mail1"])
def test_switchover_moves_the_primary_without_losing_a_write(lab: LabCluster, client: Client, target: str) -> None:
    source = "mail1" if target == "mail2" else "mail2"
    wait_until(lambda: ready_on(lab, source), 90, f"{source} primary and replicating")
    client.acked_by(source)
    _, epoch = lease_holder(lab, "mail")
    observer = Observer(lab, ["mail1", "mail2"], vip()).start()
    started = time.monotonic()
    lab.kubectl(
        "patch", "hac", "mail", "-n", lab.namespace, "--type=merge", "-p", json.dumps({"spec": {"primary": target}})
    )
    try:
        served = client.served_by(target, timeout=60)
        client.acked_by(target, timeout=30)
    finally:
        observer.stop()
    holder, new_epoch = lease_holder(lab, "mail")
    assert (holder, new_epoch) == (target, epoch + 1)
    gap = client.http_gap(after=started)
    print(f"switchover {source}->{target}: served after {served - started:.2f}s, client-visible gap {gap:.2f}s")
    assert observer.samples > 10
    assert observer.double_vip == [] and observer.double_writable == []
    wait_until(lambda: ready_on(lab, target), 60, f"{target} primary and replicating")
    status = lab.hacluster("mail")["status"]
    assert status["switchover"]["phase"] == "Completed"
    assert status["lastFailover"]["planned"] is True and status["lastFailover"]["to"] == target
    client.stop()
    assert missing_acks(lab, target, client.acked()) == []
    files = client.acked_files()
    assert files, "no file was acknowledged"
    assert missing_files(lab, target, files) == []
