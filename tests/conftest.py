"""Fixtures shared by every tier; the control plane is the real etcd + kube-apiserver."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tandem_lab.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Kubectl:
    """The real kubectl, pointed at the lab's kubeconfig."""

    binary: Path
    kubeconfig: Path

    def run(
        self, args: Sequence[str], stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def json(self, args: Sequence[str]) -> dict:
        return json.loads(self.run([*args, "-o", "json"]).stdout)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One real control plane for the whole session, stopped at the end even on failure."""
    plane = ControlPlane(tmp_path_factory.mktemp("lab"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
    assert not plane.running(), "the control plane left a process behind"


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(control_plane.kubectl(), control_plane.kubeconfig)


@pytest.fixture(scope="session")
def crds_installed(kubectl: Kubectl) -> Kubectl:
    """Install the generated CRDs and wait until the API server serves them."""
    kubectl.run(["apply", "--server-side", "-k", str(REPO / "crds")])
    kubectl.run(
        [
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "haclusters.tandem.dev",
            "drbdvolumes.tandem.dev",
            "floatingips.tandem.dev",
            "tenantpolicies.tandem.dev",
        ]
    )
    deadline = time.monotonic() + 30
    while kubectl.run(["get", "hac", "-A"], check=False).returncode != 0:
        assert time.monotonic() < deadline, "CRDs established but not served"
        time.sleep(0.2)
    return kubectl


TENANT_LIMITS = REPO / "deploy" / "base" / "tenant-limits.yaml"
_PROBE = """apiVersion: tandem.dev/v1alpha1
kind: FloatingIP
metadata: {name: tenant-limits-probe, namespace: default}
spec: {cluster: probe, addresses: [{start: 198.18.0.1}], prefixLength: 24, interface: probe0}
"""


def remove_tenant_limits(kubectl: Kubectl, timeout: float = 30) -> None:
    """Delete the tenant limits (deploy/base/tenant-limits.yaml) and wait until the API server
    no longer enforces them: tests that share it create clusters in namespaces of their own,
    with no TenantPolicy entry. The API server drops a deleted binding a moment later."""
    kubectl.run(["delete", "--ignore-not-found", "-f", str(TENANT_LIMITS)])
    deadline = time.monotonic() + timeout
    while kubectl.run(["create", "--dry-run=server", "-f", "-"], stdin=_PROBE, check=False).returncode != 0:
        assert time.monotonic() < deadline, "the tenant limits are still enforced"
        time.sleep(0.2)


_TIER_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add each phase's time (setup, with the lab a module's fixture brings up, call,
    teardown) to its tier: tests/<tier>/..."""
    parts = report.nodeid.split("/")
    tier = parts[1] if len(parts) > 2 else "other"
    _TIER_SECONDS[tier] = _TIER_SECONDS.get(tier, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The time of each tier, which the README reports for CI."""
    if _TIER_SECONDS:
        terminalreporter.section("time per tier")
        for tier, seconds in sorted(_TIER_SECONDS.items()):
            minutes, rest = divmod(round(seconds), 60)
            terminalreporter.write_line(f"{tier:<12} {minutes:3d} min {rest:02d} s")
