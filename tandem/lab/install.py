"""tandem installed on lab nodes the way an administrator installs it on a host.

The host install has two halves (docs/install.md):
- the package: a venv in /opt/tandem with the wheel and its dependencies (from the host's
  wheelhouse when it has no PyPI access) and the shipped `tandem-agent.service` unit;
- the node's own configuration: its credential and /etc/tandem/agent.env, then
  `systemctl enable --now tandem-agent`.

Every lab node runs the same package, so the lab runs the first half once per built wheel in
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

from tandem.lab.machine import Machine, MachineError

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "tandem-agent.service"
WHEELHOUSE = "/var/cache/tandem/wheelhouse"  # in the node root (scripts/build-noderoot.sh)
LAYERS_KEPT = 4


def build_wheel(out_dir: Path) -> Path:
    """Build the project's wheel (what `make package` does) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("tandem-*.whl"):
        old.unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out_dir), str(REPO)],
        capture_output=True, text=True, check=False, timeout=300)
    if proc.returncode != 0:
        raise MachineError(f"building the wheel failed: {proc.stderr.strip()}")
    shutil.rmtree(REPO / "build", ignore_errors=True)
    wheels = sorted(out_dir.glob("tandem-*.whl"))
    if len(wheels) != 1:
        raise MachineError(f"expected one tandem wheel in {out_dir}, found {wheels}")
    return wheels[0]


def package_commands(wheel_name: str) -> list[list[str]]:
    """The host install's package half, as docs/install.md gives it (argument lists)."""
    return [
        ["python3", "-m", "venv", "/opt/tandem"],
        ["/opt/tandem/bin/pip", "install", "--quiet", "--no-index", "--find-links", WHEELHOUSE,
         f"/tmp/{wheel_name}"],
        ["install", "-m", "0644", f"/tmp/{UNIT.name}", f"/etc/systemd/system/{UNIT.name}"],
        ["install", "-d", "-m", "0700", "/etc/tandem"],
    ]


def package_layer(node_root: Path, wheel: Path) -> Path:
    """The overlay layer holding the installed package, built once per wheel and node root."""
    digest = hashlib.sha256(wheel.read_bytes() + UNIT.read_bytes() + bytes(node_root))
    cache = node_root.parent
    layer = cache / f"tandem-{digest.hexdigest()[:16]}"
    if (layer / "complete").exists():
        os.utime(layer)
        return layer / "upper"
    build = Path(tempfile.mkdtemp(prefix=".tandem-", dir=cache))
    merged = build / "root"
    for sub in ("upper", "work", "root"):
        (build / sub).mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={node_root},upperdir={build / 'upper'},workdir={build / 'work'}",
                    str(merged)], check=True, capture_output=True)
    try:
        shutil.copy(wheel, merged / "tmp" / wheel.name)
        shutil.copy(UNIT, merged / "tmp" / UNIT.name)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
        for argv in package_commands(wheel.name):
            proc = subprocess.run(["chroot", str(merged), *argv], capture_output=True, text=True,
                                  env=env, check=False, timeout=600)
            if proc.returncode != 0:
                raise MachineError(f"installing tandem into the node root: {' '.join(argv)} "
                                   f"exited {proc.returncode}: {proc.stderr.strip()}")
        for name in (wheel.name, UNIT.name):
            (merged / "tmp" / name).unlink()
    finally:
        subprocess.run(["umount", str(merged)], check=False, capture_output=True)
    shutil.rmtree(build / "work", ignore_errors=True)
    shutil.rmtree(layer, ignore_errors=True)
    build.rename(layer)
    (layer / "complete").write_text(wheel.name + "\n")
    _prune(cache)
    return layer / "upper"


def _prune(cache: Path) -> None:
    """Keep the newest few package layers (a running lab may still use an older one)."""
    layers = sorted((p for p in cache.glob("tandem-*") if (p / "complete").exists()),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in layers[LAYERS_KEPT:]:
        shutil.rmtree(old, ignore_errors=True)


def configure_agent(machine: Machine, kubeconfig: str, environment: dict[str, str]) -> None:
    """The node half: its credential and agent.env, then `systemctl enable --now`."""
    for key, value in environment.items():
        if not key.isidentifier() or any(c in value for c in "\n\"\\$`"):
            raise MachineError(f"agent.env: refusing {key}={value!r} (a name and a plain value)")
    env = "".join(f"{key}={value}\n" for key, value in environment.items())
    machine.exec(["install", "-m", "0600", "/dev/stdin", "/etc/tandem/kubeconfig"],
                 input=kubeconfig)
    machine.exec(["install", "-m", "0600", "/dev/stdin", "/etc/tandem/agent.env"], input=env)
    machine.systemctl("daemon-reload")
    machine.systemctl("enable", "--now", UNIT.name)
