"""The per-node "kernel" daemon of the DRBD stand-in.

It owns the node's resources (`model.Resource`), answers the `drbdsetup`/`drbdmeta` stand-ins
and the lab CLI on a Unix socket in the state directory, keeps one TCP link per connected peer
on the replication addresses given with `new-path`, and persists its state so that a restart
of the daemon resumes where it stopped (use `--fresh` for a "reboot": the configuration is
dropped, the metadata and data on the "backing devices" stay).

The device: the node's `/dev/drbd<minor>` is a loop device over a file that `blockdev.py`
serves through FUSE; every read, write and flush of it arrives here on the block I/O socket
(`io.py`, `--io-socket`). The bytes live in a backing file beside the metadata
(`md/<disk>.img`); a write is answered once it is in the local file and, with protocol B or C,
acknowledged by every connected peer. The daemon also keeps the device read-only unless the
resource is Primary, and refuses to demote while the device is open exclusively (mounted).

Wire protocol between daemons: JSON lines (block data base64-encoded). The node with the
lower node-id dials, the other accepts (one listening socket per local address and port,
shared by the resource's peers, as DRBD does). A handshake exchanges generation identifiers
(`model.report`), the dialing side decides (`model.decide`) and both apply the verdict.
Connected peers then exchange `state` messages every `ping_interval`; nothing heard for
`ping_timeout` means the link is gone (DRBD's ping timeout), which is how cutting the
replication link is noticed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import random
import signal
import stat
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem_lab.drbdsim import io, model
from tandem_lab.drbdsim.model import (
    CONNECTED,
    CONNECTING,
    ESTABLISHED,
    PRIMARY,
    STANDALONE,
    SYNC_SOURCE,
    Failure,
    Metadata,
    Resource,
    StateChangeFailed,
    WriteRefused,
)

SOCKET_NAME = "kernel.sock"
PID_NAME = "kernel.pid"
STATE_NAME = "kernel.json"
LOG_NAME = "kernel.log"
HANDSHAKE_TIMEOUT = 3.0
CONNECT_RETRY = 0.3
TICK = 0.05
LINE_LIMIT = 64 * 1024 * 1024  # a JSON line carries up to a 1 MiB write or a resync batch
RESYNC_BATCH = 256  # blocks per resync message at most
BLKROSET = 0x125D  # _IO(0x12, 93): set a block device read-only (linux/fs.h)


@dataclass
class Result:
    rc: int = 0
    stdout: str = ""
    stderr: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"rc": self.rc, "stdout": self.stdout, "stderr": self.stderr}


@dataclass
class Link:
    """An established TCP link to one peer of one resource."""

    peer_id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    last_rx: float
    last_tx: float = 0.0
    closed: bool = False
    seq: int = 0
    pending: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    rs_in_flight: set[int] = field(default_factory=set)
    rs_credit: float = 0.0
    rs_done_sent: bool = False
    task: asyncio.Task[None] | None = None

    def send(self, msg: dict[str, Any]) -> bool:
        if self.closed or self.writer.is_closing():
            return False
        try:
            self.writer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        except (OSError, RuntimeError):
            return False
        self.last_tx = time.monotonic()
        # A blocked link (cable pulled) fills the send buffer; the ping timeout will notice.
        return True


@dataclass
class Runtime:
    """Sockets and tasks of one resource."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    links: dict[int, Link] = field(default_factory=dict)
    servers: dict[tuple[str, int], asyncio.AbstractServer] = field(default_factory=dict)
    dialers: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    listening: set[tuple[str, int]] = field(default_factory=set)
    listen_errors: set[tuple[str, int]] = field(default_factory=set)
    retry_after: dict[int, float] = field(default_factory=dict)


def _split_args(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """drbdadm passes options as --name=value (or a bare --flag) after the positionals."""
    pos: list[str] = []
    opts: dict[str, str] = {}
    for arg in argv:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            opts[name] = value if value else "yes"
        else:
            pos.append(arg)
    return pos, opts


def _parse_addr(text: str) -> tuple[str, int]:
    """`ipv4:198.19.30.2:7789` (the form drbdadm passes to new-path)."""
    parts = text.split(":")
    if parts[0] in ("ipv4", "ipv6", "ssocks", "sdp"):
        parts = parts[1:]
    host = ":".join(parts[:-1]).strip("[]")
    return host, int(parts[-1])


def _rate_kib(text: str) -> int:
    units = {"k": 1, "m": 1024, "g": 1024 * 1024}
    text = text.strip().lower()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)  # drbd.conf's default unit for resync-rate is KiB/s


def _md_name(backing: str) -> str:
    return _disk_stem(backing) + ".json"


def data_name(backing: str) -> str:
    """The file holding the data of the backing disk `backing` (beside its metadata)."""
    return _disk_stem(backing) + ".img"


def _disk_stem(backing: str) -> str:
    return backing.strip("/").replace("/", "_")


def _device(minor: int) -> str | None:
    """The node's /dev/drbd<minor> when it is a block device (the lab's loop device); the
    daemons the lab-tier tests run on the host have none."""
    path = f"/dev/drbd{minor}"
    try:
        return path if stat.S_ISBLK(os.stat(path).st_mode) else None
    except OSError:
        return None


def device_in_use(minor: int) -> bool:
    """Whether the device is claimed exclusively (mounted): an O_EXCL open fails with EBUSY."""
    path = _device(minor)
    if path is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return True
        raise
    os.close(fd)
    return False


def set_read_only(minor: int, read_only: bool) -> None:
    """A Secondary's device refuses opens for write (the kernel's answer for a read-only
    block device is EACCES; DRBD's is EMEDIUMTYPE)."""
    path = _device(minor)
    if path is None:
        return
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, BLKROSET, struct.pack("i", int(read_only)))
    finally:
        os.close(fd)


