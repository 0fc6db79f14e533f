"""`tandem lab demo`: the quick start's main job, narrated.

Brings the lab up (control plane, two booted Debian node machines with tandem installed as on
hosts, DRBD, PostgreSQL, the operator),
applies the mail sample, shows it with kubectl, then kills the primary (its agent with
SIGKILL, its namespace cut off both networks) and prints the failover as it happens. The lab
keeps running afterwards; `tandem lab down` (make demo-down) stops everything.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tandem_lab.cluster import LAB_SAMPLES, LabCluster
from tandem_lab.controlplane import ControlPlane
from tandem_lab.harness import Client, lease_holder, node_report, wait_until

NAMESPACE = "tandem-lab"
VIP = "198.18.0.2"


def cluster_for(lab_dir: Path, plane: ControlPlane) -> LabCluster:
    return LabCluster(plane, lab_dir / "cluster", prefix="tdm", subnet=0, namespace=NAMESPACE)


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def run(lab_dir: Path) -> int:
    plane = ControlPlane(lab_dir)
    step("control plane: etcd + kube-apiserver built from their Go modules")
    print(f"ready at {plane.start().server}")
    lab = cluster_for(lab_dir, plane)
    step(
        "lab: node machines mail1/mail2 (Debian 12, systemd), tandem installed on each as "
        "docs/install.md says for hosts, DRBD, PostgreSQL 15, the operator; applying "
        "deploy/samples/lab/mail.yaml"
    )
    lab.up([LAB_SAMPLES / "mail.yaml"])
    client = Client(lab, VIP, lab.work_dir / "client.log")
    try:
        wait_until(
            lambda: (
                lease_holder(lab, "mail")[0] == "mail1"
                and node_report(lab, "mail", "mail2").get("postgres", {}).get("lagSeconds") == 0
                and "Replicating" in lab.kubectl("get", "hac", "-n", NAMESPACE)
            ),
            180,
            "mail1 primary and mail2 replicating",
        )
        client.acked_by("mail1")
        step(f"kubectl get tandem -n {NAMESPACE}")
        print(lab.kubectl("get", "tandem", "-n", NAMESPACE))
        step(f"kubectl describe hac mail -n {NAMESPACE}")
        print(lab.kubectl("describe", "hac", "mail", "-n", NAMESPACE))
        failover(lab, client)
    finally:
        client.stop()
    step("the lab keeps running")
    print(
        f"export KUBECONFIG={plane.kubeconfig}\n"
        f"{plane.kubectl()} get tandem -n {NAMESPACE}\n"
        f"export PATH={Path(sys.executable).parent}:$PATH   # kubectl finds kubectl-tandem\n"
        f"{plane.kubectl()} tandem status mail -n {NAMESPACE}\n"
        f"{plane.kubectl()} tandem switchover mail --to mail1 --wait -n {NAMESPACE}"
        "   # back to mail1, a planned switchover\n"
        "a node's agent log: .venv/bin/tandem lab exec mail1 journalctl -u tandem-agent\n"
        f"the operator's: {lab.work_dir}/operator.log\n"
        "stop everything: make demo-down"
    )
    return 0


def failover(lab: LabCluster, client: Client) -> None:
    step("kill -9 mail1's agent and cut mail1 off both networks; watching")
    _, epoch = lease_holder(lab, "mail")
    fault = time.monotonic()
    lab.kill_agent("mail1")
    lab.cut("mail1")
    print("t+0.00s  mail1's agent killed, mail1 cut off")
    seen: set[str] = set()
    deadline = fault + 60
    while len(seen) < 3 and time.monotonic() < deadline:
        now = time.monotonic() - fault
        holder, new_epoch = lease_holder(lab, "mail")
        if "lease" not in seen and holder == "mail2":
            seen.add("lease")
            print(
                f"t+{now:.2f}s  mail2 took the Lease (epoch {epoch} -> {new_epoch}): "
                "mail1 did not renew it for a full lease duration"
            )
        records = [r for r in client.records() if r["t"] >= fault]
        if "vip" not in seen and any(r.get("http") == "mail2" for r in records):
            t = next(r["t"] for r in records if r.get("http") == "mail2") - fault
            seen.add("vip")
            print(f"t+{t:.2f}s  the floating IP {VIP} answers from mail2")
        acks = [r for r in records if "ack" in r]  # not the client's stored files
        if "write" not in seen and any(r.get("node") == "mail2" for r in acks):
            t = next(r["t"] for r in acks if r.get("node") == "mail2") - fault
            seen.add("write")
            print(f"t+{t:.2f}s  PostgreSQL on mail2 acknowledged a write through the VIP")
        time.sleep(0.1)
    missing = {"lease", "vip", "write"} - seen
    if missing:
        raise SystemExit(
            f"tandem lab demo: the failover did not finish within 60 s: no "
            f"{', '.join(sorted(missing))} from mail2 (see {lab.work_dir})"
        )
    events = [line for line in lab.kubectl("get", "events", "-n", NAMESPACE).splitlines() if "failed over" in line]
    if events:
        print("operator Event: " + events[-1].split("  ")[-1].strip())
    step("healing the cut: mail1 rejoins as a standby (pg_rewind)")
    lab.heal("mail1")
    wait_until(
        lambda: node_report(lab, "mail", "mail1").get("postgres", {}).get("lagSeconds") == 0,
        120,
        "mail1 streaming from mail2",
    )
    print(lab.kubectl("get", "hac", "mail", "-n", NAMESPACE))
