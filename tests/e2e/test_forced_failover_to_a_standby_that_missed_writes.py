"""Issue 14 item 4, `kubectl tandem failover --force`, on the lab.

The replication link of the primary is cut, so mail2 drops off the Lease's synchronous list
while mail1 keeps acknowledging writes alone; then mail1 is powered off. Nobody may take over
(mail2 may lack acknowledged writes): the cluster has no primary. The forced failover is the
human decision: while mail1 still renewed it was refused, without `--accept-data-loss` it
printed what may be lost and changed nothing, and with it mail2 takes the Lease one lease
duration after the last renewal, promotes DRBD with --force, and serves writes through the
VIP. The writes mail1 acknowledged alone are the loss the report announced."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import (
    Client,
    lease_holder,
    node_report,
    sync_standbys,
    wait_replicating,
    wait_until,
    writable,
)
from tests.e2e.conftest import kubectl_tandem as tandem

pytestmark = pytest.mark.lab

LEASE_SECONDS = 3.0


def status(lab: LabCluster) -> dict[str, Any]:
    return lab.hacluster("mail").get("status") or {}


def annotations(lab: LabCluster) -> dict[str, str]:
    found: dict[str, str] = lab.hacluster("mail")["metadata"].get("annotations") or {}
    return found


def test_forced_failover_is_refused_while_the_holder_renews(lab: LabCluster) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    before = lease_holder(lab, "mail")
    shown = tandem(lab, "failover", "mail", "--to", "mail2", "--force")
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "--accept-data-loss" in shown.stdout + shown.stderr
    assert not any(k.startswith("tandem.dev/force-failover") for k in annotations(lab))

    refused = tandem(
        lab, "failover", "mail", "--to", "mail2", "--force", "--accept-data-loss", "--wait", "--timeout", "60"
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "renews" in refused.stdout + refused.stderr
    assert status(lab)["forcedFailover"]["phase"] == "Refused"
    assert lease_holder(lab, "mail") == before


def test_forced_failover_after_the_only_synchronous_copy_is_destroyed(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    wait_until(lambda: sync_standbys(lab, "mail") == ["mail2"], 30, "mail2 synchronous")
    _, epoch = lease_holder(lab, "mail")
    lab.cut("mail1", "repl")
    wait_until(lambda: sync_standbys(lab, "mail") == [], 30, "mail2 off the synchronous list")
    acked_alone = client.acked_by("mail1", timeout=30)
    lab.power_off("mail1")
    powered_off = time.monotonic()

    wait_until(
        lambda: node_report(lab, "mail", "mail2").get("ineligibleReason") == "NotSynchronous",
        30,
        "mail2 saying why it may not take over",
    )
    time.sleep(3 * LEASE_SECONDS)
    assert lease_holder(lab, "mail") == ("mail1", epoch), "a standby took over by itself"
    assert not writable(lab, "mail2")

    report = tandem(lab, "failover", "mail", "--to", "mail2", "--force")
    assert report.returncode == 1, report.stdout + report.stderr
    assert "synchronous" in report.stdout, report.stdout
    assert lease_holder(lab, "mail") == ("mail1", epoch)

    forced = tandem(
        lab, "failover", "mail", "--to", "mail2", "--force", "--accept-data-loss", "--wait", "--timeout", "90"
    )
    assert forced.returncode == 0, forced.stdout + forced.stderr
    holder, new_epoch = lease_holder(lab, "mail")
    assert holder == "mail2" and new_epoch > epoch
    record = status(lab)["forcedFailover"]
    assert record["phase"] == "Completed" and record["target"] == "mail2", record
    assert record.get("dataAtRisk"), record
    wait_until(
        lambda: (status(lab).get("lastFailover") or {}).get("reason") == "ForcedFailover",
        30,
        "lastFailover records the forced failover",
    )
    served = client.acked_by("mail2", timeout=60)
    print(
        f"forced failover: mail1 acknowledged alone at {acked_alone:.1f}, powered off at "
        f"{powered_off:.1f}; mail2 acknowledged through the VIP at {served:.1f}"
    )
    mail2 = node_report(lab, "mail", "mail2")
    assert mail2["role"] == "Primary" and mail2["forcedFailover"]["phase"] == "Completed", json.dumps(mail2)
    again = tandem(lab, "failover", "mail", "--to", "mail2", "--force", "--accept-data-loss")
    assert again.returncode == 0, again.stdout + again.stderr  # already holds the Lease
