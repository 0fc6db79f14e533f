"""Shared output of every benchmark: JSON to a file or stdout, and a readable table."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tandem.stats import nearest_rank


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of a list of seconds (nearest-rank percentiles)."""
    if not samples:
        raise ValueError("no samples: the benchmark measured nothing")
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_s": nearest_rank(ordered, 50),
        "p90_s": nearest_rank(ordered, 90),
        "p99_s": nearest_rank(ordered, 99),
        "max_s": ordered[-1],
        "mean_s": statistics.fmean(ordered),
    }


@contextlib.contextmanager
def lab_work_dir() -> Iterator[Path]:
    """A temporary work directory for a lab benchmark, removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="tandem-bench-"))
    work.chmod(0o755)  # PostgreSQL runs as its own user below it
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def exit_status(results: Mapping[str, Any]) -> int:
    """The exit status of a lab benchmark: 0 only with no lost write or file (for the
    benchmarks that write files) and one primary."""
    return (
        0
        if results["lost_acked_writes"] == 0
        and results.get("lost_acked_files", 0) == 0
        and results["double_primary_instants"] == 0
        else 1
    )


def write_json(
    name: str, results: Mapping[str, Any], json_path: str | None, command: Sequence[str] | None = None
) -> None:
    """Write `results` as the benchmark's JSON document to `json_path` (stdout without one),
    with the machine and, when given, the command that produced them."""
    document: dict[str, Any] = {
        "benchmark": name,
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "results": results,
    }
    if command is not None:
        document["command"] = list(command)
    text = json.dumps(document, indent=2, sort_keys=True)
    if json_path:
        Path(json_path).write_text(text + "\n")
    else:
        print(text)


def emit(name: str, results: Mapping[str, Any], json_path: str | None) -> None:
    """Print a table of `results` (row name -> metrics; scalar entries as their own lines)
    and write them as JSON."""
    write_json(name, results, json_path)
    rows = {name: row for name, row in results.items() if isinstance(row, Mapping)}
    columns = sorted({key for row in rows.values() for key in row})
    widths = [max(len(c), 10) for c in columns]
    print(f"\n{name}", file=sys.stderr)
    header = "".join(f"{c:>{w + 2}}" for c, w in zip(columns, widths, strict=True))
    print("  " + f"{'case':<28}" + header, file=sys.stderr)
    for row_name, row in rows.items():
        cells = "".join(f"{_fmt(row.get(c)):>{w + 2}}" for c, w in zip(columns, widths, strict=True))
        print(f"  {row_name:<28}{cells}", file=sys.stderr)
    for key, value in results.items():
        if key not in rows:
            print(f"  {key:<28}{_fmt(value)}", file=sys.stderr)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def _cpus() -> int:
    return os.cpu_count() or 0
