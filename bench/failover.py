"""Failover benchmark: unplanned failovers and planned switchovers of the mail sample in the lab.

    tandem bench failover --runs 20 --json bench/results/failover.json

Each unplanned run kills the primary's agent (kill -9) and cuts its namespace off both
networks, then measures fault → the floating IP answering from the other node *and* a write
acknowledged there; the cut is healed and the old primary rejoins before the next run. Each
planned run patches spec.primary and measures the longest client-visible HTTP gap. An observer
samples the floating IP holders and writable PostgreSQL servers throughout; at the end every
acknowledged write must be on the final primary, and every file the client stored through the
floating IP on its DRBD mount with the acknowledged sha256. Steady-state API writes are read
from the API server's own request counters over a quiet window.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.apiserver import by_verb_and_resource, is_read
from bench.report import emit, exit_status, lab_work_dir, percentiles
from tandem_lab.cluster import LAB_SAMPLES, LabCluster
from tandem_lab.controlplane import ControlPlane
from tandem_lab.harness import (
    Client,
    Observer,
    missing_acks,
    missing_files,
    node_report,
    wait_replicating,
    wait_until,
)

NODES = ("mail1", "mail2")
SUBNET = 70
COUNTED = {"leases", "haclusters", "events"}


def other(node: str) -> str:
    return NODES[1] if node == NODES[0] else NODES[0]


def steady(lab: LabCluster, primary: str, timeout: float = 120) -> None:
    """Wait until `primary` holds the Lease and serves, and the other node streams with lag 0,
    is listed as a synchronous standby and has reported itself eligible: only then may it take
    over, by expiry or by a planned switchover."""
    wait_replicating(lab, "mail", primary, [other(primary)], timeout)
    wait_until(
        lambda: node_report(lab, "mail", other(primary)).get("eligible") is True,
        timeout,
        f"{other(primary)} reported eligible",
    )


def api_writes(lab: LabCluster) -> float:
    """Total write requests the API server served for Leases, HAClusters and Events (their
    subresources included)."""
    counts = by_verb_and_resource(lab.kubectl("get", "--raw", "/metrics"))
    return sum(
        value for (verb, resource), value in counts.items() if not is_read(verb) and resource.split("/")[0] in COUNTED
    )


def run(runs: int, quiet_seconds: float, work: Path) -> dict[str, Any]:
    plane = ControlPlane(work / "plane")
    plane.start()
    lab = LabCluster(plane, work / "lab", prefix="tdb", subnet=SUBNET, namespace="bench")
    client = None
    try:
        lab.up([LAB_SAMPLES / "mail.yaml"])
        vip = f"198.18.{SUBNET}.2"
        client = Client(lab, vip, work / "client.log")
        primary = "mail1"
        steady(lab, primary)
        client.acked_by(primary)

        before, started = api_writes(lab), time.monotonic()
        time.sleep(quiet_seconds)
        writes_per_s = (api_writes(lab) - before) / (time.monotonic() - started)

        observer = Observer(lab, list(NODES), vip).start()
        unplanned, planned_gap, planned_total = [], [], []
        for i in range(runs):
            steady(lab, primary)
            client.acked_by(primary)
            target = other(primary)
            fault = time.monotonic()
            lab.kill_agent(primary)
            lab.cut(primary)
            served = client.served_by(target, timeout=60)
            written = client.acked_by(target, timeout=60)
            unplanned.append(max(served, written) - fault)
            print(f"unplanned {i + 1}/{runs}: {primary} -> {target} {unplanned[-1]:.2f}s", flush=True)
            lab.heal(primary)
            primary = target
        # spec.primary still names the first primary after the unplanned failovers; a change
        # of it is what requests a switchover, so first make it name the current one.
        lab.set_primary("mail", primary)
        for i in range(runs):
            steady(lab, primary)
            client.acked_by(primary)
            target = other(primary)
            started = time.monotonic()
            lab.set_primary("mail", target)
            served = client.served_by(target, timeout=60)
            client.acked_by(target, timeout=60)
            planned_gap.append(client.http_gap(after=started))
            planned_total.append(served - started)
            print(f"planned {i + 1}/{runs}: {primary} -> {target} gap {planned_gap[-1]:.2f}s", flush=True)
            primary = target
        steady(lab, primary)
        observer.stop()
        client.stop()
        acked = client.acked()
        lost = missing_acks(lab, primary, acked)
        acked_files = client.acked_files()
        lost_files = missing_files(lab, primary, acked_files)
        timings = lab.hacluster("mail")["spec"]["leases"]
    finally:
        if client is not None:
            client.stop()
        lab.down()
        plane.stop()
    u, g, t = percentiles(unplanned), percentiles(planned_gap), percentiles(planned_total)
    return {
        "unplanned": {
            "runs": runs,
            "p50_s": u["p50_s"],
            "p90_s": u["p90_s"],
            "p99_s": u["p99_s"],
            "max_s": u["max_s"],
            "mean_s": u["mean_s"],
        },
        "planned": {
            "runs": runs,
            "p50_gap_s": g["p50_s"],
            "p90_gap_s": g["p90_s"],
            "p99_gap_s": g["p99_s"],
            "max_gap_s": g["max_s"],
            "p50_total_s": t["p50_s"],
            "p99_total_s": t["p99_s"],
        },
        "lost_acked_writes": len(lost),
        "acked_writes": len(acked),
        "lost_acked_files": len(lost_files),
        "acked_files": len(acked_files),
        "double_primary_instants": observer.double_primary_instants,
        "observer_samples": observer.samples,
        "api_writes_per_s_per_cluster": round(writes_per_s, 3),
        "settings": timings,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="tandem bench failover", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--quiet-seconds", type=float, default=30.0, help="window for the steady-state API write rate")
    p.add_argument("--json", dest="json_path", default=None)
    args = p.parse_args(argv)
    with lab_work_dir() as work:
        results = run(args.runs, args.quiet_seconds, work)
    emit("failover", results, args.json_path)
    return exit_status(results)


if __name__ == "__main__":
    raise SystemExit(main())
