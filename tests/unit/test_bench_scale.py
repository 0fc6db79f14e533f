"""Pure parts of `bench.scale`: the generated clusters, who is primary and settled, the
double-primary and end-state checks, /proc parsing, the per-cluster rates, the prober (against
an echo service on loopback), the table and the exit status. Nothing of the lab runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bench import scale
from tandem.api.floatingip import FloatingIPSpec
from tandem.api.hacluster import HAClusterSpec
from tandem.kube.lease import LeaseRecord
from tandem_lab.echo import make_server

NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)


def test_clusters_take_pairs_round_robin_each_with_its_own_address_and_unit() -> None:
    docs = scale.manifests(5, 3)
    clusters = [d for d in docs if d["kind"] == "HACluster"]
    vips = [d for d in docs if d["kind"] == "FloatingIP"]
    assert [[n["name"] for n in c["spec"]["nodes"]] for c in clusters] == [
        ["scale1", "scale2"],
        ["scale2", "scale3"],
        ["scale3", "scale1"],
        ["scale1", "scale2"],
        ["scale2", "scale3"],
    ]
    assert [c["spec"]["primary"] for c in clusters] == ["scale1", "scale2", "scale3", "scale1", "scale2"]
    assert [v["spec"]["addresses"][0]["start"] for v in vips] == [f"198.18.0.{2 + i}" for i in range(5)]
    units = [c["spec"]["chain"]["services"][0]["unit"] for c in clusters]
    assert units == [f"lab-echo@{10000 + i}.service" for i in range(5)]
    assert {n["replicationAddress"] for c in clusters for n in c["spec"]["nodes"]} == {
        "198.19.0.241",
        "198.19.0.242",
        "198.19.0.243",
    }
    for cluster, vip in zip(clusters, vips, strict=True):
        HAClusterSpec.model_validate(cluster["spec"])
        FloatingIPSpec.model_validate(vip["spec"])
        assert cluster["spec"]["chain"]["floatingIPs"] == [vip["metadata"]["name"]]
        assert vip["spec"]["cluster"] == cluster["metadata"]["name"]


def test_a_single_cluster_uses_two_of_the_nodes_asked_for() -> None:
    assert scale.nodes_used(scale.manifests(1, 3)) == ["scale1", "scale2"]
    assert scale.nodes_used(scale.manifests(12, 9)) == [f"scale{k}" for k in range(1, 10)]


def test_the_largest_run_fits_the_lab_subnet_without_touching_node_or_client_addresses() -> None:
    docs = scale.manifests(scale.MAX_CLUSTERS, scale.MAX_NODES)
    vips = {int(d["spec"]["addresses"][0]["start"].rsplit(".", 1)[1]) for d in docs if d["kind"] == "FloatingIP"}
    nodes = {
        int(n["replicationAddress"].rsplit(".", 1)[1])
        for d in docs
        if d["kind"] == "HACluster"
        for n in d["spec"]["nodes"]
    }
    assert len(vips) == scale.MAX_CLUSTERS
    assert not vips & nodes
    assert max(vips | nodes) < 250 and min(vips) > 1  # .250 the client, .1 the host


@pytest.mark.parametrize(
    ("clusters", "nodes", "field"),
    [
        (0, 3, "--clusters"),
        (scale.MAX_CLUSTERS + 1, 3, "--clusters"),
        (10, 1, "--nodes"),
        (10, scale.MAX_NODES + 1, "--nodes"),
    ],
)
def test_sizes_the_lab_cannot_hold_are_refused_naming_the_option(clusters: int, nodes: int, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} "):
        scale.manifests(clusters, nodes)


def test_the_node_with_the_most_leases_is_picked_the_first_by_name_on_a_tie() -> None:
    assert scale.most_primaries({"a": "n2", "b": "n2", "c": "n1", "d": None}) == "n2"
    assert scale.most_primaries({"a": "n3", "b": "n1", "c": "n3", "d": "n1"}) == "n1"


def test_no_holder_at_all_is_an_error() -> None:
    with pytest.raises(ValueError, match="no Lease has a holder"):
        scale.most_primaries({"a": None})


def hac(name: str, reports: list[dict[str, Any]], nodes: tuple[str, ...] = ("n1", "n2")) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"nodes": [{"name": n} for n in nodes]}, "status": {"nodes": reports}}


def report(node: str, role: str, eligible: bool | None = True, beat: datetime = NOW) -> dict[str, Any]:
    return {"name": node, "role": role, "eligible": eligible, "heartbeatTime": beat.strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_a_cluster_is_settled_with_its_holder_primary_and_the_other_an_eligible_standby() -> None:
    settled = hac("a", [report("n1", "Primary", None), report("n2", "Standby")])
    assert scale.unsettled([settled], {"a": "n1"}) == {}


@pytest.mark.parametrize(
    ("reports", "holder", "why"),
    [
        ([report("n1", "Standby"), report("n2", "Standby")], "n1", "n1 holds the Lease but reports Standby"),
        ([report("n1", "Primary"), report("n2", "Standby", False)], "n1", "n2 reports Standby, eligible False"),
        ([report("n1", "Primary")], "n1", "n2 has not reported"),
        ([report("n1", "Standby"), report("n2", "Standby")], None, "Lease held by None"),
        ([report("n1", "Primary"), report("n2", "Standby")], "n3", "n1 reports Primary, eligible True"),
    ],
)
def test_an_unsettled_cluster_says_why(reports: list[dict[str, Any]], holder: str | None, why: str) -> None:
    assert scale.unsettled([hac("a", reports)], {"a": holder}) == {"a": why}


def test_a_node_powered_on_again_counts_only_with_a_report_since() -> None:
    stale = hac("a", [report("n1", "Primary"), report("n2", "Standby", beat=NOW)])
    powered_on = datetime(2026, 12, 1, 9, 0, 5, 300000, tzinfo=UTC)
    assert scale.unsettled([stale], {"a": "n1"}, {"n2": powered_on}) == {"a": "n2 has not reported since 09:00:05"}
    fresh = hac(
        "a", [report("n1", "Primary"), report("n2", "Standby", beat=datetime(2026, 12, 1, 9, 0, 5, tzinfo=UTC))]
    )
    assert scale.unsettled([fresh], {"a": "n1"}, {"n2": powered_on}) == {}


def test_an_address_moving_between_two_reads_is_not_a_double_primary() -> None:
    first = [("n1", {"198.18.74.2"}), ("n2", {"198.18.74.2"})]
    assert scale.doubly_held(first, {"n1": set()}) == set()


def test_an_address_on_two_nodes_and_still_on_the_first_is_a_double_primary() -> None:
    first = [("n1", {"198.18.74.2", "198.18.74.3"}), ("n2", {"198.18.74.2"}), ("n3", set())]
    assert scale.doubly_held(first, {"n1": {"198.18.74.2"}, "n2": {"198.18.74.2"}}) == {"198.18.74.2"}


def test_the_end_state_wants_each_floating_ip_on_its_lease_holder_only() -> None:
    vips = {"a": "198.18.74.2", "b": "198.18.74.3", "c": "198.18.74.4", "d": "198.18.74.5"}
    held = {"n1": {"198.18.74.2", "198.18.74.3"}, "n2": {"198.18.74.3", "198.18.74.4"}, "n3": set()}
    assert scale.single_primary_problems({"a": "n1", "b": "n1", "c": "n1", "d": None}, vips, held) == {
        "b": "Lease holder n1, 198.18.74.3 on ['n1', 'n2']",
        "c": "Lease holder n1, 198.18.74.4 on ['n2']",
        "d": "Lease holder None, 198.18.74.5 on []",
    }


def test_cpu_seconds_count_the_threads_and_the_reaped_children(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale.os, "sysconf", lambda name: 100)
    # pid (comm with a space and a parenthesis) state ppid ... utime stime cutime cstime ...
    stat = "4242 (python3 (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 5 0"
    assert scale.cpu_seconds(stat) == pytest.approx(3.5)


def test_memory_is_read_from_the_status_lines() -> None:
    status = "Name:\tpython3\nVmHWM:\t  81234 kB\nVmRSS:\t   60000 kB\n"
    assert scale.status_kib(status, "VmRSS") == 60000
    assert scale.status_kib(status, "VmHWM") == 81234
    with pytest.raises(ValueError, match="no VmSwap"):
        scale.status_kib(status, "VmSwap")


def test_usage_over_a_window_and_a_process_gone_by_its_end() -> None:
    before = scale.ProcessReading(7, 10.0, 2.0, 1000, 2000)
    after = scale.ProcessReading(7, 40.0, 5.0, 102400, 204800)
    assert scale.usage(before, after) == {"pid": 7, "cpu_s_per_s": 0.1, "rss_mib": 100.0, "peak_rss_mib": 200.0}
    assert scale.usage(before, None)["cpu_s_per_s"] is None


def test_a_process_that_is_not_there_reads_as_none() -> None:
    assert scale.ProcessReading.of(2**22 + 12345) is None


def test_per_cluster_rates_are_the_labs_less_the_api_servers_own() -> None:
    lab = {("GET", "leases"): 21.0, ("PUT", "leases"): 10.5, ("POST", "events"): 0.5, ("LIST", "haclusters"): 1.0}
    alone = {("PUT", "leases"): 0.5, ("GET", "namespaces"): 1.0}
    found = scale.per_cluster(lab, alone, 10)
    assert found["reads_per_s_per_cluster"] == pytest.approx(2.1)
    assert found["writes_per_s_per_cluster"] == pytest.approx(1.05)
    assert found["by_request_per_s_per_cluster"] == {
        "LIST haclusters": 0.1,
        "GET leases": 2.1,
        "GET namespaces": -0.1,
        "POST events": 0.05,
        "PUT leases": 1.0,
    }


def test_recovery_times_count_from_the_fault_and_name_those_never_served() -> None:
    found = scale.recovery(100.0, {"a": 103.0, "b": 104.5}, ["a", "b", "c"], "n1")
    assert found == {
        "node": "n1",
        "clusters": 3,
        "unrecovered": 1,
        "p50_s": 3.0,
        "p99_s": 4.5,
        "max_s": 4.5,
        "times_s": {"a": 3.0, "b": 4.5},
    }
    assert scale.recovery(100.0, {}, ["a"], "n1") == {"node": "n1", "clusters": 1, "unrecovered": 1, "times_s": {}}


@pytest.fixture
def echo() -> Iterator[int]:
    server = make_server("node-a", "127.0.0.1", 0, None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_the_prober_times_each_accepted_answer_and_leaves_out_the_silent(echo: int) -> None:
    prober = scale.Prober(None, interval=0.05, timeout=0.5)
    targets = {"up": scale.Target("127.0.0.1", echo), "down": scale.Target("127.0.0.1", closed_port())}
    started = time.monotonic()
    found = prober.first_accepted(targets, lambda node: node is not None, started + 0.5)
    assert list(found) == ["up"]
    assert started <= found["up"] < started + 0.5


def test_the_prober_keeps_asking_until_the_answer_is_accepted(echo: int) -> None:
    prober = scale.Prober(None, interval=0.05)
    started = time.monotonic()
    found = prober.first_accepted(
        {"up": scale.Target("127.0.0.1", echo)}, lambda node: node not in (None, "node-a"), started + 0.3
    )
    assert found == {}
    assert time.monotonic() - started >= 0.3


def results(**changes: Any) -> dict[str, Any]:
    shaped: dict[str, Any] = {
        "clusters": 3,
        "nodes": 3,
        "revision": "0123456789abcdef",
        "all_served_s": 40.0,
        "all_settled_s": 45.0,
        "parameters": {"window_s": 30.0},
        "api": {
            "reads_per_s_per_cluster": 20.0,
            "writes_per_s_per_cluster": 0.9,
            "by_request_per_s_per_cluster": {"GET leases": 20.0, "PUT leases": 0.9},
            "open_watches": {"haclusters": 1.0, "nodes": 2.0},
        },
        "processes": {
            "operator": {"cpu_s_per_s": 0.1, "rss_mib": 80.0, "peak_rss_mib": 90.0},
            "agent scale1": {"cpu_s_per_s": None, "rss_mib": None, "peak_rss_mib": None},
            "agent scale2": {"cpu_s_per_s": 0.2, "rss_mib": 60.0, "peak_rss_mib": 70.0},
        },
        "power_off": {"node": "scale1", "clusters": 1, "unrecovered": 0, "p50_s": 3.6, "p99_s": 3.6, "max_s": 3.6},
        "cordon": {"node": "scale2", "clusters": 2, "unrecovered": 2},
        "double_primary_instants": 0,
        "vip_samples": 100,
        "end_state_clusters_not_single_primary": 0,
    }
    shaped |= changes
    shaped["targets"] = scale.targets_met(shaped)
    return shaped


def test_targets_are_judged_from_the_results() -> None:
    assert scale.targets_met(results()) == {
        "writes <= 1.0/s per cluster": True,
        "reads <= 0.2/s per cluster": False,
        "power-off p99 <= 5.0 s, every cluster served again": True,
        "no double primary": True,
        "agent peak RSS <= 200 MiB": False,
    }  # scale1's was gone
    agents_up = results(processes={"agent scale1": {"peak_rss_mib": 150.0}})
    assert scale.targets_met(agents_up)["agent peak RSS <= 200 MiB"] is True
    agents_big = results(processes={"agent scale1": {"peak_rss_mib": 250.0}})
    assert scale.targets_met(agents_big)["agent peak RSS <= 200 MiB"] is False


def test_the_table_shows_every_section_and_a_dash_for_what_was_not_measured() -> None:
    lines = scale.table(results())
    text = "\n".join(lines)
    assert "3 clusters on 3 nodes (revision 0123456789ab)" in lines[0]
    assert any(line.split() == ["GET", "leases", "20.000"] for line in lines)
    assert "  open watches (beyond the API server's own): haclusters 1, nodes 2" in lines
    assert any(line.split() == ["agent", "scale1", "-", "-", "-"] for line in lines)
    assert any(line.split() == ["cordon", "scale2", "2", "-", "-", "-", "2"] for line in lines)
    assert "target NOT met: reads <= 0.2/s per cluster" in text


def test_a_run_stopped_early_shows_what_it_measured_and_why_it_stopped() -> None:
    stopped: dict[str, Any] = {
        "clusters": 200,
        "nodes": 3,
        "revision": "0123456789abcdef",
        "parameters": {"window_s": 30.0},
        "error": "TimeoutError: 3 clusters never served",
        "double_primary_instants": 0,
        "vip_samples": 0,
    }
    stopped["targets"] = scale.targets_met(stopped)
    lines = scale.table(stopped)
    assert "STOPPED: TimeoutError: 3 clusters never served" in lines
    assert not any(line.startswith("steady state") or line.split()[:1] == ["power-off"] for line in lines)
    assert not any(stopped["targets"].values())
    assert scale.exit_status(stopped) == 1


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({}, 1),  # the cordon left 2 clusters unserved
        ({"cordon": {"node": "scale2", "clusters": 2, "unrecovered": 0}}, 0),
    ],
)
def test_exit_status(change: dict[str, Any], status: int) -> None:
    assert scale.exit_status(results(**change)) == status


@pytest.mark.parametrize("failure", [{"double_primary_instants": 1}, {"end_state_clusters_not_single_primary": 2}])
def test_a_double_primary_fails_the_run(failure: dict[str, Any]) -> None:
    served = {"cordon": {"node": "scale2", "clusters": 2, "unrecovered": 0}}
    assert scale.exit_status(results(**served, **failure)) == 1


def test_takeovers_in_the_window_count_the_epochs_gained() -> None:
    """A window in which Leases changed hands measured a recovery, not a steady state."""
    before = {"s000": LeaseRecord("a", 2), "s001": LeaseRecord("b", 1), "gone": LeaseRecord("c", 4)}
    assert scale.takeovers(before, before) == 0
    after = {"s000": LeaseRecord("b", 4), "s001": LeaseRecord("b", 1), "new": LeaseRecord("a", 1)}
    assert scale.takeovers(before, after) == 2


def test_a_window_with_takeovers_says_it_was_no_steady_state() -> None:
    shaped = results()
    shaped["window_takeovers"] = 3
    shaped["targets"] = scale.targets_met(shaped)
    assert "NOT A STEADY STATE: the Leases changed hands 3 times in the window" in "\n".join(scale.table(shaped))
    shaped["window_takeovers"] = 0
    assert "NOT A STEADY STATE" not in "\n".join(scale.table(shaped))


def test_the_window_waits_until_no_lease_changed_hands_for_the_quiet_time() -> None:
    clock = [0.0]
    epochs = iter([1, 1, 2, 2, 2, 2, 2])  # a takeover in the second second, then quiet

    def read() -> dict[str, LeaseRecord]:
        return {"s000": LeaseRecord("a", next(epochs))}

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    assert scale.wait_quiet(read, quiet=3.0, timeout=60.0, clock=lambda: clock[0], sleep=sleep) == 5.0
    with pytest.raises(TimeoutError, match="still changed hands after 2s"):
        scale.wait_quiet(
            lambda: {"s000": LeaseRecord("a", int(clock[0]))},
            quiet=3.0,
            timeout=2.0,
            clock=lambda: clock[0],
            sleep=sleep,
        )
