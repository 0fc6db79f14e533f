"""A watch-fed mirror of one kind of object: LIST once, then WATCH from that resourceVersion.

Readers get the objects as plain dicts (the API server's JSON) without a request. The mirror
counts as synced only between a successful LIST and the next failure of its stream; a reader
of an unsynced mirror gets `Unavailable`, exactly as from a failed GET, so a stalled or broken
watch is an API outage to the code above it, never a silently old answer.

What a watch cannot show by itself is that it fell behind while its connection stayed open.
A caller that learns it (a guarded write refused with 409 Conflict that the mirror did not
foresee) calls `resync`: the stream's socket is shut down, the mirror is unsynced, and a fresh
LIST replaces it. Between two resyncs the server ends each WATCH after `server_timeout` seconds and the
mirror watches again from the last resourceVersion it saw (no LIST); a 410 Gone (that version
was compacted away) lists again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tandem.kube.errors import KubeError, Unavailable, kube_error

log = logging.getLogger(__name__)

SERVER_TIMEOUT = 300  # seconds the API server keeps one WATCH open (as kopf's default)
READ_TIMEOUT = SERVER_TIMEOUT + 30  # no byte for this long: the connection is dead
CONNECT_TIMEOUT = 2.0
RETRY_SECONDS = 0.5  # after a failed LIST or WATCH (each with a random 0-50 % more)
GONE = 410


def resource_version(obj: Mapping[str, Any]) -> str:
    """An object's metadata.resourceVersion ("" when it has none)."""
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def older(version: str, than: str) -> bool:
    """Whether one version of an object is known to predate another. The API server's
    resourceVersions are etcd revisions, integers that grow with every write. Kubernetes asks
    clients to treat them as opaque, so this serves one purpose only: to prefer a version the
    caller wrote or read itself over a watch that has not delivered it yet. Anything that is
    not an integer compares as not older: the watch is trusted."""
    if not (version.isdigit() and than.isdigit()):
        return False
    return int(version) < int(than)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class WatchCache:
    """The objects one list call returns, kept current by a thread.

    `list_call` is a generated client method (e.g. `CustomObjectsApi.list_cluster_custom_object`
    with `args`) that accepts `watch`, `resource_version`, `timeout_seconds`,
    `allow_watch_bookmarks` and `_preload_content`. `on_error` sees every failure (metrics)."""

    def __init__(
        self,
        what: str,
        list_call: Callable[..., Any],
        *args: Any,
        label_selector: str | None = None,
        on_error: Callable[[KubeError], None] | None = None,
    ) -> None:
        self.what = what
        self._list_call = list_call
        self._args = args
        self._selector = {"label_selector": label_selector} if label_selector else {}
        self._on_error = on_error
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        # Per object, the version last copied for `items` (the very dict `_objects` held) and
        # that copy.
        self._copies: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
        self._changes = 0  # LISTs and events applied: what `changes` counts
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._response: Any = None  # the open WATCH, closed by resync and stop
        self._relist = True
        self.last_error: KubeError | None = None  # why it is not synced, for the message
        self._thread = threading.Thread(target=self._run, name=f"watch {what}", daemon=True)

    # --- readers ------------------------------------------------------------------------------
    def start(self) -> WatchCache:
        self._thread.start()
        return self

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as last seen (a copy), None when it does not exist; Unavailable when the
        mirror is not synced."""
        with self._lock:
            self._require_synced()
            obj = self._objects.get((namespace, name))
            return None if obj is None else json.loads(json.dumps(obj))

    def items(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object (of `namespace`, when given), as copies; Unavailable when not synced.

        Each version of an object is copied once and that copy is given to every later reader
        of the same version, so the readers must not change it. A reader reading every object
        twice a second while a few change (an agent, with hundreds of clusters whose status
        is written every few seconds) then copies only those few."""
        with self._lock:
            self._require_synced()
            chosen = [(k, o) for k, o in sorted(self._objects.items()) if namespace is None or k[0] == namespace]
            copies = [self._copy(k, o) for k, o in chosen]
            self._copies = {k: kept for k, kept in self._copies.items() if k in self._objects}
            return copies

    def _copy(self, key: tuple[str, str], obj: dict[str, Any]) -> dict[str, Any]:
        """The copy of this version of the object (made now when it has none yet)."""
        kept = self._copies.get(key)
        if kept is not None and kept[0] is obj:
            return kept[1]
        copied: dict[str, Any] = json.loads(json.dumps(obj))
        self._copies[key] = (obj, copied)
        return copied

    def changes(self) -> int:
        """How many times what the mirror holds was replaced or changed (a LIST, an event):
        a reader that saw the same count saw the same objects. Unavailable when not synced."""
        with self._lock:
            self._require_synced()
            return self._changes

    def _require_synced(self) -> None:
        if not self._synced.is_set():
            why = f": {self.last_error}" if self.last_error is not None else ""
            raise Unavailable(
                None, f"the watch of {self.what} is not synced (a stalled or broken watch counts as an API outage){why}"
            )

    # --- control ------------------------------------------------------------------------------
    def resync(self) -> None:
        """Distrust what the mirror holds: unsynced until a fresh LIST lands."""
        with self._lock:
            self._relist = True
            self._synced.clear()
            response = self._response
        if response is not None:
            _interrupt(response)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop watching; whether the thread ended within `timeout` seconds."""
        self._stopping.set()
        self.resync()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        version = ""
        while not self._stopping.is_set():
            with self._lock:
                relist, self._relist = self._relist, False
            try:
                if relist or not version:
                    version = self._list()
                version = self._watch(version)
            except _Expired:
                self._synced.clear()
                version = ""
            except Exception as exc:  # a cut stream raises whatever urllib3 raises
                self._synced.clear()
                version = ""
                with self._lock:
                    on_purpose = self._relist or self._stopping.is_set()
                if not on_purpose:
                    self._failed(kube_error(exc))

    def _failed(self, error: KubeError) -> None:
        self.last_error = error
        if self._on_error is not None:
            self._on_error(error)
        log.debug("watch of %s: %s", self.what, error)
        self._stopping.wait(RETRY_SECONDS * (1 + random.random() / 2))

    def _list(self) -> str:
        response = self._list_call(
            *self._args, **self._selector, _preload_content=False, _request_timeout=(CONNECT_TIMEOUT, 10.0)
        )
        listed = json.loads(response.data)
        with self._lock:
            if self._relist:  # resync during the LIST: its answer may predate the reason
                raise Unavailable(None, f"{self.what}: resync requested during the LIST")
            self._objects = {_key(item): item for item in listed["items"]}
            self._changes += 1
            self._synced.set()
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str:
        """Apply events until the server ends the WATCH; the resourceVersion to go on from."""
        response = self._list_call(
            *self._args,
            **self._selector,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=SERVER_TIMEOUT,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )
        with self._lock:
            if self._relist or self._stopping.is_set():
                response.close()
                return version
            self._response = response
        try:
            for line in _lines(response):
                if line.strip():
                    version = self._apply(json.loads(line), version)
        finally:
            with self._lock:
                self._response = None
            response.close()
        return version

    def _apply(self, event: dict[str, Any], version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            status = int(obj.get("code") or 0) or None
            if status == GONE:
                raise _Expired
            raise KubeError(status, str(obj.get("message") or obj), str(obj.get("reason") or ""))
        version = resource_version(obj) or version
        if kind == "BOOKMARK":
            return version
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(_key(obj), None)
            else:
                self._objects[_key(obj)] = obj
            self._changes += 1
        return version


def _interrupt(response: Any) -> None:
    """End the read another thread is blocked in, now. Closing the response from here would
    wait for that very read (the reader holds the stream's lock); shutting the socket down
    makes the read return, and the reading thread closes the response itself."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already closed: the read has ended anyway
        sock.shutdown(socket.SHUT_RDWR)


def _lines(response: Any) -> Iterator[bytes]:
    """The newline-separated events of a WATCH response as they arrive."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete


class _Expired(Exception):
    """410 Gone: the resourceVersion watched from was compacted away; list again."""
