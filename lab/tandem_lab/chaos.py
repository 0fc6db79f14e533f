"""`tandem chaos`: the lab's faults mixed at random, checked like the scenario tests.

    tandem chaos --seed 7 --duration 10m --json chaos.json

One lab pair (the mail sample) serves a client that writes through the floating IP and logs
every acknowledgement, while an observer samples who holds the floating IP, whose PostgreSQL
accepts writes, and the Lease. A seeded plan picks each fault, how long it holds and how long
the cluster rests afterwards; most faults are followed by a wait until the pair is steady
again, some are not, so faults also land on a cluster still recovering from the last one. At
the end everything is healed, the pair must settle, every acknowledged write must be on the
final primary and no two nodes may ever have been primary at once or in one epoch.

The same seed gives the same plan: a failing run is reproduced with its seed.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg

from tandem.stats import nearest_rank
from tandem_lab import member_faults
from tandem_lab.cluster import LAB_SAMPLES, LabCluster
from tandem_lab.harness import (
    Client,
    Observer,
    judge,
    lease_holder,
    steady_primary,
    switchover_status,
    wait_until,
    wal_replay,
)

NAME = "mail"
NODES = ("mail1", "mail2")
SAMPLE = LAB_SAMPLES / "mail.yaml"
LEASE_SECONDS = 3.0
SETTLE_PROBABILITY = 0.75
RECOVERY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Step:
    """One planned fault: which, how long it holds, and the rest after it."""

    kind: str
    hold: float
    rest: float
    settle: bool  # wait for a steady pair before the next fault


# kind -> (scenario in docs/fault-injection.md, range of the hold in seconds)
KINDS: dict[str, tuple[int, tuple[float, float]]] = {
    "crash": (1, (0.0, 0.0)),
    "freeze": (2, (2 * LEASE_SECONDS, 2.5 * LEASE_SECONDS)),
    "isolate": (3, (1.0, 8.0)),
    "replication-cut": (4, (1.0, 8.0)),
    "api-outage": (5, (4.0, 12.0)),
    "clock": (6, (2 * LEASE_SECONDS, 4 * LEASE_SECONDS)),
    "lagging-standby": (7, (2.0, 8.0)),
    "switchover": (8, (0.0, 0.0)),
    "flap": (12, (5.0, 15.0)),
    "operator-kill": (13, (2.0, 10.0)),
    "cordon": (14, (0.0, 0.0)),
    "hung-demotion": (15, (0.0, 0.0)),
    # A member of the primary's chain broken behind its agent (tandem_lab.member_faults):
    # repaired in place, or a failover once restartLimit is used up. The hangs hold until
    # their repair has surely run.
    "postgres-kill": (16, (0.0, 0.0)),
    "postgres-hang": (17, (8.0, 12.0)),
    "vip-delete": (18, (0.0, 0.0)),
    "mount-lost": (19, (0.0, 0.0)),
    "drbd-demote": (20, (0.0, 0.0)),
    "service-hang": (21, (8.0, 12.0)),
    "mount-abort": (23, (0.0, 0.0)),
}


def plan(seed: int, kinds: tuple[str, ...] = tuple(KINDS)) -> Iterator[Step]:
    """The endless, reproducible sequence of faults for `seed`."""
    rng = random.Random(seed)
    while True:
        kind = rng.choice(kinds)
        low, high = KINDS[kind][1]
        yield Step(
            kind, round(rng.uniform(low, high), 2), round(rng.uniform(0.5, 4.0), 2), rng.random() < SETTLE_PROBABILITY
        )


def parse_duration(text: str) -> float:
    """`90`, `90s`, `10m` or `1h` in seconds; ValueError names the accepted forms."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match or float(match[1]) <= 0:
        raise ValueError(
            f"--duration {text!r}: give a positive number of seconds, minutes or hours, such as 90s, 10m or 1h"
        )
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


@dataclass
class Event:
    """One injected fault and what followed it."""

    at_s: float
    kind: str
    target: str
    hold_s: float
    from_steady: bool
    holder_before: str | None
    holder_after: str | None
    epoch_before: int
    epoch_after: int
    write_outage_s: float | None = None
    failover_s: float | None = None
    recovered: bool = True
    error: str | None = None


