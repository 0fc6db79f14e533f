"""Addresses driver: floating IPs on one interface of one network namespace, via pyroute2.

The agent holds a FloatingIP's addresses on the primary and nowhere else. This driver does
the local part, idempotently and one address at a time:

* ``parse_addresses`` turns the spec (single addresses, ``FIRST-LAST`` ranges, IPv4 and
  IPv6, each with a prefix length) into an ordered tuple of ``ip_interface`` objects. It is
  pure and rejects bad specs with an ``AddressSpecError`` naming the entry and the fix.
* ``ensure_present`` adds the listed addresses that are missing and announces them
  (gratuitous ARP for IPv4, unsolicited neighbour advertisements for IPv6) so that
  neighbours stop sending to the previous holder at once instead of waiting for their
  cache entry to expire. ``ensure_absent`` removes the listed addresses that are there.
  Neither touches any address it was not given, so a range can grow or shrink live while
  connections to the other addresses stay open.
* ``present`` reports the addresses the interface holds; ``announce`` repeats the
  announcements on demand (for instance after an AnnouncementError).
* ``plan_present``/``plan_absent`` (pure) decide what to change; ``garp_frame`` and
  ``neighbour_advertisement`` (pure) build what is sent.

Kernel behaviour this driver relies on or works around:

* IPv4 keeps one *primary* address per subnet and makes the others *secondaries*; deleting
  the primary deletes every secondary too unless ``promote_secondaries`` is set. Both
  ``ensure_present`` and ``ensure_absent`` therefore set
  ``net.ipv4.conf.<ifname>.promote_secondaries=1`` (inside the namespace) before changing
  IPv4 addresses, so removing part of a range never takes the rest with it.
* IPv6 addresses are added with ``IFA_F_NODAD``: duplicate address detection would keep a
  moved address *tentative* (unusable, and not announceable) for about a second. The
  Lease, not DAD, guarantees that a single node holds the address.
* ``IFA_F_NOPREFIXROUTE`` is deliberately not used: when a floating address is the only
  one of its subnet on the node, the prefix route it brings is what lets the node answer
  on-link clients.
* Linux updates an existing neighbour entry from a gratuitous ARP (request, or reply whose
  target hardware address equals the sender's) even within ``locktime``, and from an
  unsolicited NA with the override flag; ``arp_accept``/``accept_untracked_na`` only
  govern whether *new* entries are created. That is what makes the move visible at once.

All calls block (netlink round trips and the announcement spacing). From asyncio code,
run them in a worker thread (``asyncio.to_thread``); namespaces are entered with
``setns(2)`` for the calling thread only and left again before the call returns.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import ipaddress
import os
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .base import DriverError, Outcome

IPInterface: TypeAlias = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_ADDRESSES = 256
"""Most addresses one spec (and one call) may name; a FloatingIP range stays within a /24."""

NETNS_RUN_DIR = "/run/netns"
IFA_F_NODAD = 0x02
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
ARPHRD_ETHER = 1
IFF_UP = 0x1
ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
CLONE_NEWNET = 0x40000000
BROADCAST_MAC = b"\xff" * 6
ALL_NODES = "ff02::1"
ICMPV6_NEIGHBOUR_ADVERTISEMENT = 136
NA_FLAG_OVERRIDE = 0x20000000
ND_OPT_TARGET_LINKLAYER = 2
MIN_ETHERNET_FRAME = 60


# --------------------------------------------------------------------------- errors


class AddressSpecError(DriverError, ValueError):
    """An address spec is invalid; the message names the entry and how to fix it."""


class NamespaceNotFound(DriverError):
    """The network namespace does not exist (no /run/netns/<name>)."""


class InterfaceNotFound(DriverError):
    """The interface does not exist in the namespace."""


class AddressError(DriverError):
    """The kernel refused to add or remove an address."""


class AnnouncementError(DriverError):
    """The addresses were changed but announcing them failed.

    ``result`` is what the call did before the announcement failed. ``ensure_present`` will
    not announce again on its own (the addresses are already there), so call ``announce``
    once the cause (usually: the interface is down) is fixed.
    """

    def __init__(self, message: str, result: AddressResult) -> None:
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Announce:
    """How to announce added addresses.

    The defaults, 3 rounds 0.2 s apart, follow what IPaddr2 and keepalived do in spirit:
    the first round updates every neighbour that receives it, and the two repeats cover a
    frame lost on the way or sent while a switch port was still learning, while the
    whole sequence (0.4 s) stays small next to the failover budget. A neighbour that
    misses all rounds is not stuck: it re-resolves the address when its entry goes stale.
    """

    count: int = 3
    interval: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.count <= 100:
            raise ValueError(f"announce count must be within 1..100, got {self.count}")
        if not 0.0 <= self.interval <= 10.0:
            raise ValueError(f"announce interval must be within 0..10 s, got {self.interval}")


DEFAULT_ANNOUNCE = Announce()


@dataclass(frozen=True)
class Announcement:
    """What ``announce`` sent: the addresses, how many rounds, and when the last went out."""

    addresses: tuple[IPInterface, ...]
    rounds: int
    last_sent: datetime
    """Wall-clock time (UTC) the last frame of the last round was sent."""


@dataclass(frozen=True)
class AddressResult(Outcome):
    """Outcome of ``ensure_present``/``ensure_absent``: what was added, removed, announced."""

    added: tuple[IPInterface, ...] = ()
    removed: tuple[IPInterface, ...] = ()
    announcement: Announcement | None = None


@dataclass(frozen=True)
class Plan:
    """What to change on an interface: pure output of ``plan_present``/``plan_absent``."""

    add: tuple[IPInterface, ...] = ()
    remove: tuple[IPInterface, ...] = ()


# --------------------------------------------------------------------------- parsing


def parse_addresses(entries: str | Iterable[str], prefixlen: int | None = None) -> tuple[IPInterface, ...]:
    """Turn a FloatingIP address spec into an ordered tuple of interfaces (address/prefix).

    `entries` is one entry or a list of them; a single string may also hold several entries
    separated by commas. An entry is an address (``198.18.10.50``, ``2001:db8::5``) or an
    inclusive range of one family (``198.18.10.2-198.18.10.100``), optionally followed by
    ``/<prefix length>`` which overrides `prefixlen` for that entry. Every entry needs a
    prefix length from one of the two. Addresses keep the order of the spec (ranges
    ascending); an address named twice with the same prefix is kept once.

    Raises AddressSpecError for: an empty spec, an entry that is not an address or range,
    a range with mixed families or whose end comes before its start, a missing or invalid
    prefix length, a non-unicast address, an IPv4 network or broadcast address, an address
    named twice with different prefix lengths, or more than MAX_ADDRESSES addresses.
    """
    if prefixlen is not None and (isinstance(prefixlen, bool) or not isinstance(prefixlen, int)):
        raise AddressSpecError(f"prefix length {prefixlen!r} is not an integer: pass e.g. 24 for IPv4 or 64 for IPv6")
    raw = _split_entries(entries)
    if not raw:
        raise AddressSpecError("the address spec is empty: name at least one address, e.g. 198.18.10.50")
    result: dict[IPAddress, IPInterface] = {}
    for entry in raw:
        for iface in _parse_entry(entry, prefixlen):
            known = result.get(iface.ip)
            if known is None:
                result[iface.ip] = iface
            elif known.network.prefixlen != iface.network.prefixlen:
                raise AddressSpecError(
                    f"entry {entry!r}: {iface.ip} is also named with /{known.network.prefixlen};"
                    " give each address a single prefix length"
                )
        if len(result) > MAX_ADDRESSES:
            raise _too_many(entry)
    return tuple(result.values())


def _split_entries(entries: str | Iterable[str]) -> list[str]:
    if isinstance(entries, str):
        entries = entries.split(",")
    out: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise AddressSpecError(f"entry {entry!r} is not a string: write addresses as text, e.g. '198.18.10.50'")
        stripped = entry.strip()
        if stripped:
            out.append(stripped)
    return out


def _too_many(entry: str) -> AddressSpecError:
    return AddressSpecError(
        f"entry {entry!r} brings the spec above {MAX_ADDRESSES} addresses: shorten the range"
        f" or split the addresses over several FloatingIPs"
    )


def _parse_entry(entry: str, default_prefix: int | None) -> list[IPInterface]:
    body, slash, prefix_text = entry.partition("/")
    if slash:
        prefix: int | None = _parse_prefix(entry, prefix_text)
    else:
        prefix = default_prefix
    first_text, dash, last_text = body.partition("-")
    first = _parse_address(entry, first_text.strip(), "address" if not dash else "start")
    if prefix is None:
        example = 24 if first.version == 4 else 64
        raise AddressSpecError(
            f"entry {entry!r} has no prefix length: append /{example} to it or pass a prefix length for the whole spec"
        )
    maxlen = first.max_prefixlen
    if not 1 <= prefix <= maxlen:
        raise AddressSpecError(
            f"entry {entry!r}: prefix length /{prefix} is invalid for IPv{first.version};"
            f" use 1..{maxlen} (usually /{24 if first.version == 4 else 64})"
        )
    if not dash:
        addresses: list[IPAddress] = [first]
    else:
        last = _parse_address(entry, last_text.strip(), "end")
        if last.version != first.version:
            raise AddressSpecError(
                f"range {entry!r} mixes IPv{first.version} and IPv{last.version}: both ends"
                " of a range must be of the same family; list the other family separately"
            )
        if int(last) < int(first):
            raise AddressSpecError(f"range {entry!r} ends before it starts: write it as {last}-{first}")
        count = int(last) - int(first) + 1
        if count > MAX_ADDRESSES:
            raise _too_many(entry)
        cls = type(first)
        addresses = [cls(int(first) + i) for i in range(count)]
    out: list[IPInterface] = []
    for address in addresses:
        iface = ipaddress.ip_interface(f"{address}/{prefix}")
        _check_unicast(entry, iface)
        out.append(iface)
    return out


def _parse_prefix(entry: str, text: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise AddressSpecError(
            f"entry {entry!r}: prefix length {text!r} is not a number; write it as /24 (IPv4) or /64 (IPv6)"
        )
    return int(text)


def _parse_address(entry: str, text: str, what: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        hint = (
            " (a range needs full addresses at both ends, e.g. 198.18.10.2-198.18.10.100)"
            if what == "end"
            else " (write an address such as 198.18.10.50 or 2001:db8::5, or a range FIRST-LAST)"
        )
        raise AddressSpecError(f"entry {entry!r}: {what} {text!r} is not an IP address{hint}") from None


def _check_unicast(entry: str, iface: IPInterface) -> None:
    ip = iface.ip
    if (
        ip.is_multicast
        or ip.is_unspecified
        or ip.is_loopback
        or (ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255"))
    ):
        raise AddressSpecError(
            f"entry {entry!r}: {ip} is not a unicast address and cannot float; use an address from the service network"
        )
    if ip.version == 6 and ip.is_link_local:
        raise AddressSpecError(
            f"entry {entry!r}: {ip} is link-local (fe80::/10) and cannot float;"
            " use a global address, e.g. from the service network's /64"
        )
    net = iface.network
    if ip.version == 4 and net.prefixlen <= 30:
        if ip == net.network_address:
            raise AddressSpecError(
                f"entry {entry!r}: {ip} is the network address of {net}; start at"
                f" {net.network_address + 1} or use a different prefix length"
            )
        if ip == net.broadcast_address:
            raise AddressSpecError(
                f"entry {entry!r}: {ip} is the broadcast address of {net}; end at"
                f" {net.broadcast_address - 1} or use a different prefix length"
            )


# --------------------------------------------------------------------------- planning


def plan_present(current: Iterable[IPInterface], wanted: Iterable[IPInterface]) -> Plan:
    """What to change so that every `wanted` address is present with its prefix length.

    Addresses already there with the wanted prefix are left alone; one there with another
    prefix length is removed and added again. Nothing outside `wanted` is touched.
    """
    have = {iface.ip: iface for iface in current}
    add: list[IPInterface] = []
    remove: list[IPInterface] = []
    for iface in _unique(wanted):
        old = have.get(iface.ip)
        if old is not None and old.network.prefixlen == iface.network.prefixlen:
            continue
        if old is not None:
            remove.append(old)
        add.append(iface)
    return Plan(add=tuple(add), remove=tuple(remove))


def plan_absent(current: Iterable[IPInterface], unwanted: Iterable[IPInterface]) -> Plan:
    """What to remove so that no `unwanted` address is present, whatever its prefix length.

    The returned interfaces carry the prefix length found on the interface (the kernel
    needs it to find the address).
    """
    have = {iface.ip: iface for iface in current}
    remove = [have[iface.ip] for iface in _unique(unwanted) if iface.ip in have]
    return Plan(remove=tuple(remove))


def _unique(addresses: Iterable[IPInterface]) -> list[IPInterface]:
    seen: set[IPAddress] = set()
    out: list[IPInterface] = []
    for iface in addresses:
        if iface.ip not in seen:
            seen.add(iface.ip)
            out.append(iface)
    return out


# --------------------------------------------------------------------------- frames


def garp_frame(mac: bytes, address: ipaddress.IPv4Address, *, reply: bool) -> bytes:
    """A broadcast gratuitous ARP Ethernet frame for `address` held by `mac`.

    Sender and target protocol addresses are both `address`. A request carries a zero
    target hardware address (RFC 5227 announcement); a reply carries `mac` there too,
    which Linux requires before it treats a reply as gratuitous.
    """
    if len(mac) != 6:
        raise ValueError(f"an Ethernet address has 6 bytes, got {len(mac)}")
    op = 2 if reply else 1
    target_mac = mac if reply else b"\x00" * 6
    arp = struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, op) + mac + address.packed + target_mac + address.packed
    frame = BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP) + arp
    return frame.ljust(MIN_ETHERNET_FRAME, b"\x00")


def neighbour_advertisement(mac: bytes, address: ipaddress.IPv6Address) -> bytes:
    """An unsolicited ICMPv6 neighbour advertisement (override set) for `address` at `mac`.

    The checksum field is left zero: the kernel fills it for ICMPv6 raw sockets.
    """
    if len(mac) != 6:
        raise ValueError(f"an Ethernet address has 6 bytes, got {len(mac)}")
    return (
        struct.pack("!BBHI", ICMPV6_NEIGHBOUR_ADVERTISEMENT, 0, 0, NA_FLAG_OVERRIDE)
        + address.packed
        + struct.pack("!BB", ND_OPT_TARGET_LINKLAYER, 1)
        + mac
    )


# --------------------------------------------------------------------------- namespaces


_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc  # noqa: PLW0603 - loaded once, on first use
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def netns_path(netns: str) -> str:
    """Path of a named namespace (``/run/netns/<name>``); an absolute path is kept."""
    return netns if netns.startswith("/") else os.path.join(NETNS_RUN_DIR, netns)


@contextmanager
def entered(netns: str | None) -> Iterator[None]:
    """Run the body with the calling thread inside network namespace `netns`.

    None means the thread's current namespace. Only the calling thread moves, and it moves
    back on exit; sockets opened inside keep the namespace they were opened in. The
    namespace is never created (unlike ``IPRoute(netns=...)``, which creates a missing one
    by default).
    """
    if netns is None:
        yield
        return
    path = netns_path(netns)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceNotFound(
            f"network namespace {netns!r} does not exist ({path} is missing): create it first or fix the name"
        ) from None
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                _setns(target)
            except OSError as exc:
                raise NamespaceNotFound(
                    f"cannot enter network namespace {netns!r} ({path}): {exc.strerror};"
                    " it must be a network namespace and the agent needs CAP_SYS_ADMIN"
                ) from None
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(own)
    finally:
        os.close(target)


# --------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class _Link:
    index: int
    ifname: str
    mac: bytes | None
    up: bool


def _where(netns: str | None) -> str:
    return f"network namespace {netns!r}" if netns else "the agent's network namespace"


def _link(ipr: Any, netns: str | None, ifname: str) -> _Link:
    try:
        msg = ipr.link("get", ifname=ifname)[0]
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise AddressError(f"cannot look up {ifname!r} in {_where(netns)}: {exc}") from exc
        raise InterfaceNotFound(
            f"interface {ifname!r} does not exist in {_where(netns)}: check the FloatingIP's"
            " interface name (`ip link` lists them)"
        ) from None
    index = int(msg["index"])
    mac: bytes | None = None
    lladdr = msg.get_attr("IFLA_ADDRESS")
    if int(msg["ifi_type"]) == ARPHRD_ETHER and lladdr:
        mac = bytes.fromhex(str(lladdr).replace(":", ""))
    return _Link(index=index, ifname=ifname, mac=mac, up=bool(int(msg["flags"]) & IFF_UP))


def _dump(ipr: Any, index: int) -> list[IPInterface]:
    out: list[IPInterface] = []
    for msg in ipr.addr("dump", index=index):
        if int(msg["scope"]) in (RT_SCOPE_LINK, RT_SCOPE_HOST):
            continue
        address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        if address:
            out.append(ipaddress.ip_interface(f"{address}/{int(msg['prefixlen'])}"))
    return out


def _promote_secondaries(ifname: str) -> None:
    """Set net.ipv4.conf.<ifname>.promote_secondaries=1 in the thread's namespace."""
    path = f"/proc/sys/net/ipv4/conf/{ifname}/promote_secondaries"
    try:
        with open(path) as handle:
            if handle.read().strip() == "1":
                return
        with open(path, "w") as handle:
            handle.write("1\n")
    except OSError as exc:
        raise AddressError(
            f"cannot set net.ipv4.conf.{ifname}.promote_secondaries=1 ({exc.strerror}):"
            " without it, removing the first address of a subnet removes the others; the"
            " agent needs write access to /proc/sys/net"
        ) from None


