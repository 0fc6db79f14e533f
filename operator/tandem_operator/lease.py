"""The `<cluster>-primary` Lease: as read, as remembered per epoch, and as created.

The Lease is the agents' lock, not the operator's: the operator only reads it (as the
`tandem.kube.lease.LeaseRecord` that the agent and the plugin read too), keeps what it saw of
each epoch while running (`remember`, so that failover durations are exact and a release can be
told from an expiry), and creates it when it is missing: with no holder, at an epoch never below
one already seen (`initial_epoch`), stamped with the members the admission policy lets take it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tandem.api.common import API_VERSION, CLUSTER_LABEL, MEMBERS_ANNOTATION
from tandem.api.hacluster import HACluster, HAClusterStatus
from tandem.kube.lease import LeaseRecord
from tandem_operator.messages import Event


@dataclass(frozen=True)
class EpochRecord:
    """What the operator saw of one epoch while it was running (lost when it restarts)."""

    holder: str | None
    renew_time: datetime | None = None
    released: bool = False


LeaseHistory = Mapping[int, EpochRecord]


def remember(history: Mapping[int, EpochRecord], lease: LeaseRecord, keep: int = 8) -> dict[int, EpochRecord]:
    """Fold one observation of the Lease into the per-epoch history (newest `keep` epochs)."""
    out = dict(history)
    if out and lease.epoch < max(out):
        out = {}  # the Lease was recreated (or the HACluster): older records no longer apply
    old = out.get(lease.epoch)
    if lease.holder is not None:
        out[lease.epoch] = EpochRecord(lease.holder, lease.renew_time, released=False)
    elif old is not None and old.holder is not None:
        out[lease.epoch] = EpochRecord(old.holder, old.renew_time, released=True)
    for epoch in sorted(out)[:-keep]:
        del out[epoch]
    return out


def lease_name(cluster: str) -> str:
    return f"{cluster}-primary"


def initial_epoch(cluster: HACluster) -> int:
    """Epoch for a (re)created Lease: 0 for a new cluster, never below any epoch already seen,
    so that a Lease deleted by hand cannot make old epochs current again."""
    status = cluster.status or HAClusterStatus()
    return max([status.epoch or 0, *(r.epoch for r in status.nodes)])


def lease_members(cluster: HACluster) -> str:
    """The value of the Lease's MEMBERS_ANNOTATION: the cluster's node names, sorted,
    comma-separated. The admission policy lets an agent take the Lease, or be handed it, only
    when its node is listed here; only the operator (and an administrator) may change it."""
    return ",".join(sorted(n.name for n in cluster.spec.nodes))


def lease_manifest(name: str, namespace: str, uid: str, cluster: HACluster) -> dict[str, Any]:
    """The Lease the operator creates when it is missing: no holder, labelled, owned, and
    stamped with the cluster's members."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(name),
            "namespace": namespace,
            "labels": {CLUSTER_LABEL: name},
            "annotations": {MEMBERS_ANNOTATION: lease_members(cluster)},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "HACluster",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "leaseDurationSeconds": math.ceil(cluster.spec.leases.lease_duration_ms / 1000),
            "leaseTransitions": initial_epoch(cluster),
        },
    }


def lease_created_event(name: str, cluster: HACluster) -> Event:
    epoch = initial_epoch(cluster)
    if epoch == 0:
        return Event("Normal", "LeaseCreated", f"created Lease {lease_name(name)} with no holder")
    return Event(
        "Warning",
        "LeaseRecreated",
        f"Lease {lease_name(name)} was missing; recreated with no holder at epoch {epoch} "
        "(the highest epoch seen), so no older epoch becomes current again",
    )
