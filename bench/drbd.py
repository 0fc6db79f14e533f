"""Benchmark: what the DRBD stand-in's data path costs, against a plain loop device.

    python -m bench.drbd --json bench/results/drbd.json [--iterations 300] [--runs 5]

The same measurements on one 64 MiB device in three configurations:

* ``plain``: a loop device (direct I/O) over a regular file in the work directory: the
  kernel's cost, no stand-in;
* ``standalone``: the stand-in's device (kernel daemon + blockdev's FUSE file + loop device,
  as in the lab) on a Primary whose peer is disconnected (StandAlone): unreplicated;
* ``replicated``: the same device, Primary with its peer connected and UpToDate, protocol C
  (a write completes once the peer's daemon has it).

Measured on each: sequential write and read throughput (``dd`` of 32 MiB, 1 MiB O_DIRECT
requests, median of ``--runs``); 4 KiB O_DIRECT write + fdatasync on the raw device at fresh
offsets; ext4 made on the device, then mount and umount times, and the mount monitor's write
probe (`mounts.write_probe`: 4 KiB to a new file, fsync of the file, fsync of its directory;
the lab's echo service stores each acknowledged file the same way).
Overhead: how many times longer the stand-in takes than ``plain``, for each figure. The exit
status is 1 if the peer's disk differs from the Primary's after the replicated run (protocol
C acknowledged a write the peer does not have).

Lab: LabNetwork(prefix="tdk", subnet=72): alpha (198.19.72.2, the Primary) and beta
(198.19.72.3), each with its own kernel daemon in its namespace, configured through the
agent's `Drbd` driver and the real drbdadm; the initial sync is skipped (both disks start
as zeros). Subnet 72: the lab and the demo use 0, the lab tests 10, 20, 30, 60, 231-233, the
other benchmarks 10, 20, 70 and 71, chaos 80. blockdev, the loop devices and the mounts run
on the host. Everything started is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import mmap
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from bench.report import lab_work_dir, percentiles, write_json
from tandem.api.drbdvolume import DRBDVolumeSpec
from tandem_agent.drivers.drbd import Drbd, ResourceStatus, parse_status
from tandem_lab.drbdsim import blockdev, control, io
from tandem_lab.drbdsim import kernel as drbd_kernel
from tandem_lab.netns import LabNetwork, claim_namespace

PREFIX = "tdk"
SUBNET = 72
NODES = {"alpha": 2, "beta": 3}
PRIMARY, PEER = "alpha", "beta"
RESOURCE = "bench"
MINOR = 9
PORT = 7790
DISK = "/dev/tandem-bench/drbd"
DEVICE_BYTES = 64 << 20
MIB = 1 << 20
BLOCK = 4096
SEQUENTIAL_MIB = 32
# The 4 KiB writes go past what dd wrote: blocks a disconnected Primary has not marked out of
# sync yet, as a file system's new blocks are.
DIRECT_OFFSET = SEQUENTIAL_MIB * MIB
CONFIGS = ("plain", "standalone", "replicated")
STAND_IN = ("standalone", "replicated")
DD = re.compile(r"^(?P<bytes>\d+) bytes .* copied, (?P<seconds>[0-9.e+-]+) s,", re.MULTILINE)

# (key, label, unit) of each figure; throughput is "mib_s", latencies are "ms".
FIGURES = (
    ("seq_write", "sequential write, 1 MiB O_DIRECT", "mib_s"),
    ("seq_read", "sequential read, 1 MiB O_DIRECT", "mib_s"),
    ("direct_write_sync", "4 KiB O_DIRECT write + fdatasync", "ms"),
    ("fsync_probe", "ext4: 4 KiB new file + fsync + dir fsync", "ms"),
    ("mount", "ext4: mount", "ms"),
    ("umount", "ext4: umount", "ms"),
)
PERCENTILES = ("p50", "p90", "p99", "max")


# ---------------------------------------------------------------- shaping (pure)


def parse_dd(stderr: str) -> tuple[int, float]:
    """(bytes copied, seconds) from dd's summary line (C locale)."""
    match = DD.search(stderr)
    if match is None:
        raise ValueError(f"no summary line in dd's output: {stderr.strip()!r}")
    return int(match["bytes"]), float(match["seconds"])


