"""The shared Kubernetes access layer without a server: the Lease record parsed from the
client's V1Lease and from a plain body alike, the holder's write into the body it read, and
the client's failures mapped to typed errors."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tandem.kube.connect import CONNECTION_POOL, load_client
from tandem.kube.errors import (
    Conflict,
    Forbidden,
    KubeError,
    NotFound,
    Unavailable,
    kube_error,
    translated,
)
from tandem.kube.lease import (
    LeaseRecord,
    micro_time,
    parse_lease,
    set_holder,
    sync_standbys_from,
)

ACQUIRED = dt.datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=dt.UTC)
RENEWED = dt.datetime(2024, 5, 1, 12, 3, 4, 500000, tzinfo=dt.UTC)
ANNOTATIONS = {
    "tandem.dev/synchronous-standbys": "mail2,mail3",
    "tandem.dev/members": "mail1,mail2,mail3",
    "kubectl.kubernetes.io/last-applied-configuration": "{}",
}
HELD = LeaseRecord("mail1", 7, ACQUIRED, RENEWED, 3, ("mail2", "mail3"), "mail1,mail2,mail3", "4711")


def v1_lease(annotations: dict[str, str] | None = ANNOTATIONS, **spec: Any) -> client.V1Lease:
    fields = {
        "holder_identity": "mail1",
        "lease_transitions": 7,
        "acquire_time": ACQUIRED,
        "renew_time": RENEWED,
        "lease_duration_seconds": 3,
    } | spec
    return client.V1Lease(
        metadata=client.V1ObjectMeta(name="mail-primary", resource_version="4711", annotations=annotations),
        spec=client.V1LeaseSpec(**fields),
    )


def body(annotations: dict[str, str] | None = ANNOTATIONS, **spec: Any) -> dict[str, Any]:
    """The Lease as `kubectl get -o json` and kopf give it."""
    fields = {
        "holderIdentity": "mail1",
        "leaseTransitions": 7,
        "acquireTime": "2024-05-01T12:00:00.000001Z",
        "renewTime": "2024-05-01T12:03:04.500000Z",
        "leaseDurationSeconds": 3,
    } | spec
    metadata: dict[str, Any] = {"name": "mail-primary", "resourceVersion": "4711"}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {k: v for k, v in fields.items() if v is not None},
    }


# --- the Lease record -------------------------------------------------------------------------


def test_a_held_lease_reads_the_same_from_the_client_object_and_from_json() -> None:
    assert parse_lease(v1_lease()) == HELD
    assert parse_lease(body()) == HELD
    assert parse_lease(json.loads(json.dumps(body()))) == HELD


@pytest.mark.parametrize(
    ("lease", "record"),
    [
        (
            v1_lease(
                None,
                holder_identity=None,
                lease_transitions=None,
                acquire_time=None,
                renew_time=None,
                lease_duration_seconds=None,
            ),
            LeaseRecord(None, 0, resource_version="4711"),
        ),
        (
            body(
                None,
                holderIdentity=None,
                leaseTransitions=None,
                acquireTime=None,
                renewTime=None,
                leaseDurationSeconds=None,
            ),
            LeaseRecord(None, 0, resource_version="4711"),
        ),
        (client.V1Lease(), LeaseRecord(None, 0)),
        ({}, LeaseRecord(None, 0)),
        (v1_lease({}, holder_identity=""), LeaseRecord(None, 7, ACQUIRED, RENEWED, 3, resource_version="4711")),
        (body({}, holderIdentity=""), LeaseRecord(None, 7, ACQUIRED, RENEWED, 3, resource_version="4711")),
    ],
    ids=["v1-new", "json-new", "v1-bare", "json-bare", "v1-released", "json-released"],
)
def test_a_missing_field_reads_as_its_default_and_an_empty_holder_as_none(lease: Any, record: LeaseRecord) -> None:
    """The operator creates the Lease with no holder and epoch 0; a holder releases it by
    clearing holderIdentity."""
    assert parse_lease(lease) == record


def test_a_garbled_time_in_json_is_an_error_not_a_default() -> None:
    with pytest.raises(ValueError, match="isoformat"):
        parse_lease(body(renewTime="yesterday"))


@pytest.mark.parametrize(
    ("annotations", "listed"),
    [
        (None, None),
        ({}, None),
        ({"tandem.dev/synchronous-standbys": ""}, ()),
        ({"tandem.dev/synchronous-standbys": "mail2"}, ("mail2",)),
        ({"tandem.dev/synchronous-standbys": "n2,n3"}, ("n2", "n3")),
        ({"tandem.dev/synchronous-standbys": ",n2,,n3,"}, ("n2", "n3")),
    ],
)
def test_the_lease_annotation_of_synchronous_standbys_parses(
    annotations: dict[str, str] | None, listed: tuple[str, ...] | None
) -> None:
    """No annotation: the holder publishes no list; an empty one: it waits for nobody."""
    assert sync_standbys_from(annotations) == listed
    assert parse_lease(v1_lease(annotations)).sync_standbys == listed
    assert parse_lease(body(annotations)).sync_standbys == listed


def test_a_renew_changes_only_the_holders_fields_and_keeps_the_resource_version() -> None:
    lease = body()
    now = RENEWED + dt.timedelta(seconds=1)
    set_holder(lease, holder="mail1", epoch=7, now=now, acquire=False, sync_standbys=None)
    assert parse_lease(lease) == LeaseRecord(
        "mail1", 7, ACQUIRED, now, 3, ("mail2", "mail3"), "mail1,mail2,mail3", "4711"
    )
    assert lease["metadata"] == body()["metadata"]


def test_a_takeover_sets_acquire_time_and_the_new_standby_list() -> None:
    lease = body(None)
    now = RENEWED + dt.timedelta(seconds=10)
    set_holder(lease, holder="mail2", epoch=8, now=now, acquire=True, sync_standbys=())
    assert parse_lease(lease) == LeaseRecord("mail2", 8, now, now, 3, (), None, "4711")
    set_holder(lease, holder=None, epoch=8, now=now, acquire=False, sync_standbys=("mail1",))
    assert lease["spec"]["holderIdentity"] is None
    assert lease["metadata"]["annotations"] == {"tandem.dev/synchronous-standbys": "mail1"}


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2024, 5, 1, 12, 0, 0, 0, tzinfo=dt.UTC),
        dt.datetime(2024, 5, 1, 14, 0, 0, 7, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    ],
)
def test_a_micro_time_always_has_six_fractional_digits_in_utc(moment: dt.datetime) -> None:
    """The API server refuses a MicroTime without a fraction: a whole second still gets one."""
    written = micro_time(moment)
    assert len(written) == len("2024-05-01T12:00:00.000000Z") and written.endswith("Z")
    assert dt.datetime.fromisoformat(written.replace("Z", "+00:00")) == moment


# --- typed errors -----------------------------------------------------------------------------


def api_exception(status: int, message: str | None = None, reason: str = "Reason") -> ApiException:
    exc = ApiException(status=status, reason=reason)
    if message is not None:
        exc.body = json.dumps({"kind": "Status", "status": "Failure", "message": message})
    return exc


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (429, Unavailable),
        (500, Unavailable),
        (503, Unavailable),
        (504, Unavailable),
        (400, KubeError),
        (401, KubeError),
        (410, KubeError),
        (422, KubeError),
    ],
)
def test_each_status_maps_to_its_type(status: int, kind: type[KubeError]) -> None:
    error = kube_error(api_exception(status, "the server says why"))
    assert type(error) is kind
    assert error.status == status and error.message == "the server says why" and error.reason == "Reason"
    assert str(error) == f"HTTP {status} Reason: the server says why"


def test_without_a_status_body_the_reason_is_the_message() -> None:
    error = kube_error(api_exception(404))
    assert isinstance(error, NotFound) and error.message == "Reason"
    assert kube_error(ApiException(status=500)).message == "no message"


@pytest.mark.parametrize(
    "exc",
    [
        urllib3.exceptions.MaxRetryError(
            None,
            "/apis",
            urllib3.exceptions.NewConnectionError(
                None, "Failed to establish a new connection: [Errno 111] Connection refused"
            ),
        ),
        urllib3.exceptions.ReadTimeoutError(None, "/apis", "Read timed out. (read timeout=1.0)"),
        urllib3.exceptions.SSLError("certificate verify failed"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
        ApiException(reason="no status at all"),
    ],
    ids=["refused", "read-timeout", "tls", "socket-refused", "socket-timeout", "no-status"],
)
def test_no_answer_is_unavailable_without_a_status(exc: Exception) -> None:
    error = kube_error(exc)
    assert type(error) is Unavailable and error.status is None and error.message
    assert str(error) == error.message


def test_translated_raises_the_typed_error_and_lets_other_exceptions_pass() -> None:
    with pytest.raises(Conflict) as lost, translated():
        raise api_exception(409, 'Operation cannot be fulfilled on leases "mail-primary"')
    assert isinstance(lost.value.__cause__, ApiException)
    with pytest.raises(Unavailable), translated():
        raise urllib3.exceptions.ProtocolError("Connection aborted.")
    with pytest.raises(KeyError), translated():
        raise KeyError("a bug, not the API server")
    error = NotFound(404, "gone")
    assert kube_error(error) is error


def test_the_client_keeps_enough_connections_for_many_clusters(tmp_path: Any) -> None:
    """A pool smaller than the callers at once closes connections and reopens them: a TLS
    handshake per Lease renewal when an agent serves dozens of clusters."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "lab", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "agent", "user": {"token": "t"}}],
                "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "agent"}}],
                "current-context": "lab",
            }
        )
    )
    api = load_client(str(kubeconfig))
    assert api.configuration.connection_pool_maxsize == CONNECTION_POOL >= 64
    assert api.rest_client.pool_manager.connection_pool_kw["maxsize"] == CONNECTION_POOL
