"""The Addresses driver against real network namespaces on a real bridge.

Topology: LabNetwork(prefix="tda", subnet=10) with three namespaces on the management bridge:
a (198.18.10.2), b (198.18.10.3) and the client c (198.18.10.4), plus 2001:db8:10::<n>/64.
Each of a and b runs a small TCP server that greets with its node name and echoes lines
prefixed with it. Floating addresses come from 198.18.10.0/24, 198.19.10.0/24 (the lab's
replication subnet, unused here: the hosts get no replication link) and 2001:db8:10::/64.

State is checked with iproute2 (`ip -j ...`) and with real TCP connections from c, not with
the driver's own view, so a driver bug cannot hide itself.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import netns as pyroute2_netns

from tandem_agent.drivers import addresses as drv
from tandem_lab.netns import LabNetwork

pytestmark = pytest.mark.lab

PREFIX = "tda"
SUBNET = 10
PORT = 7070
IFNAME = "mgmt"
HOSTS = {"a": 2, "b": 3, "c": 4}

SERVER = r"""
import socket, sys, threading
name, port = sys.argv[1].encode(), int(sys.argv[2])
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
srv.bind(("::", port))
srv.listen(512)

def serve(conn):
    with conn:
        conn.sendall(name + b"\n")
        for line in conn.makefile("rb"):
            conn.sendall(name + b" " + line)

print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def ns(name: str) -> str:
    return f"{PREFIX}-{name}"


def ip_json(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout) if out.stdout.strip() else []


def mac_of(host: str) -> str:
    return str(ip_json("-n", ns(host), "link", "show", IFNAME)[0]["address"])


def neighbour(host: str, address: str) -> tuple[str | None, list[str]]:
    """(lladdr, states) of `address` in `host`'s neighbour table, (None, []) if absent."""
    rows = ip_json("-n", ns(host), "neigh", "show", address, "dev", IFNAME)
    if not rows:
        return None, []
    row = rows[0]
    lladdr = row.get("lladdr")
    return (str(lladdr) if lladdr else None), [str(s) for s in row.get("state", [])]


def addresses_on(host: str, ifname: str = IFNAME) -> set[str]:
    rows = ip_json("-n", ns(host), "addr", "show", "dev", ifname)
    return {f"{a['local']}/{a['prefixlen']}" for a in rows[0]["addr_info"]}


PROMOTE = f"/proc/sys/net/ipv4/conf/{IFNAME}/promote_secondaries"


def read_proc(host: str, path: str) -> str:
    """Read a /proc/sys file as seen from inside `host`'s namespace (coreutils only)."""
    out = subprocess.run(["ip", "netns", "exec", ns(host), "cat", path], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@dataclass
class Conn:
    """A TCP connection opened from inside a namespace, read line by line."""

    sock: socket.socket

    def __post_init__(self) -> None:
        self.reader = self.sock.makefile("rb")

    def line(self) -> str:
        data = self.reader.readline()
        if not data:
            raise ConnectionError("connection closed by the server")
        return data.decode().rstrip("\n")

    def ask(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\n")
        return self.line()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def connect(host: str, address: str, timeout: float = 2.0) -> tuple[Conn, str]:
    """Connect from `host`'s namespace to address:PORT; returns the connection and greeting."""
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock: socket.socket = pyroute2_netns.create_socket(ns(host), family, socket.SOCK_STREAM, flags=0)
    try:
        sock.settimeout(timeout)
        sock.connect((address, PORT))
        conn = Conn(sock)
        return conn, conn.line()
    except BaseException:
        sock.close()
        raise


def greeting(host: str, address: str, timeout: float = 2.0) -> str:
    conn, name = connect(host, address, timeout)
    conn.close()
    return name


def reset_host(host: str) -> None:
    """Back to the lab's base state: only the host's own addresses, empty neighbour table."""
    index = HOSTS[host]
    name = ns(host)
    subprocess.run(["ip", "-n", name, "addr", "flush", "dev", IFNAME], check=True)
    subprocess.run(
        ["ip", "-n", name, "addr", "add", f"198.18.{SUBNET}.{index}/24", "dev", IFNAME],
        check=True,
    )
    subprocess.run(
        ["ip", "-n", name, "addr", "add", f"2001:db8:{SUBNET}::{index}/64", "dev", IFNAME, "nodad"],
        check=True,
    )
    subprocess.run(["ip", "-n", name, "neigh", "flush", "dev", IFNAME], check=True)
    subprocess.run(
        ["ip", "netns", "exec", name, "tee", PROMOTE],
        input="0\n",
        text=True,
        stdout=subprocess.DEVNULL,
        check=True,
    )


def remove_stale_lab() -> None:
    """Delete what a killed earlier run left behind, unless a process still lives in it."""
    for host, index in HOSTS.items():
        name = ns(host)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
        if name not in listed.stdout.split():
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
        if pids.stdout.strip():
            raise RuntimeError(
                f"namespace {name} exists and runs processes {pids.stdout.split()}: another"
                " test or benchmark run uses the tda lab; wait for it, or kill those pids if"
                " they were left behind by a killed run"
            )
        subprocess.run(["ip", "netns", "del", name], check=False)
        subprocess.run(["ip", "link", "del", f"{PREFIX}{index}mgmt"], check=False, capture_output=True)
    for bridge in (f"{PREFIX}-br-mgmt", f"{PREFIX}-br-repl"):
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)


@pytest.fixture(scope="module")
def lab() -> Iterator[LabNetwork]:
    remove_stale_lab()
    network = LabNetwork(prefix=PREFIX, subnet=SUBNET)
    servers: list[subprocess.Popen[str]] = []
    try:
        network.create()
        for host, index in HOSTS.items():
            network.add_host(host, index, replication=False)
            reset_host(host)
        for host in ("a", "b"):
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns(host), sys.executable, "-c", SERVER, host, str(PORT)],
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(proc)
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", f"server in {host} did not start"
        yield network
    finally:
        for proc in servers:
            proc.terminate()
        for proc in servers:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        network.destroy()


