"""The HTTP server the agent and the operator share: its address option, and a port that
cannot be bound."""

from __future__ import annotations

import http.client
import logging
import socket

import pytest
from prometheus_client import CollectorRegistry

from tandem.metrics_server import MetricsServer, Reply, parse_address, serve


def test_a_port_in_use_is_one_error_naming_the_option(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR):
            assert serve(("127.0.0.1", port), CollectorRegistry(), None, "--metrics-address") is None
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith(f"--metrics-address 127.0.0.1:{port}: cannot listen")


def test_metrics_address() -> None:
    assert parse_address("") is None
    assert parse_address(":9464") == ("", 9464)
    assert parse_address("10.0.0.5:9464") == ("10.0.0.5", 9464)
    assert parse_address("[::]:9464") == ("::", 9464)
    for bad in ("9464", ":x", "::1:9464", "host:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)


def get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_routes_and_a_route_that_fails() -> None:
    def route(path: str) -> Reply | None:
        if path == "/boom":
            raise RuntimeError("a bug")
        return Reply(503, "busy\n") if path == "/busy" else None

    server = MetricsServer(("127.0.0.1", 0), CollectorRegistry(), route).start()
    try:
        answers = [get(server.port, path) for path in ("/healthz", "/busy", "/boom", "/else")]
    finally:
        server.stop()
    assert answers == [(200, "ok\n"), (503, "busy\n"), (500, "internal error\n"), (404, "not found: /else\n")]


def test_an_ipv6_address_is_served_over_ipv6() -> None:
    """Needs the IPv6 loopback (::1): a machine without it fails this test rather than skip it."""
    server = MetricsServer(("::1", 0), CollectorRegistry()).start()
    try:
        assert get(server.port, "/healthz", host="::1") == (200, "ok\n")
    finally:
        server.stop()