def _check(addresses: Iterable[IPInterface]) -> tuple[IPInterface, ...]:
    out = tuple(addresses)
    for iface in out:
        if not isinstance(iface, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
            raise TypeError(f"{iface!r} is not an ipaddress interface: parse the spec with parse_addresses")
    if len({iface.ip for iface in out}) > MAX_ADDRESSES:
        raise AddressSpecError(f"{len(out)} addresses given: at most {MAX_ADDRESSES} per call")
    return out


def _change(ipr: Any, netns: str | None, link: _Link, iface: IPInterface, add: bool) -> bool:
    """Add or delete one address; False when the kernel says it was already so."""
    kwargs: dict[str, Any] = {
        "index": link.index,
        "address": str(iface.ip),
        "prefixlen": iface.network.prefixlen,
    }
    if add and iface.version == 6:
        kwargs["flags"] = IFA_F_NODAD
    try:
        ipr.addr("add" if add else "del", **kwargs)
    except NetlinkError as exc:
        if add and exc.code == errno.EEXIST:
            return False
        if not add and exc.code in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH):
            return False
        verb = "add" if add else "remove"
        raise AddressError(f"cannot {verb} {iface} on {link.ifname} in {_where(netns)}: {exc}") from exc
    return True


def _fmt(addresses: Sequence[IPInterface]) -> str:
    if len(addresses) <= 4:
        return ", ".join(str(a) for a in addresses)
    return f"{addresses[0]} … {addresses[-1]} ({len(addresses)} addresses)"


