"""Validate imported manifests: offline against the models and the intent of the CRDs' CEL
rules (pydantic does not evaluate CEL), and optionally by a server-side dry run."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from tandem.api.common import DNS_LABEL, GROUP, VERSION
from tandem.api.drbdvolume import DRBDVolumeSpec
from tandem.api.floatingip import FloatingIPSpec
from tandem.api.hacluster import HAClusterSpec

SPECS: dict[str, type[BaseModel]] = {
    "HACluster": HAClusterSpec,
    "DRBDVolume": DRBDVolumeSpec,
    "FloatingIP": FloatingIPSpec,
}
PLURALS = {"HACluster": "haclusters", "DRBDVolume": "drbdvolumes", "FloatingIP": "floatingips"}


def offline_problems(documents: Iterable[dict[str, Any]]) -> list[str]:
    """Every reason the API server (or the operator, for references between objects) would
    refuse the set; empty when it would accept it."""
    docs = list(documents)
    problems: list[str] = []
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        label = f"{kind} {name}"
        if not re.fullmatch(DNS_LABEL, name) or len(name) > 63:
            problems.append(f"{label}: metadata.name must be a DNS label")
        try:
            spec = SPECS[kind].model_validate(doc["spec"])
        except ValidationError as exc:
            problems += [f"{label}: spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
            continue
        problems += [f"{label}: {p}" for p in cel_problems(spec)]
    problems += reference_problems(docs)
    return problems


def _not_ip(text: str | None) -> bool:
    if text is None:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return True
    return False


def _paths(value: Any) -> Iterable[str]:
    """Every string in a dumped spec that is an absolute path (the AbsolutePath CEL rule)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _paths(item)
    elif isinstance(value, list):
        for item in value:
            yield from _paths(item)
    elif isinstance(value, str) and value.startswith("/"):
        yield value


def cel_problems(spec: BaseModel) -> list[str]:
    """The CRDs' CEL rules (tandem/api), restated in Python with the same messages."""
    found: list[str] = []
    dumped = spec.model_dump(by_alias=True)
    found += [
        f"{p!r} must be an absolute path without '..' segments"
        for p in _paths(dumped)
        if "/../" in p or p.endswith("/..")
    ]
    if isinstance(spec, HAClusterSpec):
        names = [n.name for n in spec.nodes]
        if len(set(names)) < 2:
            found.append("spec.nodes must list at least two distinct nodes (Kubernetes Node names)")
        if len(set(names)) != len(names):
            found.append("spec.nodes has a node twice")
        if spec.primary is not None and spec.primary not in names:
            found.append("spec.primary must be one of spec.nodes[*].name")
        if any(s not in names for s in spec.standby_nodes):
            found.append("spec.standbyNodes may only name nodes listed in spec.nodes")
        if len(spec.standby_nodes) >= len(spec.nodes):
            found.append("spec.standbyNodes must leave at least one node able to be primary")
        services = [s.name for s in spec.chain.services]
        if len(set(services)) != len(services):
            found.append("spec.chain.services[*].name must be unique")
        found += [
            f"spec.nodes: {n.replication_address!r} is not an IP address"
            for n in spec.nodes
            if _not_ip(n.replication_address)
        ]
        t = spec.leases
        if t.renew_interval_ms >= t.renew_deadline_ms:
            found.append("spec.leases.renewIntervalMs must be less than renewDeadlineMs")
        if (
            t.renew_deadline_ms + t.demotion_timeout_ms + t.max_stall_ms + t.margin_ms
        ) * 1000 >= t.lease_duration_ms * (1000 - t.clock_rate_error_permille):
            found.append("spec.leases: the lease safety inequality does not hold")
    elif isinstance(spec, DRBDVolumeSpec):
        names = [n.name for n in spec.nodes]
        ids = [n.node_id for n in spec.nodes] + ([spec.tiebreaker.node_id] if spec.tiebreaker else [])
        if len(set(names)) != len(names):
            found.append("spec.nodes has a node twice")
        if spec.tiebreaker is not None and spec.tiebreaker.name in names:
            found.append("spec.tiebreaker.name must not be one of spec.nodes: the witness holds no data")
        if len(set(ids)) != len(ids):
            found.append("spec.nodes[*].nodeId and spec.tiebreaker.nodeId must be distinct")
        if spec.tiebreaker is not None and spec.quorum.mode == "off":
            found.append("spec.quorum.mode must be majority or all when spec.tiebreaker is set")
        addresses = [n.address for n in spec.nodes] + ([spec.tiebreaker.address] if spec.tiebreaker else [])
        found += [f"{a!r} is not an IP address" for a in addresses if _not_ip(a)]
    elif isinstance(spec, FloatingIPSpec):
        for entry in spec.addresses:
            if _not_ip(entry.start) or _not_ip(entry.end):
                found.append(f"spec.addresses: {entry.start}..{entry.end} is not a valid address or range")
                continue
            start = ipaddress.ip_address(entry.start)
            if entry.end is not None and ipaddress.ip_address(entry.end).version != start.version:
                found.append("start and end of a range must both be IPv4 or both be IPv6")
            if start.version == 4 and spec.prefix_length > 32:
                found.append("spec.prefixLength must be at most 32 for IPv4 addresses")
    return found


def reference_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Objects a HACluster names must be in the set and belong to it."""
    owned = {(d["kind"], d["metadata"]["name"]): d["spec"].get("cluster") for d in docs}
    clusters = {d["metadata"]["name"] for d in docs if d["kind"] == "HACluster"}
    found = []
    for doc in docs:
        if doc["kind"] != "HACluster":
            continue
        name, chain = doc["metadata"]["name"], doc["spec"].get("chain", {})
        for kind, key in (("DRBDVolume", "volumes"), ("FloatingIP", "floatingIPs")):
            for item in chain.get(key, []):
                if owned.get((kind, item)) != name:
                    found.append(f"HACluster {name}: chain.{key} names {item}, which is no {kind} of {name}")
        for mount in chain.get("mounts", []):
            if mount["volume"] not in chain.get("volumes", []):
                found.append(
                    f"HACluster {name}: mount {mount['mountPoint']} names volume {mount['volume']}, "
                    "which is not in chain.volumes"
                )
        dependency = doc["spec"].get("dependsOn", {}).get("name")
        if dependency is not None and dependency not in clusters:
            found.append(f"HACluster {name}: dependsOn names {dependency}, which is not imported")
    return found


def server_problems(documents: Iterable[dict[str, Any]], kubeconfig: str) -> list[str]:
    """A server-side apply of each object with dryRun=All: the API server's own verdict
    (schema, CEL rules, the namespace existing), nothing stored."""
    from kubernetes import client

    from tandem.kube.connect import load_client
    from tandem.kube.errors import kube_error

    api = client.CustomObjectsApi(load_client(kubeconfig))
    found = []
    for doc in documents:
        meta = doc["metadata"]
        try:
            api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                meta["namespace"],
                PLURALS[doc["kind"]],
                meta["name"],
                doc,
                dry_run="All",
                field_manager="tandem-import",
                force=True,
                _content_type="application/apply-patch+yaml",
                _request_timeout=30,
            )
        except Exception as exc:
            error = kube_error(exc)
            if error.status is None:  # connection refused, TLS, timeouts: the check could not run
                found.append(f"{doc['kind']} {meta['name']}: cannot reach the API server: {error}")
            else:
                found.append(f"{doc['kind']} {meta['name']}: the API server refused it: {error.message}")
    return found
