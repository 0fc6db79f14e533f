"""Pure parts of `bench.drbd`: dd's summary, the figures' shapes, the overhead ratios, the
table and the exit status; made-up numbers, nothing run."""

from __future__ import annotations

from typing import Any

import pytest

from bench import drbd

DD_OUTPUT = "32+0 records in\n32+0 records out\n33554432 bytes (34 MB, 32 MiB) copied, 0.0419532 s, 800 MB/s\n"


def figures(mib_s: float, ms: float) -> dict[str, Any]:
    """A configuration whose throughputs are all `mib_s` and whose latencies are all `ms`."""
    shaped: dict[str, Any] = {}
    for key, _label, unit in drbd.FIGURES:
        if unit == "mib_s":
            shaped[key] = drbd.throughput([mib_s])
        else:
            shaped[key] = drbd.latency([ms / 1000])
    return shaped


def results(peer_blocks_differing: int = 0) -> dict[str, Any]:
    shaped: dict[str, Any] = {
        "plain": figures(800.0, 0.5),
        "standalone": figures(200.0, 1.0),
        "replicated": figures(40.0, 5.0),
        "peer_blocks_differing": peer_blocks_differing,
    }
    shaped["overhead"] = {c: drbd.overhead(shaped["plain"], shaped[c]) for c in drbd.STAND_IN}
    return shaped


def test_dd_summary_gives_bytes_and_seconds() -> None:
    assert drbd.parse_dd(DD_OUTPUT) == (33554432, 0.0419532)


def test_dd_output_without_a_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="no summary line"):
        drbd.parse_dd("dd: error writing '/dev/loop0': Operation not permitted\n")


def test_throughput_is_the_median_of_the_runs() -> None:
    assert drbd.throughput([30.0, 10.0, 20.0]) == {"runs": 3, "p50_mib_s": 20.0, "min_mib_s": 10.0, "max_mib_s": 30.0}


def test_latency_is_in_milliseconds() -> None:
    shaped = drbd.latency([i / 1000 for i in range(1, 101)])
    assert shaped["n"] == 100
    assert shaped["p50_ms"] == pytest.approx(50)
    assert shaped["p99_ms"] == pytest.approx(99)
    assert shaped["max_ms"] == pytest.approx(100)


def test_overhead_is_how_many_times_longer_for_throughput_and_latency() -> None:
    ratios = drbd.overhead(figures(800.0, 0.5), figures(40.0, 5.0))
    assert ratios["seq_write"] == pytest.approx(20)  # 20 times the time per MiB
    assert ratios["fsync_probe_p50"] == pytest.approx(10)
    assert ratios["mount_max"] == pytest.approx(10)


def test_table_has_a_row_per_throughput_and_per_latency_percentile() -> None:
    lines = drbd.table(results())
    throughputs = sum(unit == "mib_s" for _key, _label, unit in drbd.FIGURES)
    latencies = len(drbd.FIGURES) - throughputs
    assert len(lines) == 1 + throughputs + latencies * len(drbd.PERCENTILES) + 1
    [write] = [line for line in lines if line.startswith("sequential write")]
    assert write.split()[-5:] == ["800.00", "200.00", "40.00", "4.0x", "20.0x"]
    assert lines[-1].endswith(": 0")


def test_differing_blocks_counts_4k_blocks() -> None:
    a = bytes(4 * drbd.BLOCK)
    b = bytearray(a)
    b[0] = 1
    b[2 * drbd.BLOCK + 5] = 1
    b[2 * drbd.BLOCK + 6] = 1
    assert drbd.differing_blocks(a, bytes(b)) == 2
    with pytest.raises(ValueError):
        drbd.differing_blocks(a, a[:-1])


def test_exit_status_fails_when_the_peer_lacks_a_block() -> None:
    assert drbd.exit_status(results()) == 0
    assert drbd.exit_status(results(peer_blocks_differing=3)) == 1
