"""Lab nodes as machines: a booted Debian 12 system per node, systemd as its PID 1.

A node boots the cached root file system of `scripts/build-noderoot.sh` with `systemd-nspawn
--boot`, through an overlayfs of its own (the shared root is the read-only lower layer; the
node's changes land in its `upper/`, which survives a power-off like a disk). It gets its own
mount, PID, UTS and IPC namespaces and joins the node's existing network namespace, so a mount
made on one node is invisible on the others and a power-off takes everything on it at once.

Why each nspawn flag:
- `--register=no --keep-unit`: this host's PID 1 is not systemd; without them nspawn asks
  machined over the system bus and fails ("Failed to open system bus").
- our own cgroup per node (under the `name=systemd` and the unified hierarchy), entered by the
  launcher before it execs nspawn: two nodes started from the same cgroup collide.
- `--capability=CAP_NET_ADMIN`: the agent adds and removes floating IPs.
- `--bind=<device>`: a block device is visible (and mountable) in that node only.
- `SYSTEMD_NSPAWN_API_VFS_WRITABLE=network` in nspawn's environment: /proc/sys/net is writable
  in the node (the agent sets `promote_secondaries` on the floating IPs' link), the rest of
  /proc/sys stays read-only.

A power-off is SIGKILL to the node's init: the kernel then kills every process of the node's
PID namespace at once, the way a pulled plug does (SIGKILL to nspawn would leave the node
running). Commands for tests run with `nsenter` into the node's namespaces; `run(...,
confined=True)` goes through `systemd-run --wait --pipe` inside the node instead, so that the
node's own seccomp filter and capability limits apply.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tandem_lab.processes import ManagedProcess, spawn, terminate

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-noderoot.sh"
CGROUP_PARENT = "tandem-lab"
BOOTED_STATES = ("running", "degraded")


class MachineError(RuntimeError):
    """A lab node could not be booted, reached or powered off."""


def node_root(build: bool = True) -> Path:
    """The cached root file system, built by `scripts/build-noderoot.sh` when missing."""
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, timeout=1800 if build else 60
    )
    if proc.returncode != 0:
        raise MachineError(f"building the node root failed:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def cgroup_hierarchies(mountinfo: str) -> list[Path]:
    """Mount points of the hierarchies a node's cgroup must exist in: the named `systemd`
    hierarchy of cgroup v1 and the unified (v2) hierarchy, whichever this host has."""
    found = []
    for line in mountinfo.splitlines():
        pre, _, post = line.partition(" - ")
        fields, post_fields = pre.split(), post.split()
        if len(post_fields) < 3:
            continue
        fstype, options = post_fields[0], post_fields[2].split(",")
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options):
            found.append(Path(fields[4]))
    return found


def remove_cgroup_tree(top: Path) -> None:
    """rmdir a cgroup and the cgroups below it, deepest first; one still busy stays (the next
    cleanup retries)."""
    for cgroup in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [top]:
        with contextlib.suppress(OSError):
            cgroup.rmdir()


def mount_overlay(lower: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlayfs of `lower` (topmost first) and `upper` at `target`. redirect_dir:
    renaming a directory of a lower layer (pg_rewind's fallback keeps the data directory aside
    that way) works as on a disk instead of failing with EXDEV."""
    options = f"lowerdir={':'.join(str(p) for p in lower)},upperdir={upper},workdir={work},redirect_dir=on"
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(target)], check=True, capture_output=True, text=True
    )


@dataclass(frozen=True)
class MachineSpec:
    """What a node is made of; every field is set by the lab, none comes from a manifest."""

    name: str  # the node's host name (the Kubernetes Node name)
    machine: str  # unique on this host: nspawn keeps per-machine state under /run
    netns: str
    directory: Path  # upper/, work/, root/ (the merged view) and the boot log
    lower: tuple[Path, ...]  # overlay lower layers, topmost first
    binds: tuple[str, ...] = ()  # nspawn --bind arguments (block devices, sockets)
    read_only_binds: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ("CAP_NET_ADMIN",)
    options: tuple[str, ...] = ()  # further nspawn options (the kubelet node's, kubelet.py)


