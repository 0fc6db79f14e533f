"""The `tandem` command line: the product's subcommands, and those of installed plugins
(entry-point group tandem.cli.commands: the lab's `lab`, `bench` and `chaos`)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TypeAlias

from tandem import crdgen
from tandem.api.common import DNS_LABEL

COMMANDS = "tandem.cli.commands"
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
# An entry point of COMMANDS: adds its subcommand, with `func` as its default, to the parsers.
AddCommand = Callable[[Subparsers], None]


def cmd_gen_crds(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if args.check:
        stale = crdgen.drift(directory)
        if stale:
            print(
                f"CRDs in {directory}/ differ from the models: {', '.join(stale)}. "
                "Run `tandem gen-crds` and commit the result.",
                file=sys.stderr,
            )
            return 1
        print(f"CRDs in {directory}/ match the models")
        return 0
    for path in crdgen.write_crds(directory):
        print(f"wrote {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from tandem.importer import command

    return command.run(
        command.Options(
            crm=Path(args.crm) if args.crm else None,
            cib=Path(args.cib) if args.cib else None,
            drbd=tuple(Path(p) for p in args.drbd),
            namespace=args.namespace,
            out=Path(args.out) if args.out else None,
            check=args.check,
            strict=args.strict,
            kubeconfig=args.kubeconfig or os.environ.get("KUBECONFIG") or None,
        )
    )


def build_parser(commands: Sequence[AddCommand] | None = None) -> argparse.ArgumentParser:
    """The command line; `commands` (default: those installed in the entry-point group
    tandem.cli.commands) add subcommands: the development package's lab, bench and chaos."""
    if commands is None:
        commands = [entry.load() for entry in sorted(entry_points(group=COMMANDS), key=lambda e: e.name)]
    parser = argparse.ArgumentParser(prog="tandem", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("gen-crds", help="write crds/*.yaml from the typed models")
    gen.add_argument("--dir", default="crds", help="output directory (default: crds)")
    gen.add_argument("--check", action="store_true", help="fail if the files differ")
    gen.set_defaults(func=cmd_gen_crds)

    for add in commands:
        add(sub)

    imp = sub.add_parser(
        "import",
        help="turn a Pacemaker/DRBD configuration into tandem manifests, "
        "with a report of what was and was not carried over",
    )
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--crm", metavar="FILE", help="`crm configure show` output")
    source.add_argument("--cib", metavar="FILE", help="`cibadmin --query` output (CIB XML)")
    imp.add_argument(
        "--drbd",
        nargs="+",
        default=[],
        metavar="DIR_OR_FILE",
        help="DRBD resource files, or directories of *.res/*.conf (e.g. /etc/drbd.d)",
    )
    imp.add_argument("--namespace", required=True, type=_dns_label, help="namespace of the manifests")
    imp.add_argument(
        "--out", metavar="DIR", help="write DIR/<cluster>.yaml (default: YAML on stdout, the report on stderr)"
    )
    imp.add_argument(
        "--check",
        action="store_true",
        help="validate against the models, and with "
        "--kubeconfig (or KUBECONFIG) by a server-side dry run, before writing",
    )
    imp.add_argument("--kubeconfig", default=None, help="API server for --check's dry run")
    imp.add_argument("--strict", action="store_true", help="fail, writing nothing, if anything is not carried over")
    imp.set_defaults(func=cmd_import)
    return parser


def _dns_label(value: str) -> str:
    if len(value) > 63 or not re.fullmatch(DNS_LABEL, value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a namespace name (a lower-case DNS label)")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
