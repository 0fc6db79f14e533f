"""The host seam (tandem_agent.host): how commands and paths reach the host.

The DaemonSet runs the agent with --host-exec nsenter; these tests pin the argument lists it
builds, the path translation the mounts driver relies on, and that `drivers.base.run()` and
the mounts driver really go through the seam.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem_agent import host
from tandem_agent.__main__ import key_of, parse_args, resolve
from tandem_agent.drivers import mounts
from tandem_agent.drivers.base import in_netns, run
from tandem_agent.invalid import InvalidSpec

NSENTER = ["nsenter", "--target=1", "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd", "--"]
PG_START = [
    "runuser",
    "-u",
    "postgres",
    "--",
    "/usr/lib/postgresql/15/bin/pg_ctl",
    "start",
    "-D",
    "/var/lib/postgresql/15/main",
    "-w",
]


@pytest.fixture
def configured() -> Iterator[None]:
    """Restore the process-wide host access after a test that changes it."""
    before = host.current()
    yield
    host.configure(before)


def test_direct_mode_leaves_commands_and_paths_alone() -> None:
    access = host.HostAccess()
    assert access.command(["mount", "--", "/dev/drbd0", "/srv/mail"]) == ["mount", "--", "/dev/drbd0", "/srv/mail"]
    assert access.path("/srv/mail/") == "/srv/mail"
    assert access.mountinfo == "/proc/self/mountinfo"
    assert access.mount_ns_pid == "self"
    assert host.current() == access, "the default is direct, so the lab and host install are unchanged"


def test_nsenter_mode_enters_every_namespace_of_pid_1() -> None:
    access = host.HostAccess(exec_mode="nsenter")
    assert access.command(["systemctl", "start", "--", "dovecot.service"]) == [
        *NSENTER,
        "systemctl",
        "start",
        "--",
        "dovecot.service",
    ]
    # The netns prefix (the lab's) stays inside: ip runs on the host, too.
    assert access.command(in_netns("mail1", ["drbdadm", "up", "r0"])) == [
        *NSENTER,
        "ip",
        "netns",
        "exec",
        "mail1",
        "drbdadm",
        "up",
        "r0",
    ]
    assert access.mountinfo == "/proc/1/mountinfo"
    assert access.mount_ns_pid == "1"
    assert access.path("/srv/mail") == "/proc/1/root/srv/mail"
    assert access.path("/") == "/proc/1/root"
    assert access.path("//srv/../etc/drbd.d") == "/proc/1/root/etc/drbd.d"


def test_pg_ctl_start_runs_in_its_own_systemd_scope_and_nothing_else_does() -> None:
    access = host.HostAccess(exec_mode="nsenter", scope_daemons=True)
    wrapped = access.command(PG_START)
    assert wrapped[: len(NSENTER)] == NSENTER
    scope = wrapped[len(NSENTER) :]
    assert scope[:4] == ["systemd-run", "--scope", "--quiet", "--collect"]
    assert scope[4].startswith("--description=tandem: ")
    assert scope[5:] == ["--", *PG_START]
    for argv in (
        ["pg_ctl", "stop", "-D", "/d"],
        ["pg_ctl", "promote", "-D", "/d"],
        ["systemctl", "start", "--", "postgresql.service"],
        ["mount", "/a", "/b"],
    ):
        assert access.command(argv) == [*NSENTER, *argv], argv
    assert host.starts_daemon(["pg_ctl", "restart", "-D", "/d"])
    assert host.HostAccess().command(PG_START) == PG_START
    on_host = host.HostAccess(scope_daemons=True).command(PG_START)  # the host install
    assert on_host[:2] == ["systemd-run", "--scope"] and on_host[-len(PG_START) :] == PG_START


def test_bad_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="nsenter"):
        host.HostAccess(exec_mode="chroot")
    with pytest.raises(ValueError, match="absolute"):
        host.HostAccess(exec_mode="nsenter").path("srv/mail")


def test_symlinks_resolve_inside_the_host_root(tmp_path: Path) -> None:
    root = tmp_path / "host"
    (root / "srv" / "data").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "srv" / "mail").symlink_to("/srv/data")  # absolute: the host's /srv/data
    (root / "etc" / "mail").symlink_to("../srv/mail")
    access = host.HostAccess(exec_mode="nsenter", host_root=str(root))
    assert access.realpath("/etc/mail/new") == "/srv/data/new"
    assert access.realpath("/../../srv/./mail") == "/srv/data"  # ".." stops at the root
    assert access.realpath("/nowhere/x") == "/nowhere/x"
    (root / "loop").symlink_to("/loop")
    with pytest.raises(OSError, match="too many"):
        access.realpath("/loop")


def test_run_goes_through_the_seam(configured: None) -> None:
    host.configure(host.HostAccess(exec_mode="nsenter", nsenter="echo", target_pid=7))
    out = run(["mount", "-t", "xfs", "--", "/dev/drbd0", "/srv/mail"]).stdout.split()
    assert out == [
        "--target=7",
        "--mount",
        "--uts",
        "--ipc",
        "--net",
        "--pid",
        "--root",
        "--wd",
        "--",
        "mount",
        "-t",
        "xfs",
        "--",
        "/dev/drbd0",
        "/srv/mail",
    ]


def test_mounts_create_targets_on_the_host_and_read_its_mount_table(tmp_path: Path, configured: None) -> None:
    root = tmp_path / "host"
    root.mkdir()
    host.configure(host.HostAccess(exec_mode="nsenter", host_root=str(root)))
    mounts._prepare_target("/srv/mail", True, True)
    assert (root / "srv" / "mail").is_dir()
    assert not Path("/srv/mail-created-by-tandem-test").exists()
    mounts._prepare_target("/etc/postfix/main.cf", False, True)
    assert (root / "etc" / "postfix" / "main.cf").is_file()
    # The mount table is PID 1's, read from /proc (here pid 1 of this test's namespace).
    host.configure(host.HostAccess(exec_mode="nsenter"))
    assert host.current().mountinfo == "/proc/1/mountinfo"
    assert any(e.mount_point == "/" for e in mounts.read_mountinfo())


def test_agent_serves_every_namespace_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TANDEM_NAMESPACE", raising=False)
    monkeypatch.delenv("TANDEM_HOST_EXEC", raising=False)
    args = parse_args(["--node", "mail1"])
    assert args.namespace == ()
    assert args.host_exec == "direct" and not args.scope_daemons
    args = parse_args(["--node", "mail1", "--namespace", "mail", "--namespace", "crm,mail"])
    assert args.namespace == ("mail", "crm")
    monkeypatch.setenv("TANDEM_NAMESPACE", "a, b")
    monkeypatch.setenv("TANDEM_HOST_EXEC", "nsenter")
    monkeypatch.setenv("TANDEM_SCOPE_DAEMONS", "1")
    args = parse_args(["--node", "mail1"])
    assert args.namespace == ("a", "b")
    assert args.host_exec == "nsenter" and args.scope_daemons


def test_a_cluster_resolves_only_objects_of_its_own_namespace() -> None:
    def obj(ns: str, name: str, spec: dict) -> dict:
        return {"metadata": {"namespace": ns, "name": name}, "spec": spec}

    fip = {"addresses": [{"start": "198.18.0.2"}], "prefixLength": 24, "interface": "eth0", "cluster": "mail"}
    cluster = obj("a", "mail", {"nodes": [{"name": "n1"}, {"name": "n2"}], "chain": {"floatingIPs": ["vip"]}})
    world = {
        "haclusters": [cluster],
        "drbdvolumes": [],
        "floatingips": [obj("b", "vip", {**fip, "addresses": [{"start": "198.18.0.9"}]})],
    }
    with pytest.raises(
        InvalidSpec,
        match=r"spec.chain.floatingIPs\[0\]: FloatingIP vip does not "
        "exist in namespace a",
    ):
        resolve(cluster, world)
    world["floatingips"].append(obj("a", "vip", fip))
    resolved = resolve(cluster, world)
    assert str(resolved.floating_ips["vip"].addresses[0].start) == "198.18.0.2"
    assert key_of(cluster) == "a/mail"
