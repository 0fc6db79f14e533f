"""Faults that break one member of the primary's chain behind its agent's back.

The agent must notice each within a monitor period plus timeout and repair it in place
(issue 12). The e2e tests, `tandem chaos` and `tandem bench repair` inject them from here, so
the three break things the same way. Each injector returns a heal: the harness calls it once
the fault has done its work (a stopped process is let go again; most need nothing).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from tandem_lab.cluster import LabCluster, LabClusterError
from tandem_lab.drbdsim import control
from tandem_lab.machine import MachineError

# Where the lab's agents keep the DRBD stand-in's state (tandem_lab.cluster's agent flags).
DRBD_STATE = Path("/var/lib/tandem-lab/drbd")
MAIL_MOUNT = "/srv/mail"
MAIL_VOLUME = "mail-store"
HTTP_UNIT = "lab-echo@8080.service"
NODE_PYTHON = "/opt/tandem/bin/python"  # the host install's venv (tandem_lab.install)
Heal = Callable[[], None]

# fault kind -> the member it breaks, as status.nodes[].resources names it (kind, name)
MEMBERS: dict[str, tuple[str, str]] = {
    "postgres-kill": ("PostgreSQL", "postgresql"),
    "postgres-hang": ("PostgreSQL", "postgresql"),
    "vip-delete": ("FloatingIP", "mail-vips"),
    "mount-lost": ("Mount", MAIL_MOUNT),
    "mount-abort": ("Mount", MAIL_MOUNT),
    "drbd-demote": ("Volume", MAIL_VOLUME),
    "service-hang": ("Service", "http"),
}


def inject(lab: LabCluster, node: str, kind: str, *, strict: bool = True) -> Heal:
    """Break the member `kind` names on `node`; return how to let go of the fault.

    `strict` False (`tandem chaos`, whose faults also land on a pair still recovering): a
    member that is not there to break (no postmaster yet, the address not yet added) makes
    the fault a no-op instead of an error."""
    injectors: dict[str, Callable[[LabCluster, str], Heal]] = {
        "postgres-kill": kill_postmaster,
        "postgres-hang": hang_postgres,
        "vip-delete": delete_floating_ip,
        "mount-lost": unmount_data,
        "mount-abort": abort_data_filesystem,
        "drbd-demote": demote_drbd,
        "service-hang": hang_service,
    }
    try:
        return injectors[kind](lab, node)
    except (MachineError, LabClusterError, ProcessLookupError, NothingToBreak) as exc:
        if strict:
            raise
        print(f"  {kind}: nothing to break on {node} ({exc})", flush=True)
        return _nothing


class NothingToBreak(RuntimeError):
    """The member a fault would break is not there (yet) on that node."""


def kill_postmaster(lab: LabCluster, node: str) -> Heal:
    lab.kill_postgres(node)
    return _nothing


def hang_postgres(lab: LabCluster, node: str) -> Heal:
    """SIGSTOP the postmaster: it stays alive but accepts no connection."""
    pid = lab.postgres_pid(node)
    if pid is None:
        raise NothingToBreak(f"{node} runs no PostgreSQL to hang")
    return _stop(pid)


def hang_service(lab: LabCluster, node: str) -> Heal:
    """SIGSTOP the http service: its unit stays active, only its health check can tell."""
    return _stop(lab.main_pid(node, HTTP_UNIT))


def delete_floating_ip(lab: LabCluster, node: str) -> Heal:
    """`ip address del` of the first floating address, as a person at the console would."""
    fip = next(d for d in lab.docs if d["kind"] == "FloatingIP")["spec"]
    address = f"{fip['addresses'][0]['start']}/{fip['prefixLength']}"
    lab.machine(node).exec(["ip", "address", "del", address, "dev", fip["interface"]])
    return _nothing


def unmount_data(lab: LabCluster, node: str) -> Heal:
    """`umount --lazy` of the data mount: it vanishes from the mount table at once."""
    lab.machine(node).exec(["umount", "--lazy", MAIL_MOUNT])
    return _nothing


def abort_data_filesystem(lab: LabCluster, node: str) -> Heal:
    """`mount -o remount,abort`: ext4 aborts its journal as it does after I/O errors from its
    disk. The mount stays in the mount table, read-write as it says, and refuses every write
    until it is unmounted and mounted again."""
    lab.machine(node).exec(["mount", "-o", "remount,abort", MAIL_MOUNT])
    return _nothing


def demote_drbd(lab: LabCluster, node: str) -> Heal:
    """`drbdadm secondary --force` behind the agent: DRBD demotes a mounted device only when
    forced (9.1 and later), and its openers' I/O fails from then on."""
    drbdadm(lab, node, "secondary", "--force", MAIL_VOLUME)
    return _nothing


def drbdadm(lab: LabCluster, node: str, *args: str) -> str:
    """drbdadm on `node`, driving the stand-in as the node's agent does: the stand-in of the
    tandem installed in the node (its path differs from this checkout's)."""
    machine = lab.machine(node)
    drbdsetup = machine.exec(
        [NODE_PYTHON, "-c", "from tandem_lab.drbdsim import control; print(control.DRBDSETUP)"]
    ).stdout.strip()
    env = [f"{k}={v}" for k, v in control.lab_env(DRBD_STATE).items()]
    return machine.exec(["env", *env, "drbdadm", f"--drbdsetup={drbdsetup}", *args]).stdout


def _stop(pid: int) -> Heal:
    os.kill(pid, signal.SIGSTOP)

    def heal() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    return heal


def _nothing() -> None:
    return None