def throughput(rates: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of several runs' MiB/s."""
    ordered = sorted(rates)
    return {
        "runs": len(ordered),
        "p50_mib_s": ordered[len(ordered) // 2],
        "min_mib_s": ordered[0],
        "max_mib_s": ordered[-1],
    }


def latency(samples: Sequence[float]) -> dict[str, Any]:
    """Nearest-rank percentiles of seconds, in milliseconds."""
    stats = percentiles(samples)
    shaped: dict[str, Any] = {"n": stats["n"]}
    for name in (*PERCENTILES, "mean"):
        shaped[f"{name}_ms"] = stats[f"{name}_s"] * 1000
    return shaped


def overhead(plain: Mapping[str, Mapping[str, Any]], other: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """How many times longer `other` takes than `plain`, per figure (and percentile): for
    throughput the ratio of the time per MiB, plain / other."""
    ratios: dict[str, float] = {}
    for key, _label, unit in FIGURES:
        if unit == "mib_s":
            ratios[key] = plain[key]["p50_mib_s"] / other[key]["p50_mib_s"]
        else:
            for name in PERCENTILES:
                ratios[f"{key}_{name}"] = other[key][f"{name}_ms"] / plain[key][f"{name}_ms"]
    return ratios


def table(results: Mapping[str, Any]) -> list[str]:
    """The results as lines: one row per figure, a column per configuration, then the
    overhead of each stand-in configuration."""
    width = max(len(label) for _key, label, _unit in FIGURES)
    lines = [
        f"{'':<{width + 14}}" + "".join(f"{c:>12}" for c in CONFIGS) + "".join(f"{c + '/plain':>18}" for c in STAND_IN)
    ]
    for key, label, unit in FIGURES:
        rows = (
            [("MiB/s, median", "p50_mib_s", key)]
            if unit == "mib_s"
            else [(f"ms, {name}", f"{name}_ms", f"{key}_{name}") for name in PERCENTILES]
        )
        for index, (what, field, ratio_key) in enumerate(rows):
            title = f"{label if index == 0 else '':<{width}}  {what:<12}"
            cells = "".join(f"{results[c][key][field]:>12.2f}" for c in CONFIGS)
            ratios = "".join(f"{results['overhead'][c][ratio_key]:>17.1f}x" for c in STAND_IN)
            lines.append(title + cells + ratios)
    lines.append(f"peer blocks differing from the Primary after the replicated run: {results['peer_blocks_differing']}")
    return lines


def differing_blocks(a: bytes, b: bytes) -> int:
    """How many 4 KiB blocks differ between two equally long disks."""
    if len(a) != len(b):
        raise ValueError(f"disks of {len(a)} and {len(b)} bytes")
    return sum(a[i : i + BLOCK] != b[i : i + BLOCK] for i in range(0, len(a), BLOCK))


def exit_status(results: Mapping[str, Any]) -> int:
    """0 only when the peer holds every block the Primary acknowledged."""
    return 0 if results["peer_blocks_differing"] == 0 else 1


# ---------------------------------------------------------------- measurements


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env={**os.environ, "LC_ALL": "C"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def dd_rate(argv: list[str]) -> float:
    """MiB/s of one dd run, by dd's own clock."""
    copied, seconds = parse_dd(run(argv).stderr)
    return copied / MIB / seconds


def sequential(device: str, runs: int) -> dict[str, dict[str, Any]]:
    count = f"count={SEQUENTIAL_MIB}"
    writes = [dd_rate(["dd", "if=/dev/zero", f"of={device}", "bs=1M", count, "oflag=direct"]) for _ in range(runs)]
    reads = [dd_rate(["dd", f"if={device}", "of=/dev/null", "bs=1M", count, "iflag=direct"]) for _ in range(runs)]
    return {"seq_write": throughput(writes), "seq_read": throughput(reads)}


def direct_write_sync(device: str, iterations: int) -> list[float]:
    """4 KiB O_DIRECT writes at successive fresh offsets, each followed by fdatasync."""
    buffer = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT wants
    buffer.write(os.urandom(BLOCK))
    samples = []
    fd = os.open(device, os.O_WRONLY | os.O_DIRECT)
    try:
        for i in range(iterations):
            started = time.perf_counter()
            os.pwritev(fd, [buffer], DIRECT_OFFSET + i * BLOCK)
            os.fdatasync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
    return samples


def write_probe(directory: Path, iterations: int) -> list[float]:
    """What the agent's mount monitor does (`mounts.write_probe`), to a new file each time."""
    payload = os.urandom(BLOCK)
    samples = []
    for i in range(iterations):
        started = time.perf_counter()
        fd = os.open(directory / f"probe-{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        samples.append(time.perf_counter() - started)
    return samples


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    run(argv)
    return time.perf_counter() - started


def measure(device: str, target: Path, args: argparse.Namespace, teardown: contextlib.ExitStack) -> dict[str, Any]:
    """Every figure on one device: raw I/O first, then ext4 made and mounted at `target`."""
    figures: dict[str, Any] = sequential(device, args.runs)
    figures["direct_write_sync"] = latency(direct_write_sync(device, args.iterations))
    run(["mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", device])
    target.mkdir()
    teardown.callback(blockdev.unmount, target)
    mounts, umounts = [], []
    for _ in range(args.mount_cycles):
        mounts.append(timed(["mount", "-t", "ext4", device, str(target)]))
        umounts.append(timed(["umount", str(target)]))
    figures["mount"], figures["umount"] = latency(mounts), latency(umounts)
    run(["mount", "-t", "ext4", device, str(target)])
    figures["fsync_probe"] = latency(write_probe(target, args.iterations))
    run(["umount", str(target)])
    return figures


# ---------------------------------------------------------------- the lab


def attach_loop(path: Path, teardown: contextlib.ExitStack) -> str:
    """A loop device on `path`, detached at the end."""
    loop = blockdev.attach_loop(path)
    teardown.callback(blockdev.detach_loop, loop)
    return loop


def stop_blockdev(proc: subprocess.Popen[bytes], mount: Path) -> None:
    proc.terminate()  # it unmounts its FUSE file system
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    blockdev.unmount(mount)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def volume() -> DRBDVolumeSpec:
    return DRBDVolumeSpec.model_validate(
        {
            "cluster": "bench",
            "resourceName": RESOURCE,
            "minor": MINOR,
            "port": PORT,
            "protocol": "C",
            "nodes": [
                {"name": name, "disk": DISK, "address": f"198.19.{SUBNET}.{index}", "nodeId": index - 2}
                for name, index in NODES.items()
            ],
            "quorum": {"mode": "off"},
        }
    )


class Pair:
    """Two nodes' kernel daemons and drivers, one resource between them, alpha Primary."""

    def __init__(self, base: Path, net: LabNetwork, teardown: contextlib.ExitStack) -> None:
        self.state_dirs: dict[str, Path] = {}
        self.drivers: dict[str, Drbd] = {}
        self.io_socket = base / PRIMARY / io.SOCKET_NAME
        for name, index in NODES.items():
            host = net.add_host(name, index)
            state_dir = base / name / "state"
            image = state_dir / "md" / drbd_kernel.data_name(DISK)
            image.parent.mkdir(parents=True)
            with image.open("wb") as f:  # create-md keeps an existing disk's size
                f.truncate(DEVICE_BYTES)
            control.start(state_dir, netns=host.namespace, io_socket=self.io_socket if name == PRIMARY else None)
            teardown.callback(control.stop, state_dir)
            self.state_dirs[name] = state_dir
            self.drivers[name] = Drbd(
                base / name / "drbd.d",
                node_name=name,
                netns=host.namespace,
                drbdsetup=control.DRBDSETUP,
                drbdmeta=control.DRBDMETA,
                env=control.lab_env(state_dir),
            )

    def status(self, name: str) -> ResourceStatus:
        rc, out, err = control.drbdsetup(self.state_dirs[name], "status", RESOURCE, "--json")
        if rc != 0:
            raise RuntimeError(f"drbdsetup status on {name}: {err.strip()}")
        [found] = parse_status(out)
        return found

    def bring_up(self) -> None:
        """Both disks zeros, so the initial sync is skipped; then alpha is promoted."""
        spec = volume()
        for drbd in self.drivers.values():
            drbd.apply_config(spec)
            drbd.create_md(RESOURCE)
            drbd.up(RESOURCE)
        wait_for("the pair to connect", lambda: all(self.status(n).peers[0].connected for n in NODES))
        self.drivers[PRIMARY].skip_initial_sync(RESOURCE)
        wait_for("both disks UpToDate", lambda: all(self.status(n).disk_state == "UpToDate" for n in NODES))
        self.drivers[PRIMARY].primary(RESOURCE)
        self.expect("replicated", connection="Connected", peer_disk="UpToDate")

    def disconnect(self) -> None:
        self.drivers[PRIMARY].disconnect(RESOURCE)
        self.expect("standalone", connection="StandAlone", peer_disk="Outdated")

    def expect(self, config: str, *, connection: str, peer_disk: str) -> None:
        st = self.status(PRIMARY)
        [peer] = st.peers
        seen = (st.role, st.disk_state, peer.connection_state, peer.disk_state)
        if seen != ("Primary", "UpToDate", connection, peer_disk):
            raise RuntimeError(f"{config}: {PRIMARY} is {seen}, expected Primary UpToDate {connection} {peer_disk}")

    def peer_blocks_differing(self) -> int:
        disks = [(self.state_dirs[n] / "md" / drbd_kernel.data_name(DISK)).read_bytes() for n in (PRIMARY, PEER)]
        return differing_blocks(*disks)


@contextlib.contextmanager
def lab() -> Iterator[tuple[Path, Pair, str, contextlib.ExitStack]]:
    """The work directory, the pair, the stand-in's device on alpha (a loop device) and the
    stack that undoes all of it."""
    for name in NODES:
        claim_namespace(f"{PREFIX}-{name}")
    with contextlib.ExitStack() as teardown:
        base = teardown.enter_context(lab_work_dir())
        net = LabNetwork(prefix=PREFIX, subnet=SUBNET)
        teardown.callback(net.destroy)
        net.create()
        pair = Pair(base, net, teardown)
        pair.bring_up()
        mount = base / "blockdev"
        proc = blockdev.start(
            mount,
            pair.io_socket,
            [blockdev.Device(f"drbd{MINOR}", DEVICE_BYTES, MINOR)],
            log_path=base / "blockdev.log",
        )
        teardown.callback(stop_blockdev, proc, mount)
        yield base, pair, attach_loop(mount / f"drbd{MINOR}", teardown), teardown


def setup(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    fs_type = run(["stat", "--file-system", "--format=%T", str(base)]).stdout.strip()
    return {
        "device_bytes": DEVICE_BYTES,
        "sequential_mib": SEQUENTIAL_MIB,
        "runs": args.runs,
        "iterations": args.iterations,
        "mount_cycles": args.mount_cycles,
        "protocol": "C",
        "kernel": platform.release(),
        "work_dir_fs": fs_type,
        "network": f"198.19.{SUBNET}.0/24",
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--json", help="write the JSON results to this file (default: stdout)")
    parser.add_argument(
        "--iterations",
        type=int,
        default=300,
        help="4 KiB writes and write probes per configuration (default %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=5, help="dd runs per direction (default %(default)s)")
    parser.add_argument("--mount-cycles", type=int, default=20, help="mount/umount pairs (default %(default)s)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: the lab needs network namespaces, loop devices and mounts")

    results: dict[str, Any] = {}
    with lab() as (base, pair, device, teardown):
        results["setup"] = setup(args, base)
        plain = base / "plain.img"
        with plain.open("wb") as f:
            f.truncate(DEVICE_BYTES)
        for config, loop in (("plain", attach_loop(plain, teardown)), ("replicated", device)):
            print(f"{config}: measuring on {loop}", file=sys.stderr, flush=True)
            results[config] = measure(loop, base / f"fs-{config}", args, teardown)
        results["peer_blocks_differing"] = pair.peer_blocks_differing()
        pair.disconnect()
        print(f"standalone: measuring on {device}", file=sys.stderr, flush=True)
        results["standalone"] = measure(device, base / "fs-standalone", args, teardown)
    results["overhead"] = {config: overhead(results["plain"], results[config]) for config in STAND_IN}

    command = ["python", "-m", "bench.drbd", *(sys.argv[1:] if argv is None else argv)]
    write_json("drbd", results, args.json, command=command)
    out: TextIO = sys.stdout if args.json else sys.stderr
    print("\ndrbd: the stand-in's data path against a plain loop device", file=out)
    for line in table(results):
        print("  " + line, file=out)
    return exit_status(results)


if __name__ == "__main__":
    raise SystemExit(main())
