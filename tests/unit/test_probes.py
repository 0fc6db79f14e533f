"""Health checks against real local servers and real commands (exec needs root and runuser).

Servers listen on 127.0.0.1 (or ::1) on an ephemeral port; the slow cases use short timeouts,
so the whole file runs in about two seconds.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tandem.api.hacluster import ExecCheck, HealthCheck, HTTPCheck, TCPCheck
from tandem_agent.drivers.base import DriverError
from tandem_agent.drivers.probes import (
    describe_command,
    exec_argv,
    exec_problem,
    first_line,
    health_problem,
    http_problem,
    http_target,
    tcp_endpoint,
    tcp_problem,
)

QUICK = 0.3  # seconds: the timeout of the cases that are meant to hang


@pytest.fixture
def as_root_with_runuser() -> None:
    """exec probes run through runuser as nobody: this machine runs the unit tests as root."""
    assert os.geteuid() == 0, "run the unit tests as root: exec health checks run through runuser"
    assert shutil.which("runuser"), "runuser (util-linux) is missing: exec health checks need it"
    assert shutil.which("timeout"), "timeout (coreutils) is missing: exec health checks need it"


def exec_check(*command: str, user: str = "nobody") -> ExecCheck:
    return ExecCheck(command=list(command), user=user)


def listening(host: str = "127.0.0.1", backlog: int = 8) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(backlog)
    return sock


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: a connection to it is refused, and no one else gets it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class StatusHandler(http.server.BaseHTTPRequestHandler):
    """Answers /status/<code> with that code."""

    def do_GET(self) -> None:
        code = int(self.path.rsplit("/", 1)[-1])
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StatusHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------
# exec


def test_exec_argv_runs_the_command_as_its_user_under_a_killing_timeout() -> None:
    assert exec_argv(exec_check("/usr/bin/pgrep", "-x", "postfix"), 1.0) == [
        "timeout",
        "--signal=KILL",
        "1",
        "runuser",
        "-u",
        "nobody",
        "--",
        "/usr/bin/pgrep",
        "-x",
        "postfix",
    ]
    assert exec_argv(exec_check("x", user="postfix"), 0.5)[2:6] == ["0.5", "runuser", "-u", "postfix"]


@pytest.mark.parametrize("user", ["root", "-u", "no body", ""])
def test_exec_refuses_root_and_odd_users_even_past_the_api(user: str) -> None:
    # model_construct skips validation, as an object stored before the rule existed would.
    check = ExecCheck.model_construct(command=["/bin/true"], user=user)
    with pytest.raises(DriverError, match="never root"):
        exec_argv(check, 1.0)
    with pytest.raises(DriverError, match="never root"):
        health_problem(HealthCheck.model_construct(exec=check, tcp=None, http=None, timeout_seconds=1))


@pytest.mark.usefixtures("as_root_with_runuser")
def test_exec_healthy_and_run_as_nobody() -> None:
    assert exec_problem(exec_check("/bin/true"), 1.0) is None
    assert exec_problem(exec_check("/bin/sh", "-c", 'test "$(id -un)" = nobody'), 1.0) is None


@pytest.mark.usefixtures("as_root_with_runuser")
def test_exec_failure_names_the_status_and_the_first_line_of_stderr() -> None:
    assert exec_problem(exec_check("/bin/false"), 1.0) == "exec [/bin/false] exited with status 1"
    problem = exec_problem(exec_check("/bin/sh", "-c", "echo; echo queue full >&2; echo more >&2; exit 3"), 1.0)
    assert (
        problem == "exec [/bin/sh -c 'echo; echo queue full >&2; echo more >&2; exit 3'] exited with "
        "status 3: queue full"
    )


@pytest.mark.usefixtures("as_root_with_runuser")
def test_exec_that_hangs_is_killed_at_its_timeout() -> None:
    check = HealthCheck(exec=exec_check("sleep", "5"), timeout_seconds=1)
    started = time.monotonic()
    assert health_problem(check) == "exec [sleep 5]: no answer within 1s"
    assert time.monotonic() - started < 2.5


def test_long_commands_and_output_are_shortened() -> None:
    assert len(describe_command(["echo", "x" * 1000])) == 122
    assert describe_command(["echo", "a b"]) == "[echo 'a b']"
    assert first_line("\n  \n  first  \nsecond") == "first"
    assert first_line("y" * 1000).endswith("...") and len(first_line("y" * 1000)) == 200
    assert first_line("") == ""


# ---------------------------------------------------------------------------------------------
# tcp


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_tcp_healthy_on_ipv4_and_ipv6(host: str) -> None:
    with listening(host) as server:
        port = server.getsockname()[1]
        assert health_problem(HealthCheck(tcp=TCPCheck(host=host, port=port))) is None


def test_tcp_refused(closed_port: int) -> None:
    assert (
        health_problem(HealthCheck(tcp=TCPCheck(port=closed_port)))
        == f"tcp 127.0.0.1:{closed_port}: connection refused"
    )


def test_tcp_that_does_not_answer_in_time() -> None:
    # Backlog 0 holds one connection that is never accepted; the next SYN is dropped.
    with listening(backlog=0) as server, socket.create_connection(server.getsockname()):
        port = server.getsockname()[1]
        assert tcp_problem(TCPCheck(port=port), QUICK) == f"tcp 127.0.0.1:{port}: no answer within 0.3s"


def test_tcp_refuses_a_host_name_past_the_api() -> None:
    with pytest.raises(DriverError, match="not an IPv4 or IPv6 address"):
        tcp_endpoint(TCPCheck.model_construct(host="localhost", port=80))
    assert tcp_endpoint(TCPCheck(host="::1", port=80)) == ("::1", 80)


# ---------------------------------------------------------------------------------------------
# http


def test_http_healthy_and_expected_status(http_base: str) -> None:
    assert health_problem(HealthCheck(http=HTTPCheck(url=f"{http_base}/status/200"))) is None
    assert http_problem(HTTPCheck(url=f"{http_base}/status/204", expected_status=204), 1.0) is None


def test_http_wrong_status(http_base: str) -> None:
    url = f"{http_base}/status/503"
    assert http_problem(HTTPCheck(url=url), 1.0) == f"http {url} answered 503, expected 200"


def test_http_refused(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/health"
    assert http_problem(HTTPCheck(url=url), 1.0) == f"http {url}: connection refused"


def test_http_server_that_accepts_but_never_answers() -> None:
    with listening() as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/health"
        assert http_problem(HTTPCheck(url=url), QUICK) == f"http {url}: no answer within 0.3s"


def test_http_server_that_hangs_up() -> None:
    with listening() as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/"

        def hang_up() -> None:
            conn, _ = server.accept()
            conn.recv(4096)
            conn.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        assert http_problem(HTTPCheck(url=url), 1.0) == f"http {url}: remote end closed connection without response"
        thread.join(1)


def test_http_target_parts() -> None:
    assert http_target("http://127.0.0.1:8080/health?deep=1") == ("127.0.0.1", 8080, "/health?deep=1")
    assert http_target("http://[::1]") == ("::1", 80, "/")


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "http://user:pw@127.0.0.1/",
        "ftp://x/",
        "http://127.0.0.1/a b",
        "http://127.0.0.1:99999/",
        "http:///x",
    ],
)
def test_http_refuses_other_urls_past_the_api(url: str) -> None:
    with pytest.raises(DriverError, match="http health check"):
        http_target(url)


# ---------------------------------------------------------------------------------------------
# the check itself


def test_a_check_must_set_exactly_one_probe() -> None:
    two = HealthCheck.model_construct(exec=exec_check("/bin/true"), tcp=TCPCheck(port=1), http=None, timeout_seconds=1)
    none = HealthCheck.model_construct(exec=None, tcp=None, http=None, timeout_seconds=1)
    for check in (two, none):
        with pytest.raises(DriverError, match="exactly one of exec, tcp or http"):
            health_problem(check)
