"""Scenario 11: seen from a third namespace (the client's), after the floating IP moves its
neighbour table holds the new node's MAC (the gratuitous ARP updated it), and an ARP request
for the floating IP is answered by the new node only: the old node, still running, no longer
claims the address."""

from __future__ import annotations

import json

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import (
    Client,
    arp_answers,
    link_mac,
    missing_acks,
    missing_files,
    neighbour_mac,
    wait_replicating,
    wait_until,
)
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab


def test_vip_answers_from_the_new_mac_only(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    client.acked_by("mail1")
    old_mac, new_mac = link_mac(lab.netns("mail1")), link_mac(lab.netns("mail2"))
    assert old_mac != new_mac
    assert arp_answers(lab.client_netns, vip()) == {old_mac}
    assert neighbour_mac(lab.client_netns, vip()) == old_mac

    lab.kubectl(
        "patch", "hac", "mail", "-n", lab.namespace, "--type=merge", "-p", json.dumps({"spec": {"primary": "mail2"}})
    )
    client.served_by("mail2", timeout=60)
    assert neighbour_mac(lab.client_netns, vip()) == new_mac
    answers = arp_answers(lab.client_netns, vip())
    print(f"ARP for {vip()}: {answers}; mail1 {old_mac}, mail2 {new_mac}")
    assert answers == {new_mac}
    wait_until(
        lambda: neighbour_mac(lab.client_netns, vip()) == new_mac,
        5,
        "the client's neighbour entry staying on the new MAC",
    )
    wait_replicating(lab, "mail", "mail2", ["mail1"])
    client.stop()
    assert missing_acks(lab, "mail2", client.acked()) == []
    files = client.acked_files()
    assert files, "no file was acknowledged"
    assert missing_files(lab, "mail2", files) == []
