"""Pure parts of the stand-in's block device (`blockdev.py`): FUSE messages in and out, with a
recording backend instead of the daemon, and the daemon connection's reconnect over a Unix
socket in a temporary directory (no mount, no root)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem_lab.drbdsim import blockdev as b
from tandem_lab.drbdsim import io

SIZE = 1 << 20
DEVICES = [b.Device("drbd1", SIZE, 1), b.Device("drbd5", 2 * SIZE, 5)]
FILE = b.ROOT_ID + 1  # the first device's inode


class Recorder:
    """A backend that records requests and answers reads with a fixed byte."""

    def __init__(self, refuse: int = 0) -> None:
        self.calls: list[tuple[int, int, int, int, bytes]] = []
        self.refuse = refuse

    def call(self, op: int, minor: int, offset: int, length: int, data: bytes | memoryview = b"") -> bytes:
        self.calls.append((op, minor, offset, length, bytes(data)))
        if self.refuse:
            raise b.Refused(self.refuse, "refused")
        return b"\xab" * length if op == io.READ else b""


def request(opcode: int, body: bytes = b"", ino: int = FILE, unique: int = 77) -> memoryview:
    header = b.IN_HEADER.pack(b.IN_HEADER.size + len(body), opcode, unique, ino, 0, 0, 0, 0, 0)
    return memoryview(header + body)


def answer(parts: list[bytes | memoryview] | None) -> tuple[int, int, bytes]:
    """(errno, unique, payload) of a reply, checking the length in its header."""
    assert parts is not None
    raw = b"".join(bytes(p) for p in parts)
    length, error, unique = b.OUT_HEADER.unpack_from(raw)
    assert length == len(raw)
    return -error, unique, raw[b.OUT_HEADER.size :]


def handle(req: memoryview, backend: Recorder | None = None) -> tuple[int, int, bytes]:
    return answer(b.FileSystem(DEVICES, started=1000).handle(req, backend or Recorder()))


def read_in(offset: int, size: int) -> bytes:
    return b.READ_IN.pack(0, offset, size, 0, 0, 0, 0)


def write_in(offset: int, data: bytes) -> bytes:
    return b.WRITE_IN.pack(1, offset, len(data), 0, 0, 0, 0) + data


# ------------------------------------------------------------------------------ devices


def test_device_spec_round_trip_and_refusals() -> None:
    assert b.Device.parse("drbd3=4194304:3") == b.Device("drbd3", 4194304, 3)
    assert b.Device.parse(DEVICES[1].spec()) == DEVICES[1]
    for bad in ("drbd3", "drbd3=4096", "=4096:3", "a/b=4096:3", "..=4096:3", "d=1000:3", "d=0:3", "d=x:3"):
        with pytest.raises(ValueError):
            b.Device.parse(bad)
    with pytest.raises(ValueError, match="unique"):
        b.FileSystem([DEVICES[0], b.Device("other", SIZE, 1)])


# ------------------------------------------------------------------------------ INIT


def test_init_takes_the_lower_minor_the_flags_we_want_and_big_requests() -> None:
    offered = 0xFFFFFFFF
    error, unique, out = handle(request(b.INIT, b.INIT_IN.pack(7, 44, 131072, offered) + bytes(48), ino=0))
    assert (error, unique, len(out)) == (0, 77, 64)
    major, minor, readahead, flags, _bg, _cong, max_write, gran, max_pages, _align, flags2 = b.INIT_OUT.unpack(out)
    assert (major, minor, readahead) == (7, 38, 131072)
    assert flags == b.FUSE_BIG_WRITES | b.FUSE_MAX_PAGES
    assert (max_write, gran, max_pages, flags2) == (1 << 20, 1, (1 << 20) // b.PAGE_SIZE, 0)
    # An older kernel: its minor, and only the flags it offered.
    _, _, out = handle(request(b.INIT, b.INIT_IN.pack(7, 27, 0, b.FUSE_BIG_WRITES), ino=0))
    assert b.INIT_OUT.unpack(out)[1] == 27
    assert b.INIT_OUT.unpack(out)[3] == b.FUSE_BIG_WRITES


def test_init_of_another_major_version() -> None:
    _, _, out = handle(request(b.INIT, b.INIT_IN.pack(8, 0, 0, 0), ino=0))
    assert b.INIT_OUT.unpack(out)[:2] == (7, 38)  # the kernel is to ask again in 7.x
    assert handle(request(b.INIT, b.INIT_IN.pack(6, 0, 0, 0), ino=0))[0] == errno.EPROTO


# ------------------------------------------------------------------------------ names and attributes


def test_lookup_getattr_and_setattr() -> None:
    error, _, out = handle(request(b.LOOKUP, b"drbd5\0", ino=b.ROOT_ID))
    assert error == 0 and len(out) == b.ENTRY_OUT.size
    entry = b.ENTRY_OUT.unpack(out)
    nodeid, attr = entry[0], entry[6:]
    assert nodeid == FILE + 1
    ino, size, blocks, *_, mode, nlink, uid, gid, _rdev, blksize, _flags = attr
    assert (ino, size, blocks, mode, nlink, blksize) == (FILE + 1, 2 * SIZE, 2 * SIZE // 512, 0o100600, 1, 4096)
    assert handle(request(b.LOOKUP, b"nope\0", ino=b.ROOT_ID))[0] == errno.ENOENT
    assert handle(request(b.LOOKUP, b"drbd5\0", ino=FILE))[0] == errno.ENOENT

    error, _, out = handle(request(b.GETATTR, bytes(16), ino=b.ROOT_ID))
    assert error == 0 and b.ATTR_OUT.unpack(out)[3 + 9] == 0o040755  # attr_valid.., then attr's mode
    assert handle(request(b.GETATTR, bytes(16), ino=99))[0] == errno.ENOENT

    def setattr(valid: int, size: int) -> bytes:
        return b.SETATTR_IN.pack(valid, 0, 0, size) + bytes(88 - b.SETATTR_IN.size)

    assert handle(request(b.SETATTR, setattr(b.FATTR_SIZE, 0)))[0] == errno.EPERM
    error, _, out = handle(request(b.SETATTR, setattr(b.FATTR_SIZE | 1, SIZE)))  # same size, a mode
    assert error == 0 and b.ATTR_OUT.unpack(out)[3 + 1] == SIZE


def test_readdir_lists_the_files_from_an_offset_within_a_size() -> None:
    def names(out: bytes) -> list[tuple[int, str, int, int]]:
        found, pos = [], 0
        while pos < len(out):
            ino, off, namelen, kind = b.DIRENT.unpack_from(out, pos)
            name = out[pos + b.DIRENT.size : pos + b.DIRENT.size + namelen].decode()
            found.append((ino, name, kind, off))
            pos += (b.DIRENT.size + namelen + 7) // 8 * 8
        return found

    _, _, out = handle(request(b.READDIR, read_in(0, 4096), ino=b.ROOT_ID))
    assert names(out) == [
        (1, ".", b.DT_DIR, 1),
        (1, "..", b.DT_DIR, 2),
        (FILE, "drbd1", b.DT_REG, 3),
        (FILE + 1, "drbd5", b.DT_REG, 4),
    ]
    _, _, out = handle(request(b.READDIR, read_in(3, 4096), ino=b.ROOT_ID))
    assert names(out) == [(FILE + 1, "drbd5", b.DT_REG, 4)]
    _, _, out = handle(request(b.READDIR, read_in(0, 60), ino=b.ROOT_ID))  # two 32-byte records
    assert [n[1] for n in names(out)] == ["."]
    assert handle(request(b.READDIR, read_in(4, 4096), ino=b.ROOT_ID))[2] == b""


def test_statfs_counts_the_devices() -> None:
    error, _, out = handle(request(b.STATFS, ino=b.ROOT_ID))
    assert error == 0 and len(out) == 80
    blocks, _bfree, _bavail, files, _ffree, bsize, namelen, frsize = b.STATFS_OUT.unpack(out)
    assert (blocks, files, bsize, namelen, frsize) == (3 * SIZE // 4096, 2, 4096, 255, 4096)


# ------------------------------------------------------------------------------ data


def test_open_is_direct_io_and_remembers_whether_it_writes() -> None:
    _, _, out = handle(request(b.OPEN, struct.pack("<II", 0o2 | 0o100000, 0)))  # O_RDWR|O_LARGEFILE
    fh, flags, _ = b.OPEN_OUT.unpack(out)
    assert fh == 1 and flags & b.FOPEN_DIRECT_IO and flags & b.FOPEN_PARALLEL_DIRECT_WRITES
    assert b.OPEN_OUT.unpack(handle(request(b.OPEN, struct.pack("<II", 0, 0)))[2])[0] == 0
    assert handle(request(b.OPEN, bytes(8), ino=b.ROOT_ID))[0] == errno.EISDIR

    backend = Recorder()
    flush_in = struct.pack("<QIIQ", 0, 0, 0, 0)
    assert handle(request(b.FLUSH, flush_in), backend)[0] == 0
    assert backend.calls == []  # closing a read-only descriptor
    assert handle(request(b.FLUSH, struct.pack("<QIIQ", 1, 0, 0, 0)), backend)[0] == 0
    assert handle(request(b.FSYNC, struct.pack("<QII", 0, 0, 0)), backend)[0] == 0
    assert backend.calls == [(io.FLUSH, 1, 0, 0, b""), (io.FLUSH, 1, 0, 0, b"")]
    assert handle(request(b.RELEASE, bytes(24)), backend)[0] == 0
    assert len(backend.calls) == 2


def test_read_and_write_go_to_the_minor_clamped_to_the_size() -> None:
    backend = Recorder()
    error, _, out = handle(request(b.READ, read_in(4096, 8192), ino=FILE + 1), backend)
    assert (error, out) == (0, b"\xab" * 8192)
    error, _, out = handle(request(b.READ, read_in(SIZE - 100, 4096)), backend)
    assert (error, len(out)) == (0, 100)
    assert handle(request(b.READ, read_in(SIZE, 4096)), backend)[2] == b""
    assert backend.calls == [(io.READ, 5, 4096, 8192, b""), (io.READ, 1, SIZE - 100, 100, b"")]

    backend = Recorder()
    error, _, out = handle(request(b.WRITE, write_in(512, b"x" * 1024)), backend)
    assert (error, b.WRITE_OUT.unpack(out)[0]) == (0, 1024)
    error, _, out = handle(request(b.WRITE, write_in(SIZE - 10, b"y" * 20)), backend)
    assert (error, b.WRITE_OUT.unpack(out)[0]) == (0, 10)  # a short write at the end
    assert handle(request(b.WRITE, write_in(SIZE, b"z")), backend)[0] == errno.ENOSPC
    assert backend.calls == [(io.WRITE, 1, 512, 1024, b"x" * 1024), (io.WRITE, 1, SIZE - 10, 10, b"y" * 10)]


@pytest.mark.parametrize(("refusal", "seen"), [(errno.EROFS, errno.EROFS), (124, 124), (600, errno.EIO)])
def test_the_daemons_errno_is_the_kernels(refusal: int, seen: int) -> None:
    assert handle(request(b.WRITE, write_in(0, b"x")), Recorder(refusal))[0] == seen
    assert handle(request(b.READ, read_in(0, 1)), Recorder(refusal))[0] == seen


def test_requests_without_answers_and_unknown_ones() -> None:
    fs = b.FileSystem(DEVICES)
    for opcode in (b.FORGET, b.BATCH_FORGET, b.INTERRUPT):
        assert fs.handle(request(opcode, bytes(16)), Recorder()) is None
    for opcode in (22, 43, 46, 35, 10):  # GETXATTR, FALLOCATE, LSEEK, CREATE, UNLINK
        assert handle(request(opcode, bytes(64)))[0] == errno.ENOSYS
        assert handle(request(opcode, bytes(64), ino=b.ROOT_ID))[0] == errno.ENOSYS
    assert handle(request(b.ACCESS, bytes(8)))[0] == 0
    assert handle(request(b.DESTROY, ino=0))[0] == 0


def test_a_bug_answers_eio_instead_of_leaving_the_kernel_waiting() -> None:
    assert handle(request(b.READ, b"short")) == (errno.EIO, 77, b"")


# ------------------------------------------------------------------------------ the daemon connection


class TinyDaemon:
    """Answers writes with 0 and counts them; can refuse, stop and start again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writes = 0
        self.refuse = 0
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []

    def start(self) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen()
        threading.Thread(target=self._serve, args=(self.listener,), daemon=True).start()

    def stop(self) -> None:
        assert self.listener is not None
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.path.unlink()
        for conn in self.conns:
            with contextlib.suppress(OSError):  # closed already
                conn.shutdown(socket.SHUT_RDWR)

    def _serve(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            try:
                while True:
                    _op, _minor, _offset, length = io.REQUEST.unpack(io.recv_exact(conn, io.REQUEST.size))
                    io.recv_exact(conn, length)
                    self.writes += 1
                    conn.sendall(io.REPLY.pack(self.refuse, 0))
            except OSError:
                conn.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[TinyDaemon]:
    d = TinyDaemon(tmp_path / io.SOCKET_NAME)
    yield d
    if d.listener is not None and d.path.exists():
        d.stop()


def test_the_connection_fails_with_eio_and_comes_back_after_a_restart(daemon: TinyDaemon) -> None:
    conn = b.DaemonConnection(daemon.path)
    with pytest.raises(OSError) as down:
        conn.call(io.WRITE, 1, 0, 3, b"abc")
    assert down.value.errno == errno.EIO and not isinstance(down.value, b.Refused)
    daemon.start()
    conn.call(io.WRITE, 1, 0, 3, b"abc")
    assert daemon.writes == 1

    daemon.stop()
    daemon.start()  # the old connection is dead; one retry on a new one, no error
    conn.call(io.WRITE, 1, 0, 3, b"abc")
    assert daemon.writes == 2

    daemon.refuse = errno.EROFS
    with pytest.raises(b.Refused) as refused:
        conn.call(io.WRITE, 1, 0, 3, b"abc")
    assert refused.value.errno == errno.EROFS
    assert daemon.writes == 3  # a refusal is an answer, not retried
    conn.close()


def test_a_zombie_or_missing_daemon_is_not_alive() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert b._alive(child.pid)
    finally:
        child.kill()
    deadline = time.monotonic() + 5
    while b._alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not b._alive(child.pid)  # killed, not reaped yet: a zombie
    child.wait()
    assert not b._alive(child.pid)  # gone
    assert b._alive(os.getpid())


def test_waiting_for_the_daemon_goes_on_while_it_lives_and_ends_when_it_exits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(b, "PEER_CHECK", 0.05)
    ours, daemon = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, daemon:
        ours.settimeout(b.PEER_CHECK)
        threading.Timer(0.3, daemon.sendall, (b"late answer",)).start()
        assert b._recv_from_daemon(ours, os.getpid(), 11) == b"late answer"  # several checks passed meanwhile
        monkeypatch.setattr(b, "_alive", lambda pid: False)
        with pytest.raises(ConnectionError, match="exiting"):
            b._recv_from_daemon(ours, os.getpid(), 4)  # the daemon holds the socket open while it exits


def test_a_write_the_daemon_never_reads_ends_when_the_daemon_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(b, "PEER_CHECK", 0.05)
    ours, daemon = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, daemon:
        ours.settimeout(b.PEER_CHECK)
        checks = iter([True, True, False])  # alive twice, then exiting
        monkeypatch.setattr(b, "_alive", lambda pid: next(checks))
        with pytest.raises(ConnectionError, match="exiting"):
            b._send_to_daemon(ours, 0, bytes(8 << 20))  # far more than the socket buffer holds


@pytest.mark.parametrize(
    ("state", "flags", "alive"),
    [
        ("S", 0x400000, True),
        ("D", 0x400040, True),
        ("D", 0x400044, False),  # PF_EXITING: in do_exit, maybe unmounting the node's file systems
        ("Z", 0x400000, False),
        ("X", 0, False),
    ],
)
def test_a_daemon_in_its_exit_path_is_not_running(state: str, flags: int, alive: bool) -> None:
    line = f"4242 (python3 -m (x)) {state} 1 4242 4242 0 -1 {flags} 100 0 0 0 3 1 0 0 20 0 2 0"
    assert b.running(line) is alive