def nspawn_argv(spec: MachineSpec) -> list[str]:
    """The systemd-nspawn command line that boots `spec` (see the module docstring)."""
    argv = [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--machine={spec.machine}",
        f"--hostname={spec.name}",
        f"--directory={spec.directory / 'root'}",
        f"--network-namespace-path=/run/netns/{spec.netns}",
        "--link-journal=no",
        "--resolv-conf=off",
        "--timezone=off",
    ]
    argv += [f"--capability={cap}" for cap in spec.capabilities]
    argv += [f"--bind={bind}" for bind in spec.binds]
    argv += [f"--bind-ro={bind}" for bind in spec.read_only_binds]
    return argv + list(spec.options)


@dataclass
class Machine:
    spec: MachineSpec
    launcher: ManagedProcess | None = field(default=None)

    @property
    def root(self) -> Path:
        """The node's file system as seen from the host (the merged overlay)."""
        return self.spec.directory / "root"

    @property
    def cgroups(self) -> list[Path]:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        return [h / CGROUP_PARENT / self.spec.machine for h in cgroup_hierarchies(mountinfo)]

    # --- disk --------------------------------------------------------------------------
    def _mounted(self) -> bool:
        target = str(self.root.resolve())
        return any(line.split()[4] == target for line in Path("/proc/self/mountinfo").read_text().splitlines())

    def attach_disk(self) -> None:
        """Mount the node's overlay (idempotent); its upper layer is the node's disk."""
        for sub in ("upper", "work", "root"):
            (self.spec.directory / sub).mkdir(parents=True, exist_ok=True)
        if self._mounted():
            return
        mount_overlay(self.spec.lower, self.spec.directory / "upper", self.spec.directory / "work", self.root)
        (self.root / "etc" / "hostname").write_text(self.spec.name + "\n")

    def detach_disk(self) -> None:
        if self._mounted():
            subprocess.run(["umount", str(self.root)], check=True, capture_output=True)

    # --- power ---------------------------------------------------------------------------
    def _enter_cgroup(self) -> None:
        """Runs in the launcher between fork and exec: the node gets a cgroup of its own."""
        for cgroup in self.cgroups:
            cgroup.mkdir(parents=True, exist_ok=True)
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    def _remove_cgroups(self) -> None:
        """Remove the node's (empty) cgroup trees, deepest first, so a reboot starts clean."""
        for cgroup in self.cgroups:
            if not cgroup.exists():
                continue
            remove_cgroup_tree(cgroup)
            with contextlib.suppress(OSError):
                cgroup.parent.rmdir()  # the lab's parent, once its last node is gone

    def power_on(self) -> None:
        """Start booting the node; `wait_booted` waits until systemd says it is up."""
        if self.running():
            return
        self.attach_disk()
        self._remove_cgroups()
        self.launcher = spawn(
            f"machine-{self.spec.name}",
            nspawn_argv(self.spec),
            self.spec.directory / "boot.log",
            env=os.environ | {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"},
            before_exec=self._enter_cgroup,
        )
        (self.spec.directory / "launcher").write_text(f"{self.launcher.pid} {self.launcher.start_time}\n")

    def _launcher(self) -> ManagedProcess | None:
        if self.launcher is None:
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid, start = (self.spec.directory / "launcher").read_text().split()
                self.launcher = ManagedProcess(f"machine-{self.spec.name}", int(pid), start)
        return self.launcher

    def running(self) -> bool:
        launcher = self._launcher()
        return launcher is not None and launcher.alive()

    def init_pid(self) -> int | None:
        """The host's pid of the node's PID 1 (systemd), or None while it has none."""
        launcher = self._launcher()
        if launcher is None or not launcher.alive():
            return None
        with contextlib.suppress(FileNotFoundError, ValueError):
            children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text()
            for pid in children.split():
                return int(pid)
        return None

    def booted(self) -> bool:
        """systemd in the node has finished booting (`running` or `degraded`)."""
        try:
            proc = self.exec(["systemctl", "is-system-running"], check=False, timeout=10)
        except MachineError:  # off, or its init just died
            return False
        return proc.stdout.strip() in BOOTED_STATES

    def wait_booted(self, timeout: float = 90.0) -> None:
        """Wait until the node's systemd reports `running` (or `degraded`, with the failed
        units named in the error so a broken unit is never mistaken for a booted node)."""
        deadline = time.monotonic() + timeout
        state = "not started"
        while time.monotonic() < deadline:
            if not self.running():
                raise MachineError(f"{self.spec.name} stopped while booting; see {self.spec.directory / 'boot.log'}")
            if self.init_pid() is not None:
                proc = self.exec(["systemctl", "is-system-running"], check=False, timeout=10)
                state = proc.stdout.strip() or proc.stderr.strip()
                if state in BOOTED_STATES:
                    if state == "degraded":
                        failed = self.exec(
                            ["systemctl", "--failed", "--no-legend", "--plain"], check=False
                        ).stdout.strip()
                        raise MachineError(f"{self.spec.name} booted degraded: {failed}")
                    return
            time.sleep(0.2)
        raise MachineError(
            f"{self.spec.name} did not finish booting within {timeout:.0f}s "
            f"(systemd: {state}); see {self.spec.directory / 'boot.log'}"
        )

    def boot(self, timeout: float = 90.0) -> None:
        self.power_on()
        self.wait_booted(timeout)

    def power_off(self, timeout: float = 15.0) -> None:
        """Pull the plug: SIGKILL the node's init; nothing on the node gets to clean up."""
        launcher = self._launcher()
        if launcher is None or not launcher.alive():
            self._remove_cgroups()
            return
        pid = self.init_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._wait_launcher_gone(launcher, timeout)
        self._remove_cgroups()

    def shutdown(self, timeout: float = 30.0) -> None:
        """A clean shutdown (`systemctl poweroff` in the node); pulls the plug if it hangs."""
        if not self.running():
            self._remove_cgroups()
            return
        self.exec(["systemctl", "--no-block", "poweroff"], check=False)
        launcher = self._launcher()
        assert launcher is not None
        try:
            self._wait_launcher_gone(launcher, timeout)
        except MachineError:
            self.power_off()
        self._remove_cgroups()

    def _wait_launcher_gone(self, launcher: ManagedProcess, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while launcher.alive():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(launcher.pid, os.WNOHANG)
            if time.monotonic() > deadline:
                terminate(launcher, 5)
                raise MachineError(f"{self.spec.name}: systemd-nspawn did not exit within {timeout:.0f}s")
            time.sleep(0.02)

    def destroy(self) -> None:
        """Power off and unmount the disk; the node directory stays for its logs."""
        self.power_off()
        self.detach_disk()

    # --- commands --------------------------------------------------------------------------
    def exec(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the node's namespaces with nsenter (the lab's hands on the node)."""
        pid = self.init_pid()
        if pid is None:
            raise MachineError(f"{self.spec.name} is not running")
        full = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--", *argv]
        proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise MachineError(
                f"{self.spec.name}: {' '.join(argv)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()}"
            )
        return proc

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` as a transient unit of the node's systemd, confined like the node's own
        processes (seccomp, capabilities), and wait for it."""
        unit = ["systemd-run", "--wait", "--pipe", "--quiet", "--collect"]
        if user is not None:
            unit.append(f"--uid={user}")
        return self.exec([*unit, "--", *argv], input=input, timeout=timeout, check=check)

    def host_pid(self, pid_in_node: int) -> int | None:
        """The host's pid of the node's process `pid_in_node` (found in the node's cgroup tree
        by the innermost NSpid), or None when the node has no such process."""
        for cgroup in self.cgroups[:1]:
            # os.walk skips a directory that vanishes under it (a transient unit ending),
            # where Path.rglob raises.
            for directory, _, files in os.walk(cgroup / "payload"):
                if "cgroup.procs" not in files:
                    continue
                try:
                    pids = Path(directory, "cgroup.procs").read_text().split()
                except OSError:
                    continue
                for pid in pids:
                    with contextlib.suppress(OSError, StopIteration):
                        status = Path(f"/proc/{pid}/status").read_text()
                        nspid = next(line.split()[-1] for line in status.splitlines() if line.startswith("NSpid:"))
                        if int(nspid) == pid_in_node:
                            return int(pid)
        return None

    def main_pid(self, unit: str) -> int | None:
        """The host's pid of the main process of one of the node's units (None: not running)."""
        inside = int(self.systemctl("show", "-p", "MainPID", "--value", unit).stdout.strip())
        return self.host_pid(inside) if inside else None

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.exec(["systemctl", *args], check=check)

    def unit_state(self, unit: str) -> str:
        """ActiveState of a unit in the node (`active`, `inactive`, `failed`, ...)."""
        return self.systemctl("show", "-p", "ActiveState", "--value", unit).stdout.strip()
