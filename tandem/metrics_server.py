"""The small HTTP server of the agent's and the operator's metrics and health endpoints.

`/metrics` (Prometheus text, or OpenMetrics when asked for), `/healthz`, and whatever else the
process routes (the agent's `/primary/...` and `/replica/...`). It runs in daemon threads, one
per request, and only ever reads: nothing it does can hold up a Lease renewal, and a port
that cannot be bound costs the endpoints, never the process.
"""

from __future__ import annotations

import argparse
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"


def parse_address(text: str) -> tuple[str, int] | None:
    """`HOST:PORT`, `:PORT` (every IPv4 address) or `[IPV6]:PORT`; "" disables (None).
    Raises ValueError saying what is wrong."""
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: expected HOST:PORT, :PORT or [IPV6]:PORT (empty disables)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::]:{port}")
    return host, int(port)


def address_argument(text: str) -> tuple[str, int] | None:
    """`parse_address` for argparse, which shows the message of ArgumentTypeError only."""
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


@dataclass(frozen=True)
class Reply:
    status: int
    body: str
    content_type: str = TEXT


# A path (without the query) to its reply; None: not a path this route knows (404).
Route = Callable[[str], Reply | None]


class _Server(socketserver.ThreadingTCPServer):
    """A TCP server for IPv4 or IPv6; not http.server's, whose bind asks DNS for the host's
    name (a slow resolver would hold the process's start up)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, route: Route | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.registry = registry
        self.route = route
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # seconds a client may take to send its request

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        path = urlsplit(self.path).path
        try:
            if path == "/metrics":
                encode, content_type = choose_encoder(self.headers.get("Accept", ""))
                data, status = encode(self.server.registry), 200
            else:
                reply = (
                    Reply(200, "ok\n")
                    if path == "/healthz"
                    else (self.server.route(path) if self.server.route else None) or Reply(404, f"not found: {path}\n")
                )
                data, status, content_type = reply.body.encode(), reply.status, reply.content_type
        except Exception:
            log.exception("answering GET %s failed", path)
            data, status, content_type = b"internal error\n", 500, TEXT
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Every scrape and health check would be a line on stderr: debug level instead."""
        log.debug("%s %s", self.address_string(), format % args)


class MetricsServer:
    """Binds at construction (raises OSError); serves from `start()` until `stop()`."""

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, route: Route | None = None) -> None:
        self._server = _Server(address, registry, route)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        """The port bound: the one asked for, or the one the kernel chose for port 0."""
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(
    address: tuple[str, int] | None, registry: CollectorRegistry, route: Route | None, option: str
) -> MetricsServer | None:
    """Start serving on `address` (None: disabled). When it cannot be bound, say so once,
    naming the command-line `option`, and carry on without the endpoints."""
    if address is None:
        log.info("%s is empty: no metrics or health endpoints", option)
        return None
    shown = f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"
    try:
        server = MetricsServer(address, registry, route)
    except OSError as exc:
        log.error(
            "%s %s: cannot listen (%s); running on without the metrics and health "
            "endpoints: free the port or choose another with %s",
            option,
            shown,
            exc.strerror or exc,
            option,
        )
        return None
    log.info("metrics and health endpoints on %s", shown)
    return server.start()
