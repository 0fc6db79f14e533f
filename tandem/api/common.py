"""Pieces every tandem kind shares: the model base, bounded string types, conditions."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "tandem.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# The holder's synchronous standbys, comma-separated, on the `<cluster>-primary` Lease: the
# nodes that confirm every write before it is acknowledged (docs/failover-protocol.md).
SYNC_STANDBYS_ANNOTATION = f"{GROUP}/synchronous-standbys"
# The cluster's nodes, comma-separated, on the `<cluster>-primary` Lease: the operator stamps
# them from spec.nodes, and the API server's admission policy (deploy/base/agent-admission.yaml)
# lets an agent take or receive only the Lease of a cluster whose members name its node.
MEMBERS_ANNOTATION = f"{GROUP}/members"
# On every `<cluster>-primary` Lease the operator creates, naming its HACluster: what the
# agents and the operator select the Leases they watch by.
CLUSTER_LABEL = f"{GROUP}/cluster"
# Where kopf keeps the last spec the operator handled (its key under the GROUP prefix); a
# change of spec.primary against it is a switchover request.
LAST_HANDLED_KEY = "last-handled-configuration"
LAST_HANDLED_ANNOTATION = f"{GROUP}/{LAST_HANDLED_KEY}"
# A switchover request on an HACluster, applied once per request id (so a GitOps tool can keep
# it in the manifest): move the primary to the node named in SWITCHOVER_ANNOTATION, even one
# that spec.primary already names. The operator records the last handled id in
# status.switchover.requestId (docs/operator.md, "spec.primary: the preferred primary").
SWITCHOVER_ANNOTATION = f"{GROUP}/switchover"
SWITCHOVER_ID_ANNOTATION = f"{GROUP}/switchover-id"
# A forced failover (docs/failover-protocol.md, "Forced failover"): make the node named in
# FORCE_FAILOVER_ANNOTATION primary although no rule lets it (it may lack acknowledged writes),
# once per FORCE_FAILOVER_ID_ANNOTATION, only with ACCEPT_DATA_LOSS_ANNOTATION set to "true".
# The operator records it in status.forcedFailover; the agent of that node acts on it.
FORCE_FAILOVER_ANNOTATION = f"{GROUP}/force-failover"
FORCE_FAILOVER_ID_ANNOTATION = f"{GROUP}/force-failover-id"
ACCEPT_DATA_LOSS_ANNOTATION = f"{GROUP}/accept-data-loss"
# Forget failures: a new value (any request id) makes the agents reset the cluster's repair
# counts and restart back-off, like `crm resource cleanup`.
CLEANUP_ANNOTATION = f"{GROUP}/cleanup"


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL validation rule in the form the CRD schema wants (`x-kubernetes-validations`)."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


def immutable(what: str) -> dict[str, Any]:
    """A transition rule: the field keeps the value it was created with."""
    return validations(
        cel(
            "self == oldSelf",
            f"{what} is immutable: delete and recreate the object to change it",
        )
    )


# Values the agent writes into files (DRBD resource files, postgresql.conf) or passes to
# commands (mount). Each rule is defined once here and checked with the same expression at
# the API server (a CEL rule whose message names the fix, so a bad spec is refused with the
# field's path), by the agent's models and by the renderer right before it writes: a value
# the API server accepted is never refused later on a node, and one that slipped past it (an
# object stored before the rule existed) is refused there and never written.

# Characters no configuration syntax on the node gives a meaning to: no blank, quote,
# backslash, '#', ';', '{', '$' or control character, so nothing needs escaping.
PATH_RE = r"^/[A-Za-z0-9._+@:/-]*$"
PATH_CEL = f"self.matches(r'{PATH_RE}') && !self.contains('/../') && !self.endsWith('/..')"
PATH_RULE = (
    "must be an absolute path of letters, digits and / . _ - + @ : without '..' segments, "
    "e.g. /dev/vg0/mail or /srv/data (no spaces, quotes, backslashes or control characters)"
)
MOUNT_OPTION_RE = r"^[A-Za-z0-9][A-Za-z0-9_.=:+-]*$"
MOUNT_OPTION_RULE = (
    "must be one mount option such as noatime or logbufs=8: a letter or digit, then letters, "
    "digits and _ . = : + - (one option per list entry; no ',' or spaces)"
)


def path_problem(path: str) -> str | None:
    """Why `path` may not be written into a node's configuration (None: it may)."""
    if re.fullmatch(PATH_RE, path) and "/../" not in path and not path.endswith("/.."):
        return None
    return f"{path!r} {PATH_RULE}"


def mount_option_problem(option: str) -> str | None:
    """Why `option` may not be passed to mount -o (None: it may)."""
    return None if re.fullmatch(MOUNT_OPTION_RE, option) else f"{option!r} {MOUNT_OPTION_RULE}"


def pattern_problem(value: str, pattern: str, what: str) -> str | None:
    """Why `value` does not match the API's `pattern` for `what` (None: it does)."""
    return None if re.fullmatch(pattern, value) else f"{value!r} is not {what} (must match {pattern})"


def refuse(problem: Callable[[str], str | None]) -> AfterValidator:
    """A pydantic validator raising the message of `problem(value)` when there is one."""

    def check(value: str) -> str:
        found = problem(value)
        if found:
            raise ValueError(found)
        return value

    return AfterValidator(check)


NodeName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=DNS_SUBDOMAIN,
        description="A Kubernetes Node name (lower-case DNS name, at most 63 characters).",
    ),
]
ObjectName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="Name of another tandem object in the same namespace.",
    ),
]
AbsolutePath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        description="An absolute path on the node: letters, digits and / . _ - + @ :, no '..'.",
        json_schema_extra=validations(cel(PATH_CEL, PATH_RULE)),
    ),
    refuse(path_problem),
]
IPAddress = Annotated[
    str,
    Field(
        min_length=2,
        max_length=45,
        description="An IPv4 or IPv6 address, without prefix length.",
        json_schema_extra=validations(
            cel("isIP(self)", "must be a valid IPv4 or IPv6 address such as 198.18.0.10 or 2001:db8::10")
        ),
    ),
]
MountOption = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        json_schema_extra=validations(cel(f"self.matches(r'{MOUNT_OPTION_RE}')", MOUNT_OPTION_RULE)),
    ),
    refuse(mount_option_problem),
]
Message = Annotated[str, Field(max_length=1024)]
Reason = Annotated[str, Field(max_length=128)]


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class Condition(Model):
    """A condition in the Kubernetes API convention (metav1.Condition)."""

    type: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Z][A-Za-z]*$")]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]
    message: Message = ""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    last_transition_time: datetime


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=16,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    ),
]
