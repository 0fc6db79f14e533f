"""Every set `tandem import` writes is accepted by the real API server: first by its own
`--check` (a server-side dry run), then by `kubectl apply --server-side`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tandem import cli
from tests.conftest import Kubectl
from tests.unit.import_helpers import FIXTURES

pytestmark = pytest.mark.apiserver

SETS = {
    "mail": ["--crm", "mail.crm", "--drbd", "mail-store.res"],
    "apps": ["--crm", "apps.crm", "--drbd", "apps-84.res"],
    "apps-cib": ["--cib", "apps.cib.xml", "--drbd", "apps-84.res"],
    "paf": ["--crm", "paf.crm"],
}


def fixture_args(args: list[str]) -> list[str]:
    return [str(FIXTURES / a) if not a.startswith("--") else a for a in args]


@pytest.mark.parametrize("name", list(SETS))
def test_imported_set_passes_the_dry_run_and_is_applied(
    name: str, crds_installed: Kubectl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = f"import-{name}"
    crds_installed.run(["create", "namespace", namespace])
    out = tmp_path / "out"
    code = cli.main(
        [
            "import",
            *fixture_args(SETS[name]),
            "--namespace",
            namespace,
            "--out",
            str(out),
            "--check",
            "--kubeconfig",
            str(crds_installed.kubeconfig),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "against the models and the API server (dry run): valid" in captured.out
    files = sorted(out.glob("*.yaml"))
    expected = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    for path in files:
        crds_installed.run(["apply", "--server-side", "--field-manager=tandem-import-test", "-f", str(path)])
    for doc in expected:
        stored = crds_installed.json(["-n", namespace, "get", doc["kind"].lower(), doc["metadata"]["name"]])
        assert contains(stored["spec"], doc["spec"]), (doc["kind"], stored["spec"])


def contains(stored: Any, written: Any) -> bool:
    """`written` is in `stored`, which may hold defaults the API server added."""
    if isinstance(written, dict):
        return isinstance(stored, dict) and all(k in stored and contains(stored[k], v) for k, v in written.items())
    if isinstance(written, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(written)
            and all(contains(a, b) for a, b in zip(stored, written, strict=True))
        )
    return bool(stored == written)


def test_the_dry_run_reports_what_the_api_server_refuses(
    crds_installed: Kubectl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No namespace: the API server's refusal is shown and nothing is written."""
    out = tmp_path / "out"
    code = cli.main(
        [
            "import",
            *fixture_args(SETS["paf"]),
            "--namespace",
            "import-missing",
            "--out",
            str(out),
            "--check",
            "--kubeconfig",
            str(crds_installed.kubeconfig),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert "FloatingIP pg-vips: the API server refused it:" in err and "import-missing" in err
