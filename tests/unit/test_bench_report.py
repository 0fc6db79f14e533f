"""The exit status every lab benchmark shares."""

from __future__ import annotations

import pytest

from bench.report import exit_status

CLEAN = {"lost_acked_writes": 0, "lost_acked_files": 0, "double_primary_instants": 0, "acked_files": 40}


def test_a_clean_run_exits_0() -> None:
    assert exit_status(CLEAN) == 0


@pytest.mark.parametrize("failure", [{"lost_acked_writes": 1}, {"lost_acked_files": 2}, {"double_primary_instants": 1}])
def test_a_lost_write_or_file_or_a_second_primary_exits_1(failure: dict[str, int]) -> None:
    assert exit_status(CLEAN | failure) == 1


def test_a_benchmark_that_writes_no_files_is_judged_without_them() -> None:
    assert exit_status({"lost_acked_writes": 0, "double_primary_instants": 0}) == 0