def present(netns: str | None, ifname: str) -> tuple[IPInterface, ...]:
    """The addresses `ifname` holds in `netns`, in kernel order.

    Link-local and host-scope addresses (IPv6 fe80::/10, 127.0.0.1 on lo) are left out: they
    never float. Raises NamespaceNotFound or InterfaceNotFound.
    """
    with entered(netns), IPRoute() as ipr:
        link = _link(ipr, netns, ifname)
        return tuple(_dump(ipr, link.index))


class RecentAddresses:
    """What `present` returned lately, per interface, shared by the node's clusters.

    Each cluster's floating-IP monitor checks its addresses every period, and a dump lists
    every address of the interface: with a hundred clusters on one interface, a hundred dumps
    of a hundred addresses each, every second. Here a dump at most `max_age` seconds old
    serves them all, and while one dump of an interface runs, the other readers of that
    interface wait for it rather than start their own (the monitors of clusters brought up
    together fall due together). The agent's own changes of an interface `forget` what was
    kept of it, and a dump that ran across such a change is not kept: its readers dump again.
    Errors are not kept either.
    """

    def __init__(self, max_age: float = 0.5) -> None:
        self.max_age = max_age
        self._lock = threading.Condition()
        self._seen: dict[tuple[str | None, str], tuple[float, tuple[IPInterface, ...]]] = {}
        self._dumping: set[tuple[str | None, str]] = set()
        self._changes: dict[tuple[str | None, str], int] = {}  # how many times `forget` was called

    def present(self, netns: str | None, ifname: str) -> tuple[IPInterface, ...]:
        key = (netns, ifname)
        with self._lock:
            while True:
                seen = self._seen.get(key)
                if seen is not None and time.monotonic() - seen[0] < self.max_age:
                    return seen[1]
                if key not in self._dumping:
                    break
                self._lock.wait()
            self._dumping.add(key)
            started, changes = time.monotonic(), self._changes.get(key, 0)
        try:
            held = present(netns, ifname)
            with self._lock:
                if self._changes.get(key, 0) == changes:
                    self._seen[key] = (started, held)
            return held
        finally:
            with self._lock:
                self._dumping.discard(key)
                self._lock.notify_all()

    def forget(self, netns: str | None, ifname: str) -> None:
        with self._lock:
            key = (netns, ifname)
            self._seen.pop(key, None)
            self._changes[key] = self._changes.get(key, 0) + 1


