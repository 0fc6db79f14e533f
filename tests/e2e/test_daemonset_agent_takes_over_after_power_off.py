"""deploy/ on a real kubelet: mail2 is a kubelet node (Debian's containerd and runc, the kubelet
built from its Go module) and its agent is the DaemonSet's pod, running the image `make image`
builds plus tandem-lab (`make lab-image`) with deploy/base/agent.yaml's security settings and
volumes (the lab's overlay changes only the image, the watchdog and the fence to the lab's).
mail1 runs the host install. The pod's agent keeps mail2 a synchronous standby, and after mail1
is powered off it takes over: the chain comes up on mail2's own systemd, mounts and PostgreSQL,
outside the pod, and no acknowledged write is lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, lease_holder, missing_acks, missing_files, wait_replicating, wait_until

pytestmark = pytest.mark.lab

KUBELET_NODES = ["mail2"]
REPO = Path(__file__).resolve().parents[2]


def _agent_pod(lab: LabCluster) -> dict[str, Any] | None:
    pods = json.loads(
        lab.kubectl("get", "pods", "-n", "tandem-system", "-l", "app.kubernetes.io/name=tandem-agent", "-o", "json")
    )["items"]
    running = [
        p
        for p in pods
        if p["spec"].get("nodeName") == "mail2"
        and (p["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("running")
    ]
    return running[0] if running else None


def _pods_and_events(lab: LabCluster) -> str:
    """What explains a DaemonSet pod that does not run: the DaemonSet, its pods, the Events."""
    return lab.kubectl("get", "daemonset,pods,events", "-n", "tandem-system", "-o", "wide", check=False)


def _shipped_agent() -> dict[str, Any]:
    daemonset: dict[str, Any] = yaml.safe_load((REPO / "deploy/base/agent.yaml").read_text())
    return daemonset["spec"]["template"]["spec"]


def _systemd_cgroup(pid: int) -> str:
    """The process's cgroup in the hierarchy the node's systemd manages. (The lab host's v1
    controllers are not the node's systemd's: lab/tandem_lab/kubelet.py.)"""
    return next(
        line.split(":", 2)[2]
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        if line.split(":")[1] == "name=systemd"
    )


def test_the_daemonsets_agent_takes_over_after_the_primary_is_powered_off(lab: LabCluster, client: Client) -> None:
    lab.apply_daemonset()
    pod = wait_until(
        lambda: _agent_pod(lab), 180, "the DaemonSet's agent running on mail2", context=lambda: _pods_and_events(lab)
    )
    shipped, spec = _shipped_agent(), pod["spec"]
    assert (spec["hostPID"], spec["hostNetwork"]) == (shipped["hostPID"], shipped["hostNetwork"])
    (container,) = spec["containers"]
    # The lab's image: the shipped one plus tandem-lab (make lab-image).
    assert container["image"] == shipped["containers"][0]["image"].replace("localhost/tandem:", "localhost/tandem-lab:")
    assert container["securityContext"] == shipped["containers"][0]["securityContext"]
    mounts = {
        m["name"]: m["mountPath"]
        for m in container["volumeMounts"]
        if m["name"] != "kube-api-access" and not m["name"].startswith("kube-api")
    }
    assert mounts == {m["name"]: m["mountPath"] for m in shipped["containers"][0]["volumeMounts"]} | {
        "watchdog": "/run/tandem-lab"
    }

    wait_replicating(lab, "mail", "mail1", ["mail2"], timeout=180)
    client.acked_by("mail1")
    _, epoch = lease_holder(lab, "mail")
    lab.power_off("mail1")
    client.served_by("mail2", timeout=30)
    client.acked_by("mail2", timeout=30)
    assert lease_holder(lab, "mail") == ("mail2", epoch + 1)

    # The pod's agent brought the chain up on the node itself, not in its container.
    node = lab.machine("mail2")
    assert node.exec(["findmnt", "-n", "-o", "TARGET", "/srv/mail"]).stdout.strip() == "/srv/mail"
    assert node.unit_state("lab-echo@8080.service") == "active"
    postmaster = lab.postgres_pid("mail2")
    assert postmaster is not None
    # TANDEM_SCOPE_DAEMONS: PostgreSQL runs in a scope of the node's systemd, out of the pod.
    cgroup = _systemd_cgroup(postmaster)
    assert "kubepods" not in cgroup and cgroup.endswith(".scope"), cgroup
    agents = [
        pid
        for pid in (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
        if _is_agent(pid) and "kubepods" in _systemd_cgroup(pid)
    ]
    assert agents, "no tandem-agent process in a pod's cgroup"
    # The operator records the failover once mail2 reports Primary, on its next status pass.
    wait_until(
        lambda: (lab.hacluster("mail")["status"].get("lastFailover") or {}).get("to") == "mail2",
        30,
        "lastFailover naming mail2",
        context=lambda: lab.hacluster("mail")["status"].get("lastFailover"),
    )

    client.stop()
    assert missing_acks(lab, "mail2", client.acked()) == []
    files = client.acked_files()
    assert files, "no file was acknowledged"
    assert missing_files(lab, "mail2", files) == []


def _is_agent(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arg.endswith(b"tandem-agent") for arg in argv[:2])
