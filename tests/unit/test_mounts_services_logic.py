"""Pure logic of the Mounts and Services drivers: parsing, ordering, validation, argv building.

Nothing here needs root or changes the machine; the few tests that read /proc read only this
test process's own entries.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tandem.api.hacluster import ServiceSpec
from tandem_agent.chain import runnable, service_problems
from tandem_agent.drivers.base import DriverError
from tandem_agent.drivers.mounts import (
    BindMount,
    FilesystemMount,
    MountBusyError,
    MountConflictError,
    MountEntry,
    MountHolder,
    MountSpecError,
    bind_origin,
    containing_mount,
    filesystem_matches,
    is_under,
    maps_line_path_under,
    mounts_beneath,
    parse_mountinfo,
    parse_mountinfo_line,
    process_uses,
    read_mountinfo,
    top_mount,
    unescape,
)
from tandem_agent.drivers.services import (
    ServiceChain,
    ServiceChainError,
    ServiceError,
    ServiceState,
    ServiceStatus,
    SystemdBackend,
    is_stopped,
    kill_needed,
    parse_show,
    status_from_show,
    validate_name,
)

# ---------------------------------------------------------------------------------------------
# mountinfo parsing

# Shapes taken from proc(5) and from this kernel's /proc/self/mountinfo.
PROC5_EXAMPLE = "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
TWO_OPTIONAL = "61 27 0:39 / /srv/a rw,relatime shared:5 master:2 - tmpfs tmpfs rw,size=1024k"
NO_OPTIONAL = "44 27 0:39 / /tmp/x/a\\040b rw,relatime - tmpfs x\\040y rw,size=1024k"
BIND_LINE = "45 27 254:0 /tmp/x/a\\040b /tmp/x/c rw,relatime - ext4 /dev/vda rw,discard,resv_strict"


def entry(
    mount_id: int,
    parent: int,
    dev: str,
    root: str,
    point: str,
    *,
    fstype: str = "ext4",
    source: str = "/dev/vda",
) -> MountEntry:
    major, minor = (int(x) for x in dev.split(":"))
    return MountEntry(mount_id, parent, major, minor, root, point, ("rw",), fstype, source)


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("/plain/path", "/plain/path"),
        ("/a\\040b", "/a b"),
        ("\\011tab\\012nl", "\ttab\nnl"),
        ("back\\134slash", "back\\slash"),
        ("/x\\040\\040y", "/x  y"),
        ("not\\9escape", "not\\9escape"),  # 9 is not an octal digit: kept as it is
        ("trailing\\04", "trailing\\04"),  # too short to be an escape
        ("end\\", "end\\"),
    ],
)
def test_unescape_decodes_octal_escapes_only(raw: str, decoded: str) -> None:
    assert unescape(raw) == decoded


def test_parse_proc5_example_with_one_optional_field() -> None:
    e = parse_mountinfo_line(PROC5_EXAMPLE)
    assert (e.mount_id, e.parent_id, e.major, e.minor) == (36, 35, 98, 0)
    assert e.root == "/mnt1"
    assert e.mount_point == "/mnt/parent"
    assert e.options == ("rw", "noatime")
    assert (e.fstype, e.source) == ("ext3", "/dev/root")
    assert not e.read_only


def test_parse_zero_and_two_optional_fields() -> None:
    two = parse_mountinfo_line(TWO_OPTIONAL)
    assert (two.options, two.fstype, two.source) == (("rw", "relatime"), "tmpfs", "tmpfs")
    e = parse_mountinfo_line(NO_OPTIONAL)
    assert e.fstype == "tmpfs"


def test_parse_escaped_spaces_in_mount_point_source_and_root() -> None:
    e = parse_mountinfo_line(NO_OPTIONAL)
    assert e.mount_point == "/tmp/x/a b"
    assert e.source == "x y"
    bind = parse_mountinfo_line(BIND_LINE)
    assert bind.root == "/tmp/x/a b"
    assert bind.mount_point == "/tmp/x/c"
    assert bind.describe() == "/dev/vda [/tmp/x/a b] (ext4)"


@pytest.mark.parametrize(
    "bad",
    [
        "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 ext3 /dev/root rw",  # no separator
        "36 35 98:0 /mnt1 - ext3 /dev/root rw",  # separator too early
        "36 35 98:0 / /m rw - ext3",  # no source
        "x 35 98:0 / /m rw - ext3 /dev/root rw",  # id not a number
    ],
)
def test_parse_rejects_malformed_lines(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_mountinfo_line(bad)


def test_parse_this_process_mountinfo() -> None:
    entries = read_mountinfo()
    assert entries, "mountinfo is never empty"
    root = top_mount(entries, "/")
    assert root is not None
    assert os.stat("/").st_dev == os.makedev(root.major, root.minor)
    assert parse_mountinfo("\n" + PROC5_EXAMPLE + "\n\n")[0].mount_id == 36


def test_read_only_flag() -> None:
    e = parse_mountinfo_line("50 27 7:0 / /data ro,relatime - xfs /dev/loop0 ro,attr2")
    assert e.read_only


# ---------------------------------------------------------------------------------------------
# Lookups over mount tables


@pytest.mark.parametrize(
    ("path", "top", "expected"),
    [
        ("/a/b", "/a/b", True),
        ("/a/b/c", "/a/b", True),
        ("/a/bc", "/a/b", False),
        ("/a", "/a/b", False),
        ("/anything", "/", True),
        ("/a/b/c", "/a/b/", True),
    ],
)
def test_is_under(path: str, top: str, expected: bool) -> None:
    assert is_under(path, top) is expected


def test_top_mount_picks_the_uppermost_of_stacked_mounts() -> None:
    entries = [
        entry(1, 0, "254:0", "/", "/"),
        entry(10, 1, "7:0", "/", "/data", fstype="xfs", source="/dev/loop0"),
        entry(11, 10, "0:40", "/", "/data", fstype="tmpfs", source="tmpfs"),
    ]
    top = top_mount(entries, "/data")
    assert top is not None
    assert top.mount_id == 11
    assert top_mount(entries, "/elsewhere") is None


def test_mounts_beneath_lists_only_strict_descendants() -> None:
    entries = [
        entry(1, 0, "254:0", "/", "/"),
        entry(10, 1, "7:0", "/", "/data"),
        entry(11, 10, "7:0", "/pg", "/data/x"),
        entry(12, 1, "7:0", "/pg", "/database"),
    ]
    assert [e.mount_id for e in mounts_beneath(entries, "/data")] == [11]


def test_bind_origin_is_device_and_path_inside_the_filesystem() -> None:
    entries = [
        entry(1, 0, "254:0", "/", "/"),
        entry(10, 1, "7:0", "/", "/srv/data root"),
        entry(11, 1, "7:0", "/sub", "/mnt/sub"),  # itself a bind of /sub
    ]
    assert containing_mount(entries, "/srv/data root/pg").mount_id == 10
    assert bind_origin(entries, "/srv/data root/pg") == (7, 0, "/pg")
    assert bind_origin(entries, "/srv/data root") == (7, 0, "/")
    assert bind_origin(entries, "/mnt/sub/x/y") == (7, 0, "/sub/x/y")
    assert bind_origin(entries, "/etc/app") == (254, 0, "/etc/app")


def test_filesystem_matches_block_device_by_number_and_others_by_name() -> None:
    loop = entry(10, 1, "7:3", "/", "/data", fstype="xfs", source="/dev/loop3")
    spec = FilesystemMount("/dev/disk/by-id/whatever", "/data", "xfs")
    assert filesystem_matches(loop, spec, (7, 3))
    assert not filesystem_matches(loop, spec, (7, 4))
    assert not filesystem_matches(loop, FilesystemMount("/dev/loop3", "/data", "ext4"), (7, 3))
    assert filesystem_matches(loop, FilesystemMount("/dev/loop3", "/data", "auto"), (7, 3))
    tmp = entry(11, 1, "0:50", "/", "/run/x", fstype="tmpfs", source="tandem-a")
    assert filesystem_matches(tmp, FilesystemMount("tandem-a", "/run/x", "tmpfs"), None)
    assert not filesystem_matches(tmp, FilesystemMount("tandem-b", "/run/x", "tmpfs"), None)
    # a bind of a subdirectory is not the filesystem itself
    sub = entry(12, 1, "7:3", "/pg", "/data", fstype="xfs", source="/dev/loop3")
    assert not filesystem_matches(sub, spec, (7, 3))


# ---------------------------------------------------------------------------------------------
# Specs and chains


@pytest.mark.parametrize(
    "spec",
    [
        FilesystemMount("/dev/sdb1", "relative/target", "xfs"),
        FilesystemMount("/dev/sdb1", "/data", "xfs", ("noatime,ro",)),
        FilesystemMount("/dev/sdb1", "/data", "xfs", ("",)),
        FilesystemMount("/dev/sdb1", "/data", "x fs"),
        FilesystemMount("-o", "/data", "xfs"),
        FilesystemMount("", "/data", "xfs"),
    ],
)
def test_invalid_filesystem_specs(spec: FilesystemMount) -> None:
    with pytest.raises(MountSpecError):
        spec.validate()


def test_bind_source_resolution_and_escape() -> None:
    assert BindMount("pg", "/var/lib/pg").resolve("/data") == "/data/pg"
    assert BindMount("a/./b/", "/x").resolve("/data") == "/data/a/b"
    assert BindMount("/etc/app", "/x").resolve("/data") == "/etc/app"
    with pytest.raises(MountSpecError):
        BindMount("../etc", "/x").validate()
    with pytest.raises(MountSpecError):
        BindMount("pg", "relative").validate()
    with pytest.raises(MountSpecError):
        BindMount("pg", "/x").resolve(None)


# ---------------------------------------------------------------------------------------------
# Busy detection


def test_maps_lines() -> None:
    line = "7f00-7f10 r-xp 00000000 07:00 1234                       /data/my lib.so"
    assert maps_line_path_under(line, ["/data"])
    assert not maps_line_path_under(line, ["/dat"])
    assert maps_line_path_under("7f-80 r--p 0 07:00 5  /data/x (deleted)", ["/data/x"])
    assert not maps_line_path_under("7f-80 rw-p 00000000 00:00 0  [heap]", ["/"])
    assert not maps_line_path_under("7f-80 rw-p 00000000 00:00 0", ["/"])


def test_process_uses_sees_an_open_file_of_this_process(tmp_path: object) -> None:
    top = str(tmp_path)
    with open(os.path.join(top, "held"), "w", encoding="utf-8") as fh:
        uses = process_uses("/proc/self", [top])
        assert f"fd {fh.fileno()}" in uses
    assert not any(u.startswith("fd") for u in process_uses("/proc/self", [top]))


def test_busy_error_names_pids_commands_and_submounts() -> None:
    err = MountBusyError(
        "/data",
        [MountHolder(4242, "sleep", ("cwd",)), MountHolder(7, "postgres", ("fd 5",))],
        ["/data/x"],
    )
    text = str(err)
    assert "pid 4242 (sleep: cwd)" in text
    assert "pid 7 (postgres: fd 5)" in text
    assert "/data/x" in text
    assert [h.pid for h in err.holders] == [4242, 7]
    conflict = MountConflictError("/data", "/dev/loop0 (xfs)", "/dev/loop1 (ext4)")
    assert "/dev/loop0 (xfs)" in str(conflict) and "/dev/loop1 (ext4)" in str(conflict)


# ---------------------------------------------------------------------------------------------
# systemd: argument lists and `systemctl show` output

# `systemctl show --property=...` prints key=value lines in the bus's property order (service
# properties before unit properties), not in the order asked for; these are of that format.
SHOW_KILLED = """MainPID=0
ExecMainPID=23117
ExecMainCode=2
ExecMainStatus=9
Result=signal
Id=tandem-web.service
LoadState=loaded
ActiveState=failed
SubState=failed
"""
SHOW_EXITED = """MainPID=0
ExecMainPID=1888
ExecMainCode=1
ExecMainStatus=3
Result=exit-code
Id=postgresql@15-main.service
LoadState=loaded
ActiveState=failed
SubState=failed
"""
SHOW_RUNNING = """MainPID=901
ExecMainPID=901
ExecMainCode=0
ExecMainStatus=0
Result=success
Id=nginx.service
LoadState=loaded
ActiveState=active
SubState=running
"""
SHOW_STOPPED = """MainPID=0
ExecMainPID=901
ExecMainCode=2
ExecMainStatus=15
Result=success
Id=nginx.service
LoadState=loaded
ActiveState=inactive
SubState=dead
"""
SHOW_DUMPED = """MainPID=0
ExecMainPID=77
ExecMainCode=3
ExecMainStatus=11
Result=core-dump
Id=app.service
LoadState=loaded
ActiveState=failed
SubState=failed
"""
SHOW_STOPPING = """MainPID=901
ExecMainPID=901
ExecMainCode=0
ExecMainStatus=0
Result=success
Id=web.service
LoadState=loaded
ActiveState=deactivating
SubState=stop-sigterm
"""
SHOW_STARTING = """MainPID=0
ExecMainPID=0
ExecMainCode=0
ExecMainStatus=0
Result=success
Id=web.service
LoadState=loaded
ActiveState=activating
SubState=start
"""
SHOW_MISSING = """MainPID=0
ExecMainPID=0
ExecMainCode=0
ExecMainStatus=0
Result=success
Id=nope.service
LoadState=not-found
ActiveState=inactive
SubState=dead
"""


def test_systemctl_argument_lists() -> None:
    b = SystemdBackend()
    assert b.argv("start", "tandem-web.service") == [
        "systemctl",
        "--no-ask-password",
        "start",
        "--",
        "tandem-web.service",
    ]
    assert b.argv("stop", "mail-jobs.timer") == ["systemctl", "--no-ask-password", "stop", "--", "mail-jobs.timer"]
    assert b.argv("reset-failed", "pg.service") == [
        "systemctl",
        "--no-ask-password",
        "reset-failed",
        "--",
        "pg.service",
    ]
    assert b.show_argv("postgresql@15-main.service") == [
        "systemctl",
        "--no-ask-password",
        "show",
        "--property=Id,LoadState,ActiveState,SubState,Result,MainPID,ExecMainPID,ExecMainCode,ExecMainStatus",
        "--",
        "postgresql@15-main.service",
    ]
    assert SystemdBackend(systemctl="/bin/systemctl").argv("start", "x.service")[0] == "/bin/systemctl"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "-H",
        "--all",
        "a b",
        "a;b",
        "x/../y",
        "a\nb",
        "pg",
        "postfix.service\n",
        ".service",
        "-x.service",
        "x.device",
        "x.swap",
        "x.slice",
        "x.service;reboot",
    ],
)
def test_systemctl_refuses_odd_unit_names(bad: str) -> None:
    with pytest.raises(DriverError, match="invalid systemd unit"):
        SystemdBackend().argv("start", bad)
    with pytest.raises(DriverError, match="invalid systemd unit"):
        SystemdBackend({"svc": bad})


@pytest.mark.parametrize(
    "good",
    [
        "php8.2-fpm.service",
        "mail-jobs.timer",
        "getty@tty1.service",
        "srv-mail.mount",
        r"mnt-my\x2ddisk.mount",
        "multi-user.target",
        "cups.socket",
        "cups.path",
    ],
)
def test_systemd_unit_names_of_real_units_are_accepted(good: str) -> None:
    assert SystemdBackend().argv("stop", good)[-1] == good


def test_systemd_backend_drives_the_unit_not_the_service_name(tmp_path: Path) -> None:
    """The service's name is its identity in status; systemctl only ever sees its unit."""
    calls = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\nprintf \'Id=%s\\nLoadState=loaded\\nActiveState=inactive\\n\' "$5"\n'
    )
    fake.chmod(0o755)
    backend = SystemdBackend({"php": "php8.2-fpm.service", "jobs": "mail-jobs.timer"}, systemctl=str(fake))
    assert backend.start("php").changed
    assert backend.status("jobs").name == "jobs"
    lines = calls.read_text().splitlines()
    assert lines[1] == "--no-ask-password start -- php8.2-fpm.service"
    assert all(line.endswith((" php8.2-fpm.service", " mail-jobs.timer")) for line in lines)
    with pytest.raises(DriverError, match="unknown service 'mail-jobs'"):
        backend.start("mail-jobs")


