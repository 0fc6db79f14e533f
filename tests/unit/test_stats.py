"""Nearest-rank percentiles (`tandem.stats`), which every benchmark and `tandem chaos` report."""

from __future__ import annotations

from tandem.stats import nearest_rank


def test_the_rank_is_the_ceiling_of_p_percent_of_n() -> None:
    hundred = [float(i) for i in range(1, 101)]
    assert [nearest_rank(hundred, p) for p in (50, 90, 99)] == [50.0, 90.0, 99.0]
    three_hundred = [float(i) for i in range(1, 301)]
    assert [nearest_rank(three_hundred, p) for p in (50, 90, 99)] == [150.0, 270.0, 297.0]
    assert nearest_rank([1.0, 2.0, 3.0], 50) == 2.0


def test_the_ends_are_the_smallest_and_the_largest() -> None:
    assert nearest_rank([1.0, 2.0, 3.0], 0) == 1.0
    assert nearest_rank([1.0, 2.0, 3.0], 100) == 3.0
    assert nearest_rank([7.0], 99) == 7.0