@pytest.fixture
def clean(lab: LabNetwork) -> Iterator[LabNetwork]:
    """Every test starts from, and leaves, the base state."""
    for host in HOSTS:
        reset_host(host)
    try:
        yield lab
    finally:
        for host in HOSTS:
            reset_host(host)


def move(address: str, *, announce: drv.Announce | None = drv.DEFAULT_ANNOUNCE) -> drv.AddressResult:
    """Move one floating address from a to b, the way a failover does."""
    vip = drv.parse_addresses(address, 24 if ":" not in address else 64)
    gone = drv.ensure_absent(ns("a"), IFNAME, vip)
    assert gone.removed == vip
    return drv.ensure_present(ns("b"), IFNAME, vip, announce=announce)


def hold_on_a_and_cache(address: str) -> None:
    """Put `address` on a and make c cache a's MAC for it by talking to it over TCP."""
    prefix = 24 if ":" not in address else 64
    drv.ensure_present(ns("a"), IFNAME, drv.parse_addresses(address, prefix))
    assert greeting("c", address) == "a"
    lladdr, states = neighbour("c", address)
    assert lladdr == mac_of("a")
    assert set(states) & {"REACHABLE", "STALE", "DELAY"}, states


@pytest.mark.parametrize("address", ["198.18.10.50", "2001:db8:10::50"])
def test_move_updates_client_neighbour_at_once(clean: LabNetwork, address: str) -> None:
    hold_on_a_and_cache(address)
    before = time.time()
    result = move(address)
    # Right after the call: no waiting for c's entry (REACHABLE for 15-45 s) to expire.
    lladdr, states = neighbour("c", address)
    assert lladdr == mac_of("b"), f"c still sends {address} to {lladdr} ({states})"
    assert mac_of("a") != mac_of("b")
    assert result.changed
    assert result.announcement is not None and result.announcement.rounds == 3
    assert before <= result.announcement.last_sent.timestamp() <= time.time()
    assert greeting("c", address, timeout=1.0) == "b"


@pytest.mark.parametrize("address", ["198.18.10.51", "2001:db8:10::51"])
def test_without_announcement_client_keeps_old_mac_until_announced(clean: LabNetwork, address: str) -> None:
    """Control: the update above is the announcement's doing, not the kernel's."""
    hold_on_a_and_cache(address)
    result = move(address, announce=None)
    assert result.announcement is None
    assert neighbour("c", address)[0] == mac_of("a")
    vip = drv.parse_addresses(address, 24 if ":" not in address else 64)
    sent = drv.announce(ns("b"), IFNAME, vip, drv.Announce(count=1, interval=0.0))
    assert sent.rounds == 1
    assert neighbour("c", address)[0] == mac_of("b")
    assert greeting("c", address, timeout=1.0) == "b"


