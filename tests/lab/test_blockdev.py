"""The stand-in's block device: a loop device on the FUSE file of `blockdev.py`, served by a daemon.

The daemon here is the test's own: the server side of the block I/O protocol (`io.py`) over
bytearrays, in threads of the test process, which records every request, can refuse writes
with an errno and can be stopped and started again. `blockdev` is the real process, the loop
device and ext4 are the real kernel's. Each test's `lab` fixture detaches its loop devices,
unmounts what it mounted, stops blockdev and the daemon, also when the test fails.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem_lab.drbdsim import blockdev, io

pytestmark = pytest.mark.lab

MINOR = 7
SIZE = 64 << 20  # ext4 needs some room; the "disk" is a bytearray in this process


class Daemon:
    """The daemon's side of the block I/O protocol over one bytearray per minor."""

    def __init__(self, path: Path, disks: dict[int, bytearray]) -> None:
        self.path = path
        self.disks = disks
        self.requests: list[tuple[int, int, int, int]] = []  # op, minor, offset, length
        self.refuse_writes = 0  # an errno for every write, or 0
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.connections: set[socket.socket] = set()

    def start(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Gone as a crashed daemon is: no socket file, every connection closed."""
        if self.listener is not None:
            self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        self.path.unlink(missing_ok=True)
        with self.lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def ops(self, op: int) -> list[tuple[int, int, int, int]]:
        with self.lock:
            return [r for r in self.requests if r[0] == op]

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                op, minor, offset, length = io.REQUEST.unpack(io.recv_exact(conn, io.REQUEST.size))
                data = io.recv_exact(conn, length) if op == io.WRITE else b""
                with self.lock:
                    self.requests.append((op, minor, offset, length))
                    disk = self.disks.get(minor)
                    if disk is None:
                        status, answer = errno.ENXIO, b""
                    elif op == io.WRITE and self.refuse_writes:
                        status, answer = self.refuse_writes, b""
                    elif op == io.WRITE:
                        disk[offset : offset + length] = data
                        status, answer = 0, b""
                    elif op == io.READ:
                        status, answer = 0, bytes(disk[offset : offset + length])
                    else:
                        status, answer = 0, b""
                conn.sendall(io.REPLY.pack(status, len(answer)) + answer)
        except OSError:
            pass
        finally:
            with self.lock:
                self.connections.discard(conn)
            conn.close()


class Lab:
    """One test's daemon, blockdev, loop devices and mounts, so that teardown undoes them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.disk = bytearray(SIZE)
        self.daemon = Daemon(root / io.SOCKET_NAME, {MINOR: self.disk})
        self.fuse_mount = root / "devices"
        self.device = blockdev.Device("drbd7", SIZE, MINOR)
        self.proc: subprocess.Popen[bytes] | None = None
        self.loops: list[str] = []
        self.mounts: list[Path] = []

    def start(self) -> str:
        """Daemon, blockdev and a loop device on the device's file; returns /dev/loopN."""
        self.daemon.start()
        self.proc = blockdev.start(
            self.fuse_mount, self.daemon.path, [self.device], log_path=self.root / "blockdev.log"
        )
        loop = blockdev.attach_loop(self.file)
        self.loops.append(loop)
        return loop

    @property
    def file(self) -> Path:
        return self.fuse_mount / self.device.name

    def mount(self, dev: str, target: Path) -> None:
        target.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "ext4", dev, str(target)], check=True, capture_output=True)
        self.mounts.append(target)

    def unmount(self, target: Path) -> None:
        subprocess.run(["umount", str(target)], check=True, capture_output=True)
        self.mounts.remove(target)

    def cleanup(self) -> None:
        for target in reversed(self.mounts):
            if subprocess.run(["umount", str(target)], check=False, capture_output=True).returncode:
                subprocess.run(["umount", "--lazy", str(target)], check=False)
        for loop in self.loops:
            subprocess.run(["losetup", "--detach", loop], check=False, capture_output=True)
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if os.path.ismount(self.fuse_mount):
            subprocess.run(["umount", "--lazy", str(self.fuse_mount)], check=False)
        self.daemon.stop()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.cleanup()
    assert not os.path.ismount(lab.fuse_mount), "teardown left the FUSE mount behind"
    assert not any(os.path.ismount(t) for t in lab.mounts), "teardown left a mount behind"
    attached = subprocess.run(
        ["losetup", "--list", "--noheadings", "-O", "NAME"], capture_output=True, text=True, check=False
    ).stdout.split()
    assert not set(lab.loops) & set(attached), "teardown left loop devices attached"


def aligned(data: bytes) -> mmap.mmap:
    """A page-aligned buffer holding `data`, as O_DIRECT wants."""
    buf = mmap.mmap(-1, len(data))
    buf.write(data)
    return buf


def direct_write(dev: str, offset: int, data: bytes) -> None:
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    try:
        assert os.pwritev(fd, [aligned(data)], offset) == len(data)
    finally:
        os.close(fd)


def direct_read(dev: str, offset: int, length: int) -> bytes:
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, length)
        assert os.preadv(fd, [buf], offset) == length
        return bytes(buf)
    finally:
        os.close(fd)