class Kernel:
    def __init__(
        self,
        state_dir: Path,
        *,
        ping_interval: float = 0.2,
        ping_timeout: float = 1.0,
        resync_rate: int = 200,
        fresh: bool = False,
        io_socket: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.io_socket = io_socket
        self.data_fds: dict[str, int] = {}  # resource name -> its open backing file
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.settle_delay = ping_timeout
        self.resync_rate = resync_rate  # blocks per second, unless resync-rate is configured
        self.resources: dict[str, Resource] = {}
        self.rt: dict[str, Runtime] = {}
        self.rng = random.Random()
        self.dirty = False
        self.stopping = asyncio.Event()
        self.md_dir = state_dir / "md"
        self.md_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = state_dir / LOG_NAME
        if fresh:
            (state_dir / STATE_NAME).unlink(missing_ok=True)
        self._load()

    # ------------------------------------------------------------------ persistence

    def _load(self) -> None:
        path = self.state_dir / STATE_NAME
        if not path.exists():
            return
        data = json.loads(path.read_text())
        for item in data["resources"]:
            md = self._read_md(item["backing"]) if item.get("backing") else None
            res = Resource.from_json(item, md)
            self.resources[res.name] = res
            self.rt[res.name] = Runtime()
            if res.md is not None and res.backing:
                self._open_data(res)
        self.log(f"kernel restarted with {len(self.resources)} resource(s)")

    def _read_md(self, backing: str) -> Metadata | None:
        path = self.md_dir / _md_name(backing)
        if not path.exists() or not (self.md_dir / data_name(backing)).exists():
            return None
        return Metadata.from_json(json.loads(path.read_text()))

    def _open_data(self, res: Resource) -> None:
        assert res.backing is not None
        self.data_fds[res.name] = os.open(self.md_dir / data_name(res.backing), os.O_RDWR | os.O_CLOEXEC)

    def _close_data(self, res: Resource) -> None:
        fd = self.data_fds.pop(res.name, None)
        if fd is not None:
            os.close(fd)

    def _write_json(self, path: Path, data: Any) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def _write_md(self, backing: str, md: Metadata) -> None:
        self._write_json(self.md_dir / _md_name(backing), md.to_json())

    def persist(self) -> None:
        for res in self.resources.values():
            if res.md is not None and res.backing:
                self._write_md(res.backing, res.md)
        self._write_json(self.state_dir / STATE_NAME, {"resources": [r.to_json() for r in self.resources.values()]})
        self.dirty = False

    def log(self, *lines: str) -> None:
        if not lines:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
        with self.log_path.open("a") as fh:
            for line in lines:
                fh.write(f"{stamp} {line}\n")
        self.dirty = True

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        sock = self.state_dir / SOCKET_NAME
        sock.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._serve_client, path=str(sock))
        io_server = None
        if self.io_socket is not None:
            self.io_socket.unlink(missing_ok=True)
            io_server = await asyncio.start_unix_server(self._serve_io, path=str(self.io_socket))
        await asyncio.to_thread(self._set_device_modes)
        (self.state_dir / PID_NAME).write_text(f"{os.getpid()}\n")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        for res in self.resources.values():
            self.ensure_network(res)
        ticker = asyncio.create_task(self._ticker())
        try:
            await self.stopping.wait()
        finally:
            ticker.cancel()
            server.close()
            if io_server is not None:
                io_server.close()
                self.io_socket.unlink(missing_ok=True)  # type: ignore[union-attr]
            for res in list(self.resources.values()):
                await self._close_network(res)
            self.persist()
            sock.unlink(missing_ok=True)
            (self.state_dir / PID_NAME).unlink(missing_ok=True)

    async def _ticker(self) -> None:
        last = time.monotonic()
        last_net = 0.0
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            dt, last = now - last, now
            for res in list(self.resources.values()):
                try:
                    self._tick_resource(res, now, dt)
                    if now - last_net > 0.5:
                        self.ensure_network(res)
                except Exception as exc:  # keep the "kernel" alive; the log tells
                    self.log(f"{res.name}: internal error in tick: {exc!r}")
            if now - last_net > 0.5:
                last_net = now
            if self.dirty:
                self.persist()

    def _tick_resource(self, res: Resource, now: float, dt: float) -> None:
        rt = self.rt[res.name]
        for pid, link in list(rt.links.items()):
            if now - link.last_rx > self.ping_timeout:
                self.log(f"{res.name} {res.peers[pid].name}: PingAck did not arrive in time.")
                self.drop_link(res, pid, lost=True)
                continue
            if now - link.last_tx >= self.ping_interval:
                link.send({"t": "state", **model.state_message(res)})
            peer = res.peers[pid]
            if peer.repl == SYNC_SOURCE:
                self._resync_step(res, link, dt)
        lines = model.settle(res, now, self.settle_delay)
        if lines:
            self.log(*lines)
            self.broadcast(res)

    def _resync_step(self, res: Resource, link: Link, dt: float) -> None:
        peer = res.peers[link.peer_id]
        assert res.md is not None
        bits = res.md.bits(link.peer_id)
        if not bits and not link.rs_in_flight:
            if not link.rs_done_sent:
                gi = model.finish_resync_source(res, link.peer_id)
                link.send({"t": "rs_done", "gi": gi})
                link.rs_done_sent = True
                self.log(f"{res.name} {peer.name}: Resync done; repl( SyncSource -> Established )")
                self.broadcast(res)
            return
        rate = (peer.resync_rate_kib // model.BLOCK_KIB) if peer.resync_rate_kib else self.resync_rate
        link.rs_credit = min(link.rs_credit + rate * dt, max(rate, 1))
        count = int(link.rs_credit)
        if count <= 0:
            return
        batch = model.resync_batch(res, link.peer_id, min(count, RESYNC_BATCH), link.rs_in_flight)
        if batch:
            fd = self.data_fds[res.name]
            data = {
                str(i): base64.b64encode(os.pread(fd, model.BLOCK_BYTES, i * model.BLOCK_BYTES)).decode() for i in batch
            }
            link.rs_credit -= len(batch)
            link.rs_in_flight.update(batch)
            link.send({"t": "rs_data", "blocks": data})

    def broadcast(self, res: Resource) -> None:
        msg = {"t": "state", **model.state_message(res)}
        for link in self.rt[res.name].links.values():
            link.send(msg)
        self.dirty = True

    # ------------------------------------------------------------------ network

    def ensure_network(self, res: Resource) -> None:
        rt = self.rt[res.name]
        wanted: set[tuple[str, int]] = set()
        for peer in res.peers.values():
            if peer.cstate == STANDALONE or peer.local_addr is None or peer.remote_addr is None:
                task = rt.dialers.pop(peer.node_id, None)
                if task:
                    task.cancel()
                continue
            wanted.add(peer.local_addr)
            if peer.cstate == CONNECTING and res.node_id < peer.node_id:
                task = rt.dialers.get(peer.node_id)
                if task is None or task.done():
                    rt.dialers[peer.node_id] = asyncio.create_task(self._dial(res, peer.node_id))
        for addr in list(rt.servers):
            if addr not in wanted:
                rt.servers.pop(addr).close()
        for addr in wanted:
            if addr not in rt.servers and addr not in rt.listening:
                rt.listening.add(addr)
                asyncio.create_task(self._listen(res, addr))

    async def _listen(self, res: Resource, addr: tuple[str, int]) -> None:
        rt = self.rt[res.name]
        try:
            server = await asyncio.start_server(
                lambda r, w: self._accept(res.name, r, w),
                host=addr[0],
                port=addr[1],
                reuse_address=True,
                limit=LINE_LIMIT,
            )
        except OSError as exc:
            if addr not in rt.listen_errors:  # retried by ensure_network(); say it once
                rt.listen_errors.add(addr)
                self.log(f"{res.name}: can not listen on {addr[0]}:{addr[1]}: {exc.strerror}; retrying")
            return
        finally:
            rt.listening.discard(addr)
        rt.listen_errors.discard(addr)
        if addr in rt.servers or self.resources.get(res.name) is not res:
            server.close()
            return
        rt.servers[addr] = server

    async def _dial(self, res: Resource, peer_id: int) -> None:
        rt = self.rt[res.name]
        while self.resources.get(res.name) is res:
            peer = res.peers.get(peer_id)
            if peer is None or peer.cstate != CONNECTING or peer.remote_addr is None:
                return
            if peer_id in rt.links:
                return
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        peer.remote_addr[0],
                        peer.remote_addr[1],
                        local_addr=(peer.local_addr[0], 0) if peer.local_addr else None,
                        limit=LINE_LIMIT,
                    ),
                    timeout=self.ping_timeout,
                )
            except (OSError, TimeoutError):
                await asyncio.sleep(CONNECT_RETRY)
                continue
            ok = False
            try:
                ok = await self._handshake_initiator(res, peer_id, reader, writer)
            except (OSError, TimeoutError, ValueError, KeyError, asyncio.IncompleteReadError) as exc:
                self.log(f"{res.name} {peer.name}: handshake failed: {exc!r}")
            if not ok:
                writer.close()
                delay = rt.retry_after.pop(peer_id, 0.0) - time.monotonic()
                await asyncio.sleep(max(CONNECT_RETRY, delay))
            else:
                return

    async def _read(self, reader: asyncio.StreamReader, timeout: float) -> dict[str, Any]:
        line = await asyncio.wait_for(reader.readline(), timeout=timeout)
        if not line:
            raise ConnectionResetError("peer closed the connection")
        data: dict[str, Any] = json.loads(line)
        return data

    @staticmethod
    def _send_raw(writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
        writer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    async def _handshake_initiator(
        self, res: Resource, peer_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        rt = self.rt[res.name]
        async with rt.lock:
            peer = res.peers.get(peer_id)
            if peer is None or peer.cstate != CONNECTING or peer_id in rt.links:
                return False
            self._send_raw(writer, {"t": "hello", "resource": res.name, "from": res.node_id, "to": peer_id})
            msg = await self._read(reader, HANDSHAKE_TIMEOUT)
            if msg.get("t") != "report":
                return False
            peer_report = msg["report"]
            mine = model.report(res, peer_id)
            verdict = model.decide(mine, peer_report, peer)
            self._send_raw(writer, {"t": "verdict", "verdict": verdict.to_json(), "report": mine})
            await writer.drain()
            return self._after_verdict(
                res, peer_id=peer_id, verdict=verdict, peer_report=peer_report, reader=reader, writer=writer
            )

    async def _accept(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello = await self._read(reader, HANDSHAKE_TIMEOUT)
            res = self.resources.get(str(hello.get("resource")))
            if res is None or hello.get("to") != res.node_id or res.name != name:
                writer.close()
                return
            peer_id = int(hello["from"])
            rt = self.rt[res.name]
            async with rt.lock:
                peer = res.peers.get(peer_id)
                if peer is None or peer.cstate != CONNECTING or peer_id in rt.links:
                    writer.close()
                    return
                self._send_raw(writer, {"t": "report", "report": model.report(res, peer_id)})
                await writer.drain()
                msg = await self._read(reader, HANDSHAKE_TIMEOUT)
                if msg.get("t") != "verdict":
                    writer.close()
                    return
                verdict = model.Verdict.from_json(msg["verdict"])
                if not self._after_verdict(
                    res, peer_id=peer_id, verdict=verdict, peer_report=msg["report"], reader=reader, writer=writer
                ):
                    writer.close()
        except (OSError, TimeoutError, ValueError, KeyError, asyncio.IncompleteReadError):
            writer.close()

    def _after_verdict(
        self,
        res: Resource,
        *,
        peer_id: int,
        verdict: model.Verdict,
        peer_report: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        self.log(*model.apply_verdict(res, peer_id, verdict, peer_report))
        if verdict.kind == "two-primaries":
            self.rt[res.name].retry_after[peer_id] = time.monotonic() + 1.0
        if verdict.kind == "split-brain":
            self.log(f"{res.name} {res.peers[peer_id].name}: helper command: split-brain")
        self.dirty = True
        if res.peers[peer_id].cstate != CONNECTED:
            if res.peers[peer_id].cstate == STANDALONE:
                self.ensure_network(res)
            return False
        link = Link(peer_id, reader, writer, last_rx=time.monotonic())
        self.rt[res.name].links[peer_id] = link
        link.task = asyncio.create_task(self._reader(res, link))
        self.broadcast(res)
        return True

    def drop_link(self, res: Resource, peer_id: int, *, lost: bool) -> None:
        rt = self.rt[res.name]
        link = rt.links.pop(peer_id, None)
        if link is not None:
            link.closed = True
            for fut in link.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionResetError("connection lost"))
            with contextlib.suppress(Exception):
                link.writer.close()
            current = asyncio.current_task()
            if link.task is not None and link.task is not current:
                link.task.cancel()
        if lost and peer_id in res.peers:
            self.log(*model.connection_lost(res, peer_id, time.monotonic()))
            self.broadcast(res)
        self.dirty = True
        self.ensure_network(res)

    async def _reader(self, res: Resource, link: Link) -> None:
        try:
            while not link.closed:
                line = await link.reader.readline()
                if not line:
                    raise ConnectionResetError("closed by peer")
                link.last_rx = time.monotonic()
                msg = json.loads(line)
                self._handle(res, link, msg)
        except asyncio.CancelledError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            if not link.closed and self.rt.get(res.name) and self.rt[res.name].links.get(link.peer_id) is link:
                self.log(f"{res.name} {res.peers[link.peer_id].name}: connection lost: {exc}")
                self.drop_link(res, link.peer_id, lost=True)

    def _handle(self, res: Resource, link: Link, msg: dict[str, Any]) -> None:
        pid = link.peer_id
        kind = msg["t"]
        if kind == "state":
            lines = model.update_peer_state(res, pid, msg)
            if lines:
                self.log(*lines)
                self.broadcast(res)
        elif kind == "write":
            offset, data = int(msg["off"]), base64.b64decode(msg["data"])
            fd = self.data_fds.get(res.name)
            if fd is not None:
                os.pwrite(fd, data, offset)
            model.receive_write(res, pid, model.blocks_of(offset, len(data)))
            link.send({"t": "ack", "seq": msg["seq"]})
            self.dirty = True
        elif kind == "ack":
            fut = link.pending.pop(int(msg["seq"]), None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif kind == "uuid":
            model.adopt_uuid(res, int(msg["uuid"]), bool(msg.get("up_to_date")))
            self.broadcast(res)
        elif kind == "rs_start":
            self.log(*model.start_full_sync(res, pid, as_source=False))
            self.broadcast(res)
        elif kind == "rs_data":
            blocks = {int(k): base64.b64decode(v) for k, v in msg["blocks"].items()}
            fd = self.data_fds[res.name]
            for index, block in blocks.items():
                os.pwrite(fd, block, index * model.BLOCK_BYTES)
            model.receive_resync(res, pid, blocks)
            link.send({"t": "rs_ack", "blocks": sorted(blocks)})
            self.dirty = True
        elif kind == "rs_ack":
            done = [int(b) for b in msg["blocks"]]
            model.resync_acked(res, pid, done)
            link.rs_in_flight.difference_update(done)
            self.dirty = True
        elif kind == "rs_done":
            self.log(*model.finish_resync_target(res, pid, msg["gi"]))
            self.broadcast(res)
        elif kind == "bye":
            link.closed = True
            self.rt[res.name].links.pop(pid, None)
            with contextlib.suppress(Exception):
                link.writer.close()
            self.log(*model.peer_left(res, pid, msg))
            self.broadcast(res)
            self.ensure_network(res)

    async def _close_network(self, res: Resource) -> None:
        rt = self.rt.get(res.name)
        if rt is None:
            return
        for task in rt.dialers.values():
            task.cancel()
        rt.dialers.clear()
        for pid in list(rt.links):
            link = rt.links.pop(pid)
            link.closed = True
            with contextlib.suppress(Exception):
                link.writer.close()
            if link.task:
                link.task.cancel()
        for server in rt.servers.values():
            server.close()
        rt.servers.clear()

    # ------------------------------------------------------------------ client requests

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            req = json.loads(line)
            op = req.get("op")
            if op == "drbdsetup":
                result = await self.drbdsetup(list(req["argv"]))
            elif op == "drbdmeta":
                result = self.drbdmeta(list(req["argv"]))
            elif op == "write":
                result = await self.lab_write(str(req["resource"]), int(req["blocks"]))
            elif op == "digest":
                result = self.lab_digest(str(req["resource"]))
            elif op == "ping":
                result = Result(stdout=f"{os.getpid()}\n")
            elif op == "shutdown":
                self.stopping.set()
                result = Result()
            else:
                result = Result(20, "", f"unknown request {op!r}\n")
        except Exception as exc:  # report, do not die
            result = Result(20, "", f"drbdsim: internal error: {exc!r}\n")
        if self.dirty:
            self.persist()
        with contextlib.suppress(Exception):
            writer.write(json.dumps(result.to_json()).encode() + b"\n")
            await writer.drain()
            writer.close()

    def _res(self, name: str) -> Resource:
        res = self.resources.get(name)
        if res is None:
            raise Failure(model.ERR_RES_NOT_KNOWN)
        return res

    def _res_by_minor(self, minor: int) -> Resource:
        for res in self.resources.values():
            if res.minor == minor:
                return res
        raise Failure(model.ERR_INVALID_REQUEST, f"minor {minor} is not configured")

    async def drbdsetup(self, argv: list[str]) -> Result:
        if not argv:
            return Result(20, "", "USAGE: drbdsetup command {arguments} [options]\n")
        cmd, rest = argv[0], argv[1:]
        pos, opts = _split_args(rest)
        objname = pos[0] if pos else cmd
        handler: Callable[[list[str], dict[str, str]], Awaitable[Result]] | None = getattr(
            self, "cmd_" + cmd.replace("-", "_"), None
        )
        if handler is None:
            return Result(20, "", f"drbdsetup: unknown command '{cmd}' (not modelled by the lab stand-in)\n")
        try:
            return await handler(pos, opts)
        except StateChangeFailed as exc:
            self.log(f"{objname}: {exc} {exc.info}".rstrip())
            return Result(exc.exit_code, "", exc.stderr(objname))
        except Failure as exc:
            return Result(exc.exit_code, "", exc.stderr(objname))
        except (IndexError, ValueError) as exc:
            return Result(20, "", f"drbdsetup {cmd}: bad arguments {rest!r}: {exc}\n")

    # ----- configuration commands (the order drbdadm up uses)

    async def cmd_new_resource(self, pos: list[str], opts: dict[str, str]) -> Result:
        name, node_id = pos[0], int(pos[1])
        if name in self.resources:
            raise Failure(model.ERR_ALREADY_EXISTS)
        res = Resource(name=name, node_id=node_id)
        res.quorum = opts.get("quorum", "off")
        res.on_no_quorum = opts.get("on-no-quorum", "io-error")
        self.resources[name] = res
        self.rt[name] = Runtime()
        model.recalc(res)
        self.log(f"{name}: new resource, node-id {node_id}, quorum {res.quorum}, on-no-quorum {res.on_no_quorum}")
        return Result()

    async def cmd_resource_options(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res(pos[0])
        res.quorum = opts.get("quorum", res.quorum)
        res.on_no_quorum = opts.get("on-no-quorum", res.on_no_quorum)
        self.log(*model.recalc(res))
        self.dirty = True
        return Result()

    async def cmd_new_minor(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res(pos[0])
        minor, volume = int(pos[1]), int(pos[2])
        if res.minor is not None or any(r.minor == minor for r in self.resources.values()):
            raise Failure(model.ERR_MINOR_OR_VOLUME_EXISTS)
        res.minor, res.volume = minor, volume
        res.intentional_diskless = opts.get("diskless", "no") == "yes"
        self.log(*model.recalc(res))
        self.dirty = True
        return Result()

    async def cmd_new_peer(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res(pos[0])
        peer_id = int(pos[1])
        if peer_id in res.peers:
            raise Failure(model.ERR_ALREADY_EXISTS)
        peer = model.Peer(node_id=peer_id, name=opts.get("_name", f"peer-{peer_id}"))
        self._net_options(peer, opts)
        res.peers[peer_id] = peer
        self.log(*model.recalc(res))
        self.dirty = True
        return Result()

    @staticmethod
    def _net_options(peer: model.Peer, opts: dict[str, str]) -> None:
        peer.protocol = opts.get("protocol", peer.protocol)
        peer.after_sb_0pri = opts.get("after-sb-0pri", peer.after_sb_0pri)
        peer.after_sb_1pri = opts.get("after-sb-1pri", peer.after_sb_1pri)
        peer.after_sb_2pri = opts.get("after-sb-2pri", peer.after_sb_2pri)
        if "allow-two-primaries" in opts:
            peer.allow_two_primaries = opts["allow-two-primaries"] == "yes"

    async def cmd_net_options(self, pos: list[str], opts: dict[str, str]) -> Result:
        self._net_options(self._res(pos[0]).peer(int(pos[1])), opts)
        self.dirty = True
        return Result()

    async def cmd_new_path(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res(pos[0])
        peer = res.peer(int(pos[1]))
        peer.local_addr, peer.remote_addr = _parse_addr(pos[2]), _parse_addr(pos[3])
        self.ensure_network(res)
        self.dirty = True
        return Result()

    async def cmd_del_path(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res(pos[0])
        peer = res.peer(int(pos[1]))
        peer.local_addr = peer.remote_addr = None
        self.ensure_network(res)
        self.dirty = True
        return Result()

    async def cmd_peer_device_options(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res(pos[0])
        peer = res.peer(int(pos[1]))
        if "bitmap" in opts:
            peer.bitmap = opts["bitmap"] != "no"
        if "resync-rate" in opts:
            peer.resync_rate_kib = _rate_kib(opts["resync-rate"])
        self.log(*model.recalc(res))
        self.dirty = True
        return Result()

    async def cmd_attach(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res_by_minor(int(pos[0]))
        backing = pos[1]
        if res.md is not None:
            raise Failure(model.ERR_DISK_CONFIGURED)
        md = self._read_md(backing)
        if md is None:
            raise Failure(model.ERR_MD_INVALID)
        res.md, res.backing = md, backing
        self._open_data(res)
        res.disk = md.disk_state()
        for peer in res.peers.values():
            if not peer.bitmap:
                md.bitmaps.pop(peer.node_id, None)
        self.log(
            f"{res.name}: attached {backing}: disk( Diskless -> {res.disk} )",
            *model.attach_crashed_primary(res),
            *model.recalc(res),
        )
        self._write_md(backing, md)
        self.broadcast(res)
        return Result()

    async def cmd_disk_options(self, pos: list[str], opts: dict[str, str]) -> Result:
        self._res_by_minor(int(pos[0]))
        return Result()

    async def cmd_detach(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res_by_minor(int(pos[0]))
        async with self.rt[res.name].lock:
            self._detach(res)
        return Result()

    def _detach(self, res: Resource) -> None:
        if res.md is None:
            return
        if res.role == PRIMARY and not any(
            p.repl != model.OFF and p.peer_disk == model.UP_TO_DATE for p in res.peers.values()
        ):
            raise StateChangeFailed(model.SS_NO_UP_TO_DATE_DISK)
        if res.backing:
            self._write_md(res.backing, res.md)
        self.log(f"{res.name}: detached {res.backing}: disk( {res.disk} -> Diskless )")
        self._close_data(res)
        res.md, res.backing, res.disk = None, None, model.DISKLESS
        model.recalc(res)
        self.broadcast(res)

    # ----- connections

    async def cmd_connect(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res(pos[0])
        async with self.rt[res.name].lock:
            model.connect(res, int(pos[1]), discard_my_data="discard-my-data" in opts)
            self.log(f"{res.name} {res.peers[int(pos[1])].name}: conn( StandAlone -> Connecting )")
            self.ensure_network(res)
            self.dirty = True
        return Result()

    async def cmd_disconnect(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res(pos[0])
        async with self.rt[res.name].lock:
            self._leave(res, int(pos[1]), going_down=False)
        return Result()

    async def cmd_del_peer(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res(pos[0])
        peer_id = int(pos[1])
        async with self.rt[res.name].lock:
            self._leave(res, peer_id, going_down=False)
            res.peers.pop(peer_id, None)
            if res.md is not None:
                res.md.bitmaps.pop(peer_id, None)
            self.ensure_network(res)
        return Result()

    def _leave(self, res: Resource, peer_id: int, *, going_down: bool) -> None:
        peer = res.peer(peer_id)
        if peer.cstate == STANDALONE:
            return  # SS_ALREADY_STANDALONE is success for disconnect
        before = peer.cstate
        msg = model.leave(res, peer_id, going_down)
        link = self.rt[res.name].links.pop(peer_id, None)
        if link is not None:
            link.send({"t": "bye", **msg})
            link.closed = True
            with contextlib.suppress(Exception):
                link.writer.close()
            if link.task:
                link.task.cancel()
        self.log(f"{res.name} {peer.name}: conn( {before} -> Disconnecting -> StandAlone )")
        self.ensure_network(res)
        self.broadcast(res)

    # ----- roles

    async def cmd_primary(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res(pos[0])
        rt = self.rt[res.name]
        async with rt.lock:
            before = res.role
            full_sync = model.promote(res, "force" in opts, time.time(), self.rng)
            if before != res.role:
                self.log(f"{res.name}: role( Secondary -> Primary ){' (forced)' if 'force' in opts else ''}")
                if res.md is not None and res.backing:
                    self._write_md(res.backing, res.md)  # the Primary indicator, before any write
            if full_sync and res.md is not None:
                for pid in full_sync:
                    link = rt.links.get(pid)
                    if link is None:
                        continue
                    link.send({"t": "uuid", "uuid": res.md.current_uuid})
                    self.log(*model.start_full_sync(res, pid, as_source=True))
                    link.rs_done_sent = False
                    link.send({"t": "rs_start"})
            self.broadcast(res)
        await self._set_device_mode(res)  # writable before drbdadm returns: the mount follows
        return Result()

    async def cmd_secondary(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res(pos[0])
        if res.role == PRIMARY and "force" not in opts:  # --force: openers get I/O errors instead
            await self._refuse_if_open(res)
        async with self.rt[res.name].lock:
            if res.role == PRIMARY:
                model.demote(res)
                self.log(f"{res.name}: role( Primary -> Secondary )")
                self.broadcast(res)
        await self._set_device_mode(res)
        return Result()

    async def cmd_outdate(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res_by_minor(int(pos[-1]))
        async with self.rt[res.name].lock:
            model.outdate(res)
            self.broadcast(res)
        return Result()

    async def cmd_new_current_uuid(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res_by_minor(int(pos[0]))
        async with self.rt[res.name].lock:
            if "clear-bitmap" not in opts:
                model.new_current_uuid(res, self.rng)
            else:
                peers = model.clear_bitmap_new_uuid(res, self.rng)
                assert res.md is not None
                for pid in peers:
                    link = self.rt[res.name].links.get(pid)
                    if link is not None:
                        link.send({"t": "uuid", "uuid": res.md.current_uuid, "up_to_date": True})
                self.log(f"{res.name}: new current UUID, bitmap cleared: initial resync skipped")
            self.broadcast(res)
        return Result()

    async def cmd_down(self, pos: list[str], opts: dict[str, str]) -> Result:
        names = list(self.resources) if pos[0] == "all" else [pos[0]]
        for name in names:
            res = self.resources.get(name)
            if res is None:
                continue
            rt = self.rt[name]
            if res.role == PRIMARY:
                await self._refuse_if_open(res)
            async with rt.lock:
                if res.role == PRIMARY:
                    model.demote(res)
                    self.log(f"{name}: role( Primary -> Secondary )")
                for pid in list(res.peers):
                    self._leave(res, pid, going_down=True)
                self._detach(res)
                await self._close_network(res)
                del self.resources[name]
                del self.rt[name]
                self.log(f"{name}: down")
                self.dirty = True
            await self._set_device_mode(res)
        return Result()

    # ----- status

    async def cmd_status(self, pos: list[str], opts: dict[str, str]) -> Result:
        which = pos[0] if pos else "all"
        chosen = [r for r in self.resources.values() if which in ("all", r.name)]
        if "json" in opts:
            out = model.status_json(chosen) if chosen else "[\n]\n"
        else:
            out = model.status_text(chosen) if chosen or which != "all" else "# No currently configured DRBD found.\n"
        if not chosen and which != "all":
            return Result(10, out if "json" in opts else "", f"{which}: No such resource\n")
        return Result(0, out, "")

    async def cmd_role(self, pos: list[str], opts: dict[str, str]) -> Result:
        return Result(0, self._res(pos[0]).role + "\n")

    async def cmd_cstate(self, pos: list[str], opts: dict[str, str]) -> Result:
        return Result(0, self._res(pos[0]).peer(int(pos[1])).cstate + "\n")

    async def cmd_dstate(self, pos: list[str], opts: dict[str, str]) -> Result:
        res = self._res_by_minor(int(pos[0]))
        parts = [res.disk] + [p.peer_disk for p in sorted(res.peers.values(), key=lambda p: p.node_id)]
        return Result(0, "/".join(parts) + "\n")

    async def cmd_show(self, pos: list[str], opts: dict[str, str]) -> Result:
        return Result(20, "", "drbdsetup show: not modelled by the lab stand-in (drbdadm adjust is unsupported)\n")

    # ------------------------------------------------------------------ drbdmeta

    def drbdmeta(self, argv: list[str]) -> Result:
        """`drbdmeta <minor> v09 <device> internal <command> ...` on the "backing device"."""
        pos, opts = _split_args(argv)
        if len(pos) < 5:
            return Result(20, "", f"drbdmeta: bad arguments {argv!r}\n")
        minor, _fmt, device, _index, command = pos[:5]
        attached = any(r.backing == device for r in self.resources.values())
        md = self._read_md(device)
        if command in ("create-md", "dump-md", "apply-al", "outdate", "wipe-md") and attached:
            return Result(20, "", f"Device '{minor}' is configured!\n")
        if command == "create-md":
            if md is not None and "force" not in opts:
                return Result(
                    10,
                    "",
                    "Valid meta-data in place, overwrite?\n[need to type 'yes' to confirm] "
                    "stdin not a TTY, not waiting for confirmation\nOperation canceled.\n",
                )
            data = self.md_dir / data_name(device)
            if not data.exists():
                with data.open("wb") as f:
                    f.truncate(model.DEFAULT_BLOCKS * model.BLOCK_BYTES)
            self._write_md(device, Metadata(size_blocks=data.stat().st_size // model.BLOCK_BYTES))
            return Result(
                0,
                "",
                "initializing activity log\ninitializing bitmap\n"
                "Writing meta data...\nNew drbd meta data block successfully created.\n",
            )
        if md is None:
            if command == "dstate":
                return Result(255, "", "No valid meta data found\n")
            return Result(255, "", "No valid meta data found\n")
        if command == "apply-al":
            return Result()
        if command == "dstate":
            return Result(0, md.disk_state() + "\n")
        if command == "dump-md":
            lines = [
                "# DRBD meta data dump (lab stand-in)",
                'version "v09";',
                f"current-uuid 0x{md.current_uuid:016X};",
                *(f"bitmap-uuid[{k}] 0x{v:016X};" for k, v in sorted(md.bitmap_uuids.items())),
                f"flags {'consistent' if md.consistent else 'inconsistent'}{',outdated' if md.outdated else ''};",
            ]
            return Result(0, "\n".join(lines) + "\n")
        if command == "outdate":
            if md.consistent:
                md.outdated = True
                self._write_md(device, md)
            return Result()
        if command == "wipe-md":
            (self.md_dir / _md_name(device)).unlink(missing_ok=True)
            return Result(0, "", "DRBD meta data block successfully wiped out.\n")
        return Result(20, "", f"drbdmeta {command}: not modelled by the lab stand-in\n")

    # ------------------------------------------------------------------ lab-only requests

    async def lab_write(self, name: str, count: int) -> Result:
        """Write `count` blocks as an application would, each holding the token
        "<node-id>.<write number>", at the next positions (wrapping around the device)."""
        res = self.resources.get(name)
        if res is None:
            return Result(10, "", f"{name}: No such resource\n")
        if res.md is None:
            return Result(5, "", f"{name}: diskless here\n")
        for _ in range(count):
            index = res.md.writes % res.md.size_blocks
            res.md.writes += 1
            token = f"{res.node_id}.{res.md.writes}".encode()
            try:
                await self.device_write(res, index * model.BLOCK_BYTES, token.ljust(model.BLOCK_BYTES, b"\0"))
            except WriteRefused as exc:
                return Result(exc.exit_code, "", f"{exc}\n")
        return Result(0, f"wrote {count} blocks\n")

    def lab_digest(self, name: str) -> Result:
        res = self.resources.get(name)
        fd = self.data_fds.get(name)
        if res is None or res.md is None or fd is None:
            return Result(10, "", f"{name}: not configured or diskless here\n")
        digest = hashlib.sha256(os.pread(fd, res.md.size_blocks * model.BLOCK_BYTES, 0)).hexdigest()
        out = {"digest": digest, "current_uuid": f"{res.md.current_uuid:016X}"}
        return Result(0, json.dumps(out) + "\n")

    # ------------------------------------------------------------------ the device

    async def device_write(self, res: Resource, offset: int, data: bytes) -> None:
        """Write to the local disk and replicate; return once the resource's protocol is
        satisfied. A peer that does not acknowledge within the ping timeout is dropped and the
        blocks are marked out of sync for it, so a later resync carries them."""
        rt = self.rt[res.name]
        assert res.md is not None
        blocks = model.blocks_of(offset, len(data))
        waits: list[tuple[int, asyncio.Future[None]]] = []
        async with rt.lock:  # no handshake may compute a bitmap in between
            before_uuid = res.md.current_uuid
            before_bits = self._out_of_sync_count(res)
            targets = model.write(res, blocks, self.rng)
            os.pwrite(self.data_fds[res.name], data, offset)
            if res.md.current_uuid != before_uuid:
                self.log(f"{res.name}: new current UUID {res.md.current_uuid:016X} (new data generation)")
            message = {"t": "write", "off": offset, "data": base64.b64encode(data).decode()}
            for pid in targets:
                link = rt.links.get(pid)
                if link is None:
                    model.mark_out_of_sync(res, pid, blocks)
                    continue
                link.seq += 1
                if res.md.current_uuid != before_uuid and res.peers[pid].repl == ESTABLISHED:
                    link.send({"t": "uuid", "uuid": res.md.current_uuid})
                link.send({**message, "seq": link.seq})
                if res.peers[pid].protocol in ("B", "C"):
                    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    link.pending[link.seq] = fut
                    waits.append((pid, fut))
        for pid, fut in waits:
            try:
                await asyncio.wait_for(fut, timeout=self.ping_timeout)
            except (TimeoutError, ConnectionResetError):
                if pid in rt.links:
                    self.log(f"{res.name} {res.peers[pid].name}: write not acknowledged in time")
                    self.drop_link(res, pid, lost=True)
                model.mark_out_of_sync(res, pid, blocks)
        self.dirty = True
        if self._out_of_sync_count(res) != before_bits and res.backing:
            # The bitmap is what a later resync relies on: on disk before the write completes
            # (DRBD's activity log plays this part after a crash).
            self._write_md(res.backing, res.md)

    @staticmethod
    def _out_of_sync_count(res: Resource) -> int:
        return sum(len(bits) for bits in res.md.bitmaps.values()) if res.md is not None else 0

    async def _serve_io(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection of the device (blockdev.py): requests one at a time."""
        try:
            while True:
                op, minor, offset, length = io.REQUEST.unpack(await reader.readexactly(io.REQUEST.size))
                data = await reader.readexactly(length) if op == io.WRITE else b""
                error, out = await self._device_io(op, minor, offset, length, data)
                writer.write(io.REPLY.pack(error, len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _device_io(self, op: int, minor: int, offset: int, length: int, data: bytes) -> tuple[int, bytes]:
        """(errno, data) for one device request; ENXIO while the resource is not up."""
        try:
            res = self._res_by_minor(minor)
        except Failure:
            return errno.ENXIO, b""
        fd = self.data_fds.get(res.name)
        if res.md is None or fd is None:
            return errno.EIO, b""  # a diskless device would read from a peer: not modelled
        if offset < 0 or offset + length > res.md.size_blocks * model.BLOCK_BYTES:
            return errno.EINVAL, b""
        try:
            if op == io.READ:
                res.read_kib += length // 1024
                return 0, os.pread(fd, length, offset)
            if op == io.WRITE:
                await self.device_write(res, offset, data)
                return 0, b""
            if op == io.FLUSH:
                # The peers wrote before acknowledging; a lab power-off kills a machine, not
                # the host, so the host's page cache is their disk. Flush our own file.
                await asyncio.to_thread(os.fdatasync, fd)
                return 0, b""
        except WriteRefused as exc:
            self.log(str(exc))
            return (errno.EMEDIUMTYPE if exc.exit_code == 124 else errno.EIO), b""
        except OSError as exc:
            return exc.errno or errno.EIO, b""
        return errno.EINVAL, b""

    # Opening the device can wait for a concurrent last close, which flushes through this
    # daemon's block I/O socket: the opens run in a thread, outside the resource's lock, so
    # that the event loop and the writes keep going meanwhile.

    async def _refuse_if_open(self, res: Resource) -> None:
        if res.minor is not None and await asyncio.to_thread(device_in_use, res.minor):
            raise StateChangeFailed(model.SS_DEVICE_IN_USE)

    async def _set_device_mode(self, res: Resource) -> None:
        if res.minor is None:
            return
        try:
            await asyncio.to_thread(set_read_only, res.minor, res.role != PRIMARY)
        except OSError as exc:
            self.log(
                f"{res.name}: can not set /dev/drbd{res.minor} read-{'only' if res.role != PRIMARY else 'write'}: "
                f"{exc.strerror}"
            )

    def _set_device_modes(self) -> None:
        """At start every device is read-only but a Primary's (after a reboot: all of them)."""
        primaries = {r.minor for r in self.resources.values() if r.role == PRIMARY}
        for path in Path("/dev").glob("drbd*"):
            if not path.name[4:].isdigit():
                continue
            minor = int(path.name[4:])
            try:
                set_read_only(minor, minor not in primaries)
            except OSError as exc:
                self.log(f"can not set {path} read-only: {exc.strerror}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drbdsim-kernel", description="DRBD stand-in kernel daemon (lab only)")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--ping-interval", type=float, default=float(os.environ.get("DRBDSIM_PING_INTERVAL", "0.2")))
    parser.add_argument("--ping-timeout", type=float, default=float(os.environ.get("DRBDSIM_PING_TIMEOUT", "1.0")))
    parser.add_argument(
        "--resync-rate",
        type=int,
        default=int(os.environ.get("DRBDSIM_RESYNC_RATE", "200")),
        help="resync blocks (4 KiB) per second unless the resource sets resync-rate",
    )
    parser.add_argument("--fresh", action="store_true", help="drop the kernel state (a reboot); keep the disks")
    parser.add_argument("--io-socket", type=Path, help="serve the devices' block I/O here (io.py)")
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)

    async def _run() -> None:
        kernel = Kernel(
            args.state_dir,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
            resync_rate=args.resync_rate,
            fresh=args.fresh,
            io_socket=args.io_socket,
        )
        await kernel.run()

    asyncio.run(_run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