class Chaos:
    """Injects the planned faults into one lab pair and records what each did."""

    def __init__(self, lab: LabCluster, client: Client, seed: int) -> None:
        self.lab, self.client, self.seed = lab, client, seed
        self.events: list[Event] = []
        self.started = time.monotonic()
        self.faults: dict[str, Callable[[str, Step], None]] = {
            "crash": self._crash,
            "freeze": self._freeze,
            "isolate": self._isolate,
            "replication-cut": self._replication_cut,
            "api-outage": self._api_outage,
            "clock": self._clock,
            "lagging-standby": self._lagging_standby,
            "switchover": self._switchover,
            "flap": self._flap,
            "operator-kill": self._operator_kill,
            "cordon": self._cordon,
            "hung-demotion": self._hung_demotion,
        }
        self.faults.update({kind: self._member_fault for kind in member_faults.MEMBERS})

    # --- the run ---------------------------------------------------------------------------
    def run(self, duration: float, kinds: tuple[str, ...] = tuple(KINDS)) -> None:
        steady = True
        end = self.started + duration
        for step in plan(self.seed, kinds):
            if time.monotonic() >= end:
                break
            steady = self._inject(step, steady)
            time.sleep(step.rest)

    def _inject(self, step: Step, steady: bool) -> bool:
        self._await_powered_on()
        holder, epoch = lease_holder(self.lab, NAME)
        primary = holder if holder in NODES else NODES[0]
        target = other(primary) if step.kind in ("replication-cut", "lagging-standby") else primary
        fault = time.monotonic()
        print(
            f"[{fault - self.started:7.1f}s] {step.kind} on {target} "
            f"(hold {step.hold:.1f}s, holder {holder}, epoch {epoch})",
            flush=True,
        )
        event = Event(round(fault - self.started, 2), step.kind, target, step.hold, steady, holder, None, epoch, epoch)
        self.events.append(event)
        try:
            self.faults[step.kind](target, step)
        except Exception as exc:  # a harness failure must not cost the run its verdict
            event.error = f"{type(exc).__name__}: {exc}"
            print(f"  the fault itself failed: {event.error}", flush=True)
            self.heal_all()
        if not step.settle:
            event.holder_after, event.epoch_after = lease_holder(self.lab, NAME)
            return False
        try:
            steady_primary(self.lab, NAME, NODES, RECOVERY_TIMEOUT)
        except AssertionError:
            event.recovered = False
            print(f"  not steady {RECOVERY_TIMEOUT:.0f}s after {step.kind}", flush=True)
        event.holder_after, event.epoch_after = lease_holder(self.lab, NAME)
        self._measure(event, fault)
        return event.recovered

    def _measure(self, event: Event, fault: float) -> None:
        """The longest run without an acknowledged write from the fault to the first write the
        steady pair acknowledged, and, when a fault that takes the primary away moved it, the
        time to the first write acknowledged by the new primary."""
        steady = time.monotonic()
        try:
            wait_until(
                lambda: any("ack" in r and r["t"] >= steady for r in self.client.records()), 30, "an acknowledged write"
            )
        except AssertionError:
            event.recovered = False
            print(f"  no write acknowledged within 30s of a steady pair after {event.kind}", flush=True)
        acks = [r for r in self.client.records() if "ack" in r and r["t"] >= fault]
        times = [fault] + [r["t"] for r in acks]
        if len(times) > 1:
            event.write_outage_s = round(max(b - a for a, b in zip(times, times[1:], strict=False)), 3)
        moved = event.holder_after not in (None, event.holder_before)
        if moved and event.from_steady and event.kind in PRIMARY_LOSS:
            first = next((r["t"] for r in acks if r.get("node") == event.holder_after), None)
            event.failover_s = round(first - fault, 3) if first is not None else None
        outage = "none" if event.write_outage_s is None else f"{event.write_outage_s}s"
        print(
            f"  {event.holder_before} -> {event.holder_after} (epoch {event.epoch_before} -> "
            f"{event.epoch_after}); longest write outage {outage}",
            flush=True,
        )

    def _await_powered_on(self) -> None:
        """A fenced node is being reset by its power controller: faults and heals act on
        running machines, so wait until every node has booted again."""
        wait_until(lambda: all(self.lab.machine(n).booted() for n in NODES), BOOT_TIMEOUT, "every node booted")

    def heal_all(self) -> None:
        self._await_powered_on()
        self.lab.plane.start_apiserver()
        for node in NODES:
            self.lab.fake_clock(node, "+0")
            self.lab.heal(node)
            self.lab.thaw_agent(node)
            self.lab.uncordon(node)
            _replay(self.lab, node, "resume")
        if not self.lab.operator_running():
            self.lab.start_operator()

    # --- faults ----------------------------------------------------------------------------
    def _crash(self, node: str, step: Step) -> None:
        self.lab.kill_postgres(node)
        self.lab.kill_agent(node)

    def _freeze(self, node: str, step: Step) -> None:
        self.lab.freeze_agent(node)
        try:
            time.sleep(step.hold)
        finally:
            self.lab.thaw_agent(node)

    def _isolate(self, node: str, step: Step) -> None:
        self._cut_for(node, step.hold)

    def _replication_cut(self, node: str, step: Step) -> None:
        self._cut_for(node, step.hold, "repl")

    def _cut_for(self, node: str, seconds: float, *links: str) -> None:
        self.lab.cut(node, *links)
        try:
            time.sleep(seconds)
        finally:
            self.lab.heal(node, *links)

    def _api_outage(self, node: str, step: Step) -> None:
        self.lab.plane.stop_apiserver()
        try:
            time.sleep(step.hold)
        finally:
            self.lab.plane.start_apiserver()

    def _clock(self, node: str, step: Step) -> None:
        """Scenario 6 on either node: a wall-clock step or a changed rate, then true again."""
        rng = self._rng()
        victim = rng.choice(NODES)
        spec = rng.choice(CLOCK_FAULTS)
        print(f"  {victim}'s agent clock at {spec}", flush=True)
        self.lab.fake_clock(victim, spec)
        try:
            time.sleep(step.hold)
        finally:
            self.lab.fake_clock(victim, "+0")

    def _rng(self) -> random.Random:
        """Randomness for the fault being injected, reproducible from the seed."""
        return random.Random(f"{self.seed}-{len(self.events)}")

    def _lagging_standby(self, node: str, step: Step) -> None:
        _replay(self.lab, node, "pause")
        try:
            time.sleep(step.hold)
        finally:
            _replay(self.lab, node, "resume")

    def _switchover(self, node: str, step: Step) -> None:
        before = self._switchover_status()
        self.lab.switch_over(NAME, other(node))
        self._await_holder(other(node), "the switchover", before)

    def _flap(self, node: str, step: Step) -> None:
        rng = self._rng()
        end = time.monotonic() + step.hold
        while time.monotonic() < end:
            self._cut_for(node, rng.uniform(0.5, LEASE_SECONDS * 0.9), "mgmt")
            time.sleep(rng.uniform(0.5, LEASE_SECONDS))

    def _operator_kill(self, node: str, step: Step) -> None:
        """Scenario 13: a switchover requested, then the operator killed while it runs."""
        before = self._switchover_status()
        self.lab.switch_over(NAME, other(node))
        time.sleep(self._rng().uniform(0.0, 1.0))
        self.lab.stop_operator(kill=True)
        try:
            time.sleep(step.hold)
        finally:
            self.lab.start_operator()
        self._await_holder(other(node), "the switchover the operator was killed in", before)

    def _cordon(self, node: str, step: Step) -> None:
        before = self._switchover_status()
        self.lab.cordon(node)
        try:
            self._await_holder(other(node), f"the cordon of {node}", before)
        finally:
            self.lab.uncordon(node)

    def _await_holder(self, node: str, what: str, before: dict[str, Any], timeout: float = 60.0) -> None:
        """Wait for a planned move to `node`, or for the operator to refuse it (a fault can
        leave the target unfit; the run goes on either way). `before` is the switchover status
        from before the request, so an older refusal does not count."""

        def settled() -> bool:
            switchover = self._switchover_status()
            refused = switchover != before and switchover.get("phase") == "Refused"
            return refused or lease_holder(self.lab, NAME)[0] == node

        try:
            wait_until(settled, timeout, what)
        except AssertionError:
            print(f"  {what} did not move the primary to {node} within {timeout:.0f}s", flush=True)
            return
        switchover = self._switchover_status()
        if lease_holder(self.lab, NAME)[0] != node:
            print(f"  {what} refused: {switchover.get('reason')}: {switchover.get('message')}", flush=True)

    def _switchover_status(self) -> dict[str, Any]:
        return switchover_status(self.lab, NAME)

    def _member_fault(self, node: str, step: Step) -> None:
        heal = member_faults.inject(self.lab, node, step.kind, strict=False)
        try:
            time.sleep(step.hold)
        finally:
            heal()

    def _hung_demotion(self, node: str, step: Step) -> None:
        fences = len(self.lab.fences(node))
        busy = self.lab.hold_mount(node, "/srv/mail")
        try:
            time.sleep(0.5)
            self.lab.cut(node, "mgmt")
            wait_until(lambda: len(self.lab.fences(node)) > fences, 30, f"{node} fenced")
        except AssertionError:
            print(f"  {node} was not fenced within 30s", flush=True)
        finally:
            self.lab.heal(node, "mgmt")
            if busy.poll() is None:
                busy.kill()
            busy.wait()