def test_systemctl_refuses_unknown_verbs() -> None:
    for verb in ("isolate", "enable", "mask", "--all"):
        with pytest.raises(DriverError, match="unsupported systemctl verb"):
            SystemdBackend().argv(verb, "pg.service")


def test_systemctl_kill_sends_sigkill_to_the_unit() -> None:
    assert SystemdBackend().kill_argv("web.service") == [
        "systemctl",
        "--no-ask-password",
        "kill",
        "--signal=SIGKILL",
        "--",
        "web.service",
    ]


def test_parse_show_keeps_equals_in_values() -> None:
    props = parse_show("ExecStart={ path=/bin/x ; argv[]=/bin/x a=b }\nId=x.service\n\nnoise\n")
    assert props["ExecStart"] == "{ path=/bin/x ; argv[]=/bin/x a=b }"
    assert props["Id"] == "x.service"
    assert "noise" not in props


def test_status_killed_by_signal() -> None:
    st = status_from_show("tandem-web.service", parse_show(SHOW_KILLED))
    assert st.state is ServiceState.FAILED
    assert (st.signal, st.exit_status, st.pid) == (9, None, None)
    assert st.describe().startswith("killed by SIGKILL")
    assert "result signal" in st.describe()


def test_status_exited_with_code() -> None:
    st = status_from_show("pg", parse_show(SHOW_EXITED))
    assert (st.state, st.exit_status, st.signal) == (ServiceState.FAILED, 3, None)
    assert st.describe().startswith("exited with status 3")