def ensure_present(
    netns: str | None,
    ifname: str,
    addresses: Iterable[IPInterface],
    *,
    announce: Announce | None = DEFAULT_ANNOUNCE,
) -> AddressResult:
    """Make every listed address present on `ifname` in `netns`; touch nothing else.

    Missing addresses are added (IPv6 without DAD); an address present with another prefix
    length is replaced. The addresses added are then announced `announce.count` times,
    `announce.interval` seconds apart (None: not announced), and the call returns after the
    last round. Raises NamespaceNotFound, InterfaceNotFound, AddressError, or
    AnnouncementError (which carries the result: the addresses *were* added).
    """
    wanted = _check(addresses)
    with entered(netns), IPRoute() as ipr:
        link = _link(ipr, netns, ifname)
        if any(iface.version == 4 for iface in wanted):
            _promote_secondaries(ifname)
        plan = plan_present(_dump(ipr, link.index), wanted)
        removed = [old for old in plan.remove if _change(ipr, netns, link, old, add=False)]
        added = [new for new in plan.add if _change(ipr, netns, link, new, add=True)]
        base = AddressResult(
            changed=bool(added or removed),
            detail=f"added {_fmt(added)} on {ifname}" if added else f"all present on {ifname}",
            added=tuple(added),
            removed=tuple(removed),
        )
        if not added or announce is None:
            return base
        try:
            sent = _announce(link, tuple(added), announce)
        except (OSError, DriverError) as exc:
            raise AnnouncementError(
                f"added {_fmt(added)} on {ifname} in {_where(netns)} but could not announce"
                f" them: {exc}; fix that (a down interface, say) and call announce() again",
                base,
            ) from exc
    return AddressResult(
        changed=True,
        detail=f"{base.detail}; announced {sent.rounds}x, last at {sent.last_sent.isoformat()}",
        added=base.added,
        removed=base.removed,
        announcement=sent,
    )