def pattern(seed: int, length: int) -> bytes:
    return (seed.to_bytes(4, "big") * (length // 4 + 1))[:length]


def test_direct_io_reaches_the_backend_and_reads_what_it_holds_now(lab: Lab) -> None:
    loop = lab.start()
    assert lab.file.stat().st_size == SIZE
    assert oct(lab.file.stat().st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(lab.fuse_mount)) == [lab.device.name]
    assert int(subprocess.check_output(["blockdev", "--getsize64", loop])) == SIZE
    assert Path(f"/sys/block/{Path(loop).name}/loop/dio").read_text().strip() == "1"

    small, big = pattern(1, 4096), pattern(2, 1 << 20)
    direct_write(loop, 1 << 20, small)
    direct_write(loop, 8 << 20, big)
    assert lab.disk[1 << 20 : (1 << 20) + 4096] == small
    assert lab.disk[8 << 20 : 9 << 20] == big
    assert lab.disk[: 1 << 20] == bytes(1 << 20), "a write landed where none was made"
    writes = lab.daemon.ops(io.WRITE)
    assert {w[1] for w in writes} == {MINOR}
    # Whole loop requests: 128 segments of at least a page each (more when pages are contiguous).
    assert max(w[3] for w in writes) >= 512 << 10, f"loop I/O arrived chopped: {writes}"

    assert direct_read(loop, 8 << 20, 1 << 20) == big
    changed = pattern(3, 1 << 20)
    lab.disk[8 << 20 : 9 << 20] = changed  # replication from the peer, say
    assert direct_read(loop, 8 << 20, 1 << 20) == changed
    assert direct_read(loop, (8 << 20) + 4096, 4096) == changed[4096:8192]


def test_ext4_on_the_device_flushes_and_keeps_a_file(lab: Lab) -> None:
    loop = lab.start()
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", loop], check=True, capture_output=True)
    target = lab.root / "fs"
    lab.mount(loop, target)
    text = b"tandem block device " + pattern(4, 64) + b"\n"
    flushes_before = len(lab.daemon.ops(io.FLUSH))
    with open(target / "note", "wb") as fh:
        fh.write(text * 100)
        fh.flush()
        os.fsync(fh.fileno())
    assert len(lab.daemon.ops(io.FLUSH)) > flushes_before, "fsync sent no FLUSH to the backend"
    assert bytes(lab.disk).find(text * 100) >= 0, "the file's data is not on the backend"
    lab.unmount(target)

    subprocess.run(["blockdev", "--flushbufs", loop], check=True)  # nothing cached from before
    lab.mount(loop, target)
    assert (target / "note").read_bytes() == text * 100


@pytest.mark.parametrize("refusal", [errno.EROFS, errno.EMEDIUMTYPE])
def test_a_refused_write_fails_on_the_device(lab: Lab, refusal: int) -> None:
    loop = lab.start()
    lab.daemon.refuse_writes = refusal
    with pytest.raises(OSError) as on_loop:
        direct_write(loop, 0, pattern(5, 4096))
    assert on_loop.value.errno == errno.EIO  # the loop device reports any backing error as EIO
    fd = os.open(lab.file, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as on_file:
            os.pwrite(fd, pattern(5, 4096), 0)
    finally:
        os.close(fd)
    assert on_file.value.errno == refusal  # the file itself passes the daemon's errno on
    assert lab.disk[:4096] == bytes(4096)

    lab.daemon.refuse_writes = 0
    direct_write(loop, 0, pattern(5, 4096))
    assert lab.disk[:4096] == pattern(5, 4096)


def test_io_fails_while_the_daemon_is_down_and_works_when_it_is_back(lab: Lab) -> None:
    loop = lab.start()
    direct_write(loop, 0, pattern(6, 4096))
    lab.daemon.stop()
    with pytest.raises(OSError) as write_error:
        direct_write(loop, 4096, pattern(7, 4096))
    assert write_error.value.errno == errno.EIO
    with pytest.raises(OSError) as read_error:
        direct_read(loop, 0, 4096)
    assert read_error.value.errno == errno.EIO
    os.close(os.open(lab.file, os.O_RDONLY))  # a read-only close asks nothing of the daemon

    lab.daemon.start()  # the same blockdev process, reconnecting
    assert direct_read(loop, 0, 4096) == pattern(6, 4096)
    direct_write(loop, 4096, pattern(7, 4096))
    assert lab.disk[4096:8192] == pattern(7, 4096)
    assert lab.proc is not None and lab.proc.poll() is None


def test_sigterm_unmounts_even_with_the_loop_device_attached(lab: Lab) -> None:
    loop = lab.start()
    assert os.path.ismount(lab.fuse_mount)
    assert lab.proc is not None
    lab.proc.send_signal(signal.SIGTERM)
    assert lab.proc.wait(timeout=10) == 0
    assert not os.path.ismount(lab.fuse_mount)
    with pytest.raises(OSError) as gone:
        direct_read(loop, 0, 4096)
    assert gone.value.errno == errno.EIO