def test_status_running_and_stopped() -> None:
    running = status_from_show("nginx", parse_show(SHOW_RUNNING))
    assert running.active and running.pid == 901
    assert running.exit_status is None and running.signal is None
    stopped = status_from_show("nginx", parse_show(SHOW_STOPPED))
    assert stopped.state is ServiceState.INACTIVE and not stopped.active
    assert stopped.signal == 15


def test_status_core_dump_and_missing_unit() -> None:
    dumped = status_from_show("app", parse_show(SHOW_DUMPED))
    assert dumped.signal == 11 and dumped.core_dumped
    assert "killed by SIGSEGV (core dumped)" in dumped.describe()
    with pytest.raises(ServiceError, match=r"nope: nope.service is not-found .* spec.chain"):
        status_from_show("nope", parse_show(SHOW_MISSING))


def test_unknown_active_state_is_unknown() -> None:
    st = status_from_show("x", {"LoadState": "loaded", "ActiveState": "reloading-ish"})
    assert st.state is ServiceState.UNKNOWN


def test_status_descriptions() -> None:
    assert ServiceStatus("a", ServiceState.ACTIVE, pid=5).describe() == "running as pid 5"
    assert ServiceStatus("a", ServiceState.FAILED, signal=9).describe() == "killed by SIGKILL"
    assert ServiceStatus("a", ServiceState.FAILED, signal=200).describe() == "killed by signal 200"
    assert ServiceStatus("a", ServiceState.INACTIVE).describe() == "inactive"


