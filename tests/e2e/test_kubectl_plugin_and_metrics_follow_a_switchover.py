"""Issue 14 items 4 and 6 on the lab: `kubectl tandem` (found by kubectl on PATH) shows the
pair and moves the primary and back; standby/online and cleanup; the agents' and the
operator's metrics and the agents' /primary and /replica endpoints follow the switchover."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tandem_lab.cluster import LabCluster
from tandem_lab.harness import Client, checked, lease_holder, wait_replicating, wait_until
from tests.e2e.conftest import kubectl_tandem as tandem
from tests.e2e.conftest import vip

pytestmark = pytest.mark.lab


def agent_get(lab: LabCluster, node: str, path: str) -> tuple[int, str]:
    """GET on the node's agent endpoint (its own loopback, inside the node)."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n"
        f"    r = urllib.request.urlopen('http://127.0.0.1:9464{path}', timeout=5)\n"
        "    print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode())\n"
    )
    out = lab.machine(node).exec(["python3", "-c", script]).stdout
    code, _, body = out.partition("\n")
    return int(code), body


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample whose labels include `labels` (0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def operator_metrics() -> str:
    with urllib.request.urlopen("http://127.0.0.1:9465/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def test_switchover_with_the_plugin_and_the_metrics_that_follow_it(lab: LabCluster, client: Client) -> None:
    wait_replicating(lab, "mail", "mail1", ["mail2"])
    ns = lab.namespace
    status = tandem(lab, "status", "mail")
    assert status.returncode == 0, status.stderr
    assert "mail1" in status.stdout and "Primary" in status.stdout, status.stdout

    assert agent_get(lab, "mail1", f"/primary/{ns}/mail")[0] == 200
    assert agent_get(lab, "mail2", f"/primary/{ns}/mail")[0] == 503
    assert agent_get(lab, "mail2", f"/replica/{ns}/mail")[0] == 200
    assert agent_get(lab, "mail1", "/primary/elsewhere/mail")[0] == 404
    before_agent = agent_get(lab, "mail2", "/metrics")[1]
    before_operator = operator_metrics()
    assert sample(before_agent, "tandem_agent_primary", cluster="mail") == 0
    assert sample(before_operator, "tandem_cluster_ready", cluster="mail") == 1

    refused = tandem(lab, "switchover", "mail", "--to", "mail9")
    assert refused.returncode == 2 and "mail9" in refused.stderr, refused

    with checked(lab, client, vip(), primary="mail1", standbys=("mail2",)):
        moved = tandem(lab, "switchover", "mail", "--to", "mail2", "--wait", "--timeout", "90")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert lease_holder(lab, "mail")[0] == "mail2"
        client.acked_by("mail2", timeout=30)
    again = tandem(lab, "switchover", "mail", "--to", "mail2")
    assert again.returncode == 0, again.stderr

    wait_until(lambda: agent_get(lab, "mail2", f"/primary/{ns}/mail")[0] == 200, 30, "mail2's /primary answers 200")
    after_agent = agent_get(lab, "mail2", "/metrics")[1]
    assert sample(after_agent, "tandem_agent_primary", cluster="mail") == 1
    assert sample(after_agent, "tandem_agent_takeovers_total", cluster="mail") > sample(
        before_agent, "tandem_agent_takeovers_total", cluster="mail"
    )
    wait_until(
        lambda: (
            sample(operator_metrics(), "tandem_switchovers_total", cluster="mail", outcome="Completed")
            > sample(before_operator, "tandem_switchovers_total", cluster="mail", outcome="Completed")
        ),
        30,
        "the operator counted the switchover",
    )
    assert sample(operator_metrics(), "tandem_cluster_primary_info", cluster="mail", node="mail2") == 1

    # spec.primary still says mail1: the condition says why they differ
    hac = json.loads(lab.kubectl("get", "hac", "mail", "-n", ns, "-o", "json"))
    preferred = {c["type"]: c for c in hac["status"]["conditions"]}["PreferredPrimary"]
    assert preferred["reason"] == "PrimaryDiffers", preferred

    standby = tandem(lab, "standby", "mail1", "mail")
    assert standby.returncode == 0, standby.stderr
    spec = json.loads(lab.kubectl("get", "hac", "mail", "-n", ns, "-o", "json"))["spec"]
    assert spec["standbyNodes"] == ["mail1"]
    assert tandem(lab, "online", "mail1", "mail").returncode == 0
    spec = json.loads(lab.kubectl("get", "hac", "mail", "-n", ns, "-o", "json"))["spec"]
    assert spec.get("standbyNodes", []) == []
    assert tandem(lab, "cleanup", "mail").returncode == 0
    annotations = json.loads(lab.kubectl("get", "hac", "mail", "-n", ns, "-o", "json"))["metadata"]["annotations"]
    assert annotations.get("tandem.dev/cleanup")

    wait_replicating(lab, "mail", "mail2", ["mail1"])
    back = tandem(lab, "switchover", "mail", "--to", "mail1", "--wait", "--timeout", "90")
    assert back.returncode == 0, back.stdout + back.stderr
    assert lease_holder(lab, "mail")[0] == "mail1"