def test_grow_and_shrink_live_keeps_open_connections(clean: LabNetwork) -> None:
    first10 = drv.parse_addresses("198.18.10.100-198.18.10.109", 24)
    all100 = drv.parse_addresses("198.18.10.100-198.18.10.199", 24)
    assert drv.ensure_present(ns("a"), IFNAME, first10).added == first10
    conns: list[Conn] = []
    try:
        for iface in first10:
            conn, name = connect("c", str(iface.ip))
            conns.append(conn)
            assert name == "a"
            assert conn.ask("before") == "a before"

        grown = drv.ensure_present(ns("a"), IFNAME, all100)
        assert grown.added == all100[10:]
        assert grown.removed == ()
        assert {str(i) for i in all100} <= addresses_on("a")
        for i, conn in enumerate(conns):
            assert conn.ask(f"after grow {i}") == f"a after grow {i}"
        assert greeting("c", "198.18.10.199") == "a"

        shrunk = drv.ensure_absent(ns("a"), IFNAME, all100[50:])
        assert shrunk.removed == all100[50:]
        held = addresses_on("a")
        assert {str(i) for i in all100[:50]} <= held
        assert not {str(i) for i in all100[50:]} & held
        assert "198.18.10.2/24" in held
        for i, conn in enumerate(conns):
            assert conn.ask(f"after shrink {i}") == f"a after shrink {i}"
        assert set(drv.present(ns("a"), IFNAME)) >= set(all100[:50])
    finally:
        for conn in conns:
            conn.close()


def test_ipv6_range_of_256_grows_and_shrinks(clean: LabNetwork) -> None:
    full = drv.parse_addresses("2001:db8:10::100-2001:db8:10::1ff", 64)
    assert len(full) == 256
    first = drv.ensure_present(ns("a"), IFNAME, full[:16])
    assert first.added == full[:16]
    conn, name = connect("c", str(full[0].ip))
    try:
        assert name == "a"
        grown = drv.ensure_present(ns("a"), IFNAME, full)
        assert grown.added == full[16:]
        held = addresses_on("a")
        assert {str(i) for i in full} <= held
        assert "nodad" in json.dumps(ip_json("-n", ns("a"), "addr", "show", "dev", IFNAME))
        assert greeting("c", str(full[-1].ip)) == "a"  # usable at once: no DAD
        shrunk = drv.ensure_absent(ns("a"), IFNAME, full[1:])
        assert shrunk.removed == full[1:]
        held = addresses_on("a")
        assert str(full[0]) in held
        assert not {str(i) for i in full[1:]} & held
        assert conn.ask("still") == "a still"
    finally:
        conn.close()


def test_second_call_changes_nothing(clean: LabNetwork) -> None:
    vips = drv.parse_addresses(["198.18.10.60-198.18.10.62/24", "2001:db8:10::60/64"])
    first = drv.ensure_present(ns("a"), IFNAME, vips)
    assert first.changed and first.added == vips
    held = addresses_on("a")
    again = drv.ensure_present(ns("a"), IFNAME, vips)
    assert not again.changed
    assert again.added == () and again.removed == () and again.announcement is None
    assert addresses_on("a") == held
    gone = drv.ensure_absent(ns("a"), IFNAME, vips)
    assert gone.changed and set(gone.removed) == set(vips)
    gone_again = drv.ensure_absent(ns("a"), IFNAME, vips)
    assert not gone_again.changed and gone_again.removed == ()
    assert addresses_on("a") == {"198.18.10.2/24", "2001:db8:10::2/64"}


def test_prefix_change_replaces_only_that_address(clean: LabNetwork) -> None:
    drv.ensure_present(ns("a"), IFNAME, drv.parse_addresses("198.18.10.70-198.18.10.71", 24))
    result = drv.ensure_present(ns("a"), IFNAME, drv.parse_addresses("198.18.10.70", 32))
    assert result.removed == drv.parse_addresses("198.18.10.70", 24)
    assert result.added == drv.parse_addresses("198.18.10.70", 32)
    held = addresses_on("a")
    assert {"198.18.10.70/32", "198.18.10.71/24"} <= held
    assert "198.18.10.70/24" not in held


def test_removing_the_primary_of_a_subnet_keeps_the_others(clean: LabNetwork) -> None:
    """198.19.10.10 is the first (primary) address of its subnet on a; .11-.19 are
    secondaries that Linux would delete along with it without promote_secondaries."""
    assert read_proc("a", PROMOTE) == "0"
    vips = drv.parse_addresses("198.19.10.10-198.19.10.19", 24)
    drv.ensure_present(ns("a"), IFNAME, vips)
    shown = ip_json("-n", ns("a"), "addr", "show", "dev", IFNAME)
    secondary = {a["local"] for a in shown[0]["addr_info"] if a.get("secondary")}
    assert "198.19.10.10" not in secondary and "198.19.10.11" in secondary
    assert read_proc("a", PROMOTE) == "1"
    subprocess.run(["ip", "-n", ns("c"), "route", "add", "198.19.10.0/24", "dev", IFNAME], check=True)
    conn, name = connect("c", "198.19.10.11")
    try:
        assert name == "a"
        result = drv.ensure_absent(ns("a"), IFNAME, vips[:1])
        assert result.removed == vips[:1]
        held = addresses_on("a")
        assert "198.19.10.10/24" not in held
        assert {str(i) for i in vips[1:]} <= held
        assert conn.ask("promoted") == "a promoted"
    finally:
        conn.close()
        subprocess.run(["ip", "-n", ns("c"), "route", "del", "198.19.10.0/24", "dev", IFNAME], check=False)


