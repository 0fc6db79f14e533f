"""Mounts: the data filesystem and the bind mounts that put its directories on service paths.

A node that becomes primary mounts its data device at a data root (``FilesystemMount``) and
then bind-mounts directories of that data root onto the paths its services expect
(``BindMount``), in order; demotion undoes this in reverse. Every operation is idempotent and
returns an ``Outcome`` saying whether it changed anything.

State is read from ``/proc/self/mountinfo`` (parsed with its octal escapes, ``\\040`` for a
space and so on), never from the output of ``mount``. Commands are argument lists.

Host access goes through `tandem_agent.host`: from the DaemonSet's container the mount table is
the host's ``/proc/1/mountinfo``, mount commands run in the host's mount namespace, and the
paths checked or created here (targets, bind sources, devices) are the host's, reached
through ``/proc/1/root``. Mount points and sources in this module are always host paths.

Unmounting refuses when processes keep the mount busy: ``MountBusyError`` names every pid and
command holding it, found by scanning ``/proc/<pid>/{cwd,root,exe,fd/*,maps}``. A lazy unmount
(``umount --lazy``) happens only when the caller asks for it explicitly.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tandem.api.common import mount_option_problem, path_problem
from tandem_agent import host

from .base import DriverError, Outcome, run

PROC = "/proc"


# --------------------------------------------------------------------------------------------
# Errors


class MountSpecError(DriverError):
    """A mount specification is invalid; nothing was touched."""


class MountConflictError(DriverError):
    """Something other than what was asked for is mounted on the target."""

    def __init__(self, target: str, expected: str, found: str) -> None:
        self.target = target
        self.expected = expected
        self.found = found
        super().__init__(
            f"{target}: {found} is mounted there, expected {expected}; unmount it or fix the specification"
        )


@dataclass(frozen=True)
class MountHolder:
    """One process that keeps a mount busy, and how (``cwd``, ``root``, ``exe``, ``fd 3``...)."""

    pid: int
    command: str
    uses: tuple[str, ...]

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command}: {', '.join(self.uses)})"


class MountBusyError(DriverError):
    """An unmount was refused because processes (or nested mounts) keep the target busy."""

    def __init__(self, target: str, holders: Sequence[MountHolder], submounts: Sequence[str] = ()) -> None:
        self.target = target
        self.holders = tuple(holders)
        self.submounts = tuple(submounts)
        parts = []
        if self.holders:
            parts.append("held by " + "; ".join(str(h) for h in self.holders))
        if self.submounts:
            parts.append("has mounts beneath it: " + ", ".join(self.submounts))
        why = " and ".join(parts) if parts else "the kernel reports it busy"
        super().__init__(
            f"cannot unmount {target}: {why}; stop those processes (or unmount those first), "
            "or unmount lazily on purpose"
        )


# --------------------------------------------------------------------------------------------
# /proc/self/mountinfo


def unescape(field_text: str) -> str:
    r"""Decode the kernel's octal escapes in a mountinfo field (``\040`` is a space).

    The kernel escapes space, tab, newline and backslash as a backslash and three octal
    digits; anything else after a backslash is kept as it is.
    """
    if "\\" not in field_text:
        return field_text
    out: list[str] = []
    i = 0
    n = len(field_text)
    while i < n:
        ch = field_text[i]
        digits = field_text[i + 1 : i + 4]
        if ch == "\\" and len(digits) == 3 and all(d in "01234567" for d in digits):
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/<pid>/mountinfo``, with escapes decoded (see proc(5)); the
    propagation fields and the superblock options are left out, nothing here needs them."""

    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mount_point: str
    options: tuple[str, ...]
    fstype: str
    source: str

    @property
    def read_only(self) -> bool:
        return "ro" in self.options

    def describe(self) -> str:
        where = "" if self.root == "/" else f" [{self.root}]"
        return f"{self.source}{where} ({self.fstype})"


def parse_mountinfo_line(line: str) -> MountEntry:
    """Parse one mountinfo line; raise ValueError when it does not have the documented shape."""
    fields = line.rstrip("\n").split(" ")
    try:
        sep = fields.index("-", 6)
    except ValueError:
        raise ValueError(f"mountinfo line has no ' - ' separator: {line!r}") from None
    if len(fields) < sep + 3 or sep < 6:
        raise ValueError(f"mountinfo line is too short: {line!r}")
    major, _, minor = fields[2].partition(":")
    return MountEntry(
        mount_id=int(fields[0]),
        parent_id=int(fields[1]),
        major=int(major),
        minor=int(minor),
        root=unescape(fields[3]),
        mount_point=unescape(fields[4]),
        options=tuple(fields[5].split(",")),
        fstype=unescape(fields[sep + 1]),
        source=unescape(fields[sep + 2]),
    )


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse a whole mountinfo file, in the kernel's order (parents before children)."""
    return [parse_mountinfo_line(line) for line in text.splitlines() if line.strip()]


