"""Generate the CustomResourceDefinitions from the typed models (the single source of truth).

Pydantic emits JSON Schema; the API server wants a structural OpenAPI v3 schema: no `$ref`,
no `anyOf` for optionals, no `title`, every object typed. `structural()` does that rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tandem.api.common import GROUP, VERSION, cel
from tandem.api.drbdvolume import DRBDVolumeSpec, DRBDVolumeStatus
from tandem.api.floatingip import FloatingIPSpec, FloatingIPStatus
from tandem.api.hacluster import HAClusterSpec, HAClusterStatus
from tandem.api.tenantpolicy import TENANT_POLICY_NAME, TenantPolicySpec

Schema = dict[str, Any]

CATEGORY = "tandem"


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel] | None  # None: no status subresource
    columns: tuple[dict[str, Any], ...]
    description: str
    scope: str = "Namespaced"
    # TenantPolicy stays out of `kubectl get tandem`: a namespace's administrator may not read
    # it, and one forbidden kind would fail the whole listing.
    categories: tuple[str, ...] = (CATEGORY,)
    # CEL rules on the whole object (they may read metadata.name).
    rules: tuple[dict[str, str], ...] = ()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{self.kind.lower()}.yaml"


def _ready(field: str) -> str:
    return f'.status.conditions[?(@.type=="Ready")].{field}'


AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KINDS: tuple[Kind, ...] = (
    Kind(
        kind="HACluster",
        plural="haclusters",
        short_names=("hac",),
        spec=HAClusterSpec,
        status=HAClusterStatus,
        description="An active/standby pair: nodes, ordered resource chain, failover policy.",
        columns=(
            {"name": "Primary", "type": "string", "jsonPath": ".status.primary"},
            {"name": "Ready", "type": "string", "jsonPath": _ready("status")},
            {"name": "Status", "type": "string", "jsonPath": _ready("reason")},
            {"name": "Epoch", "type": "integer", "jsonPath": ".status.epoch"},
            {"name": "Desired", "type": "string", "jsonPath": ".spec.primary"},
            {
                "name": "Preferred",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="PreferredPrimary")].reason',
            },
            AGE,
            {"name": "Message", "type": "string", "jsonPath": _ready("message"), "priority": 1},
        ),
    ),
    Kind(
        kind="DRBDVolume",
        plural="drbdvolumes",
        short_names=("drbdvol",),
        spec=DRBDVolumeSpec,
        status=DRBDVolumeStatus,
        description="A DRBD 9 resource replicated between the data nodes of an HACluster.",
        columns=(
            {"name": "Cluster", "type": "string", "jsonPath": ".spec.cluster"},
            {"name": "Resource", "type": "string", "jsonPath": ".spec.resourceName"},
            {"name": "Roles", "type": "string", "jsonPath": ".status.roles"},
            {"name": "Disks", "type": "string", "jsonPath": ".status.disks"},
            {"name": "Connection", "type": "string", "jsonPath": ".status.connection"},
            AGE,
        ),
    ),
    Kind(
        kind="FloatingIP",
        plural="floatingips",
        short_names=("fip",),
        spec=FloatingIPSpec,
        status=FloatingIPStatus,
        description="Addresses that move with the primary of an HACluster.",
        columns=(
            {"name": "Cluster", "type": "string", "jsonPath": ".spec.cluster"},
            {"name": "Addresses", "type": "string", "jsonPath": ".status.summary"},
            {"name": "Holder", "type": "string", "jsonPath": ".status.holder"},
            AGE,
        ),
    ),
    Kind(
        kind="TenantPolicy",
        plural="tenantpolicies",
        short_names=("tenantpol",),
        spec=TenantPolicySpec,
        status=None,
        scope="Cluster",
        categories=(),
        description="What each namespace's tandem clusters may touch on the nodes, decided by "
        "the platform team: read by the admission policy tandem-tenant-limits.",
        columns=(AGE,),
        rules=(
            cel(
                f"self.metadata.name == '{TENANT_POLICY_NAME}'",
                f"the TenantPolicy must be named {TENANT_POLICY_NAME}: the admission policy "
                "tandem-tenant-limits reads that one, with an entry per namespace",
            ),
        ),
    ),
)

_DROP = {"title", "$defs", "discriminator"}


def structural(schema: Schema, defs: Schema | None = None) -> Schema:
    """Rewrite one pydantic JSON Schema node into a structural OpenAPI v3 schema node."""
    defs = schema.get("$defs", defs) or {}
    node = dict(schema)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        merged = {**target, **node}
        return structural(merged, defs)
    if "anyOf" in node and any("type" in o or "$ref" in o for o in node["anyOf"]):
        # A union of types (an optional's null dropped); an anyOf of plain value validations
        # (no type in any branch) is structural as it is and stays.
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {len(options)} types in a CRD schema")
        if node.get("default", 0) is None:
            node.pop("default")
        return structural({**options[0], **node}, defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        return structural({**node.pop("allOf")[0], **node}, defs)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = structural(value, defs)
        else:
            out[key] = value
    if "default" in out:
        out["default"] = _without_nulls(out["default"])
        if out["default"] is None:
            del out["default"]
    if "properties" in out and out.get("additionalProperties") is False:
        # Unknown fields are pruned (and refused by strict field validation) anyway; the API
        # server forbids additionalProperties beside properties.
        del out["additionalProperties"]
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _without_nulls(value: Any) -> Any:
    """A default without the nulls pydantic writes for unset optional fields."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _schema(model: type[BaseModel]) -> Schema:
    return structural(model.model_json_schema(by_alias=True, mode="serialization"))


