"""`tandem import`: read the files, map, check, then write every file or none."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tandem.importer import check, cib, crm, drbd, mapping
from tandem.importer.model import DrbdResource, InvalidInput, PacemakerConfig
from tandem.importer.report import line_ranges, render

DRBD_SUFFIXES = (".res", ".conf")


@dataclass(frozen=True)
class Options:
    crm: Path | None
    cib: Path | None
    drbd: tuple[Path, ...]
    namespace: str
    out: Path | None
    check: bool
    strict: bool
    kubeconfig: str | None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(None, f"cannot read {path}: {exc}", "pass a readable text file") from None


def drbd_files(paths: Sequence[Path]) -> list[Path]:
    """Each path, or a directory's *.res and *.conf files (like /etc/drbd.d), in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in DRBD_SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files


def load(options: Options) -> tuple[PacemakerConfig, list[DrbdResource]]:
    if (options.crm is None) == (options.cib is None):
        raise InvalidInput(None, "give the Pacemaker configuration once", "pass either --crm FILE or --cib FILE")
    if options.crm is not None:
        config = crm.parse(read_text(options.crm), str(options.crm))
    else:
        assert options.cib is not None
        config = cib.parse(read_text(options.cib), str(options.cib))
    resources: list[DrbdResource] = []
    for path in drbd_files(options.drbd):
        for resource in drbd.parse(read_text(path), str(path)):
            earlier = next((r for r in resources if r.name == resource.name), None)
            if earlier is not None:
                raise InvalidInput(
                    resource.source,
                    f"DRBD resource {resource.name} is also defined at {earlier.source}",
                    "pass each resource file once",
                )
            resources.append(resource)
    return config, resources


def render_cluster(cluster: mapping.ClusterManifests, inputs: str) -> str:
    """One YAML stream per HACluster, each object preceded by the lines it came from."""
    header = (
        f"# Imported by `tandem import` from {inputs}.\n"
        "# Review the import report before applying: it lists what was not carried over.\n"
    )
    parts = []
    for manifest in cluster.manifests:
        body = yaml.safe_dump(manifest.document, sort_keys=False, width=100)
        parts.append(
            f"# {manifest.document['kind']} {manifest.document['metadata']['name']} from "
            f"{line_ranges(manifest.sources)}\n{body}"
        )
    return header + "---\n".join(parts)


def write_all(out: Path, files: dict[str, str]) -> list[Path]:
    """Write into a temporary directory beside `out`, then move into place: a failure leaves
    no partial output."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tandem-import-", dir=out.parent))
    try:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        if not out.exists():
            staging.rename(out)
            return [out / name for name in files]
        if not out.is_dir():
            raise InvalidInput(None, f"--out {out} exists and is not a directory", "name a directory")
        for name in files:
            os.replace(staging / name, out / name)
        return [out / name for name in files]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run(options: Options) -> int:
    try:
        config, resources = load(options)
        result = mapping.map_config(config, resources, options.namespace)
    except InvalidInput as exc:
        print(f"tandem import: {exc}", file=sys.stderr)
        return 1
    report = render(result.report)
    report_stream = sys.stdout if options.out else sys.stderr
    print(report, end="", file=report_stream)
    if options.strict and any(not e.carried for e in result.report):
        count = sum(1 for e in result.report if not e.carried)
        print(
            f"tandem import: --strict: {count} construct(s) not carried over (listed above); nothing written",
            file=sys.stderr,
        )
        return 1
    documents = [m.document for c in result.clusters for m in c.manifests]
    if options.check:
        problems = check.offline_problems(documents)
        if not problems and options.kubeconfig:
            problems = check.server_problems(documents, options.kubeconfig)
        if problems:
            print("tandem import: --check: the manifests would be refused; nothing written:", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        where = "the models and the API server (dry run)" if options.kubeconfig else "the models (offline)"
        print(f"checked {len(documents)} objects against {where}: valid", file=report_stream)
    inputs = " ".join(str(p) for p in (options.crm or options.cib, *options.drbd))
    files = {f"{c.name}.yaml": render_cluster(c, inputs) for c in result.clusters}
    if options.out is None:
        sys.stdout.write("---\n".join(files.values()))
        return 0
    try:
        written = write_all(options.out, files)
    except (OSError, InvalidInput) as exc:
        print(f"tandem import: cannot write {options.out}: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0
