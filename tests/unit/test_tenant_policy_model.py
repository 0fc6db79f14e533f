"""The TenantPolicy kind and the admission policy that reads it agree (deploy/base/
tenant-limits.yaml): the policy reads every field of a namespace's entry, and only those."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tandem import crdgen
from tandem.api.tenantpolicy import TENANT_POLICY_NAME, NamespaceLimits, TenantPolicySpec

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "deploy" / "base" / "tenant-limits.yaml"


def policy_docs() -> tuple[dict, dict]:
    policy, binding = (d for d in yaml.safe_load_all(POLICY.read_text()) if d)
    return policy, binding


def test_the_crd_is_cluster_scoped_named_tandem_and_outside_the_tandem_category() -> None:
    kind = next(k for k in crdgen.KINDS if k.kind == "TenantPolicy")
    crd = crdgen.crd(kind)
    assert crd["spec"]["scope"] == "Cluster"
    assert "categories" not in crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    assert "subresources" not in version and "status" not in version["schema"]["openAPIV3Schema"]["properties"]
    (rule,) = version["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    assert rule["rule"] == f"self.metadata.name == '{TENANT_POLICY_NAME}'"
    entries = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["namespaces"]
    assert entries["x-kubernetes-list-map-keys"] == ["namespace"]


def test_the_binding_reads_the_one_tenant_policy_and_denies_without_it() -> None:
    policy, binding = policy_docs()
    assert policy["spec"]["paramKind"] == {"apiVersion": "tandem.dev/v1alpha1", "kind": "TenantPolicy"}
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"]["paramRef"] == {"name": TENANT_POLICY_NAME, "parameterNotFoundAction": "Deny"}
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_the_policy_reads_every_field_of_an_entry_and_no_other() -> None:
    policy, _ = policy_docs()
    read = set()
    for variable in policy["spec"]["variables"]:
        read |= set(re.findall(r"variables\.entries\[0\]\.(\w+)", variable["expression"]))
    fields = {f.alias or name for name, f in NamespaceLimits.model_fields.items()} - {"namespace"}
    assert read == fields


def test_every_rule_of_the_policy_has_a_message_naming_the_tenant_policy() -> None:
    policy, _ = policy_docs()
    for validation in policy["spec"]["validations"]:
        message = validation["messageExpression"]
        assert message.startswith("variables.refused + ")
        assert "variables.policy" in message or "'TenantPolicy ' + params.metadata.name" in message
        assert validation["reason"] == "Forbidden"


def test_shipped_examples_parse_with_the_model() -> None:
    for path in (
        REPO / "deploy" / "samples" / "02-tenant-policy.yaml",
        REPO / "deploy" / "samples" / "lab" / "tenant-policy.yaml",
    ):
        doc = yaml.safe_load(path.read_text())
        assert doc["metadata"]["name"] == TENANT_POLICY_NAME
        spec = TenantPolicySpec.model_validate(doc["spec"])
        assert len(spec.namespaces) == 1
        for pattern in (*spec.namespaces[0].units, *spec.namespaces[0].node_patterns):
            re.compile(pattern)


def test_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError):
        NamespaceLimits.model_validate({"namespace": "a", "node": ["x"]})
