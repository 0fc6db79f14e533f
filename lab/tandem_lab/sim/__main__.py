"""`python -m tandem_lab.sim --seeds 10000` runs seeds and prints seeds/s and any failing seed;
`python -m tandem_lab.sim --seed N --trace` replays one seed and prints its trace."""

from __future__ import annotations

import argparse
import sys
import time

from tandem_lab.sim.engine import Violation
from tandem_lab.sim.runner import run_seeds
from tandem_lab.sim.world import DEFAULT_DURATION, VARIANTS, simulate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tandem_lab.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds to run")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, help="replay this one seed")
    parser.add_argument("--trace", action="store_true", help="print the whole trace of --seed")
    parser.add_argument("--variant", choices=VARIANTS, default="proposed")
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION, help="simulated seconds per seed")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    if args.seed is not None:
        try:
            outcome = simulate(args.seed, args.variant, duration=args.duration)
        except Violation as violation:
            print(violation)
            return 1
        if args.trace:
            print("\n".join(outcome.trace))
        print(
            f"seed {args.seed}: no violation ({outcome.acknowledged} writes acknowledged, last epoch {outcome.epochs})"
        )
        return 0
    started = time.perf_counter()
    failures = run_seeds(range(args.first, args.first + args.seeds), args.variant, args.duration, args.jobs)
    elapsed = time.perf_counter() - started
    print(
        f"{args.seeds} seeds ({args.variant}, {args.duration:g} simulated s each, "
        f"{args.jobs} job(s)) in {elapsed:.1f}s: {args.seeds / elapsed:.0f} seeds/s"
    )
    for seed, message in failures:
        print(f"seed {seed}: {message}")
    print(f"{len(failures)} failing seed(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
