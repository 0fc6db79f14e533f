"""One node watchdog for several clusters: armed while any cluster's chain is up, petted only
while every armed cluster's deadline lies ahead."""

from __future__ import annotations

from tandem_agent.watchdog import SharedWatchdog


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    def pet(self, remaining: float) -> None:
        self.calls.append(("pet", round(remaining, 3)))

    def disarm(self) -> None:
        self.calls.append(("disarm", None))

    def fence(self, reason: str) -> bool:
        self.calls.append(("fence", None))
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_clusters_disarm_keeps_the_watchdog_armed_for_the_other() -> None:
    inner, clock = Recorder(), Clock()
    shared = SharedWatchdog(inner, clock)
    groupware, web = shared.handle("ns/groupware"), shared.handle("ns/web")
    groupware.pet(2.0)
    web.pet(3.0)
    web.disarm()
    assert ("disarm", None) not in inner.calls
    groupware.pet(5.0)  # web's earlier deadline no longer counts
    assert inner.calls[-1] == ("pet", 5.0)
    groupware.disarm()
    assert inner.calls[-1] == ("disarm", None)


def test_pets_carry_the_earliest_deadline() -> None:
    inner, clock = Recorder(), Clock()
    shared = SharedWatchdog(inner, clock)
    shared.handle("a").pet(2.0)
    clock.now += 0.5
    shared.handle("b").pet(3.0)
    assert inner.calls == [("pet", 2.0), ("pet", 1.5)]


def test_a_hung_cluster_is_not_covered_by_the_others_pets() -> None:
    inner, clock = Recorder(), Clock()
    shared = SharedWatchdog(inner, clock)
    hung, alive = shared.handle("hung"), shared.handle("alive")
    hung.pet(1.0)
    alive.pet(1.0)
    calls = len(inner.calls)
    clock.now += 1.2  # the hung cluster's deadline has passed: the watchdog must fire
    alive.pet(1.0)
    assert len(inner.calls) == calls, inner.calls[calls:]


def test_disarming_a_cluster_that_never_armed_changes_nothing() -> None:
    inner = Recorder()
    shared = SharedWatchdog(inner, Clock())
    shared.handle("idle").disarm()
    assert inner.calls == []


def test_fence_goes_to_the_node_watchdog() -> None:
    inner = Recorder()
    assert SharedWatchdog(inner, Clock()).handle("a").fence("stuck") is True
    assert inner.calls == [("fence", None)]
