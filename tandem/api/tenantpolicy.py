"""TenantPolicy: what each namespace's clusters may touch on the nodes, decided by the platform
team (docs/security.md, "Tenant limits").

One cluster-scoped object, named `tandem`, lists the namespaces that may hold tandem clusters
and, per namespace, the nodes, addresses, interfaces, paths, units, PostgreSQL binary
directories, block devices and watchdog devices their specs may name. The API server's
admission policy `tandem-tenant-limits` (deploy/base/tenant-limits.yaml) reads it as its
parameter and refuses every HACluster, DRBDVolume or FloatingIP outside it. It is cluster-scoped
so that no namespace-level grant (a Role, even one with `*`) can write it. An empty list allows
nothing.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tandem.api.common import PATH_RE, Model, NodeName, cel, validations
from tandem.api.floatingip import InterfaceName
from tandem.api.hacluster import CIDR

# The one TenantPolicy the admission policy reads (its binding's paramRef.name).
TENANT_POLICY_NAME = "tandem"

# A pattern that does not compile makes both sides an error, so the object is refused; one that
# does is true whatever it matches.
_REGEX_CEL = "''.matches(self) || !''.matches(self)"
REGEX_RULE = "must be an RE2 regular expression (it is matched against the whole value)"

Pattern = Annotated[
    str,
    Field(min_length=1, max_length=255, json_schema_extra=validations(cel(_REGEX_CEL, REGEX_RULE))),
]
DNS_LABEL_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NamespaceName = Annotated[
    str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_RE, description="A Kubernetes namespace.")
]
# A path in a policy: the characters a spec's path may have (the spec's own rule, which also
# refuses '..' segments, keeps every value a policy is compared with free of them).
PolicyPath = Annotated[
    str, Field(min_length=1, max_length=255, pattern=PATH_RE, description="An absolute path on the node.")
]
# Bounds that keep the API server's cost estimate of the rules above within its budget.
NAMESPACE_LIMIT = 256
LIST_LIMIT = 32


class NamespaceLimits(Model):
    """What the clusters of one namespace may name; an empty list allows nothing of its kind."""

    namespace: NamespaceName
    nodes: Annotated[
        list[NodeName],
        Field(
            max_length=LIST_LIMIT,
            description="Nodes its HAClusters and DRBDVolumes may name (spec.nodes[].name, a "
            "DRBDVolume's spec.tiebreaker.name).",
        ),
    ] = []
    node_patterns: Annotated[
        list[Pattern],
        Field(
            max_length=LIST_LIMIT,
            description="Further nodes, as RE2 patterns matched against the whole name, e.g. mail[0-9]+.",
        ),
    ] = []
    floating_ip_cidrs: Annotated[
        list[CIDR],
        Field(
            max_length=LIST_LIMIT,
            alias="floatingIPCIDRs",
            description="Networks its FloatingIPs' addresses must lie in: start and end of a range, "
            "and each address's network with spec.prefixLength, inside one of them.",
        ),
    ] = []
    interfaces: Annotated[
        list[InterfaceName], Field(max_length=LIST_LIMIT, description="Interfaces its FloatingIPs may use.")
    ] = []
    paths: Annotated[
        list[PolicyPath],
        Field(
            max_length=LIST_LIMIT,
            description="Directories under which it may mount (spec.chain.mounts[].mountPoint), "
            "bind (bindMounts[].source and .target) and keep PostgreSQL (postgres.dataDirectory, "
            "configDirectory): a path is allowed if it is one of these or lies below one "
            "(/srv allows /srv and /srv/mail, not /srvx).",
        ),
    ] = []
    units: Annotated[
        list[Pattern],
        Field(
            max_length=LIST_LIMIT,
            description="systemd units its services may start (spec.chain.services[].unit), as RE2 "
            r"patterns matched against the whole name, e.g. postfix\.service or "
            r"lab-echo@[0-9]+\.service.",
        ),
    ] = []
    postgres_bin_directories: Annotated[
        list[PolicyPath],
        Field(
            max_length=LIST_LIMIT,
            description="PostgreSQL binary directories it may name (spec.chain.postgres."
            "binDirectory, exactly); unset binDirectory (the agent's own) is always allowed.",
        ),
    ] = []
    block_devices: Annotated[
        list[PolicyPath],
        Field(
            max_length=LIST_LIMIT,
            description="Backing disks its DRBDVolumes may name (spec.nodes[].disk): a device "
            "itself or a directory of devices (/dev/vg-mail allows /dev/vg-mail/store).",
        ),
    ] = []
    watchdog_devices: Annotated[
        list[PolicyPath],
        Field(
            max_length=LIST_LIMIT,
            description="Watchdog devices a Watchdog fence may name (spec.failover.fence."
            "watchdogDevice, exactly; checked only when spec.failover.fence.method is "
            "Watchdog).",
        ),
    ] = []


class TenantPolicySpec(Model):
    namespaces: Annotated[
        list[NamespaceLimits],
        Field(
            max_length=NAMESPACE_LIMIT,
            description="One entry per namespace that may hold tandem clusters; a namespace "
            "without an entry may create none.",
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["namespace"],
            },
        ),
    ] = []
