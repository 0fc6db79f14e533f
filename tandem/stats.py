"""Nearest-rank percentiles, shared by the benchmarks and `tandem chaos` so that their numbers
mean the same thing."""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank(ordered: Sequence[float], p: float) -> float:
    """The p-th percentile of the sorted, non-empty `ordered`: its smallest value with at
    least p % of the samples at or below it (rank ceil(p/100 * n); p * n first, so that an
    exact rank stays exact)."""
    rank = math.ceil(p * len(ordered) / 100)
    return ordered[max(0, min(len(ordered) - 1, rank - 1))]