# faults that take the primary away at once: their failovers are timed in failover_s (the
# outages of the others, such as an API server outage, are in write_outage_s only)
PRIMARY_LOSS = ("crash", "freeze", "isolate", "hung-demotion")
BOOT_TIMEOUT = 120.0
CLOCK_FAULTS = ("+60s", "-60s", "+0 x2", "+0 x0.5")


def other(node: str) -> str:
    return NODES[1] if node == NODES[0] else NODES[0]


def _replay(lab: LabCluster, node: str, action: Literal["pause", "resume"]) -> None:
    """Pause or resume WAL replay on a standby; nothing on a primary or a stopped server
    (the fault lands wherever the last one left the pair)."""
    with contextlib.suppress(psycopg.Error):
        wal_replay(lab, node, action)


def report(chaos: Chaos, observer: Observer, client: Client, duration: float) -> dict[str, Any]:
    """Heal, wait for a steady pair, and judge the whole run."""
    chaos.heal_all()
    settled = True
    try:
        final = steady_primary(chaos.lab, NAME, NODES, 180)
    except AssertionError:
        settled = False
        final = lease_holder(chaos.lab, NAME)[0] or NODES[0]
    verdict = judge(chaos.lab, observer, client, NAME, final)
    kinds = Counter(e.kind for e in chaos.events)
    failover_times = [e.failover_s for e in chaos.events if e.failover_s is not None]
    outages = [e.write_outage_s for e in chaos.events if e.write_outage_s is not None]
    return {
        "seed": chaos.seed,
        "duration_s": duration,
        "elapsed_s": round(time.monotonic() - chaos.started, 1),
        "faults_injected": {**dict(sorted(kinds.items())), "total": len(chaos.events)},
        "failovers": holder_changes(observer),
        "failover_s": _percentiles(failover_times),
        "write_outage_s": _percentiles(outages),
        "acked_writes": verdict.acked_writes,
        "lost_acked_writes": len(verdict.lost_acked_writes),
        "acked_files": verdict.acked_files,
        "lost_acked_files": len(verdict.lost_acked_files),
        "double_primary_instants": verdict.double_primary_instants,
        "primary_without_lease": verdict.primary_without_lease,
        "epoch_overlaps": len(verdict.epoch_overlaps),
        "not_recovered": sum(1 for e in chaos.events if not e.recovered),
        "fault_errors": sum(1 for e in chaos.events if e.error),
        "settled_at_end": settled,
        "final_primary": final,
        "observer_samples": verdict.samples,
        "events": [asdict(e) for e in chaos.events],
    }