def test_names_and_service_definitions_are_validated() -> None:
    assert validate_name("postgresql@15-main.service") == "postgresql@15-main.service"
    with pytest.raises(DriverError):
        validate_name("../x")


def test_chain_rejects_empty_and_duplicate_names() -> None:
    with pytest.raises(DriverError):
        ServiceChain(SystemdBackend(), [])
    with pytest.raises(DriverError, match="more than once"):
        ServiceChain(SystemdBackend(), ["a", "b", "a"])


def test_chain_error_names_the_failing_service() -> None:
    err = ServiceChainError("pg", "start", ["drbd"], ServiceError("pg", "exited with status 1"))
    assert "could not start service pg" in str(err)
    assert "running before it: drbd" in str(err)
    assert err.done == ("drbd",)


# ---------------------------------------------------------------------------------------------
# Units: configuration errors are reported, never raised


def _services(*entries: dict[str, object]) -> list[ServiceSpec]:
    return [ServiceSpec.model_validate(e) for e in entries]


def test_every_service_needs_a_valid_unit() -> None:
    with pytest.raises(ValueError, match="unit"):
        ServiceSpec.model_validate({"name": "echo"})
    with pytest.raises(ValueError, match="unit"):
        ServiceSpec.model_validate({"name": "echo", "unit": "echo.service; reboot"})
    services = _services({"name": "postfix", "unit": "postfix.service"}, {"name": "jobs", "unit": "mail-jobs.timer"})
    assert service_problems(services) == []
    assert [s.name for s in runnable(services)] == ["postfix", "jobs"]