def ensure_absent(netns: str | None, ifname: str, addresses: Iterable[IPInterface]) -> AddressResult:
    """Remove every listed address from `ifname` in `netns`, whatever its prefix length.

    Addresses not listed stay, including IPv4 secondaries of a removed primary (see the
    module docstring). Raises NamespaceNotFound, InterfaceNotFound or AddressError.
    """
    unwanted = _check(addresses)
    with entered(netns), IPRoute() as ipr:
        link = _link(ipr, netns, ifname)
        plan = plan_absent(_dump(ipr, link.index), unwanted)
        if any(iface.version == 4 for iface in plan.remove):
            _promote_secondaries(ifname)
        removed = [old for old in plan.remove if _change(ipr, netns, link, old, add=False)]
    return AddressResult(
        changed=bool(removed),
        detail=f"removed {_fmt(removed)} from {ifname}" if removed else f"none on {ifname}",
        removed=tuple(removed),
    )


def announce(
    netns: str | None,
    ifname: str,
    addresses: Iterable[IPInterface],
    settings: Announce = DEFAULT_ANNOUNCE,
) -> Announcement:
    """Announce addresses `ifname` holds: gratuitous ARP (IPv4) and unsolicited NA (IPv6).

    Each round sends, per IPv4 address, a gratuitous ARP request and reply, and per IPv6
    address an unsolicited neighbour advertisement with the override flag to ff02::1, all
    from the interface's MAC; rounds are `settings.interval` apart. Returns when the last
    round is sent. Raises NamespaceNotFound, InterfaceNotFound or AnnouncementError.
    """
    wanted = _check(addresses)
    with entered(netns), IPRoute() as ipr:
        link = _link(ipr, netns, ifname)
        try:
            return _announce(link, wanted, settings)
        except OSError as exc:
            raise AnnouncementError(
                f"cannot announce {_fmt(wanted)} on {ifname} in {_where(netns)}: {exc}",
                AddressResult(changed=False),
            ) from exc


