"""Scenario 9: after a failover the old primary's view is one epoch behind. Everything it
could still send with that view is refused: its guarded Lease renew (HTTP 409 from the API
server), its report claiming Primary at the old epoch (the operator ignores it for roles and
says so), and a switchover request made for the old epoch (the new primary does not act on
it)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from tandem.kube.connect import load_client
from tandem.kube.errors import Conflict
from tandem_agent.kube import AgentWatches, Kube
from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, lease_holder, missing_acks, missing_files, wait_replicating, wait_until

pytestmark = pytest.mark.lab

LEASE_SECONDS = 3.0


def test_stale_epoch_requests_and_reports_are_refused(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    client.acked_by("mail1")
    api = load_client(str(lab.plane.kubeconfig))
    stale = Kube(api, lab.namespace, "mail1", AgentWatches(api, [lab.namespace]))
    old = stale.read_lease_now("mail")
    assert old is not None and old.holder == "mail1"

    lab.kill_agent("mail1")
    lab.cut("mail1")
    client.acked_by("mail2", timeout=30)
    assert lease_holder(lab, "mail") == ("mail2", old.epoch + 1)

    with pytest.raises(Conflict):
        stale.write_lease("mail", "mail1", old.epoch, acquire=False)
    assert lease_holder(lab, "mail") == ("mail2", old.epoch + 1)

    stale.report(
        "mail",
        {
            "name": "mail1",
            "role": "Primary",
            "epoch": old.epoch,
            "heartbeatTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )
    wait_until(
        lambda: "stale epoch refused" in json.dumps(lab.hacluster("mail")["status"]),
        30,
        "the operator saying it refused the stale report",
    )
    status = lab.hacluster("mail")["status"]
    assert status["primary"] == "mail2" and status["epoch"] == old.epoch + 1

    request = {
        "apiVersion": "tandem.dev/v1alpha1",
        "kind": "HACluster",
        "metadata": {"name": "mail", "namespace": lab.namespace},
        "status": {
            "switchover": {
                "target": "mail1",
                "fromEpoch": old.epoch,
                "phase": "Pending",
                "reason": "Requested",
                "requestedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        },
    }
    lab.kubectl(
        "apply",
        "--server-side",
        "--subresource=status",
        "--field-manager=stale-test",
        "--force-conflicts",
        "-f",
        "-",
        stdin=json.dumps(request),
    )
    time.sleep(2 * LEASE_SECONDS)
    assert lease_holder(lab, "mail") == ("mail2", old.epoch + 1), (
        "the primary acted on a switchover request of an older epoch"
    )
    lab.heal("mail1")
    wait_replicating(lab, "mail", "mail2", ["mail1"])
    client.stop()
    assert missing_acks(lab, "mail2", client.acked()) == []
    files = client.acked_files()
    assert files, "no file was acknowledged"
    assert missing_files(lab, "mail2", files) == []
