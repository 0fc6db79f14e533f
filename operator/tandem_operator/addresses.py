"""FloatingIP address ranges: their problems, their overlaps, and their summary.

The API server checks each address; only here are ranges seen whole: an entry with start > end
or of mixed families, one too large, and an address that two FloatingIPs (or two entries of
one) hold, which would make two clusters announce it. `address_summary` is the FloatingIP's
ADDRESSES column, from the same parsing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from tandem.api.floatingip import MAX_ADDRESSES, FloatingIP

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class _Interval:
    fip: str
    family: int
    start: int
    end: int


def _fip_intervals(name: str, fip: FloatingIP) -> tuple[list[_Interval], list[str]]:
    """The FloatingIP's ranges as integer intervals, and what is wrong with them."""
    intervals: list[_Interval] = []
    problems: list[str] = []
    total = 0
    for entry in fip.spec.addresses:
        try:
            start: IPAddr = ipaddress.ip_address(entry.start)
            end: IPAddr = ipaddress.ip_address(entry.end) if entry.end else start
        except ValueError as exc:
            problems.append(f"FloatingIP {name}: {exc}")
            continue
        if start.version != end.version:
            problems.append(f"FloatingIP {name}: range {entry.start}..{entry.end} mixes IPv4 and IPv6")
            continue
        if int(start) > int(end):
            problems.append(f"FloatingIP {name}: range {entry.start}..{entry.end} has start > end: swap them")
            continue
        size = int(end) - int(start) + 1
        if size > MAX_ADDRESSES:
            problems.append(
                f"FloatingIP {name}: range {entry.start}..{entry.end} holds {size} "
                f"addresses, more than {MAX_ADDRESSES}: split it or shrink it"
            )
            continue
        total += size
        intervals.append(_Interval(name, start.version, int(start), int(end)))
    if total > MAX_ADDRESSES:
        problems.append(
            f"FloatingIP {name} holds {total} addresses in all, more than "
            f"{MAX_ADDRESSES}: split it into several FloatingIPs"
        )
    return intervals, problems


def _address(family: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if family == 4 else ipaddress.IPv6Address(value))


def floating_ip_conflicts(fips: Mapping[str, FloatingIP], mine: set[str]) -> list[str]:
    """Problems of the FloatingIPs named in `mine`: bad ranges, and addresses that another
    FloatingIP of the namespace (or another entry of the same one) also holds."""
    problems: list[str] = []
    intervals: list[_Interval] = []
    for name in sorted(fips):
        ivs, bad = _fip_intervals(name, fips[name])
        intervals += ivs
        if name in mine:
            problems += bad
    seen: set[tuple[str, str]] = set()
    for i, a in enumerate(intervals):
        for b in intervals[i + 1 :]:
            if a.family != b.family or (a.fip not in mine and b.fip not in mine):
                continue
            lo, hi = max(a.start, b.start), min(a.end, b.end)
            if lo > hi:
                continue
            key = (a.fip, b.fip)
            if key in seen:
                continue
            seen.add(key)
            count = hi - lo + 1
            more = f" (and {count - 1} more)" if count > 1 else ""
            if a.fip == b.fip:
                problems.append(
                    f"FloatingIP {a.fip} lists {_address(a.family, lo)}{more} twice: remove the duplicate entry"
                )
            else:
                problems.append(
                    f"address {_address(a.family, lo)}{more} is in FloatingIP {a.fip} and "
                    f"FloatingIP {b.fip}: an address may belong to one FloatingIP only; "
                    "remove it from one of them"
                )
    return problems


def address_summary(name: str, fip: FloatingIP) -> tuple[int, str]:
    """How many addresses the FloatingIP holds, and a short list for `kubectl get`."""
    intervals, problems = _fip_intervals(name, fip)
    if problems:
        return 0, "invalid: see the HACluster's Ready condition"
    count = sum(i.end - i.start + 1 for i in intervals)
    ranges = [
        _address(i.family, i.start)
        if i.start == i.end
        else f"{_address(i.family, i.start)}-{_address(i.family, i.end)}"
        for i in intervals
    ]
    text = ", ".join(ranges)
    summary = text if count == 1 else f"{count} addresses {text}"
    return count, summary if len(summary) <= 128 else summary[:125] + "..."
