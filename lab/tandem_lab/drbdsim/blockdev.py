"""A lab node's DRBD devices as real block devices: a FUSE file server over the block I/O protocol.

    python -m tandem_lab.drbdsim.blockdev --mount DIR --socket PATH --device NAME=SIZE:MINOR ...

mounts a FUSE file system at DIR with one regular file DIR/NAME (mode 0600, SIZE bytes) per
device. Every read, write, fsync and flush of that file becomes an `io.READ`/`io.WRITE`/
`io.FLUSH` request for MINOR to the node's kernel daemon on the Unix socket PATH (`io.py`), and
the daemon's answer is the answer: its errno is the kernel's errno. `attach_loop()` puts a loop
device on such a file, so the node has a block device whose blocks the daemon owns.

The file server speaks the raw /dev/fuse protocol (include/uapi/linux/fuse.h, version 7.38;
no libfuse). Every open of a file is answered with FOPEN_DIRECT_IO, so the kernel keeps no page
cache of it: the daemon changes the data behind the file's back (replication from the peer).
Writes are answered only when the daemon answered. Each worker thread reads /dev/fuse and has
its own daemon connection (one request at a time per connection). An unreachable daemon
fails the request with EIO; the next request dials again, so the device works again when the
daemon restarts. SIGTERM/SIGINT unmount (lazily if a loop device still holds the file).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import logging
import mmap
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tandem_lab.drbdsim import io

log = logging.getLogger("drbdsim.blockdev")

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # holds tandem_lab: lab/ of a checkout, or site-packages
FSNAME = "drbdsim"

# ---------------------------------------------------------------- the FUSE protocol (fuse.h)

KERNEL_VERSION = 7
KERNEL_MINOR_VERSION = 38  # the structs below are those of 7.38
ROOT_ID = 1

LOOKUP, FORGET, GETATTR, SETATTR = 1, 2, 3, 4
OPEN, READ, WRITE, STATFS, RELEASE, FSYNC = 14, 15, 16, 17, 18, 20
FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, FSYNCDIR = 25, 26, 27, 28, 29, 30
ACCESS, INTERRUPT, DESTROY, BATCH_FORGET = 34, 36, 38, 42
NOTIFY_REPLY = 41
NO_REPLY = frozenset({FORGET, INTERRUPT, BATCH_FORGET, NOTIFY_REPLY})

FUSE_BIG_WRITES = 1 << 5
FUSE_MAX_PAGES = 1 << 22
WANTED_INIT_FLAGS = FUSE_BIG_WRITES | FUSE_MAX_PAGES
FOPEN_DIRECT_IO = 1 << 0
FOPEN_PARALLEL_DIRECT_WRITES = 1 << 6
FATTR_SIZE = 1 << 3
DT_DIR, DT_REG = 4, 8

IN_HEADER = struct.Struct("<IIQQIIIHH")  # len, opcode, unique, nodeid, uid, gid, pid, total_extlen
OUT_HEADER = struct.Struct("<IiQ")  # len, error (negative errno), unique
_ATTR = "QQQQQQIIIIIIIIII"  # ino size blocks atime mtime ctime *nsec mode nlink uid gid rdev blksize flags
ENTRY_OUT = struct.Struct("<QQQQII" + _ATTR)  # nodeid generation entry_valid attr_valid (nsec x2), attr
ATTR_OUT = struct.Struct("<QII" + _ATTR)  # attr_valid attr_valid_nsec dummy, attr
INIT_IN = struct.Struct("<IIII")  # major minor max_readahead flags
INIT_OUT = struct.Struct("<IIIIHHIIHHI28x")
OPEN_IN = struct.Struct("<I4x")  # flags (open(2)'s), open_flags
OPEN_OUT = struct.Struct("<QII")  # fh open_flags padding
FH = struct.Struct("<Q")  # what fuse_flush_in, fuse_fsync_in and fuse_release_in begin with
READ_IN = struct.Struct("<QQIIQII")  # fh offset size read_flags lock_owner flags padding
WRITE_IN = struct.Struct("<QQIIQII")  # fh offset size write_flags lock_owner flags padding
WRITE_OUT = struct.Struct("<II")
SETATTR_IN = struct.Struct("<IIQQ")  # valid padding fh size (the rest is accepted unseen)
STATFS_OUT = struct.Struct("<QQQQQIII28x")  # blocks bfree bavail files ffree bsize namelen frsize, padding
DIRENT = struct.Struct("<QQII")  # ino off namelen type, then the name padded to 8 bytes

PAGE_SIZE = mmap.PAGESIZE
# Requests of up to 1 MiB: the most the kernel takes (max_pages is capped by the sysctl
# fs.fuse.max_pages_limit, 256; without FUSE_MAX_PAGES it is 32 pages, 128 KiB requests).
MAX_WRITE = 1 << 20
MAX_PAGES = MAX_WRITE // PAGE_SIZE
# The kernel refuses reads of /dev/fuse shorter than a header, a fuse_write_in and max_write.
READ_BUFFER = MAX_WRITE + PAGE_SIZE
ATTR_VALID = 3600  # seconds: names and sizes never change while mounted
BLOCK = 4096


@dataclass(frozen=True)
class Device:
    """One DRBD device: the file `name` of `size` bytes, served by the daemon's `minor`."""

    name: str
    size: int
    minor: int

    @classmethod
    def parse(cls, spec: str) -> Device:
        """`NAME=SIZE_BYTES:MINOR`, as given to --device."""
        name, sep, rest = spec.partition("=")
        size, sep2, minor = rest.partition(":")
        if not (sep and sep2 and name) or "/" in name or name in (".", ".."):
            raise ValueError(f"device {spec!r}: expected NAME=SIZE_BYTES:MINOR")
        device = cls(name, int(size), int(minor))
        if device.size <= 0 or device.size % 512:
            raise ValueError(f"device {spec!r}: the size must be a positive multiple of 512 bytes")
        return device

    def spec(self) -> str:
        return f"{self.name}={self.size}:{self.minor}"


