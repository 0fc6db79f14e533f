"""API server failures as types, so callers branch on what happened rather than on the text
of a message ("HTTP 404") or on a status code.

`kube_error` maps whatever a call through the `kubernetes` client raises: an `ApiException`
by its HTTP status, anything else (urllib3 timeouts, connection refused, TLS errors) to
`Unavailable` with no status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException


class KubeError(Exception):
    """A call to the API server that did not succeed. `status` is the HTTP status (None: no
    answer), `reason` its reason phrase and `message` the server's own explanation."""

    def __init__(self, status: int | None, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"{f'HTTP {self.status} {self.reason}'.rstrip()}: {self.message}"


class NotFound(KubeError):
    """HTTP 404: the object (or the resource type) does not exist."""


class Conflict(KubeError):
    """HTTP 409: a guarded write lost (the object changed since it was read) or the object
    already exists."""


class Forbidden(KubeError):
    """HTTP 403: RBAC or an admission policy refused the call."""


class Unavailable(KubeError):
    """No answer in time, no connection, or a server-side failure (HTTP 429 or 5xx): the
    same call may succeed later."""


def kube_error(exc: BaseException) -> KubeError:
    """The typed error for what a client call raised (a KubeError stays as it is)."""
    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiException):
        status: int | None = exc.status or None
        reason = str(exc.reason or "")
        return _kind(status)(status, _server_message(exc.body) or reason or "no message", reason)
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return Unavailable(None, str(getattr(exc, "reason", None) or exc))
    return Unavailable(None, str(exc))


@contextmanager
def translated() -> Iterator[None]:
    """Raise the typed error for a failed client call: an API error, or no answer
    (urllib3 and socket errors). Other exceptions, programming errors, pass unchanged."""
    try:
        yield
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise kube_error(exc) from exc


def _kind(status: int | None) -> type[KubeError]:
    """Other statuses (400, 401, 422, ...) stay a plain KubeError: a refusal that retrying
    the same call will not change, and that no caller tells apart."""
    if status is None or status == 429 or status >= 500:
        return Unavailable
    return {403: Forbidden, 404: NotFound, 409: Conflict}.get(status, KubeError)


def _server_message(body: Any) -> str | None:
    """The `message` of the Status object the server answered with, if any."""
    try:
        parsed = json.loads(body or "")
    except (TypeError, ValueError):
        return None
    found = parsed.get("message") if isinstance(parsed, dict) else None
    return str(found) if found else None
