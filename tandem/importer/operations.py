"""Pacemaker resource operations (`op monitor|start|stop ...`) -> tandem's monitor settings
and timeouts.

What carries over, and why:
- a monitor's `timeout` becomes the member's `timeoutSeconds`: how long the resource may take
  to answer is knowledge about the resource. Its `interval` does not: tandem's checks are
  cheap and run every second by default, and Pacemaker's interval (10 to 30 s) would make a
  failure take that many times longer to see.
- `start timeout` becomes `startTimeoutSeconds` of PostgreSQL and services.
- `stop timeout` does not: a stop must fit the tear-down's whole budget,
  spec.leases.demotionTimeoutMs, or the node is fenced, and Pacemaker's stop timeouts are tens
  of seconds.
- a standby's monitor (role Unpromoted/Slave) does not: tandem monitors the primary's chain,
  and sees a standby through its replication status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tandem.api.hacluster import MonitorSettings
from tandem.importer.model import Operation

# Pacemaker's time units (crm_get_msec); a bare number is seconds.
_UNITS = {
    "": 1000,
    "s": 1000,
    "sec": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "hr": 3_600_000,
    "ms": 1,
    "msec": 1,
}
_DURATION = re.compile(r"\s*(\d{1,9})\s*([a-z]*)\s*")
_STANDBY_ROLES = ("unpromoted", "slave")
DEFAULT_PERIOD = MonitorSettings().period_seconds
MAX_TIMEOUT = 3600  # the bound of every timeoutSeconds and startTimeoutSeconds
# Where a kind's monitor settings go in spec.chain (PostgreSQL's and a service's are handled
# on their own entries).
MONITOR_KEYS = {"volume": "volumes", "mount": "mounts", "bind mount": "mounts", "floating IP": "floatingIPs"}


def seconds(text: str) -> int | None:
    """A Pacemaker duration in whole seconds, rounded up (at least 1); None if unreadable."""
    match = _DURATION.fullmatch(text.lower())
    if match is None or match.group(2) not in _UNITS:
        return None
    milliseconds = int(match.group(1)) * _UNITS[match.group(2)]
    return max(1, -(-milliseconds // 1000))


@dataclass(frozen=True)
class OpMapping:
    """What one operation becomes: `settings` merged into `target` ("monitors.<key>",
    "postgres", "postgres.monitor" or "service"), or nothing, and the report's words."""

    outcome: str
    carried: bool
    target: str = ""
    settings: tuple[tuple[str, int], ...] = ()


def _attributes(op: Operation) -> dict[str, str]:
    return {a.name: a.value for a in op.attributes}


def _ignored(attributes: dict[str, str], used: tuple[str, ...]) -> str:
    rest = [f"{k}={v}" for k, v in attributes.items() if k not in used]
    return f" ({', '.join(rest)} not carried over: tandem's own)" if rest else ""


def map_operation(kind: str, op: Operation) -> OpMapping:
    """The mapping of one `op` of a primitive of chain kind `kind`."""
    attributes = _attributes(op)
    action = op.action.lower()
    timeout_text = attributes.get("timeout")
    timeout = seconds(timeout_text) if timeout_text is not None else None
    if timeout_text is not None and timeout is None:
        return OpMapping(f"timeout={timeout_text} is not a duration (write e.g. 20s)", False)
    if timeout is not None and timeout > MAX_TIMEOUT:
        return OpMapping(f"timeout={timeout_text} is over tandem's {MAX_TIMEOUT} s", False)
    if action == "monitor":
        return _monitor(kind, attributes, timeout)
    if action == "start" and kind in ("PostgreSQL", "service") and timeout is not None:
        target = "postgres" if kind == "PostgreSQL" else "service"
        where = "chain.postgres" if kind == "PostgreSQL" else "the service"
        return OpMapping(
            f"startTimeoutSeconds {timeout} on {where}{_ignored(attributes, ('timeout', 'interval'))}",
            True,
            target,
            (("startTimeoutSeconds", timeout),),
        )
    if action == "stop" and kind in ("PostgreSQL", "service"):
        return OpMapping(
            "a stop must fit spec.leases.demotionTimeoutMs, the tear-down's whole "
            "budget (the node is fenced past it); set stopTimeoutSeconds only "
            "within it (docs/failover-protocol.md)",
            False,
        )
    return OpMapping(f"tandem's own {action} of {kind}s", False)


def _monitor(kind: str, attributes: dict[str, str], timeout: int | None) -> OpMapping:
    if attributes.get("role", "").lower() in _STANDBY_ROLES:
        return OpMapping("tandem monitors the primary's chain; a standby is seen through its replication status", False)
    if kind == "service":
        return OpMapping(
            "tandem watches the unit's ActiveState on every pass; to probe the service itself, add a healthCheck to it",
            False,
        )
    interval_text = attributes.get("interval", "0")
    interval = seconds(interval_text)
    if interval is None:
        return OpMapping(f"interval={interval_text} is not a duration (write e.g. 10s)", False)
    if interval_text.strip() in ("0", "0s"):
        return OpMapping("a monitor with interval 0 checks nothing; tandem always monitors", False)
    settings: list[tuple[str, int]] = []
    words = [f"periodSeconds stays {DEFAULT_PERIOD} (tandem checks more often than every {interval}s)"]
    if timeout is not None:
        settings.append(("timeoutSeconds", timeout))
        words.append(f"timeoutSeconds {timeout}")
    target = "postgres.monitor" if kind == "PostgreSQL" else f"monitors.{MONITOR_KEYS[kind]}"
    return OpMapping(
        f"{target}: {', '.join(words)}{_ignored(attributes, ('interval', 'timeout', 'role'))}",
        True,
        target,
        tuple(settings),
    )


def merge(entry: dict[str, Any], settings: tuple[tuple[str, int], ...]) -> str | None:
    """Set `settings` on `entry` unless it already has other values (members of one kind share
    one setting): None when merged, else what it keeps."""
    clash = {k: entry[k] for k, v in settings if k in entry and entry[k] != v}
    if clash:
        return ", ".join(f"{k} {v}" for k, v in clash.items())
    entry.update(settings)
    return None
