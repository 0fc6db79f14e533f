"""The watch-fed mirror without a server: a scripted list call answers LISTs and WATCHes as the
API server's JSON, so the mirror's bookkeeping (events applied, 410 re-listed, a failure or
a resync makes it unsynced) is checked in isolation; and the agent's Lease read prefers its
own newer write to a mirror that is behind. tests/integration/test_agent_watches_on_the_api_server.py
runs it against the real kube-apiserver."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tandem.kube.errors import Unavailable
from tandem.kube.lease import parse_lease
from tandem.kube.watch import WatchCache, older
from tandem_agent.kube import Kube
from tandem_lab.harness import wait_until

WAIT = 5.0


def lease(name: str, version: int, holder: str = "a") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(version)},
        "spec": {"holderIdentity": holder},
    }


class Listed:
    def __init__(self, items: list[dict[str, Any]], version: int) -> None:
        self.data = json.dumps({"items": items, "metadata": {"resourceVersion": str(version)}})


class Stream:
    """One WATCH: yields the events put into it until it is closed or ended."""

    END = object()

    def __init__(self) -> None:
        self.events: queue.Queue[Any] = queue.Queue()
        self.closed = threading.Event()
        self.shut_down = False

    def send(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.put((json.dumps({"type": kind, "object": obj}) + "\n").encode())

    def end(self) -> None:
        self.events.put(self.END)

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        while not self.closed.is_set():
            try:
                chunk = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if chunk is self.END:
                return
            yield chunk

    def close(self) -> None:
        self.closed.set()

    @property
    def connection(self) -> Stream:
        return self  # urllib3's response.connection.sock: the socket the mirror shuts down

    @property
    def sock(self) -> Stream:
        return self

    def shutdown(self, how: int) -> None:
        self.shut_down = True
        self.closed.set()


class Server:
    """The list call: each LIST answers the current objects, each WATCH a new Stream."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 10
        self.lists: list[int] = []
        self.watches: queue.Queue[tuple[str, Stream]] = queue.Queue()
        self.down = False

    def __call__(self, *args: Any, watch: bool = False, resource_version: str = "", **kwargs: Any) -> Any:
        if self.down:
            raise ConnectionRefusedError("connection refused")
        if not watch:
            self.lists.append(self.version)
            return Listed(list(self.objects.values()), self.version)
        stream = Stream()
        self.watches.put((resource_version, stream))
        return stream

    def next_watch(self) -> tuple[str, Stream]:
        return self.watches.get(timeout=WAIT)


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def cache(server: Server) -> Iterator[WatchCache]:
    server.objects["x"] = lease("x", 10)
    mirror = WatchCache("leases", server).start()
    yield mirror
    mirror.stop()


def test_the_list_then_each_event_shows_in_the_mirror(server: Server, cache: WatchCache) -> None:
    assert cache.wait_synced(WAIT)
    assert cache.get("ns", "x") == lease("x", 10)
    since, stream = server.next_watch()
    assert since == "10"  # the watch goes on from the list's resourceVersion
    stream.send("MODIFIED", lease("x", 11, holder="b"))
    stream.send("ADDED", lease("y", 12))
    wait_until(lambda: cache.get("ns", "y") is not None, WAIT, "y added", interval=0.01)
    assert cache.get("ns", "x") == lease("x", 11, holder="b")
    stream.send("DELETED", lease("x", 13))
    wait_until(lambda: cache.get("ns", "x") is None, WAIT, "x deleted", interval=0.01)
    assert [o["metadata"]["name"] for o in cache.items()] == ["y"]
    assert cache.items("other") == []


def test_items_copies_each_version_of_an_object_once(server: Server) -> None:
    server.objects |= {"x": lease("x", 10), "y": lease("y", 10)}
    cache = WatchCache("leases", server).start()
    assert cache.wait_synced(WAIT)
    x, y = cache.items()
    assert cache.items()[0] is x and cache.items()[1] is y  # unchanged: the same copies
    _, stream = server.next_watch()
    stream.send("MODIFIED", lease("y", 11, holder="b"))
    wait_until(lambda: cache.items()[1] is not y, WAIT, "y copied again", interval=0.01)
    again_x, again_y = cache.items()
    assert again_x is x and again_y == lease("y", 11, holder="b")
    again_y["spec"]["holderIdentity"] = "changed by a reader"
    assert cache.get("ns", "y") == lease("y", 11, holder="b")  # the mirror's own is apart
    cache.stop()


