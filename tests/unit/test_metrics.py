"""The agent's metrics and health endpoints: the verdicts, the gauges read from a cluster's
state, the counters at the places things happen, and a real HTTP round trip on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import http.client
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, generate_latest

from tandem.kube.errors import Conflict, Forbidden, Unavailable
from tandem.kube.lease import LeaseRecord
from tandem.metrics_server import MetricsServer, Reply
from tandem_agent import metrics
from tandem_agent.agent import ClusterAgent, intent_of
from tandem_agent.core import (
    Action,
    ChainState,
    Decision,
    Holding,
    LeaseView,
    Serving,
    Verdict,
    primary_verdict,
    replica_verdict,
)
from tandem_agent.drivers.drbd import PeerStatus, ResourceStatus
from tandem_agent.drivers.postgres import PostgresStatus
from tandem_agent.kube import Kube
from tandem_agent.metrics import (
    AgentEvents,
    ClusterEvents,
    ClusterView,
    NodeState,
    api_error_kind,
    health_reply,
    view_of,
)
from tandem_agent.watchdog import NoWatchdog
from tests.unit.test_refused_clusters import MAIL, builder, world

PRIMARY = Serving(
    node="mail1",
    acting_epoch=7,
    lease_holder="mail1",
    lease_epoch=7,
    chain=ChainState.UP,
    chain_epoch=7,
    following=None,
    has_postgres=True,
)
STANDBY = Serving(
    node="mail1",
    acting_epoch=None,
    lease_holder="mail2",
    lease_epoch=7,
    chain=ChainState.DOWN,
    chain_epoch=None,
    following=("mail2", 7),
    has_postgres=True,
    postgres_streaming=True,
)


def with_(s: Serving, **changes: Any) -> Serving:
    return dataclasses.replace(s, **changes)


# --- the verdicts ------------------------------------------------------------------------------


def test_primary_verdict_needs_the_lease_and_the_chain_up_for_its_epoch() -> None:
    assert primary_verdict(PRIMARY).ok
    assert primary_verdict(PRIMARY).reason == "Primary: chain up at epoch 7"
    cases = {
        "NotPrimary: mail2 holds the Lease": with_(PRIMARY, acting_epoch=None, lease_holder="mail2"),
        "NotPrimary: nobody holds the Lease": with_(PRIMARY, acting_epoch=None, lease_holder=None),
        "NotActing: the Lease names this node but no renew succeeded within renewDeadline": with_(
            PRIMARY, acting_epoch=None
        ),
        "ChainNotUp: this node holds the Lease at epoch 7; its chain is Unknown": with_(
            PRIMARY, chain=ChainState.UNKNOWN
        ),
        "ChainNotUp: this node holds the Lease at epoch 7; its chain is Up": with_(PRIMARY, chain_epoch=6),
    }
    for reason, serving in cases.items():
        assert primary_verdict(serving) == Verdict(False, reason)
    assert not primary_verdict(STANDBY).ok


def test_replica_verdict_needs_a_down_chain_following_the_holder_and_streaming() -> None:
    assert replica_verdict(STANDBY).ok
    assert replica_verdict(STANDBY).reason == "Replicating: standby of mail2 at epoch 7"
    cases = {
        "NotStandby": PRIMARY,
        "NotStandby: the chain is Unknown on this node": with_(STANDBY, chain=ChainState.UNKNOWN),
        "NoPrimary: no other node holds the Lease": with_(STANDBY, lease_holder=None),
        "NotFollowing: not rejoined as a standby of mail2 at epoch 7 yet": with_(STANDBY, following=("mail2", 6)),
        "VolumesNotJoined": with_(STANDBY, volumes_joined=False),
        "NotStreaming: PostgreSQL here is not streaming from mail2": with_(STANDBY, postgres_streaming=False),
        "NotStreaming": with_(STANDBY, postgres_streaming=None),
    }
    for reason, serving in cases.items():
        verdict = replica_verdict(serving)
        assert not verdict.ok and verdict.reason.startswith(reason), (reason, verdict)
    no_postgres = with_(STANDBY, has_postgres=False, postgres_streaming=None)
    assert replica_verdict(no_postgres).ok


# --- the counters --------------------------------------------------------------------------------


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def events_registry(events: AgentEvents) -> CollectorRegistry:
    return metrics.registry(lambda: NodeState("mail1", {}, {}), events)


MAIL_LABELS = {"namespace": "a", "cluster": "mail", "node": "mail1"}


def test_renew_writes_are_timed_and_failures_counted_takes_are_not() -> None:
    events = AgentEvents()
    registry = events_registry(events)
    cluster = ClusterEvents("a", "mail", "mail1", events)
    with cluster.lease_write(renew=True):
        pass
    with pytest.raises(Unavailable), cluster.lease_write(renew=True):
        raise Unavailable(None, "timed out")
    with pytest.raises(Conflict), cluster.lease_write(renew=False):
        raise Conflict(409, "someone else took it")
    assert sample(registry, "tandem_agent_lease_renew_seconds_count", **MAIL_LABELS) == 2
    assert sample(registry, "tandem_agent_lease_renew_failures_total", **MAIL_LABELS) == 1
    cluster.took_over("LeaseExpired")
    cluster.stepped_down("Switchover")
    cluster.stepped_down("Switchover")
    cluster.repair_attempted("PostgreSQL")
    assert sample(registry, "tandem_agent_takeovers_total", **MAIL_LABELS, reason="LeaseExpired") == 1
    assert sample(registry, "tandem_agent_stepdowns_total", **MAIL_LABELS, reason="Switchover") == 2
    assert sample(registry, "tandem_agent_repairs_total", **MAIL_LABELS, kind="PostgreSQL") == 1


def test_api_errors_are_counted_by_kind_and_404_is_an_answer() -> None:
    assert [api_error_kind(s) for s in (None, 401, 403, 404, 409, 422, 429, 500, 503, 400)] == [
        "Unavailable",
        "Unauthorized",
        "Forbidden",
        None,
        "Conflict",
        "Invalid",
        "TooManyRequests",
        "ServerError",
        "ServerError",
        "Rejected",
    ]
    registry = events_registry(metrics.EVENTS)
    before = sample(registry, "tandem_agent_api_errors_total", kind="Forbidden") or 0.0
    no_watches: Any = None
    kube = Kube(client.ApiClient(), "a", "mail1", no_watches)

    def forbidden(**_: Any) -> None:
        raise ApiException(status=403, reason="Forbidden")

    with pytest.raises(Forbidden):
        kube._call(forbidden)
    assert sample(registry, "tandem_agent_api_errors_total", kind="Forbidden") == before + 1


class FakeKube:
    """The Lease as the API server would answer it: a conflict first, then a write that lands."""

    namespace = "a"
    node = "mail1"

    def __init__(self) -> None:
        self.answers: list[LeaseRecord | Exception] = []

    def write_lease(
        self, cluster: str, holder: str | None, epoch: int, acquire: bool, sync_standbys: tuple[str, ...] | None = None
    ) -> LeaseRecord:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def read_lease(self, cluster: str) -> LeaseRecord | None:
        return LeaseRecord("mail2", 7, resource_version="5")

    read_lease_now = read_lease

    def report(self, cluster: str, entry: dict[str, Any]) -> None:
        return None


@pytest.fixture
def agent(tmp_path: Path) -> ClusterAgent:
    """The mail cluster's agent on mail1, as the node agent builds it; its threads never run."""
    runner = builder(tmp_path, world(MAIL))(MAIL)
    kube: Any = FakeKube()
    built = ClusterAgent(kube, runner.cluster, runner, intent_of(MAIL, "mail1"), lambda why: None, NoWatchdog())
    built.events = ClusterEvents("a", "mail", "mail1", AgentEvents())
    return built


