"""The agent's watch-fed mirrors against the real kube-apiserver: what another client writes
shows up without a read, only the Leases labelled with their cluster are mirrored, a guarded
write from a view the watch had not updated yet is refused (409) and makes the Lease mirror
list again (tests/unit/test_watch_cache.py has the rest)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from tandem.api.common import CLUSTER_LABEL
from tandem.kube.connect import load_client
from tandem.kube.errors import Conflict
from tandem.kube.lease import parse_lease
from tandem_agent.kube import AgentWatches, Kube
from tandem_lab.controlplane import ControlPlane
from tandem_lab.harness import wait_until
from tests.conftest import Kubectl

pytestmark = pytest.mark.apiserver

NS = "tandem-watch-test"


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane, crds_installed: Kubectl) -> Iterator[client.ApiClient]:
    api = load_client(str(control_plane.kubeconfig))
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": NS}})
    yield api
    core.delete_namespace(NS)


def make_lease(api: client.ApiClient, name: str, labelled: bool = True) -> None:
    labels = {CLUSTER_LABEL: name.removesuffix("-primary")} if labelled else {}
    client.CoordinationV1Api(api).create_namespaced_lease(
        NS,
        {
            "metadata": {"name": name, "labels": labels, "annotations": {"tandem.dev/members": "a,b"}},
            "spec": {"leaseTransitions": 0},
        },
    )


@pytest.fixture
def watches(api: client.ApiClient) -> Iterator[AgentWatches]:
    mirrors = AgentWatches(api, [NS]).start()
    assert mirrors.wait_synced(10), mirrors.problems()
    yield mirrors
    mirrors.stop()


def holder_in_mirror(watches: AgentWatches, name: str) -> str | None:
    body = watches.lease(NS, name)
    return None if body is None else parse_lease(body).holder


def test_what_others_write_shows_in_the_mirror_and_unlabelled_leases_never_do(
    api: client.ApiClient, watches: AgentWatches
) -> None:
    make_lease(api, "one-primary")
    make_lease(api, "kube-node-style", labelled=False)
    wait_until(lambda: watches.lease(NS, "one-primary") is not None, 10, "the new Lease", interval=0.02)
    other = Kube(api, NS, "b", watches)
    other.read_lease_now("one")
    other.write_lease("one", "b", 1, acquire=True, sync_standbys=())
    wait_until(lambda: holder_in_mirror(watches, "one-primary") == "b", 10, "the takeover", interval=0.02)
    assert watches.lease(NS, "kube-node-style") is None


def test_a_write_from_a_view_the_watch_had_not_updated_is_refused_and_lists_again(
    api: client.ApiClient, watches: AgentWatches
) -> None:
    make_lease(api, "two-primary")
    wait_until(lambda: watches.lease(NS, "two-primary") is not None, 10, "the new Lease", interval=0.02)
    a, b = Kube(api, NS, "a", watches), Kube(api, NS, "b", watches)
    assert a.read_lease("two") is not None  # a's view: epoch 0, free
    b.read_lease_now("two")
    b.write_lease("two", "b", 1, acquire=True, sync_standbys=())
    with pytest.raises(Conflict):
        a.write_lease("two", "a", 1, acquire=True, sync_standbys=())
    # The Lease mirror listed again: it shows b's write, and a takes its next view from it.
    wait_until(
        lambda: watches.wait_synced(0) and holder_in_mirror(watches, "two-primary") == "b",
        10,
        "the mirror listed again",
        interval=0.02,
    )
    record = a.read_lease("two")
    assert record is not None and (record.holder, record.epoch) == ("b", 1)


def test_a_quiet_watch_is_cut_at_once_by_a_resync_and_by_stop(api: client.ApiClient) -> None:
    """Nothing changes in the namespace, so each WATCH is blocked in a read: a resync (what a
    409 asks for) and a stop must end it now, not when the read times out."""
    mirrors = AgentWatches(api, [NS]).start()
    try:
        assert mirrors.wait_synced(10), mirrors.problems()
        time.sleep(1)  # every WATCH is open and waiting
        started = time.monotonic()
        mirrors.resync_leases(NS)
        assert mirrors.wait_synced(5), mirrors.problems()
        assert time.monotonic() - started < 5
    finally:
        started = time.monotonic()
        assert mirrors.stop(), "a watch thread still reads"
        assert time.monotonic() - started < 5
