"""The lab's subcommands of `tandem` (entry-point group tandem.cli.commands): `lab`, `bench` and
`chaos`, which exist only where the development package is installed."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from tandem.cli import Subparsers


def default_lab_dir() -> Path:
    return Path(os.environ.get("TANDEM_LAB_DIR", Path.cwd() / ".lab"))


def cmd_lab(args: argparse.Namespace) -> int:
    from tandem_lab.controlplane import ControlPlane, ControlPlaneError

    plane = ControlPlane(Path(args.lab_dir))
    try:
        if args.lab_command == "demo":
            from tandem_lab import demo

            return demo.run(Path(args.lab_dir))
        if args.lab_command == "up":
            state = plane.start()
            print(f"control plane ready at {state.server}")
            print(f"export KUBECONFIG={plane.kubeconfig}")
        elif args.lab_command == "down":
            from tandem_lab import demo

            demo.cluster_for(Path(args.lab_dir), plane).down()
            stopped = plane.stop()
            print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        elif args.lab_command == "kubeconfig":
            if not plane.kubeconfig.exists():
                print(f"no lab in {plane.lab_dir}: run `tandem lab up` first", file=sys.stderr)
                return 1
            print(plane.kubeconfig)
        elif args.lab_command == "kubectl-path":
            print(plane.kubectl())
        elif args.lab_command == "status":
            print("running" if plane.running() else "stopped")
            return 0 if plane.running() else 3
        elif args.lab_command == "exec":
            return lab_exec(Path(args.lab_dir), plane, args.args)
    except ControlPlaneError as exc:
        print(f"tandem lab {args.lab_command}: {exc}", file=sys.stderr)
        return 1
    return 0


def lab_exec(lab_dir: Path, plane: Any, argv: list[str]) -> int:
    """`tandem lab exec NODE [--] COMMAND...`: run a command on a node of the demo's lab."""
    from tandem_lab import demo
    from tandem_lab.machine import MachineError

    if argv[1:2] == ["--"]:
        argv = [argv[0], *argv[2:]]
    if len(argv) < 2:
        print(
            "tandem lab exec: usage: tandem lab exec NODE [--] COMMAND [ARGS...], e.g. "
            "tandem lab exec mail1 journalctl -u tandem-agent",
            file=sys.stderr,
        )
        return 2
    node, command = argv[0], argv[1:]
    try:
        machine = demo.cluster_for(lab_dir, plane).machine(node)
        proc = machine.exec(command, check=False, timeout=3600)
    except FileNotFoundError:
        print(f"tandem lab exec: no node {node!r} in the lab in {lab_dir} (make demo first)", file=sys.stderr)
        return 2
    except MachineError as exc:
        print(f"tandem lab exec: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


def cmd_bench(args: argparse.Namespace) -> NoReturn:
    """Benchmarks live in bench/ at the top of the checkout, beside this package (the wheel has
    none): `python -m bench.<name>` with the checkout on PYTHONPATH takes this process's place,
    so the benchmark's exit status, signals and relative paths are its own."""
    from tandem_lab.controlplane import REPO

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    os.execve(sys.executable, [sys.executable, "-m", f"bench.{args.bench}", *args.rest], env)


def cmd_chaos(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from tandem_lab import chaos
    from tandem_lab.cluster import keep_logs

    try:
        duration = chaos.parse_duration(args.duration)
        kinds = chaos.parse_kinds(args.faults) if args.faults else tuple(chaos.KINDS)
        json_path = Path(args.json) if args.json else None
        if json_path is not None and not json_path.parent.is_dir():
            raise ValueError(
                f"--json {args.json!r}: directory {str(json_path.parent)!r} does "
                "not exist; create it or write the JSON elsewhere"
            )
        logs = Path(args.keep_logs) if args.keep_logs else None
        if logs is not None and not logs.parent.is_dir():
            raise ValueError(
                f"--keep-logs {args.keep_logs!r}: directory "
                f"{str(logs.parent)!r} does not exist; create it or keep the logs "
                "elsewhere"
            )
        if logs is not None and logs.exists() and (not logs.is_dir() or any(logs.iterdir())):
            raise ValueError(f"--keep-logs {args.keep_logs!r} exists and is not an empty directory; name a new one")
    except ValueError as exc:
        print(f"tandem chaos: {exc}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tandem-chaos-"))
    work.chmod(0o755)  # PostgreSQL runs as its own user below it
    print(
        f"tandem chaos --seed {args.seed} --duration {args.duration}"
        f"{' --faults ' + ','.join(kinds) if args.faults else ''}",
        flush=True,
    )
    try:
        return chaos.main(args.seed, duration, kinds, json_path, work)
    finally:
        if logs is not None:
            keep_logs(work, logs)
            print(f"logs kept in {logs}", flush=True)
        shutil.rmtree(work, ignore_errors=True)


def add_lab(sub: Subparsers) -> None:
    lab = sub.add_parser("lab", help="the local control plane (etcd + kube-apiserver)")
    lab.add_argument(
        "--lab-dir",
        default=str(default_lab_dir()),
        help="where certificates, data, logs and the kubeconfig live (env TANDEM_LAB_DIR)",
    )
    lab.add_argument("lab_command", choices=["up", "demo", "down", "kubeconfig", "kubectl-path", "status", "exec"])
    lab.add_argument("args", nargs=argparse.REMAINDER, help="exec: NODE [--] COMMAND... runs a command on a lab node")
    lab.set_defaults(func=cmd_lab)


def add_bench(sub: Subparsers) -> None:
    bench = sub.add_parser("bench", help="benchmarks in the lab (JSON and a table)")
    bench.add_argument("bench", choices=["controlplane", "failover", "repair", "scale"])
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="e.g. --runs 20 --json FILE")
    bench.set_defaults(func=cmd_bench)


def add_chaos(sub: Subparsers) -> None:
    chaos = sub.add_parser(
        "chaos",
        help="random faults in a lab pair, checked for split brain and lost writes (table, and JSON with --json)",
    )
    chaos.add_argument(
        "--seed", type=int, required=True, help="the plan of faults; the same seed replays the same plan"
    )
    chaos.add_argument("--duration", default="10m", help="how long to inject faults: 90s, 10m, 1h")
    chaos.add_argument("--faults", default="", help="comma-separated kinds to mix (default: all): crash, freeze, ...")
    chaos.add_argument("--json", default=None, help="write the full result here")
    chaos.add_argument(
        "--keep-logs",
        default=None,
        metavar="DIR",
        help="copy the agents', operator's and control plane's logs to this new "
        "directory before the run's work directory is removed",
    )
    chaos.set_defaults(func=cmd_chaos)