def test_the_keeper_counts_a_refused_renew_and_a_takeover(agent: ClusterAgent) -> None:
    registry = events_registry(agent.events.events)
    kube: Any = agent.kube
    kube.answers = [Conflict(409, "someone else wrote it"), LeaseRecord("mail1", 8, resource_version="6")]
    agent._write_lease(7, acquire=False)
    agent._write_lease(8, acquire=True, cause="LeaseExpired")
    assert sample(registry, "tandem_agent_lease_renew_failures_total", **MAIL_LABELS) == 1
    assert sample(registry, "tandem_agent_lease_renew_seconds_count", **MAIL_LABELS) == 1
    assert sample(registry, "tandem_agent_takeovers_total", **MAIL_LABELS, reason="LeaseExpired") == 1
    holding = agent.shared().holding
    assert holding is not None and holding.epoch == 8


def test_a_tear_down_of_a_chain_that_was_up_is_a_stepdown(agent: ClusterAgent) -> None:
    registry = events_registry(agent.events.events)
    runner: Any = agent.runner
    runner.tear_down = lambda: []
    runner.state = ChainState.UP
    agent._execute(Decision(Action.TEAR_DOWN, "planned switchover to mail2", cause="Switchover"))
    runner.state = ChainState.UNKNOWN  # a tear-down tried again after a failed step
    agent._execute(Decision(Action.TEAR_DOWN, "planned switchover to mail2", cause="Switchover"))
    assert sample(registry, "tandem_agent_stepdowns_total", **MAIL_LABELS, reason="Switchover") == 1