def passed(result: dict[str, Any]) -> bool:
    """Safety (no lost write or file, one primary at a time) and liveness (the pair
    recovered)."""
    zero = (
        "lost_acked_writes",
        "lost_acked_files",
        "double_primary_instants",
        "primary_without_lease",
        "epoch_overlaps",
        "not_recovered",
        "fault_errors",
    )
    return all(result[key] == 0 for key in zero) and result["settled_at_end"] is True


def holder_changes(observer: Observer) -> int:
    """How often the observer saw the Lease pass to a different node."""
    holders = [s.lease[0] for s in observer.history if s.lease is not None and s.lease[0]]
    return sum(1 for a, b in zip(holders, holders[1:], strict=False) if a != b)


def _percentiles(samples: list[float]) -> dict[str, float] | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50": nearest_rank(ordered, 50),
        "p90": nearest_rank(ordered, 90),
        "p99": nearest_rank(ordered, 99),
        "max": ordered[-1],
    }


def table(result: dict[str, Any]) -> str:
    """The readable summary printed after a run."""
    lines = [
        f"tandem chaos: seed {result['seed']}, {result['elapsed_s']:.0f}s, {'PASSED' if passed(result) else 'FAILED'}",
        "",
    ]
    lines += ["  faults injected"]
    lines += [f"    {kind:<24}{count:>8}" for kind, count in result["faults_injected"].items()]
    for key in ("failover_s", "write_outage_s"):
        p = result[key]
        text = (
            "-"
            if p is None
            else (f"n={p['n']} p50={p['p50']:.2f} p90={p['p90']:.2f} p99={p['p99']:.2f} max={p['max']:.2f}")
        )
        lines.append(f"  {key:<26}{text}")
    for key in (
        "failovers",
        "acked_writes",
        "lost_acked_writes",
        "acked_files",
        "lost_acked_files",
        "double_primary_instants",
        "primary_without_lease",
        "epoch_overlaps",
        "not_recovered",
        "fault_errors",
        "settled_at_end",
        "observer_samples",
    ):
        lines.append(f"  {key:<26}{result[key]}")
    return "\n".join(lines)