def test_a_unit_that_slipped_past_the_api_is_still_refused_by_the_agent() -> None:
    # model_construct skips validation, as an object stored before the rule existed would.
    bad = [ServiceSpec.model_construct(name="x", unit="x.service; reboot", run_on="Primary")]
    [problem] = service_problems(bad)
    assert problem.startswith("spec.chain.services[0].unit: 'x.service; reboot' must be a systemd")
    assert runnable(bad) == []


# ---------------------------------------------------------------------------------------------
# Start and stop timeouts


def test_timeouts_come_from_the_service_specs() -> None:
    backend = SystemdBackend.for_services(
        _services(
            {"name": "web", "unit": "web.service", "stopTimeoutSeconds": 20},
            {"name": "jobs", "unit": "mail-jobs.timer", "startTimeoutSeconds": 5},
        )
    )
    assert backend.units == {"web": "web.service", "jobs": "mail-jobs.timer"}
    assert backend.start_timeouts == {"web": 90, "jobs": 5}
    assert backend.stop_timeouts == {"web": 20}  # jobs: no limit of its own


def test_timeouts_must_name_known_services_and_be_positive() -> None:
    with pytest.raises(DriverError, match="unknown service 'wbe'"):
        SystemdBackend({"web": "web.service"}, stop_timeouts={"wbe": 5})
    with pytest.raises(DriverError, match="start timeout of service web must be positive"):
        SystemdBackend({"web": "web.service"}, start_timeouts={"web": 0})


