"""The one way tandem's programs build an API client."""

from __future__ import annotations

from kubernetes import client, config

# Connections kept open to the API server. Every thread that calls at once needs its own, and
# each watch holds one for as long as it lasts. urllib3 closes a connection returned to a full
# pool, and the next call opens a new one: a TLS handshake, milliseconds of CPU on both ends.
# The client's default (5 per CPU) is far below what an agent serving dozens of clusters, each
# with its Lease keeper and its runner, calls with at once.
CONNECTION_POOL = 64


def load_configuration(
    kubeconfig: str | None, *, context: str | None = None, persist_config: bool = True, default_kubeconfig: bool = False
) -> client.Configuration:
    """Connection settings from a kubeconfig file (its `context`, else its current one), else
    from the in-cluster service account. With `default_kubeconfig`, a process outside a
    cluster falls back to ~/.kube/config (the operator run by hand); the agent leaves it off, so
    it never picks up someone's admin credentials. `persist_config=False` never writes
    refreshed tokens back into the file (the kubectl plugin, on the user's kubeconfig)."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration, persist_config=persist_config
        )
        return configuration
    try:
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except config.ConfigException:
        if not default_kubeconfig:
            raise
        config.load_kube_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    return configuration


def load_client(
    kubeconfig: str | None, *, retries: int | None = 0, default_kubeconfig: bool = False
) -> client.ApiClient:
    """An API client (see `load_configuration`). With no retries a cut link fails a call
    within its timeout (the agent's renew deadline counts on it); `retries=None` leaves
    urllib3's own retries on (the operator, which has no such deadline)."""
    configuration = load_configuration(kubeconfig, default_kubeconfig=default_kubeconfig)
    configuration.retries = retries
    configuration.connection_pool_maxsize = CONNECTION_POOL
    return client.ApiClient(configuration)
