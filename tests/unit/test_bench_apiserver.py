"""The API server's request counters as the lab benchmarks read them: a made-up /metrics."""

from __future__ import annotations

import pytest

from bench.apiserver import by_verb_and_resource, is_read, rates

METRICS = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",resource="leases",scope="resource",subresource="",verb="GET"} 120
apiserver_request_total{code="404",resource="leases",scope="resource",subresource="",verb="GET"} 3
apiserver_request_total{code="200",resource="leases",scope="resource",subresource="",verb="PUT"} 40
apiserver_request_total{code="200",resource="haclusters",scope="resource",subresource="status",verb="PATCH"} 7
apiserver_request_total{code="200",resource="",scope="",subresource="/metrics",verb="GET"} 5
apiserver_request_total{code="0",resource="haclusters",scope="namespace",subresource="",verb="WATCH"} 2
apiserver_longrunning_requests{resource="haclusters",scope="namespace",subresource="",verb="WATCH"} 4
apiserver_request_duration_seconds_bucket{resource="leases",verb="GET",le="0.1"} 99
"""


def test_requests_are_summed_by_verb_and_resource_over_the_other_labels() -> None:
    assert by_verb_and_resource(METRICS) == {
        ("GET", "leases"): 123.0,
        ("PUT", "leases"): 40.0,
        ("PATCH", "haclusters/status"): 7.0,
        ("WATCH", "haclusters"): 2.0,
    }


def test_non_resource_requests_such_as_metrics_reads_are_left_out() -> None:
    assert all(resource for _verb, resource in by_verb_and_resource(METRICS))


def test_another_metric_is_read_by_name() -> None:
    assert by_verb_and_resource(METRICS, "apiserver_longrunning_requests") == {("WATCH", "haclusters"): 4.0}


@pytest.mark.parametrize(
    ("verb", "read"),
    [
        ("GET", True),
        ("LIST", True),
        ("WATCH", True),
        ("PUT", False),
        ("PATCH", False),
        ("APPLY", False),
        ("POST", False),
        ("DELETE", False),
    ],
)
def test_get_list_and_watch_read_every_other_verb_writes(verb: str, read: bool) -> None:
    assert is_read(verb) is read


def test_rates_are_the_difference_over_the_window_without_the_idle_ones() -> None:
    before = {("GET", "leases"): 100.0, ("PUT", "leases"): 10.0}
    after = {("GET", "leases"): 160.0, ("PUT", "leases"): 10.0, ("POST", "events"): 3.0}
    assert rates(before, after, 30.0) == {("GET", "leases"): 2.0, ("POST", "events"): 0.1}


def test_a_window_of_no_time_is_refused() -> None:
    with pytest.raises(ValueError, match="apart in time"):
        rates({}, {}, 0.0)