def parse_kinds(text: str) -> tuple[str, ...]:
    """A comma-separated list of fault kinds; ValueError names the unknown ones and the rest."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(
            f"--faults {text!r}: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(KINDS)}"
        )
    return kinds


def run(
    lab: LabCluster, client: Client, vip: str, *, seed: int, duration: float, kinds: tuple[str, ...] = tuple(KINDS)
) -> dict[str, Any]:
    """A chaos run on a lab pair that is already up (the CLI and the CI test share it)."""
    steady_primary(lab, NAME, NODES, 180)
    wait_until(lambda: any("ack" in r for r in client.records()), 60, "a first acknowledged write")
    observer = Observer(lab, list(NODES), vip, lease_name=NAME).start()
    chaos = Chaos(lab, client, seed)
    try:
        chaos.run(duration, kinds)
    finally:
        result = report(chaos, observer, client, duration)
    return result


def main(seed: int, duration: float, kinds: tuple[str, ...], json_path: Path | None, work: Path) -> int:
    """Start a control plane and a lab pair of its own, run, print the table, write JSON."""
    from tandem_lab.controlplane import ControlPlane

    plane = ControlPlane(work / "plane")
    plane.start()
    lab = LabCluster(plane, work / "lab", prefix="tdc", subnet=80, namespace="chaos")
    vip = "198.18.80.2"
    try:
        lab.up([SAMPLE], fake_clocks=True)
        client = Client(lab, vip, work / "client.log")
        try:
            result = run(lab, client, vip, seed=seed, duration=duration, kinds=kinds)
        finally:
            client.stop()
    finally:
        lab.down()
        plane.stop()
    text = json.dumps(result, indent=2)
    if json_path is not None:
        json_path.write_text(text + "\n")
    print(table(result))
    return 0 if passed(result) else 1
