"""How the operator's rules say things: Events, problems, and the wording they share.

A condition's or Event's message gives the cause and, where there is one, the duration, in the
same words everywhere (`human_duration`, `byte_size`, `human_list`), and is clipped to what the
API server stores. Times are cut to whole seconds (`second`), the resolution of metav1.Time, so
a value computed here compares equal to the one read back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def second(t: datetime) -> datetime:
    """UTC, whole seconds: the resolution of metav1.Time, so stored and computed values match."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).replace(microsecond=0)


def human_duration(ms: int | None) -> str:
    if ms is None:
        return "duration unknown"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms // 60_000} min {ms % 60_000 / 1000:.0f} s"


def ms_between(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds() * 1000))


def clip(message: str) -> str:
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 3] + "..."


def human_list(items: Iterable[str]) -> str:
    seq = list(items)
    if len(seq) <= 1:
        return "".join(seq)
    return ", ".join(seq[:-1]) + " and " + seq[-1]


def byte_size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
