"""The kubeconfig as kubectl reads it, the plugin's few API calls, and their failures as
one-line Outcomes.

Reads go through the operator's I/O layer (`tandem_operator.kube.Kube`), so the plugin parses
objects exactly as the operator does; the writes are JSON merge patches of one HACluster.
"""

from __future__ import annotations

import os
from typing import Any, cast

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from tandem.api.common import GROUP, VERSION
from tandem.api.drbdvolume import DRBDVolume
from tandem.api.floatingip import FloatingIP
from tandem.kube.connect import load_configuration
from tandem.kube.errors import Forbidden, KubeError, NotFound, translated
from tandem.kube.lease import LeaseRecord
from tandem_operator.kube import TIMEOUT, Kube
from tandem_operator.kubectl.rules import REFUSED, UNREACHABLE, USAGE, Outcome, Stop, listing
from tandem_operator.lease import lease_name

FIELD_MANAGER = "kubectl-tandem"
MERGE_PATCH = "application/merge-patch+json"


class PluginApi:
    """The calls the commands make, on one API server."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.kube = Kube(api_client)
        self.server: str = api_client.configuration.host

    def cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get_cluster(namespace, name)

    def clusters(self, namespace: str | None) -> list[dict[str, Any]]:
        """The raw HAClusters of `namespace` (None: of every namespace), by namespace and name."""
        custom = self.kube.custom
        with translated():
            if namespace is None:
                listed = custom.list_cluster_custom_object(GROUP, VERSION, "haclusters", _request_timeout=TIMEOUT)
            else:
                listed = custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, "haclusters", _request_timeout=TIMEOUT
                )
        items: list[dict[str, Any]] = cast(dict[str, Any], listed)["items"]
        return sorted(items, key=lambda i: (i["metadata"]["namespace"], i["metadata"]["name"]))

    def volumes(self, namespace: str) -> dict[str, DRBDVolume]:
        return self.kube.volumes(namespace)

    def floating_ips(self, namespace: str) -> dict[str, FloatingIP]:
        return self.kube.floating_ips(namespace)

    def lease(self, namespace: str, cluster: str) -> LeaseRecord | None:
        return self.kube.get_lease(namespace, lease_name(cluster))

    def patch_cluster(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """A JSON merge patch; one carrying metadata.resourceVersion fails with 409 if the
        object changed since it was read (Conflict)."""
        with translated():
            self.kube.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                "haclusters",
                name,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_PATCH,
                _request_timeout=TIMEOUT,
            )


def connect(kubeconfig: str | None, context: str | None) -> tuple[PluginApi, str]:
    """The API of the kubeconfig's context (`context`, else its current one) and that context's
    namespace (else `default`), read as kubectl reads them: --kubeconfig, else $KUBECONFIG (a
    list of files, merged), else ~/.kube/config."""
    path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        contexts, current = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=path
        )
    except (ConfigException, OSError, ValueError) as exc:
        raise Stop(
            Outcome(USAGE, f"cannot read a kubeconfig from {path} ({exc}): pass --kubeconfig FILE or set KUBECONFIG")
        ) from exc
    chosen = current if context is None else next((c for c in contexts if c["name"] == context), None)
    if chosen is None:
        raise Stop(
            Outcome(USAGE, f"no context {context!r} in {path}; its contexts: {listing(c['name'] for c in contexts)}")
        )
    try:
        configuration = load_configuration(path, context=chosen["name"], persist_config=False)
    except (ConfigException, OSError, ValueError) as exc:
        raise Stop(Outcome(USAGE, f"context {chosen['name']} of {path} is not usable: {exc}")) from exc
    namespace = (chosen.get("context") or {}).get("namespace") or "default"
    return PluginApi(client.ApiClient(configuration)), namespace


def api_failure(error: KubeError, server: str) -> Outcome:
    """An API error, or no answer, as the one line that names what is wrong and the fix."""
    if error.status is None:
        return Outcome(
            UNREACHABLE,
            f"cannot reach the API server {server}: {error.message}; check "
            "that it is up and that the kubeconfig's context points at it (--context)",
        )
    if error.status == 401:
        return Outcome(
            UNREACHABLE,
            f"{server} rejected the kubeconfig's credentials (401 "
            f"Unauthorized): log in again or pick another --context",
        )
    if isinstance(error, Forbidden):
        return Outcome(
            UNREACHABLE, f"forbidden: {error.message}; ask for the RBAC in docs/kubectl-plugin.md#permissions"
        )
    if isinstance(error, NotFound) and "could not find the requested resource" in error.message:
        return Outcome(
            UNREACHABLE,
            f"{server} does not serve tandem.dev HAClusters: install "
            "tandem's CRDs (kubectl apply -f crds/) or pick another --context",
        )
    if error.status in (409, 422):
        return Outcome(REFUSED, f"the API server refused the change ({error.status}): {error.message}")
    return Outcome(UNREACHABLE, f"{server} answered {error.status} {error.reason}: {error.message}")
