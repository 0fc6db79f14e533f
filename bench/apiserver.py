"""The API server's own request counters, as the lab benchmarks read them from its /metrics.

`apiserver_request_total` counts every request the API server finished, labelled with its verb
(GET, LIST, WATCH, POST, PUT, PATCH, APPLY, DELETE, ...) and resource (empty for non-resource
paths such as /metrics itself). A benchmark reads it twice and divides the difference by the
time between.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

READ_VERBS = frozenset({"GET", "LIST", "WATCH", "WATCHLIST"})
REQUESTS = "apiserver_request_total"
OPEN_LONG_RUNNING = "apiserver_longrunning_requests"

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

RequestKey = tuple[str, str]  # (verb, resource)


def by_verb_and_resource(metrics: str, name: str = REQUESTS) -> dict[RequestKey, float]:
    """The samples of metric `name` in a Prometheus text exposition, summed by (verb,
    resource) over every other label (code, scope, group, version, ...). Requests for
    non-resource paths (/metrics, /readyz, discovery) have no resource and are left out."""
    totals: dict[RequestKey, float] = {}
    for line in metrics.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != name:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        resource = labels.get("resource", "")
        if not resource:
            continue
        if labels.get("subresource"):
            resource = f"{resource}/{labels['subresource']}"
        key = (labels.get("verb", ""), resource)
        totals[key] = totals.get(key, 0.0) + float(match["value"])
    return totals


def is_read(verb: str) -> bool:
    """GET, LIST and WATCH read; every other verb (POST, PUT, PATCH, APPLY, DELETE, ...)
    writes."""
    return verb in READ_VERBS


def rates(
    before: Mapping[RequestKey, float], after: Mapping[RequestKey, float], seconds: float
) -> dict[RequestKey, float]:
    """Requests per second of each (verb, resource) between two readings `seconds` apart;
    those that made none are left out."""
    if seconds <= 0:
        raise ValueError(f"a window of {seconds} s: the readings must be apart in time")
    found = {key: (after.get(key, 0.0) - before.get(key, 0.0)) / seconds for key in set(before) | set(after)}
    return {key: rate for key, rate in found.items() if rate > 0}
