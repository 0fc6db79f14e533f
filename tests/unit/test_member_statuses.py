"""The operator fills DRBDVolume and FloatingIP status from the nodes' reports (issue 14 item 5),
and writes only what changed."""

from __future__ import annotations

from datetime import timedelta

from tandem.api.drbdvolume import DRBDVolumeStatus
from tandem.api.floatingip import FloatingIPStatus
from tandem.kube.lease import LeaseRecord
from tandem_operator import core
from tandem_operator.addresses import address_summary
from tandem_operator.snapshot import Snapshot
from tests.unit.test_operator_core import NOW, cluster, fip, report, snap, volume


def members(s: Snapshot) -> dict[str, dict]:
    return {m.name: m.status for m in core.reconcile(s).members}


def test_a_healthy_pair_shows_roles_disks_connection_and_the_holder() -> None:
    found = members(snap(cluster(report("n1", "Primary"), report("n2"))))
    assert found["data"]["roles"] == "Primary/Secondary"
    assert found["data"]["disks"] == "UpToDate/UpToDate"
    assert found["data"]["connection"] == "Connected"
    assert [n["name"] for n in found["data"]["nodes"]] == ["n1", "n2"]
    assert found["vip"] == {
        "holder": "n1",
        "epoch": 1,
        "addressCount": 99,
        "summary": "99 addresses 198.18.0.2-198.18.0.100",
        "conditions": [],
    }


def test_a_node_without_a_fresh_report_is_unknown_and_the_primarys_connection_is_shown() -> None:
    stale = report("n2", age=600)
    found = members(snap(cluster(report("n1", "Primary", conn="Connecting"), stale)))
    assert found["data"]["roles"] == "Primary/Unknown"
    assert found["data"]["disks"] == "UpToDate/DUnknown"
    assert found["data"]["connection"] == "Connecting"


def test_no_reports_at_all_say_unknown_and_the_addresses_have_no_holder() -> None:
    found = members(snap(cluster(), lease=LeaseRecord(None, 1)))
    assert found["data"]["roles"] == "Unknown/Unknown" and found["data"]["connection"] == "Unknown"
    assert "holder" not in found["vip"] and "epoch" not in found["vip"]
    assert found["vip"]["summary"] == "99 addresses 198.18.0.2-198.18.0.100"


def test_the_holder_holds_the_addresses_only_once_it_reports_primary_in_its_epoch() -> None:
    promoting = LeaseRecord("n2", 2, NOW - timedelta(seconds=2), NOW, 3)
    found = members(snap(cluster(report("n1", "Standby"), report("n2", "Standby", epoch=1)), lease=promoting))
    assert "holder" not in found["vip"]
    found = members(snap(cluster(report("n1"), report("n2", "Primary", epoch=2)), lease=promoting))
    assert found["vip"]["holder"] == "n2" and found["vip"]["epoch"] == 2


def test_what_already_shows_is_not_written_again() -> None:
    s = snap(cluster(report("n1", "Primary"), report("n2")))
    written = {m.name: m.status for m in core.reconcile(s).members}
    shown = snap(
        s.cluster,
        volumes={"data": volume().model_copy(update={"status": DRBDVolumeStatus.model_validate(written["data"])})},
        floating_ips={
            "vip": fip(("198.18.0.2", "198.18.0.100")).model_copy(
                update={"status": FloatingIPStatus.model_validate(written["vip"])}
            )
        },
    )
    assert core.reconcile(shown).members == ()


def test_objects_of_another_cluster_or_a_deleted_cluster_are_left_alone() -> None:
    theirs = snap(
        cluster(report("n1", "Primary")),
        volumes={"data": volume(owner="other")},
        floating_ips={"vip": fip(("198.18.0.2", None), owner="other")},
    )
    assert core.reconcile(theirs).members == ()
    assert core.reconcile(snap(cluster(report("n1", "Primary")), deleting=True)).members == ()


def test_one_address_is_shown_as_itself_and_a_long_list_is_cut() -> None:
    assert address_summary("vip", fip(("198.18.0.7", None))) == (1, "198.18.0.7")
    many = fip(*((f"198.18.{i}.1", f"198.18.{i}.2") for i in range(20)))
    count, summary = address_summary("vip", many)
    assert count == 40 and len(summary) == 128 and summary.endswith("...")


def test_an_invalid_address_list_is_not_counted_and_says_where_to_look() -> None:
    too_many = fip(("198.18.0.1", "198.18.0.200"), ("198.18.1.1", "198.18.1.200"))
    assert address_summary("vip", too_many) == (0, "invalid: see the HACluster's Ready condition")
