"""`tandem import` refuses bad input with file, line and fix, and writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tandem import cli
from tandem.importer import cib, crm, drbd, mapping
from tandem.importer.model import InvalidInput
from tests.unit.import_helpers import FIXTURES

TWO_NODES = "node a\nnode b\n"


def refusal(text: str, file: str = "bad.crm") -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        mapping.map_config(crm.parse(text, file), [], "ns")
    return caught.value


def test_a_syntax_error_names_the_file_line_and_fix() -> None:
    error = refusal(TWO_NODES + "primitive p_ip IPaddr2 \\\n\tparams ip 10.0.0.1\n")
    assert str(error).startswith("bad.crm:4: 'ip' in primitive p_ip is not name=value; fix: write each parameter")


def test_an_unclosed_quote_and_an_unknown_keyword_are_errors_with_their_line() -> None:
    assert str(refusal(TWO_NODES + 'primitive p IPaddr2 params ip="10.0.0.1\n')).startswith("bad.crm:3: cannot split")
    assert str(refusal(TWO_NODES + "\nprimitve p IPaddr2\n")).startswith("bad.crm:4: unknown crmsh keyword 'primitve'")


def test_a_group_naming_an_undefined_primitive_is_an_error() -> None:
    error = refusal(
        TWO_NODES + "primitive p_ip IPaddr2 params ip=10.0.0.1 cidr_netmask=24 nic=eth0\ngroup g_web p_ip p_nginx\n"
    )
    assert str(error) == (
        "bad.crm:4: group g_web names 'p_nginx', which is not defined; fix: define "
        "`primitive p_nginx ...` or remove it from the group"
    )


def test_a_drbd_resource_no_file_defines_is_an_error_naming_the_primitive() -> None:
    config = crm.parse((FIXTURES / "mail.crm").read_text(), "mail.crm")
    with pytest.raises(InvalidInput) as caught:
        mapping.map_config(config, [], "ns")
    assert str(caught.value) == (
        "mail.crm:5: primitive p_drbd_mail manages DRBD resource 'mail-store', which no DRBD file defines "
        "(defined: none); fix: pass the file defining `resource mail-store` with --drbd (e.g. "
        "/etc/drbd.d/mail-store.res)"
    )


def test_ipaddr2_without_nic_is_an_error_not_a_guess() -> None:
    error = refusal(TWO_NODES + "primitive p_ip IPaddr2 params ip=10.0.0.1 cidr_netmask=24\ngroup g p_ip\n")
    assert "bad.crm:3: IPaddr2 p_ip has no nic" in str(error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("resource r {\n on a { address 10.0.0.1:7789 }\n}\n", "r.res:2: missing ';' after 'address 10.0.0.1:7789'"),
        ("resource r {\n on a { device /dev/drbd0; }\n", "r.res:1: section 'resource r' is never closed"),
        ("resource r {\n on a { address 10.0.0.1; }\n on b {}\n}\n", "r.res:2: 'address 10.0.0.1' is not an address"),
        ("resource r {\n on a { }\n}\n", "r.res:1: resource r has 1 `on` section(s)"),
        (
            "resource r {\n volume 0 { device minor 1; }\n volume 1 { device minor 2; }\n on a {}\n on b {}\n}\n",
            "r.res:3: resource r has a second volume",
        ),
    ],
)
def test_drbd_syntax_errors_name_the_line(text: str, expected: str) -> None:
    with pytest.raises(InvalidInput, match="fix: ") as caught:
        drbd.parse(text, "r.res")
    assert str(caught.value).startswith(expected)


def test_cib_errors_name_the_line() -> None:
    with pytest.raises(InvalidInput) as caught:
        cib.parse("<cib>\n<configuration>\n<resources>\n</configuration>\n</cib>\n", "cib.xml")
    assert str(caught.value).startswith("cib.xml:4: not well-formed XML (mismatched tag)")
    with pytest.raises(InvalidInput, match="entity declarations are not allowed"):
        cib.parse('<!DOCTYPE cib [<!ENTITY a "aaaa">]>\n<cib><configuration/></cib>', "cib.xml")


@pytest.fixture(autouse=True)
def no_api_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """--check falls back to KUBECONFIG for its dry run; these tests stay offline."""
    monkeypatch.delenv("KUBECONFIG", raising=False)


def run_cli(*args: str) -> int:
    return cli.main(["import", *args])


def test_strict_with_a_stonith_device_fails_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = run_cli(
        "--crm",
        str(FIXTURES / "mail.crm"),
        "--drbd",
        str(FIXTURES / "mail-store.res"),
        "--namespace",
        "mail",
        "--out",
        str(out),
        "--strict",
    )
    captured = capsys.readouterr()
    assert code == 1 and not out.exists()
    assert "mail.crm:46  primitive st_ipmi_mail1 (stonith:fence_ipmilan): STONITH device" in captured.out
    assert "--strict: 15 construct(s) not carried over (listed above); nothing written" in captured.err


def test_bad_input_leaves_no_partial_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The second DRBD resource is missing: the first cluster is not written either."""
    shutil.copy(FIXTURES / "apps.crm", tmp_path / "apps.crm")
    only_db = (FIXTURES / "apps-84.res").read_text().split("resource app-data")[0]
    (tmp_path / "db.res").write_text(only_db)
    out = tmp_path / "out"
    code = run_cli(
        "--crm",
        str(tmp_path / "apps.crm"),
        "--drbd",
        str(tmp_path / "db.res"),
        "--namespace",
        "apps",
        "--out",
        str(out),
    )
    assert code == 1 and not out.exists()
    assert "apps.crm:7: primitive p_drbd_app manages DRBD resource 'app-data'" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".tandem-import-*"))


def test_check_refuses_manifests_the_models_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "one.crm").write_text("node a\nprimitive p systemd:web\ngroup g_web p\n")
    code = run_cli("--crm", str(tmp_path / "one.crm"), "--namespace", "ns", "--check", "--out", str(tmp_path / "o"))
    assert code == 1 and not (tmp_path / "o").exists()
    assert "HACluster web: spec.nodes must list at least two distinct nodes" in capsys.readouterr().err


def test_written_files_parse_and_carry_a_source_comment_on_every_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    out = tmp_path / "out"
    code = run_cli(
        "--crm",
        str(FIXTURES / "apps.crm"),
        "--drbd",
        str(FIXTURES),
        "--namespace",
        "apps",
        "--out",
        str(out),
        "--check",
    )
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["app.yaml", "db.yaml"]
    text = (out / "app.yaml").read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert [d["kind"] for d in docs] == ["DRBDVolume", "FloatingIP", "HACluster"]
    comments = [line for line in text.splitlines() if line.startswith(("# DRBDVolume", "# FloatingIP", "# HACluster"))]
    assert len(comments) == 3 and comments[0].startswith("# DRBDVolume app-data from ")
    assert "apps.crm:" in comments[2] and "apps-84.res:" in comments[0]


def test_docs_migrate_shows_the_report_the_mail_example_prints(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/migrate.md quotes the report verbatim; this keeps the quote true."""
    monkeypatch.chdir(FIXTURES)
    out = tmp_path / "manifests"
    assert (
        run_cli("--crm", "mail.crm", "--drbd", "mail-store.res", "--namespace", "mail", "--out", str(out), "--check")
        == 0
    )
    printed = capsys.readouterr().out.replace(str(out), "manifests")
    documented = (FIXTURES.parents[2] / "docs" / "migrate.md").read_text().split("<!-- import-report -->")[1]
    assert documented.strip().removeprefix("```").removesuffix("```").strip() == printed.strip()