@pytest.mark.parametrize(
    ("show", "kill"), [(SHOW_STOPPING, True), (SHOW_RUNNING, True), (SHOW_STOPPED, False), (SHOW_KILLED, False)]
)
def test_kill_only_a_unit_still_running_at_its_stop_deadline(show: str, kill: bool) -> None:
    status = status_from_show("web", parse_show(show))
    assert kill_needed(status) is kill
    assert is_stopped(status) is not kill


def standin_systemctl(tmp_path: Path, state: str, *quirks: str) -> tuple[str, Path]:
    """A `systemctl` that keeps a unit's state in a file and shows it as recorded `systemctl
    show` output. Quirks: slow-start and slow-stop hang, unkillable ignores kill."""
    shows = {
        "active": SHOW_RUNNING,
        "activating": SHOW_STARTING,
        "deactivating": SHOW_STOPPING,
        "inactive": SHOW_STOPPED,
        "failed": SHOW_KILLED,
    }
    for name, text in shows.items():
        (tmp_path / f"show-{name}").write_text(text)
    (tmp_path / "state").write_text(state)
    for quirk in quirks:
        (tmp_path / quirk).touch()
    calls = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(f"""#!/bin/sh
echo "$2 $3" >> {calls}
cd {tmp_path}
case "$2" in
  show) cat "show-$(cat state)" ;;
  start) echo activating > state; [ -e slow-start ] && exec sleep 5; echo active > state ;;
  stop) echo deactivating > state; [ -e slow-stop ] && exec sleep 5; echo inactive > state ;;
  kill) [ -e unkillable ] || echo failed > state ;;
esac
""")
    fake.chmod(0o755)
    return str(fake), calls