def test_changes_count_lists_and_events_but_not_bookmarks(server: Server, cache: WatchCache) -> None:
    assert cache.wait_synced(WAIT)
    assert cache.changes() == 1  # the LIST
    _, stream = server.next_watch()
    stream.send("BOOKMARK", {"metadata": {"resourceVersion": "11"}})
    stream.send("MODIFIED", lease("x", 12))
    wait_until(lambda: cache.changes() == 2, WAIT, "the event counted", interval=0.01)
    server.down = True
    stream.send("ERROR", {"code": 500, "reason": "InternalError", "message": "etcd"})
    wait_until(lambda: not cache.wait_synced(0), WAIT, "the mirror unsynced", interval=0.01)
    with pytest.raises(Unavailable, match="not synced"):
        cache.changes()  # an unchanged count never hides an outage


def test_a_copy_is_returned_so_a_reader_cannot_change_the_mirror(cache: WatchCache) -> None:
    assert cache.wait_synced(WAIT)
    got = cache.get("ns", "x")
    assert got is not None
    got["spec"]["holderIdentity"] = "mallory"
    assert cache.get("ns", "x") == lease("x", 10)


def test_a_watch_the_server_ends_goes_on_from_the_last_version_without_a_list(
    server: Server, cache: WatchCache
) -> None:
    assert cache.wait_synced(WAIT)
    _, stream = server.next_watch()
    stream.send("MODIFIED", lease("x", 15))
    stream.send("BOOKMARK", {"metadata": {"resourceVersion": "17"}})
    stream.end()
    since, _ = server.next_watch()
    assert since == "17" and server.lists == [10]


def test_gone_lists_again(server: Server, cache: WatchCache) -> None:
    assert cache.wait_synced(WAIT)
    _, stream = server.next_watch()
    server.objects["x"], server.version = lease("x", 30, holder="c"), 30
    stream.send("ERROR", {"code": 410, "reason": "Expired", "message": "too old"})
    since, _ = server.next_watch()
    assert since == "30" and server.lists == [10, 30]
    assert cache.get("ns", "x") == lease("x", 30, holder="c")


def test_a_broken_watch_is_an_outage_until_a_list_succeeds(server: Server, cache: WatchCache) -> None:
    assert cache.wait_synced(WAIT)
    _, stream = server.next_watch()
    server.down = True
    stream.send("ERROR", {"code": 500, "reason": "InternalError", "message": "etcd"})
    wait_until(lambda: not cache.wait_synced(0), WAIT, "the mirror unsynced", interval=0.01)
    with pytest.raises(Unavailable, match="not synced"):
        cache.get("ns", "x")
    with pytest.raises(Unavailable):
        cache.items()
    server.down = False
    assert cache.wait_synced(WAIT)
    assert cache.get("ns", "x") == lease("x", 10)


def test_a_resync_cuts_the_watch_and_distrusts_the_mirror_until_it_listed_again(
    server: Server, cache: WatchCache
) -> None:
    """What a guarded write refused with 409 does: the watch was behind."""
    assert cache.wait_synced(WAIT)
    _, stream = server.next_watch()
    server.objects["x"], server.version = lease("x", 40, holder="b"), 40  # the watch missed it
    cache.resync()
    assert stream.shut_down  # not closed from this thread: that would wait for the read
    since, _ = server.next_watch()
    assert since == "40" and server.lists == [10, 40]
    assert cache.get("ns", "x") == lease("x", 40, holder="b")


def test_a_mirror_never_listed_is_unavailable(server: Server) -> None:
    server.down = True
    mirror = WatchCache("leases", server).start()
    try:
        assert not mirror.wait_synced(0.2)
        with pytest.raises(Unavailable, match="watch of leases"):
            mirror.get("ns", "x")
    finally:
        mirror.stop()


@pytest.mark.parametrize(
    ("version", "than", "is_older"),
    [
        ("9", "10", True),
        ("10", "10", False),
        ("11", "10", False),
        ("", "10", False),
        ("abc", "10", False),
        ("9", "", False),
    ],
)
def test_only_integer_versions_are_ever_older(version: str, than: str, is_older: bool) -> None:
    assert older(version, than) is is_older


class BehindWatches:
    """AgentWatches whose Lease mirror shows what it is told to, however old."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.body


def test_the_agents_own_newer_write_wins_over_a_watch_that_has_not_delivered_it() -> None:
    """Just after a release the keeper reads again: the mirror may still show the Lease held
    by this node, which must not be taken for a Lease to renew."""
    from kubernetes import client

    watches: Any = BehindWatches(lease("c-primary", 50, holder="a"))
    kube = Kube(client.ApiClient(), "ns", "a", watches)
    assert kube.read_lease("c") == parse_lease(lease("c-primary", 50, holder="a"))
    released = {**lease("c-primary", 51), "spec": {"holderIdentity": None}}
    kube._remember("c", released)  # what write_lease keeps of the API server's answer
    assert kube.read_lease("c") == parse_lease(released)  # the mirror still says 50
    watches.body = lease("c-primary", 52, holder="b")  # the watch caught up and went beyond
    assert kube.read_lease("c") == parse_lease(lease("c-primary", 52, holder="b"))
