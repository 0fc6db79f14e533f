"""Shared by the `tandem import` tests: run the parsers and the mapping on fixture files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tandem.importer import cib, crm, drbd, mapping

FIXTURES = Path(__file__).resolve().parent / "import_fixtures"


def imported(
    crm_file: str | None = None,
    drbd_files: tuple[str, ...] = (),
    *,
    cib_file: str | None = None,
    namespace: str = "tandem-import",
) -> mapping.Result:
    """Sources are named by the fixture's file name, as a user's relative path would be."""
    if cib_file is not None:
        config = cib.parse((FIXTURES / cib_file).read_text(), cib_file)
    else:
        assert crm_file is not None
        config = crm.parse((FIXTURES / crm_file).read_text(), crm_file)
    resources = [r for name in drbd_files for r in drbd.parse((FIXTURES / name).read_text(), name)]
    return mapping.map_config(config, resources, namespace)


def documents(result: mapping.Result) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (m.document["kind"], m.document["metadata"]["name"]): m.document for c in result.clusters for m in c.manifests
    }


def spec(result: mapping.Result, kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = documents(result)[(kind, name)]["spec"]
    return found


def report_lines(result: mapping.Result, *, carried: bool) -> list[str]:
    return [f"{e.source} {e.construct}: {e.outcome}" for e in result.report if e.carried == carried]
