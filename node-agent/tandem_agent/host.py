"""Where the agent's host work happens: the one seam between the drivers and the host.

The agent runs in one of two places (see docs/install.md):

- **on the host** (`tandem-agent.service`, and the lab): commands run as they are, paths are
  the host's own. This is `HostAccess()` and the default.
- **in the DaemonSet's container** (`--host-exec nsenter`): the image is only a delivery
  vehicle. Every host command (mount, umount, systemctl, drbdadm, pg_ctl, initdb, ...) runs
  through ``nsenter --target 1 --mount --uts --ipc --net --pid --root --wd --`` in the host's
  namespaces, with the host's own binaries; mount state is read from ``/proc/1/mountinfo``;
  and the paths the mounts driver checks or creates (mount targets, bind sources, block
  devices) are reached through ``/proc/1/root``, so a mount point the agent creates is the
  host's, not the container's.

Independently, `scope_daemons` runs a command that leaves a daemon behind (today only
``pg_ctl start``/``restart``) under ``systemd-run --scope``: the daemon then lives in its own
transient scope unit, not in the agent's cgroup (the container's, or tandem-agent.service's),
so restarting or stopping the agent never kills PostgreSQL with it.

Drivers call `base.run()` and the helpers here; `configure()` is called once, by the agent's
`main()`, before any driver runs. The argv and path functions are pure, so the unit tests
check them without a container.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

HOST_EXEC_MODES = ("direct", "nsenter")
# Programs whose listed verbs start a daemon that must outlive the agent.
DAEMON_VERBS = {"pg_ctl": frozenset({"start", "restart"})}


@dataclass(frozen=True)
class HostAccess:
    """How host commands and host paths are reached from the agent's process."""

    exec_mode: str = "direct"
    target_pid: int = 1
    scope_daemons: bool = False
    systemd_run: str = "systemd-run"
    nsenter: str = "nsenter"
    # Where the host's "/" is reached when entered; default /proc/<target_pid>/root.
    host_root: str | None = None

    def __post_init__(self) -> None:
        if self.exec_mode not in HOST_EXEC_MODES:
            raise ValueError(f"host exec mode must be one of {', '.join(HOST_EXEC_MODES)}, got {self.exec_mode!r}")
        if self.target_pid < 1:
            raise ValueError(f"target pid must be positive, got {self.target_pid}")

    @property
    def entered(self) -> bool:
        """Whether host work crosses into another process's namespaces."""
        return self.exec_mode == "nsenter"

    # ----- commands

    def command(self, argv: Sequence[str]) -> list[str]:
        """The argument list that runs `argv` on the host (already netns-prefixed, if at all)."""
        full = list(argv)
        if not full:
            raise ValueError("empty command")
        if self.scope_daemons and starts_daemon(full):
            full = [
                self.systemd_run,
                "--scope",
                "--quiet",
                "--collect",
                f"--description=tandem: {' '.join(full)}"[:200],
                "--",
                *full,
            ]
        if self.entered:
            full = [
                self.nsenter,
                f"--target={self.target_pid}",
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--pid",
                "--root",
                "--wd",
                "--",
                *full,
            ]
        return full

    # ----- paths

    @property
    def root(self) -> str:
        """The host's root directory as this process reaches it."""
        if not self.entered:
            return "/"
        return self.host_root or f"/proc/{self.target_pid}/root"

    @property
    def mountinfo(self) -> str:
        """The mount table of the host's mount namespace."""
        return f"/proc/{self.target_pid}/mountinfo" if self.entered else "/proc/self/mountinfo"

    @property
    def mount_ns_pid(self) -> str:
        """The /proc entry whose mount namespace is the host's ("self" when we are in it)."""
        return str(self.target_pid) if self.entered else "self"

    def path(self, host_path: str) -> str:
        """Where this process reaches the absolute host path `host_path`."""
        return under_root(self.root, host_path)

    def realpath(self, host_path: str) -> str:
        """`host_path` with symlinks resolved the way the host resolves them (a host path)."""
        if not self.entered:
            return os.path.realpath(host_path)
        return resolve_in_root(self.root, host_path)


def under_root(root: str, host_path: str) -> str:
    """`host_path` (absolute) seen through the directory `root` ("/" leaves it unchanged)."""
    if not host_path.startswith("/"):
        raise ValueError(f"host path must be absolute, got {host_path!r}")
    norm = os.path.normpath(host_path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if root == "/":
        return norm
    return root.rstrip("/") + ("" if norm == "/" else norm)


def resolve_in_root(root: str, host_path: str, max_links: int = 40) -> str:
    """Resolve symlinks in `host_path` as if `root` were "/": absolute link targets start at
    `root`, and ".." never climbs above it. Missing components are kept as they are (like
    ``realpath -m``). Returns a host path (without the `root` prefix)."""
    if not host_path.startswith("/"):
        raise ValueError(f"host path must be absolute, got {host_path!r}")
    pending = [p for p in host_path.split("/") if p]
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = [*done, part]
        try:
            target = os.readlink(under_root(root, "/" + "/".join(candidate)))
        except OSError:  # not a symlink, or missing: keep the name
            done = candidate
            continue
        links += 1
        if links > max_links:
            raise OSError(f"too many levels of symbolic links in {host_path}")
        if target.startswith("/"):
            done = []
        pending = [p for p in target.split("/") if p] + pending
    return "/" + "/".join(done)


def starts_daemon(argv: Sequence[str]) -> bool:
    """Whether `argv` (possibly behind ``ip netns exec``/``runuser`` prefixes) starts a daemon."""
    for i, arg in enumerate(argv):
        verbs = DAEMON_VERBS.get(os.path.basename(arg))
        if verbs is not None:
            return any(a in verbs for a in argv[i + 1 :])
    return False


_current = HostAccess()


def configure(access: HostAccess) -> None:
    """Set how host work is done, once, before any driver runs (the agent's main())."""
    global _current  # noqa: PLW0603
    _current = access


def current() -> HostAccess:
    return _current
