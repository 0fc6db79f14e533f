"""The host install on a booted lab node: wheel, unit, credential, `systemctl enable --now`.

A node boots the cached node root with the package layer (the documented `pip install` and
unit install, run once per wheel), gets its own credential (scripts/node-credential.sh: a
ServiceAccount for the node, not an administrator's certificate) and agent.env, and the agent
then runs as the node's own `tandem-agent.service`, reaching the real API server over the node's
management link and reporting the HACluster that names the node.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tandem_lab import install
from tandem_lab.controlplane import ControlPlane
from tandem_lab.machine import Machine, MachineSpec, node_root
from tandem_lab.netns import LabNetwork
from tandem_lab.processes import spawn, terminate
from tests.conftest import Kubectl

pytestmark = [pytest.mark.lab, pytest.mark.apiserver]

PREFIX = "thin"
SUBNET = 232
NAMESPACE = "host-install"


@pytest.fixture(scope="module")
def node(
    control_plane: ControlPlane, crds_installed: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Machine]:
    work = tmp_path_factory.mktemp("host-install")
    root = node_root()
    layer = install.package_layer(root, install.build_wheels(work / "dist"))
    network = LabNetwork(PREFIX, SUBNET)
    machine = None
    forwarder = None
    try:
        network.create()
        host = network.add_host("hi1", 2)
        api = control_plane.state()
        assert api is not None
        forwarder = spawn(
            "forwarder",
            [
                sys.executable,
                "-m",
                "tandem_lab.forward",
                "--listen",
                network.mgmt_gateway,
                "--port",
                str(api.api_port),
                "--target-port",
                str(api.api_port),
            ],
            work / "forwarder.log",
        )
        deploy = Path(__file__).resolve().parents[2] / "deploy" / "base"
        crds_installed.run(["apply", "-f", str(deploy / "namespace.yaml"), "-f", str(deploy / "agent-rbac.yaml")])
        kubeconfig = install.node_credential(
            control_plane.kubectl(), control_plane.kubeconfig, "hi1", f"https://{network.mgmt_gateway}:{api.api_port}"
        )
        machine = Machine(
            MachineSpec(
                name="hi1", machine=f"{PREFIX}-hi1", netns=host.namespace, directory=work / "hi1", lower=(layer, root)
            )
        )
        machine.boot()
        install.configure_agent(
            machine,
            kubeconfig,
            {"NODE_NAME": "hi1", "KUBECONFIG": "/etc/tandem/kubeconfig", "TANDEM_NAMESPACE": NAMESPACE},
        )
        yield machine
    finally:
        if machine is not None:
            machine.destroy()
        if forwarder is not None:
            terminate(forwarder, 5)
        network.destroy()


def test_agent_runs_as_the_nodes_own_unit(node: Machine) -> None:
    assert node.exec(["/opt/tandem/bin/tandem-agent", "--help"]).returncode == 0
    time.sleep(3)
    assert node.unit_state("tandem-agent.service") == "active"
    restarts = node.systemctl("show", "-p", "NRestarts", "--value", "tandem-agent.service")
    assert restarts.stdout.strip() == "0", node.exec(
        ["journalctl", "-u", "tandem-agent", "--no-pager", "-n", "50"], check=False
    ).stdout
    assert node.systemctl("is-enabled", "tandem-agent.service").stdout.strip() == "enabled"
    mode = node.exec(["stat", "-c", "%a", "/etc/tandem/kubeconfig"]).stdout.strip()
    assert mode == "600"


def test_agent_reports_the_cluster_that_names_its_node(node: Machine, crds_installed: Kubectl) -> None:
    cluster = {
        "apiVersion": "tandem.dev/v1alpha1",
        "kind": "HACluster",
        "metadata": {"name": "solo", "namespace": NAMESPACE},
        "spec": {
            "nodes": [
                {"name": "hi1", "replicationAddress": f"198.19.{SUBNET}.2"},
                {"name": "hi2", "replicationAddress": f"198.19.{SUBNET}.3"},
            ],
            "chain": {},
        },
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    crds_installed.run(["apply", "-f", "-"], stdin=yaml.safe_dump_all([namespace, cluster]))
    deadline = time.monotonic() + 30
    nodes: list[dict] = []
    while time.monotonic() < deadline:
        status = crds_installed.json(["get", "hac", "solo", "-n", NAMESPACE]).get("status", {})
        nodes = [n for n in status.get("nodes", []) if n.get("name") == "hi1"]
        if nodes:
            break
        time.sleep(0.5)
    assert nodes, "the agent in the node never reported: " + json.dumps(
        node.exec(["journalctl", "-u", "tandem-agent", "--no-pager", "-n", "40"], check=False).stdout
    )