class Backend(Protocol):
    def call(self, op: int, minor: int, offset: int, length: int, data: bytes | memoryview = b"") -> bytes:
        """The daemon's answer to one request; OSError(errno) when it refuses or is unreachable."""
        ...


def reply(unique: int, error: int = 0, *payload: bytes | memoryview) -> list[bytes | memoryview]:
    """A reply as the buffers of one writev(2): header, then payload; `error` is a positive errno."""
    length = OUT_HEADER.size + sum(len(part) for part in payload)
    return [OUT_HEADER.pack(length, -error, unique), *payload]


def dirents(entries: list[tuple[int, str, int]], offset: int, size: int) -> bytes:
    """READDIR's answer: the (ino, name, type) entries from index `offset` that fit in `size`."""
    out = bytearray()
    for index in range(offset, len(entries)):
        ino, name, kind = entries[index]
        raw = name.encode()
        record = DIRENT.pack(ino, index + 1, len(raw), kind) + raw
        record += b"\0" * (-len(record) % 8)
        if len(out) + len(record) > size:
            break
        out += record
    return bytes(out)


def init_reply(unique: int, body: bytes | memoryview) -> list[bytes | memoryview]:
    """INIT: the protocol version both speak, the flags we want of those offered, big requests."""
    major, minor, max_readahead, offered = INIT_IN.unpack_from(body)
    if major < KERNEL_VERSION:
        return reply(unique, errno.EPROTO)
    if major > KERNEL_VERSION:  # the kernel sends a new INIT with our major
        return reply(unique, 0, INIT_OUT.pack(KERNEL_VERSION, KERNEL_MINOR_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    out = INIT_OUT.pack(
        KERNEL_VERSION,
        min(minor, KERNEL_MINOR_VERSION),
        max_readahead,
        offered & WANTED_INIT_FLAGS,
        0,  # max_background: the kernel's default
        0,  # congestion_threshold: the kernel's default
        MAX_WRITE,
        1,  # time_gran (ns)
        MAX_PAGES,
        0,  # map_alignment
        0,  # flags2
    )
    return reply(unique, 0, out)


class FileSystem:
    """The file system's answers to FUSE requests; data requests go to a `Backend`."""

    def __init__(self, devices: list[Device], started: float | None = None) -> None:
        names = [d.name for d in devices]
        minors = [d.minor for d in devices]
        if len(set(names)) != len(names) or len(set(minors)) != len(minors):
            raise ValueError("device names and minors must be unique")
        self.by_ino = {ROOT_ID + 1 + i: d for i, d in enumerate(devices)}
        self.by_name = {d.name: ino for ino, d in self.by_ino.items()}
        self.started = int(time.time() if started is None else started)
        self.uid, self.gid = os.getuid(), os.getgid()

    def attr(self, ino: int) -> tuple[int, ...]:
        """The fields of `fuse_attr` for `ino`."""
        if ino == ROOT_ID:
            mode, size, nlink = stat.S_IFDIR | 0o755, 0, 2
        else:
            mode, size, nlink = stat.S_IFREG | 0o600, self.by_ino[ino].size, 1
        t = self.started
        return (ino, size, size // 512, t, t, t, 0, 0, 0, mode, nlink, self.uid, self.gid, 0, BLOCK, 0)

    def entry(self, ino: int) -> bytes:
        return ENTRY_OUT.pack(ino, 0, ATTR_VALID, ATTR_VALID, 0, 0, *self.attr(ino))

    def attr_out(self, ino: int) -> bytes:
        return ATTR_OUT.pack(ATTR_VALID, 0, 0, *self.attr(ino))

    def handle(self, request: memoryview, backend: Backend) -> list[bytes | memoryview] | None:
        """The reply to one request read from /dev/fuse, or None for those that get none."""
        _length, opcode, unique, ino, *_ = IN_HEADER.unpack_from(request)
        if opcode in NO_REPLY:
            return None
        body = request[IN_HEADER.size :]
        try:
            return self._dispatch(opcode, unique, ino, body, backend)
        except OSError as exc:
            code = exc.errno if exc.errno and 0 < exc.errno < 512 else errno.EIO  # the kernel takes < 512
            return reply(unique, code)
        except Exception:
            log.exception("request %d (opcode %d) failed", unique, opcode)
            return reply(unique, errno.EIO)

    def _dispatch(
        self, opcode: int, unique: int, ino: int, body: memoryview, backend: Backend
    ) -> list[bytes | memoryview]:
        if opcode == INIT:
            return init_reply(unique, body)
        if opcode == DESTROY:
            return reply(unique)
        if opcode == STATFS:
            blocks = sum(d.size for d in self.by_ino.values()) // BLOCK
            return reply(unique, 0, STATFS_OUT.pack(blocks, 0, 0, len(self.by_ino), 0, BLOCK, 255, BLOCK))
        if ino != ROOT_ID and ino not in self.by_ino:
            return reply(unique, errno.ENOENT)
        if opcode == LOOKUP:
            name = bytes(body).split(b"\0", 1)[0].decode(errors="replace")
            found = self.by_name.get(name) if ino == ROOT_ID else None
            return reply(unique, errno.ENOENT) if found is None else reply(unique, 0, self.entry(found))
        if opcode == GETATTR:
            return reply(unique, 0, self.attr_out(ino))
        if opcode == SETATTR:
            valid, _padding, _fh, size = SETATTR_IN.unpack_from(body)
            if valid & FATTR_SIZE and (ino == ROOT_ID or size != self.by_ino[ino].size):
                return reply(unique, errno.EPERM)
            return reply(unique, 0, self.attr_out(ino))
        if opcode in (ACCESS, RELEASE, RELEASEDIR, FSYNCDIR):
            return reply(unique)
        if opcode == OPENDIR:
            return reply(unique, errno.ENOTDIR) if ino != ROOT_ID else reply(unique, 0, OPEN_OUT.pack(0, 0, 0))
        if opcode == READDIR:
            _fh, offset, size, *_ = READ_IN.unpack_from(body)
            entries = [(ROOT_ID, ".", DT_DIR), (ROOT_ID, "..", DT_DIR)]
            entries += [(i, d.name, DT_REG) for i, d in self.by_ino.items()]
            return reply(unique, 0, dirents(entries, offset, size))
        if ino == ROOT_ID:
            return reply(unique, errno.EISDIR if opcode in (OPEN, READ, WRITE) else errno.ENOSYS)
        device = self.by_ino[ino]
        if opcode == OPEN:
            (flags,) = OPEN_IN.unpack_from(body)
            writable = int(flags & os.O_ACCMODE != os.O_RDONLY)  # the handle: FLUSH only sees this
            return reply(unique, 0, OPEN_OUT.pack(writable, FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES, 0))
        if opcode == READ:
            _fh, offset, size, *_ = READ_IN.unpack_from(body)
            size = max(0, min(size, device.size - offset))
            data = backend.call(io.READ, device.minor, offset, size) if size else b""
            return reply(unique, 0, data)
        if opcode == WRITE:
            _fh, offset, size, *_ = WRITE_IN.unpack_from(body)
            if offset >= device.size:
                return reply(unique, errno.ENOSPC)
            size = min(size, device.size - offset)  # a short write at the end, as a block device does
            backend.call(io.WRITE, device.minor, offset, size, body[WRITE_IN.size : WRITE_IN.size + size])
            return reply(unique, 0, WRITE_OUT.pack(size, 0))
        if opcode == FLUSH and not FH.unpack_from(body)[0]:
            return reply(unique)  # the close of a read-only descriptor: nothing to make durable
        if opcode in (FLUSH, FSYNC):
            backend.call(io.FLUSH, device.minor, 0, 0)
            return reply(unique)
        return reply(unique, errno.ENOSYS)


# ---------------------------------------------------------------- the daemon side


class Refused(OSError):
    """The daemon answered with an errno."""


PEER_CHECK = 0.5  # seconds between checks that the daemon we wait for is not exiting


def _send_to_daemon(sock: socket.socket, pid: int, data: bytes | memoryview) -> None:
    """sendall, giving up when the daemon is exiting (a 1 MiB write fills the socket's buffer,
    and a dying daemon reads no more of it)."""
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except TimeoutError:
            _give_up_if_exiting(pid)


def _recv_from_daemon(sock: socket.socket, pid: int, n: int) -> bytes:
    return io.recv_exact(sock, n, on_timeout=lambda: _give_up_if_exiting(pid))


def _give_up_if_exiting(pid: int) -> None:
    if not _alive(pid):
        raise ConnectionError(f"daemon (pid {pid}) is exiting")


def _peer_pid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid: int = struct.unpack("3i", creds)[0]
    return pid


PF_EXITING = 0x4  # linux/sched.h: the task is in do_exit()


def _alive(pid: int) -> bool:
    """Running, not exiting: neither a zombie (a thread-group leader whose other threads may
    still be exiting) nor a task in its exit path, where it may be the one unmounting."""
    try:
        return running(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return False


def running(stat: str) -> bool:
    """From a /proc/<pid>/stat line (proc(5): state is field 3, flags field 9)."""
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] not in ("Z", "X") and not int(fields[6]) & PF_EXITING


class DaemonConnection:
    """One worker's connection to the daemon, dialled again after the daemon went away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.pid = 0  # the daemon's, at the other end of `sock`
        self.reachable = True  # what was last logged

    def call(self, op: int, minor: int, offset: int, length: int, data: bytes | memoryview = b"") -> bytes:
        # A connection that served earlier requests may be stale (the daemon restarted since):
        # one retry on a new connection. Block reads, writes and flushes are idempotent.
        for attempt in ("stale", "fresh"):
            if attempt == "stale" and self.sock is None:
                continue
            try:
                if self.sock is None:
                    self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    self.sock.connect(str(self.path))
                    self.sock.settimeout(PEER_CHECK)
                    self.pid = _peer_pid(self.sock)
                answer = self._exchange(self.sock, op, io.REQUEST.pack(op, minor, offset, length), data)
            except Refused:
                raise
            except OSError as exc:  # refused, missing, reset, closed: the daemon is not there
                self.close()
                failure: OSError = exc
                continue
            if not self.reachable:
                log.info("daemon at %s reachable again", self.path)
                self.reachable = True
            return answer
        if self.reachable:
            log.warning("daemon at %s unreachable (%s): I/O fails with EIO", self.path, failure)
            self.reachable = False
        raise OSError(errno.EIO, f"daemon unreachable: {failure}")

    def _exchange(self, sock: socket.socket, op: int, request: bytes, data: bytes | memoryview) -> bytes:
        """One request/answer (the socket has the PEER_CHECK timeout); Refused(errno) when the
        daemon says no.

        When a lab node loses power its last process to exit unmounts the node's file systems,
        whose final writes come here while that process (the daemon, possibly) still holds the
        connection open: waiting for it would never end, so a dying daemon counts as gone."""
        _send_to_daemon(sock, self.pid, request)
        if op == io.WRITE:
            _send_to_daemon(sock, self.pid, data)
        status, size = io.REPLY.unpack(_recv_from_daemon(sock, self.pid, io.REPLY.size))
        if status:
            raise Refused(status, os.strerror(status))
        return _recv_from_daemon(sock, self.pid, size) if op == io.READ else b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# ---------------------------------------------------------------- the mount and the workers

MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def mount(path: Path) -> int:
    """Mount a FUSE file system at `path`; returns the /dev/fuse descriptor that serves it."""
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    options = f"fd={fd},rootmode={stat.S_IFDIR:o},user_id={os.getuid()},group_id={os.getgid()}"
    options += ",allow_other,default_permissions"
    flags = MS_NOSUID | MS_NODEV
    if _libc.mount(FSNAME.encode(), os.fsencode(path), f"fuse.{FSNAME}".encode(), flags, options.encode()):
        code = ctypes.get_errno()
        os.close(fd)
        raise OSError(code, f"mount {path}: {os.strerror(code)}")
    return fd


def unmount(path: Path) -> None:
    """Unmount `path`, lazily when a loop device (or anyone) still holds a file open."""
    if _libc.umount2(os.fsencode(path), 0) == 0:
        return
    code = ctypes.get_errno()
    if code == errno.EBUSY and _libc.umount2(os.fsencode(path), MNT_DETACH) == 0:
        log.info("%s busy: detached lazily", path)
        return
    code = ctypes.get_errno()
    if code != errno.EINVAL:  # EINVAL: no longer mounted
        log.warning("unmount %s: %s", path, os.strerror(code))


def serve(fuse_fd: int, fs: FileSystem, daemon: Path, done: threading.Event) -> None:
    """One worker: read a request, answer it, until the mount is gone (ENODEV)."""
    backend = DaemonConnection(daemon)
    buffer = bytearray(READ_BUFFER)
    view = memoryview(buffer)
    try:
        while True:
            try:
                n = os.readv(fuse_fd, [buffer])
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.EAGAIN):  # a request interrupted before we read it
                    continue
                if exc.errno != errno.ENODEV:
                    log.error("reading /dev/fuse: %s", exc)
                return
            answer = fs.handle(view[:n], backend)
            if answer is not None:
                try:
                    os.writev(fuse_fd, answer)
                except OSError as exc:  # ENOENT: the request was interrupted or aborted meanwhile
                    if exc.errno != errno.ENOENT:
                        log.error("answering /dev/fuse: %s", exc)
    finally:
        backend.close()
        done.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drbdsim-blockdev", description="DRBD stand-in block devices (lab only)")
    parser.add_argument("--mount", required=True, type=Path, help="the directory to mount the files at")
    parser.add_argument("--socket", required=True, type=Path, help="the daemon's block I/O socket")
    parser.add_argument("--device", required=True, action="append", metavar="NAME=SIZE_BYTES:MINOR")
    parser.add_argument("--threads", type=int, default=4, help="worker threads (daemon connections)")
    args = parser.parse_args(argv)
    try:
        fs = FileSystem([Device.parse(spec) for spec in args.device])
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s blockdev %(levelname)s %(message)s")

    done, asked = threading.Event(), threading.Event()

    def on_signal(*_: object) -> None:
        asked.set()
        done.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    fuse_fd = mount(args.mount)
    try:
        for _ in range(max(1, args.threads)):
            threading.Thread(target=serve, args=(fuse_fd, fs, args.socket, done), daemon=True).start()
        log.info("serving %s at %s from %s", ", ".join(args.device), args.mount, args.socket)
        done.wait()
    finally:
        unmount(args.mount)
    if not asked.is_set():
        log.error("%s went away (unmounted by someone else?)", args.mount)
    return 0 if asked.is_set() else 1


# ---------------------------------------------------------------- the lab's API


class BlockdevError(RuntimeError):
    pass


def start(
    mount: Path,
    socket: Path,
    devices: list[Device],
    *,
    threads: int = 4,
    log_path: Path | None = None,
    timeout: float = 10.0,
) -> subprocess.Popen[bytes]:
    """Start the file server and wait until every device's file is there.

    Its output goes to `log_path` (appended) or to ours. Stop it with SIGTERM (it unmounts).
    """
    mount.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "tandem_lab.drbdsim.blockdev",
        "--mount",
        str(mount),
        "--socket",
        str(socket),
        "--threads",
        str(threads),
    ]
    for device in devices:
        argv += ["--device", device.spec()]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = log_path.open("ab") if log_path else None
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True)
    finally:
        if out:
            out.close()
    deadline = time.monotonic() + timeout
    while not all((mount / d.name).exists() for d in devices):
        if proc.poll() is not None:
            tail = log_path.read_text()[-2000:] if log_path else "(output above)"
            raise BlockdevError(f"blockdev for {mount} exited with {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            proc.terminate()
            proc.wait(timeout=10)
            raise BlockdevError(f"blockdev for {mount}: the device files did not appear within {timeout:.0f}s")
        time.sleep(0.05)
    return proc


def attach_loop(path: Path) -> str:
    """A loop device on the device file `path`; returns /dev/loopN.

    With --direct-io=on (the kernel accepts it: /sys/block/loopN/loop/dio is 1) the loop device
    sends its requests as direct I/O, up to 1 MiB each; the file itself is FOPEN_DIRECT_IO
    anyway, so no page cache sits between the loop device and the daemon in either mode.
    """
    argv = ["losetup", "--find", "--show", "--direct-io=on", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BlockdevError(f"losetup {path}: {done.stderr.strip()}")
    device = done.stdout.strip()
    _set_read_write(device)  # a loop device keeps its read-only flag across detach and reuse
    return device


def detach_loop(device: str) -> None:
    """Detach, leaving the loop device read-write for its next user (the DRBD stand-in marks a
    Secondary's device read-only, and the flag would outlive the detach)."""
    _set_read_write(device)
    done = subprocess.run(["losetup", "--detach", device], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BlockdevError(f"losetup --detach {device}: {done.stderr.strip()}")


def _set_read_write(device: str) -> None:
    done = subprocess.run(["blockdev", "--setrw", device], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BlockdevError(f"blockdev --setrw {device}: {done.stderr.strip()}")


if __name__ == "__main__":
    sys.exit(main())
