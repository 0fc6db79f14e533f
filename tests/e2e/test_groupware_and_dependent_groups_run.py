"""Reference workloads 2 and 3 run as samples: fifteen ordered services behind seven bind
mounts with a DRBD witness, a node put in standby and back; two dependent clusters colocated
on one node, a web server on both nodes, and a hard power-off of the primary."""

from __future__ import annotations

import json
import subprocess

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import lease_holder, node_report, pids_in, wait_until
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab

SAMPLES = ["groupware.yaml", "dependent-groups.yaml"]
GROUPWARE_SERVICES = [
    "mariadb",
    "redis",
    "memcached",
    "php-fpm",
    "postfix",
    "dovecot",
    "sogo",
    "iredapd",
    "mlmmjadmin",
    "netdata",
    "fail2ban",
    "clamav",
    "amavis",
    "admin-api",
    "nginx",
]


def http(lab: LabCluster, address: str, port: int) -> str | None:
    """GET from the client namespace; the answer is the serving node's name."""
    url = f"http://{address}:{port}/"
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            lab.client_netns,
            "python3",
            "-c",
            "import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1],timeout=1).read().decode().strip())",
            url,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    return proc.stdout.strip() or None


def running(lab: LabCluster, cluster: str, node: str) -> list[str]:
    services = node_report(lab, cluster, node).get("services", [])
    return [s["name"] for s in services if s.get("state") == "Running"]


def service_start_order(lab: LabCluster, node: str, units: dict[str, str]) -> list[str]:
    """Services sorted by when systemd on the node started their units."""
    machine = lab.machine(node)
    started = {
        name: int(machine.systemctl("show", "-p", "ExecMainStartTimestampMonotonic", "--value", unit).stdout.strip())
        for name, unit in units.items()
    }
    return sorted(units, key=lambda n: started[n])


def node_mounts(lab: LabCluster, node: str) -> str:
    return lab.machine(node).exec(["cat", "/proc/1/mountinfo"]).stdout


def test_groupware_starts_fifteen_services_in_order_behind_seven_bind_mounts(
    lab: LabCluster,
) -> None:
    wait_until(
        lambda: lease_holder(lab, "groupware")[0] == "gw1" and running(lab, "groupware", "gw1") == GROUPWARE_SERVICES,
        120,
        "gw1 primary with all fifteen services",
    )
    assert http(lab, vip(120), 8080) == "gw1"
    units = {s["name"]: s["unit"] for s in lab.hacluster("groupware")["spec"]["chain"]["services"]}
    assert service_start_order(lab, "gw1", units) == GROUPWARE_SERVICES
    mounts = node_mounts(lab, "gw1")
    binds = [line for line in mounts.splitlines() if "/var/lib/tandem-lab/groupware/" in line]
    assert len(binds) == 7, binds
    assert " /srv/groupware " in mounts
    drbd = node_report(lab, "groupware", "gw1")["drbd"][0]
    assert (drbd["role"], drbd["diskState"], drbd["peerDiskState"]) == ("Primary", "UpToDate", "UpToDate")
    assert drbd.get("quorum") is True


def test_standby_mode_moves_the_stack_and_back(lab: LabCluster) -> None:
    _, epoch = lease_holder(lab, "groupware")
    lab.kubectl(
        "patch",
        "hac",
        "groupware",
        "-n",
        lab.namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"standbyNodes": ["gw1"]}}),
    )
    wait_until(
        lambda: lease_holder(lab, "groupware")[0] == "gw2" and running(lab, "groupware", "gw2") == GROUPWARE_SERVICES,
        120,
        "the stack on gw2 after gw1 went into standby",
    )
    assert http(lab, vip(120), 8080) == "gw2"
    assert node_report(lab, "groupware", "gw1").get("ineligibleReason") == "StandbyMode"
    lab.kubectl(
        "patch",
        "hac",
        "groupware",
        "-n",
        lab.namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"standbyNodes": []}}),
    )
    wait_until(
        lambda: node_report(lab, "groupware", "gw1").get("eligible") is True, 60, "gw1 online and eligible again"
    )
    holder, new_epoch = lease_holder(lab, "groupware")
    assert holder == "gw2" and new_epoch == epoch + 1, "coming back online is no failover"


def test_dependent_groups_are_colocated_and_web_runs_on_both_nodes(lab: LabCluster) -> None:
    wait_until(
        lambda: lease_holder(lab, "db")[0] == "app1" and lease_holder(lab, "app")[0] == "app1",
        120,
        "db and app primary on app1",
    )
    wait_until(lambda: http(lab, vip(131), 8081) == "app1", 60, "app VIP answering")
    assert http(lab, vip(130), 3306) == "app1"
    for node_address, node in ((vip(221), "app1"), (vip(222), "app2")):
        wait_until(lambda a=node_address, n=node: http(lab, a, 8081) == n, 60, f"web on {node}")


def test_power_off_of_the_primary_brings_everything_up_on_the_other_node(
    lab: LabCluster,
) -> None:
    lab.power_off("app1")
    assert not lab.machine("app1").running()
    assert pids_in(lab.netns("app1")) == []
    wait_until(
        lambda: lease_holder(lab, "db")[0] == "app2" and lease_holder(lab, "app")[0] == "app2",
        120,
        "db and app on app2",
    )
    wait_until(lambda: http(lab, vip(131), 8081) == "app2", 60, "app VIP from app2")
    assert http(lab, vip(130), 3306) == "app2"
