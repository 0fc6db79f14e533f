"""Mounts driver against real mounts: a loop device with ext4, tmpfs, bind mounts, busy refusal.

Everything lives under the test's temporary directory; each test's `lab` fixture unmounts
what is left there, kills the helper processes it started and detaches its loop device, also
when the test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem_agent.drivers.base import DriverError, Outcome
from tandem_agent.drivers.mounts import (
    BindMount,
    FilesystemMount,
    MountBusyError,
    MountConflictError,
    ensure_bind_mounted,
    ensure_mounted,
    ensure_unmounted,
    filesystem_mounted,
    is_under,
    mount_problem,
    read_mountinfo,
    top_mount,
    write_probe,
)

pytestmark = pytest.mark.lab


class MountLab:
    """What one test created, so that teardown can undo all of it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loops: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def loop_device(self, size_mb: int = 24) -> str:
        image = self.root / "disk.img"
        with open(image, "wb") as fh:
            fh.truncate(size_mb * 1024 * 1024)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-E", "nodiscard", "-L", "tandemtest", str(image)],
            check=True,
            capture_output=True,
        )
        dev = subprocess.run(
            ["losetup", "--find", "--show", str(image)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.loops.append(dev)
        return dev

    def spawn(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        top = os.path.realpath(self.root)
        for _ in range(20):
            left = [e for e in read_mountinfo() if is_under(e.mount_point, top)]
            if not left:
                break
            deepest = max(left, key=lambda e: (e.mount_point.count("/"), e.mount_id))
            point = deepest.mount_point
            done = subprocess.run(["umount", "--", point], check=False, capture_output=True)
            if done.returncode != 0:
                subprocess.run(["umount", "--lazy", "--", point], check=False)
        for dev in self.loops:
            subprocess.run(["losetup", "--detach", dev], check=False, capture_output=True)

    def mounted_under_root(self) -> list[str]:
        top = os.path.realpath(self.root)
        return [e.mount_point for e in read_mountinfo() if is_under(e.mount_point, top)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[MountLab]:
    lab = MountLab(tmp_path)
    try:
        yield lab
    finally:
        lab.cleanup()
    assert not lab.mounted_under_root(), "teardown left mounts behind"
    attached = subprocess.run(
        ["losetup", "--list", "--noheadings", "-O", "NAME"], capture_output=True, text=True, check=False
    ).stdout.split()
    assert not set(lab.loops) & set(attached), "teardown left loop devices attached"


def chain_up(fs: FilesystemMount, binds: list[BindMount]) -> list[Outcome]:
    """What the agent's chain runner does on promotion: the filesystem, then each bind in
    order; the first error stops it."""
    return [ensure_mounted(fs, create_target=True), *(ensure_bind_mounted(b, create_target=True) for b in binds)]


def chain_down(fs: FilesystemMount, binds: list[BindMount]) -> list[Outcome]:
    """What it does on demotion: the binds in reverse order, then the filesystem."""
    return [*(ensure_unmounted(b) for b in reversed(binds)), ensure_unmounted(fs)]


def mount_ids(points: list[str]) -> list[int]:
    """The mountinfo positions of `points`: mountinfo lists mounts in the order made."""
    entries = read_mountinfo()
    order = [e.mount_point for e in entries]
    return [order.index(p) for p in points]


def test_chain_on_a_loop_device_with_binds_in_order(lab: MountLab) -> None:
    dev = lab.loop_device()
    data = str(lab.root / "data-root")  # (a target with a space is refused: docs/api.md)
    fs = FilesystemMount(dev, data, "ext4", ("noatime",))
    first = ensure_mounted(fs, create_target=True)
    assert first.changed
    for sub in ("pg", "www", "www-static", "etc-app"):
        os.makedirs(os.path.join(data, sub))
        Path(data, sub, "marker").write_text(sub)

    svc = lab.root / "svc"
    binds = [
        BindMount(os.path.join(data, "pg"), str(svc / "var/lib/postgresql")),
        BindMount(os.path.join(data, "www"), str(svc / "srv/www")),
        BindMount(os.path.join(data, "www-static"), str(svc / "srv/www/static")),  # inside www
        BindMount(os.path.join(data, "etc-app"), str(svc / "etc/my-app")),
    ]
    assert [o.changed for o in chain_up(fs, binds)] == [False, True, True, True, True]
    for bind in binds:
        assert Path(bind.target, "marker").read_text() == os.path.basename(bind.source)
    # The nested target was created inside the first bind, i.e. on the data filesystem.
    assert os.path.isdir(os.path.join(data, "www", "static"))

    entries = read_mountinfo()
    root = top_mount(entries, os.path.realpath(data))
    assert root is not None and root.source == dev and root.fstype == "ext4"
    assert "noatime" in root.options
    for bind in binds:
        here = top_mount(entries, os.path.realpath(bind.target))
        assert here is not None, bind.target
        assert (here.major, here.minor) == (root.major, root.minor)
        assert here.root == "/" + os.path.basename(bind.source)
    targets = [os.path.realpath(b.target) for b in binds]
    positions = mount_ids([os.path.realpath(data), *targets])
    assert positions == sorted(positions), "mounts were not made in chain order"

    assert not any(o.changed for o in chain_up(fs, binds))
    assert lab.mounted_under_root() == [os.path.realpath(data), *targets]

    down = chain_down(fs, binds)
    assert all(o.changed for o in down)
    unmounted_from = [o.detail.rsplit(" from ", 1)[1] for o in down]
    assert unmounted_from == [*reversed(targets), os.path.realpath(data)]
    assert lab.mounted_under_root() == []
    assert all((e.major, e.minor) != (root.major, root.minor) for e in read_mountinfo())

    assert not any(o.changed for o in chain_down(fs, binds))
    assert not ensure_unmounted(fs).changed


def test_an_aborted_journal_is_mended_only_by_mounting_again(lab: MountLab) -> None:
    """ext4 after I/O errors aborts its journal: still mounted read-write as far as the mount
    table tells, every write refused. The mount's repair (chain.ChainRunner._mount_again)
    relies on exactly this: `mount_problem` sees nothing wrong, the write probe fails,
    `filesystem_mounted` says it is ours, and unmounting and mounting again mends it."""
    dev = lab.loop_device()
    data = str(lab.root / "data")
    fs = FilesystemMount(dev, data, "ext4")
    ensure_mounted(fs, create_target=True)
    write_probe(data)
    subprocess.run(["mount", "-o", "remount,abort", "--", data], check=True, capture_output=True)
    assert mount_problem(fs) is None
    with pytest.raises(OSError, match="Read-only file system"):
        write_probe(data)
    assert filesystem_mounted(fs)
    assert not ensure_mounted(fs).changed, "mounting alone cannot mend it: it is still mounted"
    assert ensure_unmounted(fs).changed and not filesystem_mounted(fs)
    assert ensure_mounted(fs).changed
    write_probe(data)


def test_tmpfs_idempotent_and_conflicts_name_both_sides(lab: MountLab) -> None:
    target = str(lab.root / "run-dir")
    mine = FilesystemMount("tandem-test-a", target, "tmpfs", ("size=4m", "mode=0750"))
    other = FilesystemMount("tandem-test-b", target, "tmpfs", ("size=4m",))
    with pytest.raises(DriverError, match="does not exist"):
        ensure_mounted(mine)
    assert ensure_mounted(mine, create_target=True).changed
    assert not ensure_mounted(mine).changed
    oct_mode = oct(os.stat(target).st_mode & 0o777)
    assert oct_mode == "0o750"

    with pytest.raises(MountConflictError) as conflict:
        ensure_mounted(other)
    assert "tandem-test-a (tmpfs)" in str(conflict.value)
    assert "tandem-test-b (tmpfs)" in str(conflict.value)

    read_only = FilesystemMount("tandem-test-a", target, "tmpfs", ("ro",))
    with pytest.raises(MountConflictError, match="read-write"):
        ensure_mounted(read_only)

    with pytest.raises(MountConflictError):
        ensure_unmounted(other)  # never unmounts what it was not asked to
    present = top_mount(read_mountinfo(), os.path.realpath(target))
    assert present is not None and present.source == "tandem-test-a"

    assert ensure_unmounted(mine).changed
    assert top_mount(read_mountinfo(), os.path.realpath(target)) is None
    assert not ensure_unmounted(mine).changed


def test_a_different_device_on_the_target_is_refused(lab: MountLab) -> None:
    dev = lab.loop_device()
    target = str(lab.root / "data")
    assert ensure_mounted(FilesystemMount("tandem-test-x", target, "tmpfs"), create_target=True).changed
    with pytest.raises(MountConflictError) as conflict:
        ensure_mounted(FilesystemMount(dev, target, "ext4"))
    assert dev in str(conflict.value) and "tandem-test-x" in str(conflict.value)
    # Nothing was mounted on top.
    entries = [e for e in read_mountinfo() if e.mount_point == os.path.realpath(target)]
    assert [e.source for e in entries] == ["tandem-test-x"]


def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_busy_unmount_names_the_processes_then_succeeds(lab: MountLab) -> None:
    dev = lab.loop_device()
    data = str(lab.root / "data")
    fs = FilesystemMount(dev, data, "ext4")
    ensure_mounted(fs, create_target=True)
    os.makedirs(os.path.join(data, "work"))
    Path(data, "held.txt").write_text("x")
    shutil.copy("/bin/sleep", os.path.join(data, "napper"))

    by_cwd = lab.spawn(["sleep", "60"], cwd=os.path.join(data, "work"))
    with open(os.path.join(data, "held.txt"), "rb") as held:
        by_fd = lab.spawn(["sleep", "60"], stdin=held, cwd="/")
    by_exe = lab.spawn([os.path.join(data, "napper"), "60"], cwd="/")
    # A process in a private mount namespace (what `ip netns exec` gives a service) keeps
    # the filesystem busy through its own copy of the mount.
    other_ns = lab.spawn(["unshare", "--mount", "sleep", "60"], cwd=data)
    wait_for(lambda: os.readlink(f"/proc/{other_ns.pid}/exe").endswith("/sleep"))

    with pytest.raises(MountBusyError) as busy:
        ensure_unmounted(fs)
    err = busy.value
    holders = {h.pid: h for h in err.holders}
    assert holders[by_cwd.pid].command == "sleep" and "cwd" in holders[by_cwd.pid].uses
    assert "fd 0" in holders[by_fd.pid].uses
    assert holders[by_exe.pid].command == "napper"
    assert {"exe", "mmap"} <= set(holders[by_exe.pid].uses)
    assert "cwd" in holders[other_ns.pid].uses
    text = str(err)
    for proc in (by_cwd, by_fd, by_exe, other_ns):
        assert f"pid {proc.pid} (" in text
    assert "sleep" in text and "napper" in text
    assert top_mount(read_mountinfo(), os.path.realpath(data)) is not None, "still mounted"

    for proc in (by_cwd, by_fd, by_exe):
        proc.kill()
        proc.wait(timeout=10)
    with pytest.raises(MountBusyError) as still:
        ensure_unmounted(fs)
    assert [h.pid for h in still.value.holders] == [other_ns.pid]

    other_ns.kill()
    other_ns.wait(timeout=10)
    assert ensure_unmounted(fs).changed
    assert top_mount(read_mountinfo(), os.path.realpath(data)) is None


def test_busy_bind_stops_the_reverse_chain_and_lazy_only_on_request(lab: MountLab) -> None:
    data = str(lab.root / "data")
    fs = FilesystemMount("tandem-test-chain", data, "tmpfs", ("size=4m",))
    ensure_mounted(fs, create_target=True)
    for sub in ("a", "b"):
        os.makedirs(os.path.join(data, sub))
    binds = [BindMount(os.path.join(data, sub), str(lab.root / "svc" / sub)) for sub in "ab"]
    assert [o.changed for o in chain_up(fs, binds)] == [False, True, True]

    holder = lab.spawn(["sleep", "60"], cwd=str(lab.root / "svc/a"))
    with pytest.raises(MountBusyError) as busy:
        chain_down(fs, binds)
    assert busy.value.target == os.path.realpath(lab.root / "svc/a")
    assert [h.pid for h in busy.value.holders] == [holder.pid]
    left = lab.mounted_under_root()
    # b (last in the chain) went first; a and the data root stay.
    assert os.path.realpath(lab.root / "svc/b") not in left
    assert os.path.realpath(lab.root / "svc/a") in left
    assert os.path.realpath(data) in left

    # A mount nested under a target makes it busy too, and is named.
    nested = FilesystemMount("tandem-test-nested", os.path.join(data, "a", "n"), "tmpfs")
    ensure_mounted(nested, create_target=True)
    with pytest.raises(MountBusyError) as under:
        ensure_unmounted(fs)
    assert os.path.realpath(nested.target) in under.value.submounts
    ensure_unmounted(nested)

    lazy = ensure_unmounted(binds[0], lazy=True)
    assert lazy.changed and "lazily" in lazy.detail
    assert os.path.realpath(lab.root / "svc/a") not in lab.mounted_under_root()
    holder.kill()
    holder.wait(timeout=10)
    assert [o.changed for o in chain_down(fs, binds)] == [False, False, True]
    assert lab.mounted_under_root() == []


def test_bind_source_must_exist_and_foreign_mount_on_target_is_refused(lab: MountLab) -> None:
    data = str(lab.root / "data")
    fs = FilesystemMount("tandem-test-src", data, "tmpfs", ("size=4m",))
    with pytest.raises(DriverError, match="does not exist"):
        chain_up(fs, [BindMount(os.path.join(data, "missing"), str(lab.root / "svc/x"))])
    assert not os.path.exists(os.path.join(data, "missing")), "the source was not invented"
    assert not os.path.exists(lab.root / "svc/x")

    os.makedirs(os.path.join(data, "present"))
    squatter = FilesystemMount("tandem-test-squat", str(lab.root / "svc/y"), "tmpfs")
    ensure_mounted(squatter, create_target=True)
    with pytest.raises(MountConflictError) as conflict:
        chain_up(fs, [BindMount(os.path.join(data, "present"), squatter.target)])
    assert "tandem-test-squat" in str(conflict.value)
    assert os.path.join(os.path.realpath(data), "present") in str(conflict.value)
    ensure_unmounted(squatter)
    chain_down(fs, [BindMount(os.path.join(data, "present"), squatter.target)])
    assert lab.mounted_under_root() == []
