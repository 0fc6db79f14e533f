"""tandem installed on lab nodes the way an administrator installs it on a host.

The host install has two halves (docs/install.md):
- the package: a venv in /opt/tandem with the tandem-agent wheel and its dependencies (from
  the host's wheelhouse when it has no PyPI access) and the shipped `tandem-agent.service`
  unit; a lab node adds tandem-lab (the DRBD stand-in and the agent's lab plugin);
- the node's own configuration: its credential and /etc/tandem/agent.env, then
  `systemctl enable --now tandem-agent`.

Every lab node runs the same packages, so the lab runs the first half once per set of built wheels in
a layer shared by all nodes (the node root plus that layer is what a host looks like after
`pip install`), cached beside the node root; the second half runs on each booted node.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tandem_lab.machine import Machine, MachineError, mount_overlay

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "tandem-agent.service"
WHEELHOUSE = "/var/cache/tandem/wheelhouse"  # in the node root (scripts/build-noderoot.sh)
# The distributions a lab node gets, each from its directory of the checkout: the product's
# agent (docs/install.md) and the development package with the lab's agent plugin.
PROJECTS = {"tandem": REPO, "tandem-agent": REPO / "node-agent", "tandem-lab": REPO / "lab"}
INSTALLED = ["tandem-agent", "tandem-lab"]
LAYERS_KEPT = 4
# Debian starts its cluster 15/main at boot; tandem must be the only one to start PostgreSQL
# on a node of a pair (docs/install.md): stop it, keep the units from starting it again.
POSTGRES_HANDOVER = [
    ["systemctl", "disable", "--now", "postgresql.service", "postgresql@15-main.service"],
    ["sed", "-i", "s/^auto$/manual/", "/etc/postgresql/15/main/start.conf"],
]


def build_wheels(out_dir: Path) -> list[Path]:
    """Build the wheels a lab node installs (as `make package` does) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("tandem*.whl"):
        old.unlink()
    return [_build_wheel(name, project, out_dir) for name, project in PROJECTS.items()]


def _build_wheel(name: str, project: Path, out_dir: Path) -> Path:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out_dir),
            str(project),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if proc.returncode != 0:
        raise MachineError(f"building the {name} wheel failed: {proc.stderr.strip()}")
    shutil.rmtree(project / "build", ignore_errors=True)
    wheels = sorted(out_dir.glob(f"{name.replace('-', '_')}-*.whl"))
    if len(wheels) != 1:
        raise MachineError(f"expected one {name} wheel in {out_dir}, found {wheels}")
    return wheels[0]


COPIED = "/root/tandem"  # where docs/install.md copies the wheels and the unit to


def package_commands() -> list[list[str]]:
    """The host install's package half, as docs/install.md gives it (argument lists), plus
    tandem-lab; the node's wheelhouse holds the dependencies, the copied directory tandem's
    own wheels."""
    return [
        ["python3", "-m", "venv", "/opt/tandem"],
        [
            "/opt/tandem/bin/pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            WHEELHOUSE,
            "--find-links",
            COPIED,
            *INSTALLED,
        ],
        ["install", "-m", "0644", f"{COPIED}/{UNIT.name}", f"/etc/systemd/system/{UNIT.name}"],
        ["install", "-d", "-m", "0700", "/etc/tandem"],
    ]


def package_layer(node_root: Path, wheels: list[Path]) -> Path:
    """The overlay layer holding the installed packages, built once per set of wheels and node root."""
    digest = hashlib.sha256(b"".join(w.read_bytes() for w in wheels) + UNIT.read_bytes() + bytes(node_root))
    cache = node_root.parent
    layer = cache / f"tandem-{digest.hexdigest()[:16]}"
    if (layer / "complete").exists():
        os.utime(layer)
        return layer / "upper"
    build = Path(tempfile.mkdtemp(prefix=".tandem-", dir=cache))
    merged = build / "root"
    for sub in ("upper", "work", "root"):
        (build / sub).mkdir()
    mount_overlay((node_root,), build / "upper", build / "work", merged)
    try:
        copied = merged / COPIED.lstrip("/")
        copied.mkdir(parents=True)
        for wheel in wheels:
            shutil.copy(wheel, copied / wheel.name)
        shutil.copy(UNIT, copied / UNIT.name)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
        for argv in package_commands():
            proc = subprocess.run(
                ["chroot", str(merged), *argv], capture_output=True, text=True, env=env, check=False, timeout=600
            )
            if proc.returncode != 0:
                raise MachineError(
                    f"installing tandem into the node root: {' '.join(argv)} "
                    f"exited {proc.returncode}: {proc.stderr.strip()}"
                )
        shutil.rmtree(copied)
    finally:
        subprocess.run(["umount", str(merged)], check=False, capture_output=True)
    shutil.rmtree(build / "work", ignore_errors=True)
    shutil.rmtree(layer, ignore_errors=True)
    build.rename(layer)
    (layer / "complete").write_text("".join(w.name + "\n" for w in wheels))
    _prune(cache)
    return layer / "upper"


def _prune(cache: Path) -> None:
    """Keep the newest few package layers (a running lab may still use an older one)."""
    layers = sorted(
        (p for p in cache.glob("tandem-*") if (p / "complete").exists()), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for old in layers[LAYERS_KEPT:]:
        shutil.rmtree(old, ignore_errors=True)


def node_credential(kubectl: Path, admin_kubeconfig: Path, node: str, server: str) -> str:
    """The node's own kubeconfig, made by `scripts/node-credential.sh` as docs/install.md
    says (a ServiceAccount per node and a token for it)."""
    env = os.environ | {
        "KUBECTL": str(kubectl),
        "KUBECONFIG": str(admin_kubeconfig),
        "SERVER": server,
        "TLS_SERVER_NAME": "kubernetes",
    }
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "node-credential.sh"), node],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise MachineError(f"node-credential.sh {node}: {proc.stderr.strip()}")
    return proc.stdout


def configure_agent(machine: Machine, kubeconfig: str, environment: dict[str, str]) -> None:
    """The node half: its credential and agent.env, then `systemctl enable --now`."""
    for key, value in environment.items():
        if not key.isidentifier() or any(c in value for c in '\n"\\$`'):
            raise MachineError(f"agent.env: refusing {key}={value!r} (a name and a plain value)")
    env = "".join(f"{key}={value}\n" for key, value in environment.items())
    machine.exec(["install", "-m", "0600", "/dev/stdin", "/etc/tandem/kubeconfig"], input=kubeconfig)
    machine.exec(["install", "-m", "0600", "/dev/stdin", "/etc/tandem/agent.env"], input=env)
    machine.systemctl("daemon-reload")
    machine.systemctl("enable", "--now", UNIT.name)
