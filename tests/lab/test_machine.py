"""Lab nodes are machines: booted Debian with systemd as PID 1, isolated from one another.

Two nodes boot the cached node root (scripts/build-noderoot.sh) in network namespaces of a lab
network; the fixture powers them off, unmounts their disks, detaches the loop device and
removes the namespaces, also when a test fails.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem_lab.machine import Machine, MachineSpec, cgroup_hierarchies, node_root
from tandem_lab.netns import LabNetwork

pytestmark = pytest.mark.lab

PREFIX = "tmach"
SUBNET = 231


@pytest.fixture(scope="module")
def root() -> Path:
    return node_root()


@pytest.fixture(scope="module")
def pair(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Machine]]:
    work = tmp_path_factory.mktemp("machines")
    image = work / "disk.img"
    with image.open("wb") as f:
        f.truncate(16 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    loop = subprocess.run(
        ["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    network = LabNetwork(PREFIX, SUBNET)
    machines: dict[str, Machine] = {}
    try:
        network.create()
        for index, name in ((2, "alpha"), (3, "beta")):
            host = network.add_host(name, index)
            machines[name] = Machine(
                MachineSpec(
                    name=name,
                    machine=f"{PREFIX}-{name}",
                    netns=host.namespace,
                    directory=work / name,
                    lower=(root,),
                    binds=(loop,) if name == "alpha" else (),
                )
            )
        for machine in machines.values():
            machine.power_on()
        for machine in machines.values():
            machine.wait_booted()
        machines["alpha"].exec(["mkdir", "-p", "/mnt/disk"])
        yield machines
    finally:
        for machine in machines.values():
            machine.destroy()
        network.destroy()
        subprocess.run(["losetup", "-d", loop], check=False)


def test_cgroup_hierarchies_are_read_from_mountinfo() -> None:
    mountinfo = (
        "30 25 0:26 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        "31 25 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "32 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "33 1 8:1 / / rw - ext4 /dev/vda rw\n"
    )
    assert cgroup_hierarchies(mountinfo) == [Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified")]


def test_each_node_is_its_own_booted_debian(pair: dict[str, Machine]) -> None:
    ids = set()
    for name, machine in pair.items():
        assert machine.exec(["hostname"]).stdout.strip() == name
        assert machine.exec(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
        assert "12" in machine.exec(["cat", "/etc/debian_version"]).stdout
        ids.add(machine.exec(["cat", "/etc/machine-id"]).stdout.strip())
        # Debian's PostgreSQL, as Debian installs it, answers on the node itself.
        out = machine.run(["psql", "-Atc", "show data_directory"], user="postgres").stdout
        assert out.strip() == "/var/lib/postgresql/15/main"
    assert len(ids) == 2, "every node must boot with its own machine id"


def test_node_sees_only_its_own_addresses(pair: dict[str, Machine]) -> None:
    shown = pair["alpha"].exec(["ip", "-o", "-4", "addr", "show"]).stdout
    assert f"198.18.{SUBNET}.2/24" in shown and f"198.19.{SUBNET}.2/24" in shown
    assert f"198.18.{SUBNET}.3/" not in shown


def test_a_mount_on_one_node_is_invisible_elsewhere(pair: dict[str, Machine]) -> None:
    alpha, beta = pair["alpha"], pair["beta"]
    device = alpha.spec.binds[0]
    alpha.exec(["mount", device, "/mnt/disk"])
    try:
        assert "/mnt/disk" in alpha.exec(["cat", "/proc/self/mountinfo"]).stdout
        assert "/mnt/disk" not in beta.exec(["cat", "/proc/self/mountinfo"]).stdout
        assert "/mnt/disk" not in Path("/proc/self/mountinfo").read_text()
        # The device itself was handed to alpha only.
        assert beta.exec(["test", "-b", device], check=False).returncode != 0
    finally:
        alpha.exec(["umount", "/mnt/disk"])


def test_confined_commands_run_as_units_of_the_node(pair: dict[str, Machine]) -> None:
    proc = pair["beta"].run(["id", "-un"], user="postgres")
    assert proc.stdout.strip() == "postgres"
    failing = pair["beta"].run(["false"], check=False)
    assert failing.returncode != 0


def test_power_off_kills_everything_at_once_and_reboot_keeps_the_disk(pair: dict[str, Machine]) -> None:
    beta = pair["beta"]
    beta.exec(["sh", "-c", "echo kept > /root/marker"])
    init = beta.init_pid()
    assert init is not None
    postmaster = beta.exec(["cat", "/var/run/postgresql/15-main.pid"]).stdout.split()[0]
    host_pids = [
        int(pid) for procs in (beta.cgroups[0] / "payload").rglob("cgroup.procs") for pid in procs.read_text().split()
    ]
    assert len(host_pids) > 3, host_pids

    beta.power_off()

    assert not beta.running()
    assert beta.init_pid() is None
    alive = [pid for pid in host_pids if Path(f"/proc/{pid}").exists()]
    assert alive == [], f"processes of the node survived its power-off: {alive}"
    assert postmaster  # PostgreSQL was running and is gone with the rest

    beta.boot()
    assert beta.init_pid() not in (None, init)
    assert beta.exec(["cat", "/root/marker"]).stdout.strip() == "kept"
    assert beta.unit_state("postgresql@15-main.service") == "active"
