"""Pure parts of the Addresses driver: spec parsing, change planning, announcement frames."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from tandem_agent.drivers.addresses import (
    MAX_ADDRESSES,
    AddressResult,
    AddressSpecError,
    Announce,
    IPInterface,
    garp_frame,
    neighbour_advertisement,
    parse_addresses,
    plan_absent,
    plan_present,
)
from tandem_agent.drivers.base import DriverError, Outcome

v4 = ipaddress.IPv4Interface
v6 = ipaddress.IPv6Interface


# ----------------------------------------------------------------- parsing: accepted specs


def test_single_ipv4_address_with_prefix_argument() -> None:
    assert parse_addresses("198.18.10.50", 24) == (v4("198.18.10.50/24"),)


def test_single_ipv6_address() -> None:
    assert parse_addresses("2001:db8::5", 64) == (v6("2001:db8::5/64"),)


def test_range_is_inclusive_and_ascending() -> None:
    got = parse_addresses("198.18.10.2-198.18.10.100", 24)
    assert len(got) == 99
    assert got[0] == v4("198.18.10.2/24")
    assert got[-1] == v4("198.18.10.100/24")
    assert [int(i.ip) for i in got] == list(range(int(got[0].ip), int(got[-1].ip) + 1))


def test_ipv6_range() -> None:
    got = parse_addresses("2001:db8::ff-2001:db8::101", 64)
    assert got == (v6("2001:db8::ff/64"), v6("2001:db8::100/64"), v6("2001:db8::101/64"))


def test_list_keeps_spec_order_and_mixes_families() -> None:
    got = parse_addresses(["198.18.10.9/24", "2001:db8::5/64", "198.18.10.3/24"])
    assert got == (v4("198.18.10.9/24"), v6("2001:db8::5/64"), v4("198.18.10.3/24"))


def test_comma_separated_string_and_whitespace() -> None:
    got = parse_addresses(" 198.18.10.5 , 198.18.10.7 - 198.18.10.8 ", 24)
    assert got == (v4("198.18.10.5/24"), v4("198.18.10.7/24"), v4("198.18.10.8/24"))


def test_entry_prefix_overrides_the_default() -> None:
    got = parse_addresses(["198.18.10.5", "198.18.10.6/32", "2001:db8::1-2001:db8::2/64"], 24)
    assert got == (
        v4("198.18.10.5/24"),
        v4("198.18.10.6/32"),
        v6("2001:db8::1/64"),
        v6("2001:db8::2/64"),
    )


def test_duplicates_with_the_same_prefix_are_kept_once() -> None:
    got = parse_addresses(["198.18.10.5-198.18.10.7", "198.18.10.6"], 24)
    assert got == (v4("198.18.10.5/24"), v4("198.18.10.6/24"), v4("198.18.10.7/24"))


def test_exactly_max_addresses_is_accepted() -> None:
    got = parse_addresses("198.18.11.0-198.18.11.255", 16)
    assert len(got) == MAX_ADDRESSES == 256
    got6 = parse_addresses("2001:db8::100-2001:db8::1ff", 64)
    assert len(got6) == 256


def test_single_address_range_and_point_to_point_prefixes() -> None:
    assert parse_addresses("198.18.10.5-198.18.10.5", 24) == (v4("198.18.10.5/24"),)
    assert parse_addresses("198.18.10.4-198.18.10.5", 31) == (
        v4("198.18.10.4/31"),
        v4("198.18.10.5/31"),
    )
    assert parse_addresses("198.18.10.4", 32) == (v4("198.18.10.4/32"),)


# ----------------------------------------------------------------- parsing: rejected specs


def reject(entries: str | list[str], prefix: int | None, *fragments: str) -> str:
    with pytest.raises(AddressSpecError) as caught:
        parse_addresses(entries, prefix)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_spec_errors_are_driver_errors_and_value_errors() -> None:
    assert issubclass(AddressSpecError, DriverError)
    assert issubclass(AddressSpecError, ValueError)


def test_more_than_256_addresses_in_one_range() -> None:
    reject("198.18.10.0-198.18.11.0", 23, "'198.18.10.0-198.18.11.0'", "256", "split")


def test_more_than_256_addresses_over_several_entries() -> None:
    reject(["198.18.10.1-198.18.10.200", "198.18.11.1-198.18.11.100"], 16, "198.18.11.1", "256")


def test_huge_ipv6_range_is_rejected_without_expanding_it() -> None:
    reject("2001:db8::-2001:db8::ffff:ffff:ffff:ffff", 64, "256")


def test_mixed_families_within_a_range() -> None:
    reject("198.18.10.2-2001:db8::5", 24, "'198.18.10.2-2001:db8::5'", "IPv4", "IPv6", "same")


def test_reversed_range_names_the_fix() -> None:
    reject("198.18.10.100-198.18.10.2", 24, "ends before it starts", "198.18.10.2-198.18.10.100")


@pytest.mark.parametrize(
    ("entry", "prefix", "fragment"),
    [
        ("198.18.10.5", 33, "/33"),
        ("198.18.10.5", 0, "/0"),
        ("198.18.10.5", -1, "/-1"),
        ("2001:db8::5", 129, "1..128"),
        ("198.18.10.5/40", None, "1..32"),
        ("198.18.10.5/x", None, "'x' is not a number"),
        ("198.18.10.5/", None, "is not a number"),
    ],
)
def test_bad_prefix_lengths(entry: str, prefix: int | None, fragment: str) -> None:
    message = reject(entry, prefix, fragment)
    assert entry.split("/", maxsplit=1)[0] in message


def test_non_integer_prefix_argument() -> None:
    with pytest.raises(AddressSpecError, match="not an integer"):
        parse_addresses("198.18.10.5", "24")  # type: ignore[arg-type]
    with pytest.raises(AddressSpecError, match="not an integer"):
        parse_addresses("198.18.10.5", True)


def test_missing_prefix_names_the_fix() -> None:
    reject("198.18.10.5", None, "'198.18.10.5'", "no prefix length", "/24")
    reject("2001:db8::5", None, "/64")


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("mail.example", "'mail.example' is not an IP address"),
        ("198.18.10.300", "'198.18.10.300'"),
        ("198.18.10.2-100", "full addresses at both ends"),
        ("", "empty"),
        (" , ", "empty"),
    ],
)
def test_garbage_entries(entry: str, fragment: str) -> None:
    reject(entry, 24, fragment)


def test_non_string_entry() -> None:
    with pytest.raises(AddressSpecError, match="not a string"):
        parse_addresses([3232235777], 24)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("198.18.10.0", "network address of 198.18.10.0/24"),
        ("198.18.10.255", "broadcast address of 198.18.10.0/24"),
        ("198.18.10.250-198.18.10.255", "broadcast"),
        ("224.0.0.5", "not a unicast"),
        ("0.0.0.0", "not a unicast"),
        ("127.0.0.2", "not a unicast"),
        ("ff02::1", "not a unicast"),
        ("fe80::1", "link-local"),
    ],
)
def test_addresses_that_cannot_float(entry: str, fragment: str) -> None:
    prefix = 64 if ":" in entry else 24
    reject(entry, prefix, fragment)


def test_same_address_with_two_prefix_lengths() -> None:
    reject(["198.18.10.5/24", "198.18.10.5/32"], None, "198.18.10.5", "/24", "single prefix")


# ----------------------------------------------------------------- planning


def test_plan_present_adds_only_the_missing_ones() -> None:
    current: list[IPInterface] = [
        v4("198.18.10.2/24"),
        v4("198.18.10.100/24"),
        v6("2001:db8::5/64"),
    ]
    wanted = parse_addresses("198.18.10.100-198.18.10.102", 24)
    plan = plan_present(current, wanted)
    assert plan.add == wanted[1:]
    assert plan.remove == ()


def test_plan_present_replaces_a_wrong_prefix_and_leaves_the_rest() -> None:
    current = [v4("198.18.10.2/24"), v4("198.18.10.100/32"), v4("198.18.10.101/24")]
    plan = plan_present(current, parse_addresses("198.18.10.100-198.18.10.101", 24))
    assert plan.remove == (v4("198.18.10.100/32"),)
    assert plan.add == (v4("198.18.10.100/24"),)


def test_plan_present_with_everything_there_is_empty() -> None:
    wanted = parse_addresses(["198.18.10.5/24", "2001:db8::5/64"])
    current: list[IPInterface] = [*wanted, v4("198.18.10.2/24")]
    plan = plan_present(current, wanted)
    assert plan.add == () and plan.remove == ()


def test_plan_absent_removes_only_listed_ones_with_their_current_prefix() -> None:
    current = [v4("198.18.10.2/24"), v4("198.18.10.100/32"), v4("198.18.10.101/24")]
    plan = plan_absent(current, parse_addresses("198.18.10.100-198.18.10.105", 24))
    assert plan.remove == (v4("198.18.10.100/32"), v4("198.18.10.101/24"))
    assert plan.add == ()


def test_plan_absent_of_nothing_present_is_empty() -> None:
    assert plan_absent([v4("198.18.10.2/24")], parse_addresses("198.18.10.9", 24)).remove == ()


def test_result_is_an_outcome() -> None:
    result = AddressResult(changed=True, detail="x", added=(v4("198.18.10.5/24"),))
    assert isinstance(result, Outcome)
    assert result.announcement is None


# ----------------------------------------------------------------- announcement settings


def test_announce_defaults_and_bounds() -> None:
    assert Announce() == Announce(count=3, interval=0.2)
    with pytest.raises(ValueError, match="count"):
        Announce(count=0)
    with pytest.raises(ValueError, match="interval"):
        Announce(interval=-0.1)


# ----------------------------------------------------------------- frames

MAC = bytes.fromhex("02aabbccddee")


def test_gratuitous_arp_request_layout() -> None:
    ip = ipaddress.IPv4Address("198.18.10.50")
    frame = garp_frame(MAC, ip, reply=False)
    assert len(frame) == 60  # padded to the Ethernet minimum
    assert frame[0:6] == b"\xff" * 6 and frame[6:12] == MAC
    assert frame[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    assert frame[22:28] == MAC and frame[28:32] == ip.packed  # sender
    assert frame[32:38] == b"\x00" * 6 and frame[38:42] == ip.packed  # target = sender IP
    assert frame[42:] == b"\x00" * 18


def test_gratuitous_arp_reply_repeats_the_mac_as_target() -> None:
    ip = ipaddress.IPv4Address("198.18.10.50")
    frame = garp_frame(MAC, ip, reply=True)
    assert struct.unpack("!H", frame[20:22])[0] == 2
    assert frame[32:38] == MAC  # Linux requires tha == sha for a gratuitous reply
    assert frame[28:32] == frame[38:42] == ip.packed


def test_unsolicited_neighbour_advertisement_layout() -> None:
    ip = ipaddress.IPv6Address("2001:db8::5")
    msg = neighbour_advertisement(MAC, ip)
    assert len(msg) == 32
    assert msg[0] == 136 and msg[1] == 0
    assert struct.unpack("!I", msg[4:8])[0] == 0x20000000  # override only
    assert msg[8:24] == ip.packed
    assert msg[24:26] == b"\x02\x01"  # target link-layer address option, 8 bytes
    assert msg[26:32] == MAC


def test_frames_reject_a_bad_mac() -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        garp_frame(b"\x01\x02", ipaddress.IPv4Address("198.18.10.5"), reply=False)
    with pytest.raises(ValueError, match="6 bytes"):
        neighbour_advertisement(b"", ipaddress.IPv6Address("2001:db8::5"))
