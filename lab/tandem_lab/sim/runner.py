"""Many seeds, optionally over worker processes: each seed is independent and deterministic,
so splitting them changes nothing but the wall time."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from tandem_lab.sim.engine import Violation
from tandem_lab.sim.world import simulate


def _run_chunk(seeds: Sequence[int], variant: str, duration: float) -> list[tuple[int, str]]:
    failures = []
    for seed in seeds:
        try:
            simulate(seed, variant, duration=duration)
        except Violation as violation:
            failures.append((seed, violation.message))
    return failures


def run_seeds(seeds: Sequence[int], variant: str, duration: float, jobs: int = 1) -> list[tuple[int, str]]:
    """Every failing seed with its violation, in seed order."""
    if jobs <= 1:
        return _run_chunk(seeds, variant, duration)
    chunks = [seeds[i::jobs] for i in range(jobs)]
    with ProcessPoolExecutor(jobs) as pool:
        results = pool.map(_run_chunk, chunks, [variant] * jobs, [duration] * jobs)
        return sorted(failure for chunk in results for failure in chunk)
