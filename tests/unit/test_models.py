"""The typed models: defaults, validation, and the CRD schema generated from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tandem import crdgen
from tandem.api.floatingip import FloatingIPSpec
from tandem.api.hacluster import (
    ROLE_NAME_RE,
    UNIT_NAME_RE,
    ClientAccess,
    HAClusterSpec,
    LeaseTimings,
    PostgresSpec,
    ServiceSpec,
)

REPO = Path(__file__).resolve().parents[2]


def test_defaults_satisfy_the_lease_safety_inequality() -> None:
    t = LeaseTimings()
    used = t.renew_deadline_ms + t.demotion_timeout_ms + t.max_stall_ms + t.margin_ms
    assert used * 1000 < t.lease_duration_ms * (1000 - t.clock_rate_error_permille)
    assert t.renew_interval_ms < t.renew_deadline_ms


def test_models_speak_camel_case_and_refuse_unknown_fields() -> None:
    spec = HAClusterSpec.model_validate({"nodes": [{"name": "a"}, {"name": "b"}], "primary": "a"})
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["leases"]["leaseDurationMs"] == 3000
    assert "standbyNodes" in dumped
    with pytest.raises(ValidationError, match="primaryNode"):
        HAClusterSpec.model_validate({"nodes": [{"name": "a"}], "primaryNode": "a"})


def test_floating_ip_interface_name_is_bounded() -> None:
    with pytest.raises(ValidationError, match="interface"):
        FloatingIPSpec.model_validate(
            {
                "cluster": "c",
                "addresses": [{"start": "198.18.0.2"}],
                "prefixLength": 24,
                "interface": "an-interface-name-too-long",
            }
        )


def _walk(node: object, path: str = "") -> list[tuple[str, dict]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_walk(value, f"{path}[{i}]"))
    return found


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_generated_schema_is_structural_and_bounded(kind: crdgen.Kind) -> None:
    schema = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    ours = {k: schema["properties"][k] for k in ("spec", "status") if k in schema["properties"]}
    for path, node in _walk(ours):
        if path.endswith(".properties") or path.endswith("x-kubernetes-validations"):
            continue
        for banned in ("$ref", "allOf", "title", "$defs"):
            assert banned not in node, f"{kind.kind}{path} still has {banned}"
        # anyOf only of value validations: a union of types is not structural.
        for branch in node.get("anyOf", []):
            assert not {"type", "$ref", "description", "default"} & set(branch), f"{kind.kind}{path}: anyOf of types"
        if node.get("type") == "string" and "enum" not in node and "format" not in node:
            assert "maxLength" in node, f"{kind.kind}{path}: unbounded string"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{kind.kind}{path}: unbounded list"
        if "default" in node:
            assert node["default"] is not None, f"{kind.kind}{path}: null default"


@pytest.mark.parametrize("kind", [k for k in crdgen.KINDS if k.status is not None], ids=lambda k: k.kind)
def test_conditions_are_a_map_list_keyed_by_type(kind: crdgen.Kind) -> None:
    status = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    conditions = status["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    required = set(conditions["items"]["required"])
    assert {"type", "status", "reason", "lastTransitionTime"} <= required


def test_checked_in_crds_match_the_models() -> None:
    assert crdgen.drift(REPO / "crds") == [], "run `tandem gen-crds` and commit the result"


def test_drift_is_detected(tmp_path: Path) -> None:
    crdgen.write_crds(tmp_path)
    assert crdgen.drift(tmp_path) == []
    (tmp_path / "hacluster.yaml").write_text("# edited by hand\n")
    (tmp_path / "stray.yaml").write_text("{}\n")
    assert crdgen.drift(tmp_path) == ["hacluster.yaml", "stray.yaml"]


def test_samples_parse_with_the_models() -> None:
    models = {"HACluster": HAClusterSpec, "FloatingIP": FloatingIPSpec}
    seen = 0
    for path in sorted((REPO / "deploy" / "samples").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in models:
                models[doc["kind"]].model_validate(doc["spec"])
                seen += 1
    assert seen >= 12


@pytest.mark.parametrize(
    "unit", ["postfix.service", "mail-jobs.timer", "php8.2-fpm.service", "getty@tty1.service", r"srv-my\x2ddata.mount"]
)
def test_service_units_of_real_systemd_units_are_accepted(unit: str) -> None:
    assert ServiceSpec(name="s", unit=unit).unit == unit


@pytest.mark.parametrize(
    "unit",
    ["postfix", "-x.service", ".service", "a b.service", "x.service\n", "x.device", "x.service;reboot", "../x.service"],
)
def test_service_units_outside_the_systemd_rules_are_refused(unit: str) -> None:
    with pytest.raises(ValidationError, match="must be a systemd unit name"):
        ServiceSpec(name="s", unit=unit)


def _validations(schema: dict) -> list[dict]:
    return [v for _, node in _walk(schema) for v in node.get("x-kubernetes-validations", [])]


def test_the_crd_checks_units_and_role_names_with_the_agents_expressions() -> None:
    """The API server and the agent apply one rule, so an accepted value is never refused later."""
    rules = [v["rule"] for v in _validations(crdgen.crd(crdgen.KINDS[0]))]
    assert f"self.matches(r'{UNIT_NAME_RE}')" in rules
    assert sum(f"self.matches(r'{ROLE_NAME_RE}')" in r for r in rules) == 3


@pytest.mark.parametrize("user", ["replicator", "repl_2", "_r"])
def test_replication_user_accepts_plain_names(user: str) -> None:
    assert PostgresSpec(replication_user=user).replication_user == user


@pytest.mark.parametrize(
    "user",
    [
        "all",
        "replication",
        "postgres",
        "pg_monitor",
        "public",
        "Replicator",
        "1r",
        "a-b",
        "a b",
        'r"',
        "r'",
        "r\\",
        "r\n",
        "",
        "r" * 64,
        "+group",
        "@file",
    ],
)
def test_replication_user_refuses_what_pg_hba_or_sql_would_misread(user: str) -> None:
    with pytest.raises(ValidationError, match="replicationUser|replication_user"):
        PostgresSpec(replication_user=user)


def test_client_access_is_typed() -> None:
    rule = ClientAccess(database="mail", user="webmail", address="198.18.0.0/24")
    assert rule.address == "198.18.0.0/24"
    assert ClientAccess(database="d", user="u", address="2001:db8::/64").user == "u"
    for bad in (
        {"database": "all"},
        {"database": "replication"},
        {"user": "postgres"},
        {"address": "198.18.0.1"},
        {"address": "198.18.0.0/33"},
        {"address": "any"},
    ):
        with pytest.raises(ValidationError):
            ClientAccess.model_validate({"database": "d", "user": "u", "address": "10.0.0.0/8"} | bad)