# --- what a scrape reads -----------------------------------------------------------------------


def drbd(role: str, out_of_sync: int) -> ResourceStatus:
    peer = PeerStatus("mail2", 1, "Connected", "Secondary", "UpToDate", "Established", out_of_sync, None, False)
    return ResourceStatus("mail-store", 0, role, False, "UpToDate", False, None, (peer,))


def test_view_of_a_primary_reads_the_agent_as_it_is(agent: ClusterAgent) -> None:
    agent._change(lease=LeaseView("mail1", 7, "5", time.monotonic()), holding=Holding(7, time.monotonic()))
    agent.runner.state, agent.runner.epoch = ChainState.UP, 7
    agent.runner.drbd = {"mail-store": drbd("Primary", 4096)}
    agent._change(postgres_seen=PostgresStatus(running=True, role="primary"))
    agent.monitor.activate(True)
    agent.monitor.repairing("PostgreSQL/postgresql")

    view = view_of(agent)

    assert (view.namespace, view.cluster, view.epoch) == ("a", "mail", 7)
    assert primary_verdict(view.serving).ok and not replica_verdict(view.serving).ok
    assert ("PostgreSQL", "postgresql", False) in view.resources
    assert ("Volume", "mail-store", True) in view.resources  # not checked yet: Unknown
    assert view.drbd_out_of_sync == (("mail-store", 4096),)
    assert view.postgres_lag_seconds is None


def test_view_of_a_standby_reads_its_lag_and_streaming(agent: ClusterAgent) -> None:
    agent._change(lease=LeaseView("mail2", 8, "5", time.monotonic()))
    agent.runner.state, agent.runner.following = ChainState.DOWN, ("mail2", 8)
    agent.runner.drbd = {"mail-store": drbd("Secondary", 0)}
    agent._change(postgres_seen=PostgresStatus(running=True, role="standby", receiving=True, replay_lag_s=1.5))

    view = view_of(agent)

    assert view.epoch == 8 and view.resources == ()
    assert replica_verdict(view.serving).ok and not primary_verdict(view.serving).ok
    assert view.postgres_lag_seconds == 1.5
    agent._change(postgres_seen=PostgresStatus(running=True, role="standby", receiving=False, replay_lag_s=40.0))
    stopped = view_of(agent)
    assert replica_verdict(stopped.serving).reason.startswith("NotStreaming")
    assert stopped.postgres_lag_seconds == 40.0


def test_each_report_keeps_the_postgres_status_it_read_for_the_next_scrape(agent: ClusterAgent) -> None:
    streaming = PostgresStatus(running=True, role="standby", receiving=True, replay_lag_s=0.0)
    runner: Any = agent.runner
    runner.postgres_status = lambda: streaming
    runner.volume_reports = lambda: []
    agent._service_reports = lambda: []  # type: ignore[method-assign]
    agent._report(Decision(Action.WAIT, "standby"), "standby", agent._postgres_status())
    assert agent.shared().postgres_seen is streaming


