"""Issue 14 item 2: with spec.paused (maintenance mode) the agents act on nothing, the primary
keeps its Lease, and restarting every agent (an upgrade) moves nothing and stops no write;
resuming re-adopts what runs, under the same epoch."""

from __future__ import annotations

import json
import time

import pytest

from tandem_lab.cluster import AGENT_UNIT, LabCluster
from tandem_lab.harness import (
    Client,
    checked,
    lease_holder,
    node_report,
    wait_replicating,
    wait_until,
)
from tests.e2e.conftest import kubectl_tandem as tandem
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab


def paused(lab: LabCluster, value: bool) -> None:
    """`kubectl tandem pause mail` / `resume mail`, then spec.paused says so."""
    done = tandem(lab, "pause" if value else "resume", "mail")
    assert done.returncode == 0, done.stdout + done.stderr
    spec = json.loads(lab.kubectl("get", "hac", "mail", "-n", lab.namespace, "-o", "json"))["spec"]
    assert spec.get("paused", False) is value


def ready_reason(lab: LabCluster) -> str:
    return lab.kubectl(
        "get", "hac", "mail", "-n", lab.namespace, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].reason}'
    )


def ack_gap(client: Client, after: float) -> float:
    """Longest time without an acknowledged write after `after`."""
    acked = [r["t"] for r in client.records() if "ack" in r and r["t"] >= after]
    acked.append(time.monotonic())  # a gap still open counts too
    return max(b - a for a, b in zip(acked, acked[1:], strict=False))


def test_agents_restarted_while_paused_move_nothing_and_resume_adopts(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    lease = lease_holder(lab, "mail")
    assert lease[0] == "mail1"
    with checked(lab, client, vip(), primary="mail1", standbys=("mail2",)):
        paused(lab, True)
        wait_until(lambda: ready_reason(lab) == "Paused", 30, "Ready reason Paused")
        wait_until(
            lambda: all(node_report(lab, "mail", n).get("ineligibleReason") == "Paused" for n in ("mail1", "mail2")),
            30,
            "both nodes say Paused",
        )
        start = time.monotonic()
        old = {n: lab.agent_pid(n) for n in ("mail1", "mail2")}
        for node in ("mail1", "mail2"):  # the upgrade: one agent after the other
            lab.machine(node).exec(["systemctl", "restart", AGENT_UNIT])
            wait_until(lambda node=node: lab.agent_pid(node) != old[node], 30, f"{node}'s agent restarted")
        # The new processes are up and the standby has seen the Lease long enough to take it
        # if it were not paused (leaseDuration is 3 s in the lab sample).
        time.sleep(6)
        assert lease_holder(lab, "mail") == lease, "the Lease moved while paused"
        assert ack_gap(client, start) < 1.0, "writes stopped while the agents restarted"
        assert "took the Lease" not in lab.agent_log("mail2")
        # The restarted agents checked what runs and adopted it, touching nothing: the status
        # says Primary and Standby again, with the primary's members monitored.
        wait_until(
            lambda: (
                (node_report(lab, "mail", "mail1")["role"], node_report(lab, "mail", "mail2")["role"])
                == ("Primary", "Standby")
            ),
            30,
            "roles adopted while paused",
            context=lambda: [node_report(lab, "mail", n) for n in ("mail1", "mail2")],
        )
        resources = node_report(lab, "mail", "mail1").get("resources") or []
        assert resources and all(r["state"] == "Healthy" for r in resources), resources
        assert "adopting" in lab.agent_log("mail1") and "adopting" in lab.agent_log("mail2")

        paused(lab, False)
        wait_until(lambda: ready_reason(lab) == "Replicating", 60, "Ready reason Replicating")
        assert node_report(lab, "mail", "mail1")["role"] == "Primary"
        assert lease_holder(lab, "mail") == lease, "resuming re-adopts: no new epoch"
        assert ack_gap(client, start) < 1.0, "resuming stopped writes"
        client.acked_by("mail1", timeout=10)


def test_a_standby_agent_restarted_without_pause_keeps_its_postgresql_streaming(
    lab: LabCluster, client: Client
) -> None:
    """The rolling upgrade's first step (docs/install.md): the standby's agent restarts on its
    own. It adopts the standby it finds, so PostgreSQL there keeps running and the primary's
    synchronous commits never wait for it."""
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    lease = lease_holder(lab, "mail")
    pid = lab.postgres_pid("mail2")
    assert pid is not None
    with checked(lab, client, vip(), primary="mail1", standbys=("mail2",)):
        start = time.monotonic()
        old = lab.agent_pid("mail2")
        lab.machine("mail2").exec(["systemctl", "restart", AGENT_UNIT])
        wait_until(lambda: lab.agent_pid("mail2") != old, 30, "mail2's agent restarted")
        wait_until(
            lambda: "found this node a standby of mail1" in lab.agent_log("mail2"),
            30,
            "mail2's agent adopting the standby",
        )
        time.sleep(3)
        assert lab.postgres_pid("mail2") == pid, "the standby's PostgreSQL was restarted"
        assert ack_gap(client, start) < 1.0, "writes stalled while the standby's agent restarted"
        assert lease_holder(lab, "mail") == lease
