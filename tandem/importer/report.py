"""The import report: every source construct, what it became, or why it was not carried over."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from tandem.importer.model import Source


@dataclass(frozen=True)
class Entry:
    source: Source
    construct: str
    outcome: str
    carried: bool  # False: not carried over (or not kept as written); --strict refuses these


def mapped(source: Source, construct: str, outcome: str) -> Entry:
    return Entry(source, construct, outcome, True)


def unmapped(source: Source, construct: str, why: str) -> Entry:
    return Entry(source, construct, why, False)


def render(entries: Iterable[Entry]) -> str:
    """Two sections in source order: what became what, then what was not carried over."""
    ordered = sorted(entries, key=lambda e: (e.source, e.construct))
    done = [e for e in ordered if e.carried]
    left = [e for e in ordered if not e.carried]
    lines = [f"Imported ({len(done)}):"]
    lines += [f"  {e.source}  {e.construct}  ->  {e.outcome}" for e in done]
    lines.append(f"Not carried over ({len(left)}):" if left else "Not carried over: nothing")
    lines += [f"  {e.source}  {e.construct}: {e.outcome}" for e in left]
    return "\n".join(lines) + "\n"


MAX_SPANS = 24


def line_ranges(sources: Iterable[Source]) -> str:
    """`mail.crm:3-9,12 mail.res:1-20`: the places an object came from, compressed."""
    by_file: dict[str, set[int]] = defaultdict(set)
    for source in sources:
        by_file[source.file].add(source.line)
    parts = []
    for file in sorted(by_file):
        numbers = sorted(by_file[file])
        spans: list[list[int]] = []
        for number in numbers:
            if spans and number == spans[-1][1] + 1:
                spans[-1][1] = number
            else:
                spans.append([number, number])
        if len(spans) > MAX_SPANS:  # e.g. a hundred IPaddr2 primitives, three lines each
            text = f"{spans[0][0]}-{spans[-1][1]} ({len(numbers)} lines)"
        else:
            text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
        parts.append(f"{file}:{text}")
    return " ".join(parts)