def read_mountinfo(path: str | None = None) -> list[MountEntry]:
    """The mount table at `path`; by default the host's (see `tandem_agent.host`)."""
    with open(path or host.current().mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
        return parse_mountinfo(fh.read())


def is_under(path: str, top: str) -> bool:
    """Whether `path` is `top` or inside it (plain path logic on normalised absolute paths)."""
    if top == "/":
        return path.startswith("/")
    return path == top or path.startswith(top.rstrip("/") + "/")


def top_mount(entries: Sequence[MountEntry], target: str) -> MountEntry | None:
    """The visible mount on `target` (the last one stacked there), or None."""
    on_target = [e for e in entries if e.mount_point == target]
    if not on_target:
        return None
    parents = {e.parent_id for e in on_target}
    uncovered = [e for e in on_target if e.mount_id not in parents]
    return (uncovered or on_target)[-1]


def is_mounted(target: str, *, mountinfo: str | None = None) -> bool:
    """Whether anything is mounted on `target` (symlinks resolved on the host)."""
    return top_mount(read_mountinfo(mountinfo), _canon(target)) is not None


def mounts_beneath(entries: Sequence[MountEntry], target: str) -> list[MountEntry]:
    """Mounts strictly below `target` (which must be unmounted before it)."""
    return [e for e in entries if e.mount_point != target and is_under(e.mount_point, target)]


def containing_mount(entries: Sequence[MountEntry], path: str) -> MountEntry:
    """The mount that `path` (normalised, absolute) lives on: the deepest mount point above it."""
    best: MountEntry | None = None
    for entry in entries:
        if is_under(path, entry.mount_point) and (best is None or len(entry.mount_point) >= len(best.mount_point)):
            best = entry
    if best is None:
        raise DriverError(f"no mount contains {path}: is /proc/self/mountinfo readable?")
    return best


def bind_origin(entries: Sequence[MountEntry], source: str) -> tuple[int, int, str]:
    """Identity of a bind of `source`: its filesystem's device and its path inside it.

    A bind mount shows in mountinfo with the device of the source's filesystem and, as its
    root, the source's path relative to that filesystem; that pair identifies it.
    """
    base = containing_mount(entries, source)
    rel = os.path.relpath(source, base.mount_point)
    root = os.path.normpath(os.path.join(base.root, rel)) if rel != "." else base.root
    return base.major, base.minor, root


# --------------------------------------------------------------------------------------------
# Specifications


def _check_options(options: Sequence[str]) -> None:
    """The API's rule for mount options, checked again before they reach mount -o."""
    for opt in options:
        if problem := mount_option_problem(opt):
            raise MountSpecError(f"mount option {problem}")


def _check_abs(what: str, path: str) -> None:
    """The API's rule for paths on the node, checked again before mount sees the path."""
    if problem := path_problem(path):
        raise MountSpecError(f"{what} {problem}")


@dataclass(frozen=True)
class FilesystemMount:
    """A filesystem: `device` (a block device path, or a name such as ``tmpfs``) on `target`."""

    device: str
    target: str
    fstype: str
    options: tuple[str, ...] = ()

    def validate(self) -> None:
        if not self.device or self.device.startswith("-"):
            raise MountSpecError(f"device must be a path or name, got {self.device!r}")
        _check_abs("mount target", self.target)
        if not self.fstype or "," in self.fstype or any(c.isspace() for c in self.fstype):
            raise MountSpecError(f"fstype must be one word, got {self.fstype!r}")
        _check_options(self.options)

    def describe(self) -> str:
        return f"{self.device} ({self.fstype})"

    def mount_argv(self, target: str) -> list[str]:
        """The mount command for `target`, after `validate()`: the options joined by ',' split
        back into exactly `options`, since none may hold a ','. Read-write unless the options
        say `ro`: `-w` stops mount(8) from quietly mounting a write-protected device (a DRBD
        Secondary) read-only instead of failing."""
        self.validate()
        argv = ["mount", "-t", self.fstype] + ([] if "ro" in self.options else ["-w"])
        if self.options:
            argv += ["-o", ",".join(self.options)]
        return [*argv, "--", self.device, target]


@dataclass(frozen=True)
class BindMount:
    """A bind mount of `source` onto `target`; a relative `source` lives under the data root."""

    source: str
    target: str

    def validate(self) -> None:
        if not self.source or "\0" in self.source:
            raise MountSpecError(f"bind source must be a path, got {self.source!r}")
        if os.path.isabs(self.source):
            _check_abs("bind source", self.source)
        else:
            norm = os.path.normpath(self.source)
            if norm == ".." or norm.startswith("../"):
                raise MountSpecError(f"bind source {self.source!r} escapes the data root")
        _check_abs("bind target", self.target)

    def resolve(self, data_root: str | None) -> str:
        """The absolute source path: `source` itself, or `source` under `data_root`."""
        if os.path.isabs(self.source):
            return os.path.normpath(self.source)
        if data_root is None:
            raise MountSpecError(f"bind source {self.source!r} is relative but no data root given")
        return os.path.normpath(os.path.join(data_root, self.source))


def _canon(path: str) -> str:
    """`path` with symlinks resolved on the host."""
    return host.current().realpath(path)


# --------------------------------------------------------------------------------------------
# Who keeps a mount busy


def _strip_deleted(link: str) -> str:
    return link[: -len(" (deleted)")] if link.endswith(" (deleted)") else link


def find_holders(
    target: str,
    origin: tuple[int, int, str],
    *,
    proc: str = PROC,
    skip_pids: Iterable[int] = (),
) -> list[MountHolder]:
    """Processes that use files under the mount on `target`.

    `origin` is that mount's (major, minor, root) from mountinfo. A process holds the mount
    when its cwd, root, executable, an open file or a mapped file has a path under the mount.
    Paths are judged in the process's own mount namespace: for a process in another namespace
    (one started with ``ip netns exec``, say) the mount points are those of the mounts with the
    same origin in its ``/proc/<pid>/mountinfo``. Processes that vanish during the scan are
    skipped.
    """
    skip = set(skip_pids)
    try:
        own_ns = os.readlink(os.path.join(proc, host.current().mount_ns_pid, "ns", "mnt"))
    except OSError:
        own_ns = ""
    points_by_ns: dict[str, tuple[str, ...]] = {own_ns: (target,)}
    holders: list[MountHolder] = []
    for name in os.listdir(proc):
        if not name.isdigit() or int(name) in skip:
            continue
        base = os.path.join(proc, name)
        try:
            ns = os.readlink(os.path.join(base, "ns", "mnt"))
        except OSError:
            continue
        if ns not in points_by_ns:
            points_by_ns[ns] = _points_in(f"{base}/mountinfo", origin)
        points = points_by_ns[ns]
        if not points:
            continue
        uses = process_uses(base, points)
        if uses:
            holders.append(MountHolder(int(name), _comm(base), uses))
    return holders


def _points_in(mountinfo: str, origin: tuple[int, int, str]) -> tuple[str, ...]:
    try:
        entries = read_mountinfo(mountinfo)
    except (OSError, ValueError):
        return ()
    return tuple(e.mount_point for e in entries if (e.major, e.minor, e.root) == origin)


def process_uses(base: str, points: Sequence[str]) -> tuple[str, ...]:
    """How the process at `base` (``/proc/<pid>``) uses paths under any of `points`."""

    def under(link_path: str) -> bool:
        try:
            link = _strip_deleted(os.readlink(link_path))
        except OSError:
            return False
        return link.startswith("/") and any(is_under(link, p) for p in points)

    uses = [what for what in ("cwd", "root", "exe") if under(f"{base}/{what}")]
    try:
        fds = sorted((fd for fd in os.listdir(f"{base}/fd") if fd.isdigit()), key=int)
    except OSError:
        fds = []
    uses.extend(f"fd {fd}" for fd in fds if under(f"{base}/fd/{fd}"))
    try:
        with open(f"{base}/maps", encoding="utf-8", errors="surrogateescape") as fh:
            maps = fh.read().splitlines()
    except OSError:
        maps = []
    if any(maps_line_path_under(line, points) for line in maps):
        uses.append("mmap")
    return tuple(uses)


def maps_line_path_under(line: str, points: Sequence[str]) -> bool:
    """Whether one ``/proc/<pid>/maps`` line maps a file under one of `points`."""
    parts = line.split(maxsplit=5)
    if len(parts) < 6 or not parts[5].startswith("/"):
        return False
    path = _strip_deleted(parts[5])
    return any(is_under(path, p) for p in points)


def _comm(base: str) -> str:
    try:
        with open(f"{base}/comm", encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return "?"


# --------------------------------------------------------------------------------------------
# Operations


def _block_rdev(device: str) -> tuple[int, int] | None:
    try:
        st = os.stat(host.current().path(device) if device.startswith("/") else device)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def filesystem_matches(entry: MountEntry, spec: FilesystemMount, rdev: tuple[int, int] | None) -> bool:
    """Whether the mount `entry` is the filesystem `spec` asks for.

    A block device is recognised by its device number (so ``/dev/disk/by-id/...`` and
    ``/dev/sdb1`` match); otherwise (``tmpfs``, or btrfs with its anonymous device numbers)
    by its source name. The type must agree unless the spec says ``auto``, and a bind of a
    subdirectory (root other than ``/``) is never the filesystem itself.
    """
    if entry.root != "/" or spec.fstype not in ("auto", entry.fstype):
        return False
    if rdev is not None and (entry.major, entry.minor) == rdev:
        return True
    names = {spec.device}
    if spec.device.startswith("/"):
        names.add(_canon(spec.device))
    return entry.source in names


def _read_only_conflict(entry: MountEntry, options: Sequence[str]) -> bool:
    return ("ro" in options) != entry.read_only


def _prepare_target(target: str, source_is_dir: bool, create: bool) -> None:
    seen = host.current().path(target)
    if os.path.lexists(seen):
        if source_is_dir and not os.path.isdir(seen):
            raise DriverError(f"mount target {target} exists but is not a directory")
        return
    if not create:
        raise DriverError(f"mount target {target} does not exist")
    if source_is_dir:
        os.makedirs(seen, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(seen), exist_ok=True)
        with open(seen, "a", encoding="utf-8"):
            pass


def ensure_mounted(spec: FilesystemMount, *, create_target: bool = False, mountinfo: str | None = None) -> Outcome:
    """Mount `spec` unless it already is; a different mount on the target is an error."""
    spec.validate()
    target = _canon(spec.target)
    rdev = _block_rdev(spec.device)
    present = top_mount(read_mountinfo(mountinfo), target)
    if present is not None:
        if not filesystem_matches(present, spec, rdev):
            raise MountConflictError(target, spec.describe(), present.describe())
        if _read_only_conflict(present, spec.options):
            raise MountConflictError(
                target,
                f"{spec.describe()} {_mode(spec.options)}",
                f"{present.describe()} {'read-only' if present.read_only else 'read-write'}",
            )
        return Outcome(False, f"{spec.describe()} already mounted on {target}")
    _prepare_target(target, True, create_target)
    run(spec.mount_argv(target))
    after = top_mount(read_mountinfo(mountinfo), target)
    if after is None or not filesystem_matches(after, spec, rdev):
        found = after.describe() if after else "nothing"
        raise DriverError(f"mount of {spec.describe()} on {target} succeeded but {found} is there")
    return Outcome(True, f"mounted {spec.describe()} on {target}")


def filesystem_mounted(spec: FilesystemMount, *, mountinfo: str | None = None) -> bool:
    """Whether `spec`'s filesystem is the visible mount on its target, in whatever mode."""
    present = top_mount(read_mountinfo(mountinfo), _canon(spec.target))
    return present is not None and filesystem_matches(present, spec, _block_rdev(spec.device))


def mount_problem(spec: FilesystemMount, *, mountinfo: str | None = None) -> str | None:
    """Why `spec` is not mounted as bring-up left it (None: it is), from the mount table."""
    target = _canon(spec.target)
    present = top_mount(read_mountinfo(mountinfo), target)
    if present is None:
        return f"nothing is mounted on {target}"
    if not filesystem_matches(present, spec, _block_rdev(spec.device)):
        return f"{present.describe()} is mounted on {target}, not {spec.describe()}"
    if _read_only_conflict(present, spec.options):
        return f"{target} is {'read-only' if present.read_only else 'read-write'}, not {_mode(spec.options)}"
    return None


def bind_problem(spec: BindMount, *, mountinfo: str | None = None) -> str | None:
    """Why `spec` is not bound as bring-up left it (None: it is)."""
    source, target = _canon(spec.resolve(None)), _canon(spec.target)
    entries = read_mountinfo(mountinfo)
    present = top_mount(entries, target)
    if present is None:
        return f"nothing is bound on {target}"
    try:
        origin = bind_origin(entries, source)
    except DriverError as exc:
        return str(exc)
    if (present.major, present.minor, present.root) != origin:
        return f"{present.describe()} is on {target}, not a bind of {source}"
    return None


PROBE_FILE = ".tandem-monitor"


def write_probe(directory: str) -> None:
    """Write and fsync a small file under `directory`, then its directory entry: a mount whose
    disk stopped answering makes this fail or hang (the caller bounds the wait)."""
    path = os.path.join(host.current().path(directory), PROBE_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, f"{time.time():.3f}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _mode(options: Sequence[str]) -> str:
    return "read-only" if "ro" in options else "read-write"


def ensure_bind_mounted(
    spec: BindMount,
    *,
    data_root: str | None = None,
    create_target: bool = False,
    mountinfo: str | None = None,
) -> Outcome:
    """Bind `spec.source` (under `data_root` when relative) onto `spec.target` unless it is.

    A missing source is an error and is never created: an empty directory in its place would
    hide the fact that the data is not there.
    """
    spec.validate()
    source = _canon(spec.resolve(data_root))
    target = _canon(spec.target)
    if not os.path.exists(host.current().path(source)):
        raise DriverError(f"bind source {source} does not exist (is the data root mounted?)")
    entries = read_mountinfo(mountinfo)
    origin = bind_origin(entries, source)
    present = top_mount(entries, target)
    if present is not None:
        if (present.major, present.minor, present.root) != origin:
            raise MountConflictError(target, f"a bind of {source}", present.describe())
        return Outcome(False, f"{source} already bound on {target}")
    _prepare_target(target, os.path.isdir(host.current().path(source)), create_target)
    run(["mount", "--bind", "--", source, target])
    after = top_mount(read_mountinfo(mountinfo), target)
    if after is None or (after.major, after.minor, after.root) != origin:
        raise DriverError(f"bind of {source} on {target} succeeded but is not visible there")
    return Outcome(True, f"bound {source} on {target}")


def ensure_unmounted(
    target: str | FilesystemMount | BindMount,
    *,
    lazy: bool = False,
    data_root: str | None = None,
    mountinfo: str | None = None,
    proc: str = PROC,
) -> Outcome:
    """Unmount what is mounted on the target; idempotent.

    Given a bare path, every layer stacked there is unmounted. Given a spec, only the layers
    that are that mount are, and something else on the target is a ``MountConflictError``
    (this never unmounts what it did not mount). Unless `lazy` is set, refuse with
    ``MountBusyError`` when processes or nested mounts keep it busy, naming them; nothing is
    unmounted then.
    """
    path = _canon(target if isinstance(target, str) else target.target)
    if not isinstance(target, str):
        target.validate()
    done: list[str] = []
    for _ in range(16):
        entries = read_mountinfo(mountinfo)
        present = top_mount(entries, path)
        if present is None:
            break
        expected = _expected_mismatch(target, present, entries, data_root)
        if expected is not None:
            if done:
                break
            raise MountConflictError(path, expected, present.describe())
        if not lazy:
            _refuse_if_busy(path, present, entries, proc)
        argv = ["umount", "--lazy", "--", path] if lazy else ["umount", "--", path]
        result = run(argv, check=False)
        if result.returncode != 0:
            _refuse_if_busy(path, present, read_mountinfo(mountinfo), proc)
            raise DriverError(f"umount {path} failed: {(result.stderr or result.stdout).strip()}")
        done.append(present.describe())
    else:
        raise DriverError(f"{path} still has mounts after unmounting {len(done)} of them")
    if not done:
        return Outcome(False, f"nothing mounted on {path}")
    how = "lazily unmounted" if lazy else "unmounted"
    return Outcome(True, f"{how} {', '.join(done)} from {path}")


def _expected_mismatch(
    target: str | FilesystemMount | BindMount,
    present: MountEntry,
    entries: Sequence[MountEntry],
    data_root: str | None,
) -> str | None:
    """What the spec expected, when `present` is not it; None when it is (or no spec)."""
    if isinstance(target, FilesystemMount):
        if not filesystem_matches(present, target, _block_rdev(target.device)):
            return target.describe()
    elif isinstance(target, BindMount):
        source = _canon(target.resolve(data_root))
        if (present.major, present.minor, present.root) != bind_origin(entries, source):
            return f"a bind of {source}"
    return None


def _refuse_if_busy(path: str, present: MountEntry, entries: Sequence[MountEntry], proc: str) -> None:
    submounts = [e.mount_point for e in mounts_beneath(entries, path)]
    holders = find_holders(path, (present.major, present.minor, present.root), proc=proc)
    if holders or submounts:
        raise MountBusyError(path, holders, submounts)
