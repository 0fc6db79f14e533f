"""A simulated API server holding the one Lease that matters: resourceVersion-guarded updates
(409 on a stale version), request latency and loss, outages and per-node partitions.

A request travels to the server, is applied there at its arrival, and the answer travels back;
the client gives up after the agent's HTTP timeout, so a write can be applied although the
writer saw an error (the case a guarded renew must survive)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from tandem.kube.errors import Conflict, Unavailable
from tandem_lab.sim.engine import Scheduler, Trace

# kube.TIMEOUT: 0.5 s to connect, 1.0 s to read.
CLIENT_TIMEOUT = 1.5
NORMAL_LEG = (0.001, 0.02)
SLOW_LEG = (0.05, 0.8)


@dataclass(frozen=True)
class LeaseState:
    holder: str | None
    epoch: int
    resource_version: int
    sync_standbys: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ReadLease:
    pass


@dataclass(frozen=True)
class WriteLease:
    """kube.write_lease: replace the Lease last read (`based_on`) with these fields."""

    holder: str | None
    epoch: int
    sync_standbys: tuple[str, ...] | None
    based_on: LeaseState


Request = ReadLease | WriteLease
Answer = Callable[[LeaseState | None, Exception | None], None]


class ApiServer:
    def __init__(self, scheduler: Scheduler, rng: random.Random, trace: Trace, loss: float) -> None:
        self.scheduler = scheduler
        self.rng = rng
        self.trace = trace
        self.loss = loss
        self.lease = LeaseState(holder=None, epoch=0, resource_version=1)
        self.outage = False
        self.cut_off: set[str] = set()
        self.slow = False

    def reachable(self, node: str) -> bool:
        return not self.outage and node not in self.cut_off

    def call(self, node: str, request: Request, answer: Answer) -> None:
        """Send `request` from `node`; `answer` is called exactly once, with the result or
        the error the client would see."""
        answered = False

        def reply(result: LeaseState | None, error: Exception | None) -> None:
            nonlocal answered
            if not answered:
                answered = True
                answer(result, error)

        there, back = self._leg(), self._leg()
        request_lost = self.rng.random() < self.loss
        answer_lost = self.rng.random() < self.loss

        def arrive() -> None:
            if request_lost or node in self.cut_off:
                return  # the client times out
            if self.outage:
                down = Unavailable(503, "the API server is down", "Service Unavailable")
                self.scheduler.after(back, lambda: reply(None, down))
                return
            try:
                result: LeaseState | None = self._apply(node, request)
                error: Exception | None = None
            except Conflict as conflict:
                result, error = None, conflict

            def arrive_back() -> None:
                if not answer_lost and node not in self.cut_off:
                    reply(result, error)

            self.scheduler.after(back, arrive_back)

        self.scheduler.after(there, arrive)
        self.scheduler.after(CLIENT_TIMEOUT, lambda: reply(None, Unavailable(None, "timed out")))

    def _leg(self) -> float:
        low, high = SLOW_LEG if self.slow else NORMAL_LEG
        return self.rng.uniform(low, high)

    def _apply(self, node: str, request: Request) -> LeaseState:
        if isinstance(request, ReadLease):
            return self.lease
        if request.based_on.resource_version != self.lease.resource_version:
            raise Conflict(
                409, f"resourceVersion {request.based_on.resource_version} is stale (now {self.lease.resource_version})"
            )
        sync = request.sync_standbys if request.sync_standbys is not None else request.based_on.sync_standbys
        old = self.lease
        self.lease = LeaseState(request.holder or None, request.epoch, old.resource_version + 1, sync)
        if (old.holder, old.epoch, old.sync_standbys) != (self.lease.holder, self.lease.epoch, sync):
            self.trace.add(
                "api", f"Lease by {node}: holder {self.lease.holder} epoch {self.lease.epoch} synchronous {sync}"
            )
        return self.lease