def node() -> NodeState:
    mail = ClusterView(
        "a",
        "mail",
        PRIMARY,
        7,
        resources=(("PostgreSQL", "postgresql", True), ("Service", "web", False)),
        drbd_out_of_sync=(("mail-store", 4096),),
    )
    web = ClusterView("b", "web", STANDBY, 7, postgres_lag_seconds=2.5)
    return NodeState(
        "mail1",
        {"a/mail": mail, "b/web": web},
        {"a/broken": "spec.chain.mounts[0].volume: DRBDVolume x is not in the chain"},
    )


def test_the_gauges_render_from_the_node_state() -> None:
    registry = metrics.registry(node, AgentEvents())
    web = {"namespace": "b", "cluster": "web", "node": "mail1"}
    assert sample(registry, "tandem_agent_primary", **MAIL_LABELS) == 1
    assert sample(registry, "tandem_agent_primary", **web) == 0
    assert sample(registry, "tandem_agent_replicating", **MAIL_LABELS) == 0
    assert sample(registry, "tandem_agent_replicating", **web) == 1
    assert sample(registry, "tandem_agent_epoch", **web) == 7
    assert (
        sample(registry, "tandem_agent_resource_healthy", **MAIL_LABELS, kind="PostgreSQL", resource="postgresql") == 1
    )
    assert sample(registry, "tandem_agent_resource_healthy", **MAIL_LABELS, kind="Service", resource="web") == 0
    assert sample(registry, "tandem_agent_postgres_lag_seconds", **web) == 2.5
    assert sample(registry, "tandem_agent_postgres_lag_seconds", **MAIL_LABELS) is None
    assert sample(registry, "tandem_agent_drbd_out_of_sync_bytes", **MAIL_LABELS, volume="mail-store") == 4096
    text = generate_latest(registry).decode()
    assert "# TYPE tandem_agent_primary gauge" in text
    assert 'tandem_agent_primary{cluster="mail",namespace="a",node="mail1"} 1.0' in text


def test_health_replies() -> None:
    state = node()
    assert health_reply("/primary/a/mail", state) == Reply(200, "Primary: chain up at epoch 7\n")
    assert health_reply("/replica/a/mail", state) == Reply(503, "NotStandby: the chain is Up on this node\n")
    assert health_reply("/replica/b/web/", state) == Reply(200, "Replicating: standby of mail2 at epoch 7\n")
    refused = health_reply("/primary/a/broken", state)
    assert refused is not None and refused.status == 503
    assert refused.body.startswith("InvalidSpec: spec.chain.mounts[0].volume")
    unknown = health_reply("/primary/a/ghost", state)
    assert unknown is not None and unknown.status == 404 and "a/ghost" in unknown.body
    assert health_reply("/primary/a", state) is None
    assert health_reply("/leader/a/mail", state) is None


# --- the HTTP server -------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    started = metrics.start(("127.0.0.1", 0), node, AgentEvents())
    assert started is not None
    try:
        yield started
    finally:
        started.stop()


def get(server: MetricsServer, path: str, method: str = "GET") -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        conn.close()


def test_a_real_round_trip(server: MetricsServer) -> None:
    status, content_type, body = get(server, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert 'tandem_agent_primary{cluster="mail",namespace="a",node="mail1"} 1.0' in body
    assert get(server, "/healthz")[::2] == (200, "ok\n")
    assert get(server, "/primary/a/mail")[::2] == (200, "Primary: chain up at epoch 7\n")
    assert get(server, "/replica/a/mail")[0] == 503
    assert get(server, "/replica/b/web")[::2] == (200, "Replicating: standby of mail2 at epoch 7\n")
    assert get(server, "/primary/a/ghost")[0] == 404
    assert get(server, "/nothing")[0] == 404
    assert get(server, "/primary/a/mail", method="HEAD")[::2] == (200, "")


def test_the_agent_takes_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from tandem_agent.__main__ import parse_args

    monkeypatch.delenv("TANDEM_METRICS_ADDRESS", raising=False)
    assert parse_args(["--node", "n"]).metrics_address == ("", 9464)
    assert parse_args(["--node", "n", "--metrics-address", ""]).metrics_address is None
    monkeypatch.setenv("TANDEM_METRICS_ADDRESS", "10.0.0.5:9100")
    assert parse_args(["--node", "n"]).metrics_address == ("10.0.0.5", 9100)
