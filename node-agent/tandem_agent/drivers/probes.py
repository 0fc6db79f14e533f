"""Health checks of services: one exec, tcp or http probe, run once within its timeout.

`health_problem` answers None when the check passed, or a short reason for humans when it did
not ("tcp 127.0.0.1:25: connection refused"); a check that does not answer in time has failed
too, since a hung service is as down as a dead one. It raises DriverError only when the check
itself is invalid (a root user, a URL that is not http://) or cannot be started on this node
(no ``timeout`` program), so that a broken spec is not mistaken for a sick service.

The API already validates every field; the rules are checked again here, at the point of use,
because an object stored before a rule existed skips the API's validation.

- exec runs on the host like every other host command (through `base.run()`), as
  ``timeout --signal=KILL <s> runuser -u <user> -- <command...>``: never as root, and
  ``timeout`` kills the command's whole process group when it hangs (runuser forks, so killing
  only runuser would leave a hung command behind at every period).
- tcp and http connect from the agent's own network namespace, which is the host's
  (the DaemonSet runs with hostNetwork).
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import shlex
import socket
from urllib.parse import urlsplit

from tandem.api.hacluster import HTTP_URL_RE, PROBE_USER_RE, ExecCheck, HealthCheck, HTTPCheck, TCPCheck

from .base import CommandTimeout, DriverError, run

# A reason ends up in a status message: keep the command and its output short.
MAX_COMMAND_CHARS = 120
MAX_OUTPUT_CHARS = 200
# How long past its own timeout an exec probe may take before base.run() gives up on it
# (``timeout`` should have killed it by then; this bounds a hung nsenter or runuser).
EXEC_GRACE_SECONDS = 5.0
# ``timeout --signal=KILL`` kills its own process group, itself included, so its parent sees
# it killed by SIGKILL, a status the probe command itself cannot produce (runuser turns a
# command killed by a signal into exit status 128 + signal).
KILLED_BY_TIMEOUT = -9


def health_problem(check: HealthCheck) -> str | None:
    """Run the one probe `check` sets within its timeoutSeconds: None when healthy, else why not."""
    timeout = float(check.timeout_seconds)
    probes = [p for p in (check.exec, check.tcp, check.http) if p is not None]
    if len(probes) != 1:
        raise DriverError(f"a health check must set exactly one of exec, tcp or http, not {len(probes)}")
    [probe] = probes
    if isinstance(probe, ExecCheck):
        return exec_problem(probe, timeout)
    if isinstance(probe, TCPCheck):
        return tcp_problem(probe, timeout)
    return http_problem(probe, timeout)


# --------------------------------------------------------------------------------------------
# exec


def exec_argv(check: ExecCheck, timeout: float) -> list[str]:
    """The host command of an exec probe: its argument list as `check.user`, killed at `timeout`."""
    user = check.user
    if user == "root" or not re.fullmatch(PROBE_USER_RE, user):
        raise DriverError(
            f"exec health check: refusing to run as {user!r}: it must run as a plain user such as nobody, never root"
        )
    if not check.command:
        raise DriverError("exec health check: the command is empty")
    return ["timeout", "--signal=KILL", f"{timeout:g}", "runuser", "-u", user, "--", *check.command]


def exec_problem(check: ExecCheck, timeout: float) -> str | None:
    """Run the command as its user: exit status 0 is healthy."""
    what = f"exec {describe_command(check.command)}"
    try:
        proc = run(exec_argv(check, timeout), timeout=timeout + EXEC_GRACE_SECONDS, check=False)
    except CommandTimeout:
        return no_answer(what, timeout)
    if proc.returncode == 0:
        return None
    if proc.returncode == KILLED_BY_TIMEOUT:
        return no_answer(what, timeout)
    output = first_line(proc.stderr) or first_line(proc.stdout)
    return f"{what} exited with status {proc.returncode}" + (f": {output}" if output else "")


def no_answer(what: str, timeout: float) -> str:
    return f"{what}: no answer within {timeout:g}s"


def describe_command(command: list[str]) -> str:
    """The command as a shell would quote it, in brackets, shortened for a status message."""
    return f"[{shorten(shlex.join(command), MAX_COMMAND_CHARS)}]"


def first_line(text: str) -> str:
    """The first non-blank line of a command's output, shortened for a status message."""
    for line in text.splitlines():
        if line.strip():
            return shorten(line.strip(), MAX_OUTPUT_CHARS)
    return ""


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# tcp


def tcp_endpoint(check: TCPCheck) -> tuple[str, int]:
    """The address and port to connect to, checked again: an IP address (no name to resolve)."""
    try:
        address = ipaddress.ip_address(check.host)
    except ValueError:
        raise DriverError(f"tcp health check: {check.host!r} is not an IPv4 or IPv6 address") from None
    if not 1 <= check.port <= 65535:
        raise DriverError(f"tcp health check: port {check.port} is not between 1 and 65535")
    return str(address), check.port


def tcp_problem(check: TCPCheck, timeout: float) -> str | None:
    """Healthy when a TCP connection to host:port is accepted within `timeout` seconds."""
    host, port = tcp_endpoint(check)
    what = f"tcp {host_port(host, port)}"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except TimeoutError:
        return no_answer(what, timeout)
    except OSError as exc:
        return f"{what}: {os_error_text(exc)}"
    return None


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def os_error_text(exc: OSError) -> str:
    """ "connection refused", not "[Errno 111] Connection refused"."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


# --------------------------------------------------------------------------------------------
# http


def http_target(url: str) -> tuple[str, int, str]:
    """Host, port and path (with query) of a plain http:// URL, checked again."""
    if not url.startswith("http://") or not re.fullmatch(HTTP_URL_RE, url):
        raise DriverError(
            f"http health check: {url!r} must be a plain http:// URL such as http://127.0.0.1:8080/health"
        )
    parts = urlsplit(url)
    try:
        port = parts.port or 80
    except ValueError:
        raise DriverError(f"http health check: {url!r} has an invalid port") from None
    if not parts.hostname:
        raise DriverError(f"http health check: {url!r} names no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, path


def http_problem(check: HTTPCheck, timeout: float) -> str | None:
    """Healthy when a GET of the URL answers expected_status; each network step gets `timeout`
    seconds, and the body is never read."""
    host, port, path = http_target(check.url)
    what = f"http {check.url}"
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "tandem-agent", "Connection": "close"})
        status = conn.getresponse().status
    except TimeoutError:
        return no_answer(what, timeout)
    except OSError as exc:
        return f"{what}: {os_error_text(exc)}"
    except http.client.HTTPException as exc:
        return f"{what}: {shorten(str(exc) or type(exc).__name__, MAX_OUTPUT_CHARS)}"
    finally:
        conn.close()
    if status != check.expected_status:
        return f"{what} answered {status}, expected {check.expected_status}"
    return None
