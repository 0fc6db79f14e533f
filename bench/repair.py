"""Repair benchmark: each member of the primary's chain broken behind its agent, repaired in place.

    tandem bench repair --runs 10 --json bench/results/repair.json

For every fault of tandem_lab.member_faults (the postmaster killed, PostgreSQL hung, a
floating IP deleted, the data mount lazily unmounted, DRBD demoted, a service that runs but
fails its health check), `--runs` times on the mail sample's primary, while a client writes
through the floating IP and polls its HTTP service:

- `to_ack_s`: fault -> the first write acknowledged through the floating IP after the member
  was reported repaired (status.nodes[].lastRecovery) -- the issue's "next acknowledged
  write";
- `write_gap_s`: the longest time without an acknowledged write from the fault to then;
- `http_gap_s`: the same for HTTP answers (the service's own outage).

Each run starts from a steady pair with every member Healthy. restartLimit is raised for the
run so that every fault is repaired in place, never failed over; a failover is counted as an
error. At the end every acknowledged write must be on the primary and no two nodes may have
been primary at once.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.report import emit, exit_status, lab_work_dir, percentiles
from tandem_lab import member_faults
from tandem_lab.cluster import LAB_SAMPLES, LabCluster
from tandem_lab.controlplane import ControlPlane
from tandem_lab.harness import (
    Client,
    Observer,
    lease_holder,
    missing_acks,
    node_report,
    wait_replicating,
    wait_until,
)

NODES = ("mail1", "mail2")
PRIMARY = "mail1"
SUBNET = 71


def allow_every_repair(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["kind"] == "HACluster":
            doc["spec"]["failover"]["restartLimit"] = 100


def members(lab: LabCluster) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = node_report(lab, "mail", PRIMARY).get("resources", [])
    return found


def recovery(lab: LabCluster) -> dict[str, Any]:
    found: dict[str, Any] = node_report(lab, "mail", PRIMARY).get("lastRecovery") or {}
    return found


def steady(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", PRIMARY, [NODES[1]], 120)
    wait_until(
        lambda: members(lab) and all(m["state"] == "Healthy" for m in members(lab)),
        60,
        "every member of mail1's chain Healthy",
    )
    client.acked_by(PRIMARY)


def longest_gap(times: list[float], start: float, end: float) -> float:
    points = [start, *sorted(t for t in times if start <= t <= end), end]
    return max(b - a for a, b in zip(points, points[1:], strict=False))


def one_run(lab: LabCluster, client: Client, fault: str) -> dict[str, float]:
    kind, name = member_faults.MEMBERS[fault]
    steady(lab, client)
    epoch, before = lease_holder(lab, "mail")[1], recovery(lab).get("time")
    started = time.monotonic()
    heal = member_faults.inject(lab, PRIMARY, fault)
    try:
        wait_until(
            lambda: (
                (recovery(lab).get("kind"), recovery(lab).get("resource"), recovery(lab).get("action"))
                == (kind, name, "Repaired")
                and recovery(lab).get("time") != before
            ),
            60,
            f"{fault} repaired",
        )
    finally:
        heal()
    reported = time.monotonic()
    acked = client.acked_by(PRIMARY, timeout=30)
    if lease_holder(lab, "mail") != (PRIMARY, epoch):
        raise AssertionError(f"{fault}: the primary moved; a repair in place is no failover")
    records = client.records()
    acks = [r["t"] for r in records if "ack" in r]
    answers = [r["t"] for r in records if r.get("http")]
    end = max(acked, reported)
    return {
        "to_ack_s": acked - started,
        "write_gap_s": longest_gap(acks, started, end),
        "http_gap_s": longest_gap(answers, started, end),
    }


def run(runs: int, work: Path) -> dict[str, Any]:
    plane = ControlPlane(work / "plane")
    plane.start()
    lab = LabCluster(plane, work / "lab", prefix="tdr", subnet=SUBNET, namespace="bench-repair")
    client = observer = None
    try:
        lab.up([LAB_SAMPLES / "mail.yaml"], edit=allow_every_repair)
        vip = f"198.18.{SUBNET}.2"
        client = Client(lab, vip, work / "client.log")
        steady(lab, client)
        observer = Observer(lab, list(NODES), vip).start()
        samples: dict[str, list[dict[str, float]]] = {}
        for fault in member_faults.MEMBERS:
            for i in range(runs):
                sample = one_run(lab, client, fault)
                samples.setdefault(fault, []).append(sample)
                print(
                    f"{fault} {i + 1}/{runs}: next ack {sample['to_ack_s']:.2f}s, write gap "
                    f"{sample['write_gap_s']:.2f}s, http gap {sample['http_gap_s']:.2f}s",
                    flush=True,
                )
        steady(lab, client)
        observer.stop()
        client.stop()
        acked = client.acked()
        lost = missing_acks(lab, PRIMARY, acked)
    finally:
        if observer is not None:
            observer.stop()
        if client is not None:
            client.stop()
        lab.down()
        plane.stop()
    results: dict[str, Any] = {}
    for fault, rows in samples.items():
        row: dict[str, Any] = {"runs": len(rows)}
        for metric in ("to_ack_s", "write_gap_s", "http_gap_s"):
            p = percentiles([r[metric] for r in rows])
            row |= {f"{metric}_p50": round(p["p50_s"], 3), f"{metric}_p99": round(p["p99_s"], 3)}
        results[fault] = row
    results |= {
        "lost_acked_writes": len(lost),
        "acked_writes": len(acked),
        "double_primary_instants": observer.double_primary_instants,
        "observer_samples": observer.samples,
    }
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="tandem bench repair", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=10, help="repairs per fault kind")
    p.add_argument("--json", dest="json_path", default=None)
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    with lab_work_dir() as work:
        results = run(args.runs, work)
    emit("repair", results, args.json_path)
    return exit_status(results)


if __name__ == "__main__":
    raise SystemExit(main())