def test_a_stop_within_its_timeout_kills_nothing(tmp_path: Path) -> None:
    systemctl, calls = standin_systemctl(tmp_path, "active")
    backend = SystemdBackend({"web": "web.service"}, systemctl=systemctl, stop_timeouts={"web": 2})
    assert backend.stop("web").detail == "stopped web (web.service)"
    assert "kill" not in calls.read_text()


def test_a_stop_past_its_timeout_becomes_sigkill(tmp_path: Path) -> None:
    systemctl, calls = standin_systemctl(tmp_path, "active", "slow-stop")
    backend = SystemdBackend({"web": "web.service"}, systemctl=systemctl, stop_timeouts={"web": 0.2}, kill_wait=1)
    started = time.monotonic()
    outcome = backend.stop("web")
    assert time.monotonic() - started < 2
    assert outcome.changed
    assert outcome.detail == "killed web (web.service) with SIGKILL: it did not stop within 0.2s"
    assert [line.split()[0] for line in calls.read_text().splitlines()] == ["show", "stop", "show", "kill", "show"]
    assert "kill --signal=SIGKILL" in calls.read_text()


def test_a_unit_that_survives_sigkill_is_an_error_after_a_bounded_wait(tmp_path: Path) -> None:
    systemctl, _ = standin_systemctl(tmp_path, "active", "slow-stop", "unkillable")
    backend = SystemdBackend({"web": "web.service"}, systemctl=systemctl, stop_timeouts={"web": 0.2}, kill_wait=0.3)
    with pytest.raises(
        ServiceError,
        match=r"did not stop within 0.2s, nor within 0.3s of SIGKILL: "
        r"deactivating; sub-state stop-sigterm",
    ) as err:
        backend.stop("web")
    assert err.value.status is not None and err.value.status.state is ServiceState.DEACTIVATING


def test_a_stop_without_its_own_timeout_is_never_killed(tmp_path: Path) -> None:
    systemctl, calls = standin_systemctl(tmp_path, "active", "slow-stop")
    backend = SystemdBackend({"web": "web.service"}, systemctl=systemctl, timeout=0.2)
    with pytest.raises(ServiceError, match="stop of web.service did not finish within 0.2s"):
        backend.stop("web")
    assert "kill" not in calls.read_text()


def test_a_start_past_its_timeout_fails_with_the_units_state(tmp_path: Path) -> None:
    systemctl, _ = standin_systemctl(tmp_path, "inactive", "slow-start")
    backend = SystemdBackend({"web": "web.service"}, systemctl=systemctl, start_timeouts={"web": 0.2})
    with pytest.raises(
        ServiceError,
        match=r"start of web.service did not finish within 0.2s: "
        r"activating; sub-state start",
    ):
        backend.start("web")


def test_the_data_filesystem_is_mounted_read_write_or_not_at_all() -> None:
    """mount(8) falls back to read-only on a write-protected device (a DRBD Secondary) unless
    told -w; the data file system must fail instead of serving read-only."""
    rw = FilesystemMount("/dev/drbd0", "/srv/mail", "ext4", ("noatime",)).mount_argv("/srv/mail")
    assert rw == ["mount", "-t", "ext4", "-w", "-o", "noatime", "--", "/dev/drbd0", "/srv/mail"]
    ro = FilesystemMount("/dev/drbd0", "/srv/mail", "ext4", ("ro",)).mount_argv("/srv/mail")
    assert "-w" not in ro