def crd(kind: Kind) -> Schema:
    """The full CustomResourceDefinition of one kind."""
    spec_schema = _schema(kind.spec)
    spec_schema["description"] = kind.description
    properties: Schema = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": spec_schema,
    }
    version: Schema = {"name": VERSION, "served": True, "storage": True}
    if kind.status is not None:
        status_schema = _schema(kind.status)
        status_schema.pop("description", None)
        status_schema["description"] = "Observed state, written through the status subresource."
        properties["status"] = status_schema
        version["subresources"] = {"status": {}}
    root: Schema = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": properties,
    }
    if kind.rules:
        root["x-kubernetes-validations"] = list(kind.rules)
    version["additionalPrinterColumns"] = list(kind.columns)
    version["schema"] = {"openAPIV3Schema": root}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name, "labels": {"app.kubernetes.io/part-of": "tandem"}},
        "spec": {
            "group": GROUP,
            "scope": kind.scope,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                **({"categories": list(kind.categories)} if kind.categories else {}),
            },
            "versions": [version],
        },
    }


HEADER = "# Generated by `tandem gen-crds` from tandem/api; do not edit by hand.\n"


def render(kind: Kind) -> str:
    return HEADER + yaml.safe_dump(crd(kind), sort_keys=False, width=100)


KUSTOMIZATION = "kustomization.yaml"


def generated_files() -> dict[str, str]:
    """File name -> content of everything `tandem gen-crds` writes (CRDs and a kustomization,
    so that deploy/ can include this directory as a base)."""
    files = {kind.file_name: render(kind) for kind in KINDS}
    files[KUSTOMIZATION] = HEADER + yaml.safe_dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [kind.file_name for kind in KINDS],
        },
        sort_keys=False,
    )
    return files


def write_crds(directory: Path) -> list[Path]:
    """Write every generated file into `directory`; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in generated_files().items():
        path = directory / name
        path.write_text(content)
        written.append(path)
    return written


def drift(directory: Path) -> list[str]:
    """Names of files in `directory` that differ from what the models generate, or are extra."""
    files = generated_files()
    stale = [name for name, content in files.items() if _read(directory / name) != content]
    extra = sorted(p.name for p in directory.glob("*.yaml") if p.name not in files)
    return stale + extra


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None