def test_missing_namespace_or_interface_is_a_typed_error(clean: LabNetwork) -> None:
    vip = drv.parse_addresses("198.18.10.80", 24)
    with pytest.raises(drv.NamespaceNotFound, match="tda-nosuch"):
        drv.ensure_present("tda-nosuch", IFNAME, vip)
    with pytest.raises(drv.NamespaceNotFound):
        drv.present("tda-nosuch", IFNAME)
    assert not Path("/run/netns/tda-nosuch").exists(), "the driver must not create namespaces"
    with pytest.raises(drv.InterfaceNotFound, match="eth9"):
        drv.ensure_present(ns("a"), "eth9", vip)
    with pytest.raises(drv.InterfaceNotFound, match="eth9"):
        drv.ensure_absent(ns("a"), "eth9", vip)
    assert "198.18.10.80/24" not in addresses_on("a")


def test_announcement_failure_on_a_down_link_reports_what_was_added(clean: LabNetwork) -> None:
    name = ns("a")
    subprocess.run(
        ["ip", "-n", name, "link", "add", "tdadown0", "type", "veth", "peer", "name", "tdadown1"], check=True
    )
    try:
        vip = drv.parse_addresses("198.18.10.90", 24)
        with pytest.raises(drv.AnnouncementError, match="announce") as caught:
            drv.ensure_present(name, "tdadown0", vip)
        assert caught.value.result.added == vip
        assert "198.18.10.90/24" in addresses_on("a", "tdadown0")
        again = drv.ensure_present(name, "tdadown0", vip)
        assert not again.changed
    finally:
        subprocess.run(["ip", "-n", name, "link", "del", "tdadown0"], check=False)


@dataclass
class Captured:
    at: float
    frame: bytes


def capture(host: str, ethertype: int, stop: threading.Event, out: list[Captured]) -> socket.socket:
    sock: socket.socket = pyroute2_netns.create_socket(
        ns(host), socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype), flags=0
    )
    sock.bind((IFNAME, ethertype))
    sock.settimeout(0.05)

    def loop() -> None:
        while not stop.is_set():
            try:
                frame = sock.recv(2048)
            except TimeoutError:
                continue
            out.append(Captured(time.monotonic(), frame))

    threading.Thread(target=loop, daemon=True).start()
    return sock


def test_announcements_are_repeated_and_spaced_as_configured(clean: LabNetwork) -> None:
    vip4 = ipaddress.IPv4Address("198.18.10.95")
    vip6 = ipaddress.IPv6Address("2001:db8:10::95")
    arp: list[Captured] = []
    ipv6: list[Captured] = []
    stop = threading.Event()
    socks = [capture("c", 0x0806, stop, arp), capture("c", 0x86DD, stop, ipv6)]
    try:
        settings = drv.Announce(count=4, interval=0.15)
        vips = drv.parse_addresses([f"{vip4}/24", f"{vip6}/64"])
        start = time.monotonic()
        result = drv.ensure_present(ns("b"), IFNAME, vips, announce=settings)
        elapsed = time.monotonic() - start
        time.sleep(0.1)
    finally:
        stop.set()
        time.sleep(0.1)
        for sock in socks:
            sock.close()
    assert result.announcement is not None and result.announcement.rounds == 4
    assert elapsed >= 3 * 0.15
    b_mac = bytes.fromhex(mac_of("b").replace(":", ""))

    garps = [c for c in arp if c.frame[28:32] == vip4.packed and c.frame[38:42] == vip4.packed]
    assert all(c.frame[0:6] == b"\xff" * 6 and c.frame[22:28] == b_mac for c in garps)
    ops = [struct.unpack("!H", c.frame[20:22])[0] for c in garps]
    assert ops.count(1) == 4 and ops.count(2) == 4, ops
    requests = [c.at for c, op in zip(garps, ops, strict=True) if op == 1]
    gaps = [b - a for a, b in zip(requests, requests[1:], strict=False)]
    assert all(0.1 <= gap <= 0.6 for gap in gaps), gaps

    adverts = [c for c in ipv6 if c.frame[20] == 58 and c.frame[54] == 136 and c.frame[62:78] == vip6.packed]
    assert len(adverts) == 4
    for c in adverts:
        assert c.frame[0:6] == bytes.fromhex("333300000001")  # to ff02::1
        assert c.frame[21] == 255  # hop limit: receivers drop anything else
        assert c.frame[38:54] == ipaddress.IPv6Address("ff02::1").packed
        flags = struct.unpack("!I", c.frame[58:62])[0]
        assert flags == 0x20000000  # override, not solicited, not router
        assert c.frame[78:80] == b"\x02\x01" and c.frame[80:86] == b_mac
