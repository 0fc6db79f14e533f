"""Applying the mail sample elects one primary that serves the VIP, PostgreSQL streams to the
standby and DRBD is Connected Primary/Secondary UpToDate/UpToDate, visible with kubectl."""

from __future__ import annotations

import re

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, lease_holder, node_report, wait_until

pytestmark = pytest.mark.lab


def test_preferred_primary_takes_the_lease_and_serves(lab: LabCluster, client: Client) -> None:
    holder, epoch = wait_until(lambda: lease_holder(lab, "mail")[0] and lease_holder(lab, "mail"), 60, "a Lease holder")
    assert holder == "mail1" and epoch == 1
    client.served_by("mail1", timeout=60)
    client.acked_by("mail1", timeout=30)


def test_standby_streams_and_both_report_themselves(lab: LabCluster) -> None:
    def replicating() -> bool:
        primary = node_report(lab, "mail", "mail1")
        standby = node_report(lab, "mail", "mail2")
        return (
            primary.get("role") == "Primary"
            and primary.get("postgres", {}).get("streamingStandbys") == 1
            and standby.get("role") == "Standby"
            and standby.get("postgres", {}).get("role") == "Standby"
            and standby.get("postgres", {}).get("lagSeconds") == 0
        )

    wait_until(replicating, 60, "mail1 primary with mail2 streaming")
    drbd = node_report(lab, "mail", "mail1")["drbd"][0]
    assert (drbd["connectionState"], drbd["role"], drbd["peerRole"], drbd["diskState"], drbd["peerDiskState"]) == (
        "Connected",
        "Primary",
        "Secondary",
        "UpToDate",
        "UpToDate",
    )
    assert node_report(lab, "mail", "mail1")["epoch"] == 1


def test_periodic_jobs_run_on_the_primary_only(lab: LabCluster) -> None:
    """The mail sample's jobs are a real systemd timer: started on the primary, where its
    service appends to a log on the DRBD volume, and never on the standby."""
    primary, standby = lab.machine("mail1"), lab.machine("mail2")

    def ran() -> list[str]:
        proc = primary.exec(["cat", "/srv/mail/jobs.log"], check=False)
        return proc.stdout.splitlines()

    wait_until(
        lambda: primary.unit_state("mail-jobs.timer") == "active" and len(ran()) >= 2,
        30,
        "mail-jobs.timer active on mail1 and its job run twice",
    )
    assert {line.split()[0] for line in ran()} == {"mail1"}
    assert standby.unit_state("mail-jobs.timer") == "inactive"
    assert standby.unit_state("mail-jobs.service") == "inactive"


def test_kubectl_shows_the_pair(lab: LabCluster) -> None:
    def row() -> list[str]:
        return lab.kubectl("get", "hac", "mail", "-n", lab.namespace).splitlines()[1].split()

    # The operator aggregates the agents' reports on its own schedule: wait for it to converge.
    wait_until(
        lambda: row()[1:5] == ["mail1", "True", "Replicating", "1"],
        60,
        "kubectl get hac: PRIMARY mail1, READY True, STATUS Replicating, EPOCH 1",
    )
    text = lab.kubectl("describe", "hac", "mail", "-n", lab.namespace)
    for fragment in (
        "Role:                Primary",
        "Streaming Standbys:  1",
        "Lag Seconds:  0",
        "Connection State:",
        "Connected",
        "UpToDate",
    ):
        assert fragment in text, f"{fragment!r} not in:\n{text}"


def test_kubectl_get_tandem_fills_every_column(lab: LabCluster) -> None:
    """The DRBDVolume and FloatingIP rows show what the nodes report (the operator writes their
    status): no empty ROLES, DISKS, CONNECTION, ADDRESSES or HOLDER."""

    def columns(kind: str) -> dict[str, str]:
        header, row = lab.kubectl("get", kind, "-n", lab.namespace).splitlines()[:2]
        return dict(zip(re.split(r" {2,}", header.strip()), re.split(r" {2,}", row.strip()), strict=False))

    wait_until(
        lambda: (
            columns("drbdvolume") | {"AGE": ""}
            == {
                "NAME": "mail-store",
                "CLUSTER": "mail",
                "RESOURCE": "mail-store",
                "ROLES": "Primary/Secondary",
                "DISKS": "UpToDate/UpToDate",
                "CONNECTION": "Connected",
                "AGE": "",
            }
        ),
        60,
        "kubectl get drbdvolume: Primary/Secondary UpToDate/UpToDate Connected",
    )
    # The lab moves the sample's addresses into its own range: 99 of them, as in the sample.
    wait_until(
        lambda: (
            (row := columns("floatingip"))["HOLDER"] == "mail1"
            and re.fullmatch(r"99 addresses 198\.1[89]\.\d+\.2-198\.1[89]\.\d+\.100", row["ADDRESSES"]) is not None
        ),
        60,
        "kubectl get floatingip: 99 addresses held by mail1",
        context=lambda: columns("floatingip"),
    )