def _announce(link: _Link, addresses: tuple[IPInterface, ...], settings: Announce) -> Announcement:
    """Send the announcement rounds; the calling thread must be in the link's namespace."""
    if link.mac is None:
        raise AnnouncementError(
            f"interface {link.ifname!r} has no Ethernet address, so its addresses cannot be"
            " announced: put the FloatingIP on an Ethernet interface or disable announcements",
            AddressResult(changed=False),
        )
    if not link.up:
        raise OSError(errno.ENETDOWN, f"interface {link.ifname} is down")
    frames4 = [
        garp_frame(link.mac, iface.ip, reply=reply)
        for iface in addresses
        if isinstance(iface, ipaddress.IPv4Interface)
        for reply in (False, True)
    ]
    adverts6 = [
        (iface.ip, neighbour_advertisement(link.mac, iface.ip))
        for iface in addresses
        if isinstance(iface, ipaddress.IPv6Interface)
    ]
    with ExitStack() as stack:
        arp_sock: socket.socket | None = None
        nd_sock: socket.socket | None = None
        if frames4:
            # Protocol 0: a send-only packet socket registers no receive hook, which saves
            # an RCU grace period (milliseconds) before the first frame can go out.
            arp_sock = stack.enter_context(socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
        if adverts6:
            nd_sock = stack.enter_context(socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6))
            nd_sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            nd_sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, link.index)
        destination = (ALL_NODES, 0, 0, link.index)
        last = datetime.now(UTC)
        for round_no in range(settings.count):
            if round_no:
                time.sleep(settings.interval)
            if arp_sock is not None:
                for frame in frames4:
                    arp_sock.sendto(frame, (link.ifname, ETH_P_ARP))
            if nd_sock is not None:
                for address, advert in adverts6:
                    pktinfo = address.packed + struct.pack("@I", link.index)
                    nd_sock.sendmsg(
                        [advert],
                        [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)],
                        0,
                        destination,
                    )
            last = datetime.now(UTC)
    return Announcement(addresses=addresses, rounds=settings.count, last_sent=last)
