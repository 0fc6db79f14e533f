"""Simulated time: one heap of events, per-node drifting monotonic clocks, and the trace.

Nothing sleeps and nothing runs in a thread: an event is a callable at a true time, and
`run_until` pops them in (time, insertion) order, so a seed always replays the same way."""

from __future__ import annotations

import heapq
from collections.abc import Callable

TRACE_TAIL = 50


class Scheduler:
    """The discrete-event loop: `now` is true time, which no node can read directly."""

    def __init__(self) -> None:
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = 0

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self._sequence += 1
        heapq.heappush(self._events, (self.now + max(0.0, delay), self._sequence, action))

    def run_until(self, end: float) -> None:
        events = self._events
        while events and events[0][0] <= end:
            self.now, _, action = heapq.heappop(events)
            action()
        self.now = end


class Clock:
    """A node's monotonic clock: piecewise linear in true time, so a change of rate (drift)
    never makes it jump."""

    def __init__(self, offset: float, rate: float) -> None:
        self._true_origin = 0.0
        self._local_origin = offset
        self.rate = rate

    def local(self, true_time: float) -> float:
        return self._local_origin + self.rate * (true_time - self._true_origin)

    def set_rate(self, true_time: float, rate: float) -> None:
        self._local_origin = self.local(true_time)
        self._true_origin = true_time
        self.rate = rate

    def true_duration(self, local_seconds: float) -> float:
        return local_seconds / self.rate


class Trace:
    """The significant events of one run (not every tick: decisions that change, faults, Lease
    writes, acting intervals), as lines a person can read."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self.lines: list[str] = []

    def add(self, who: str, text: str) -> None:
        self.lines.append(f"{self._scheduler.now:9.4f}  {who:<9} {text}")

    def tail(self, count: int = TRACE_TAIL) -> list[str]:
        return self.lines[-count:]


class Violation(AssertionError):
    """A safety property broke. Carries the seed and the end of the trace, so the failure can
    be read at once and replayed with `python -m tandem_lab.sim --seed N --trace`."""

    def __init__(self, seed: int, variant: str, message: str, trace: list[str]) -> None:
        self.seed = seed
        self.variant = variant
        self.message = message
        self.trace = trace
        replay = f"python -m tandem_lab.sim --seed {seed} --trace"
        if variant != "proposed":
            replay += f" --variant {variant}"
        super().__init__(f"seed {seed}: {message}\nreplay: {replay}\nlast events:\n" + "\n".join(trace))
