"""Issue 14 item 3 on the lab: spec changes applied on the running primary.

A FloatingIP added to the running chain answers from the primary, and goes again when it is
removed, while the Lease stays where it is and writes through the VIP go on. A change that
needs the chain down (a mount's options) waits on the primary and says so in `SpecApplied`
while the standby takes it at once; the next switchover applies it on the old primary."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import (
    Client,
    arp_answers,
    checked,
    holds,
    lease_holder,
    link_mac,
    node_report,
    wait_replicating,
    wait_until,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

EXTRA = vip(150)


def hacluster(lab: LabCluster) -> dict[str, Any]:
    return lab.hacluster("mail")


def spec_applied(lab: LabCluster) -> dict[str, Any]:
    conditions = (hacluster(lab).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "SpecApplied"), {})


def applied_everywhere(lab: LabCluster, generation: int) -> bool:
    """SpecApplied is True for `generation` or a later one (spec.primary changes count too)."""
    condition = spec_applied(lab)
    return condition.get("status") == "True" and condition.get("observedGeneration", 0) >= generation


def patch_chain(lab: LabCluster, ops: list[dict[str, Any]]) -> int:
    """A JSON patch of the HACluster; the generation it made."""
    lab.kubectl("patch", "hac", "mail", "-n", lab.namespace, "--type=json", "-p", json.dumps(ops))
    return int(hacluster(lab)["metadata"]["generation"])


def test_a_floating_ip_added_and_removed_on_the_running_primary(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    lab.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "tandem.dev/v1alpha1",
                "kind": "FloatingIP",
                "metadata": {"name": "mail-extra", "namespace": lab.namespace},
                "spec": {"cluster": "mail", "addresses": [{"start": EXTRA}], "prefixLength": 24, "interface": "mgmt"},
            }
        ),
    )
    before = lease_holder(lab, "mail")
    primary_mac = link_mac(lab.netns("mail1"))
    with checked(lab, client, vip(), primary="mail1", standbys=("mail2",)):
        added = patch_chain(lab, [{"op": "add", "path": "/spec/chain/floatingIPs/-", "value": "mail-extra"}])
        wait_until(
            lambda: arp_answers(lab.client_netns, EXTRA) == {primary_mac},
            30,
            f"{EXTRA} answers from mail1",
            context=lambda: spec_applied(lab),
        )
        assert not holds(lab, "mail2", EXTRA)
        wait_until(
            lambda: applied_everywhere(lab, added),
            30,
            "SpecApplied True for the new generation",
            context=lambda: spec_applied(lab),
        )
        assert lease_holder(lab, "mail") == before

        removed = patch_chain(lab, [{"op": "remove", "path": "/spec/chain/floatingIPs/1"}])
        wait_until(lambda: not holds(lab, "mail1", EXTRA), 30, f"{EXTRA} gone from mail1")
        assert arp_answers(lab.client_netns, EXTRA) == set()
        assert holds(lab, "mail1", vip())
        wait_until(
            lambda: applied_everywhere(lab, removed),
            30,
            "SpecApplied True after the removal",
            context=lambda: spec_applied(lab),
        )
        assert lease_holder(lab, "mail") == before


def test_a_change_that_needs_the_chain_down_waits_for_the_next_switchover(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    before = lease_holder(lab, "mail")
    generation = patch_chain(lab, [{"op": "add", "path": "/spec/chain/mounts/0/options", "value": ["nodiratime"]}])

    def waiting() -> bool:
        condition = spec_applied(lab)
        return condition.get("reason") == "WaitingForSwitchover" and condition.get("observedGeneration") == generation

    wait_until(waiting, 30, "SpecApplied WaitingForSwitchover", context=lambda: spec_applied(lab))
    primary, standby = node_report(lab, "mail", "mail1"), node_report(lab, "mail", "mail2")
    assert primary["pendingChange"].startswith("WaitingForSwitchover: spec.chain.mounts changed")
    assert primary["appliedGeneration"] < generation
    assert standby["appliedGeneration"] == generation and not standby.get("pendingChange")
    assert lease_holder(lab, "mail") == before

    with checked(lab, client, vip(), primary="mail1", standbys=("mail2",)):
        lab.kubectl(
            "patch",
            "hac",
            "mail",
            "-n",
            lab.namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"primary": "mail2"}}),
        )
        wait_until(lambda: lease_holder(lab, "mail")[0] == "mail2", 60, "mail2 holds the Lease")
        client.acked_by("mail2", timeout=30)
    wait_until(
        lambda: applied_everywhere(lab, generation),
        60,
        "the old primary applied the change once its chain was down",
        context=lambda: spec_applied(lab),
    )
    mail1 = node_report(lab, "mail", "mail1")
    assert not mail1.get("pendingChange") and mail1["appliedGeneration"] > generation
    wait_replicating(lab, "mail", "mail2", ["mail1"])
