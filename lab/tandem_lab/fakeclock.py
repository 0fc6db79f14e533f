"""Clock faults for one lab process: Debian's libfaketime preloaded into it, never the
machine's clock.

A drop-in of the node's tandem-agent.service (`unit_dropin`, written by
`LabCluster.fake_clock` with the node's clock file) starts the agent through
`python -m tandem_lab.fakeclock MODULE ARGS`. libfaketime then fakes
the wall clock only (FAKETIME_DONT_FAKE_MONOTONIC) from that file, re-read on every call, so
a test steps the clock or changes its rate by rewriting one line such as `+60s`, `-60s` or
`+0 x2`. The monotonic clock stays true: that is the clock lease timing must use.

Two workarounds make Python run correctly under libfaketime 0.9.10, applied here before the
module starts:

- Python 3.11's `time.sleep` sleeps with an absolute `clock_nanosleep` on the monotonic clock,
  which libfaketime rewrites into an invalid time when the monotonic clock is not faked
  (EINVAL; libfaketime issue 426). Sleeps go through a condition wait instead, which it
  leaves alone.
- Children (pg_ctl, drbdadm, services) must keep the true clock: the fault is injected into
  one process only. Their environment drops the preload; the agent's own must keep it,
  because libfaketime re-reads it.
"""

from __future__ import annotations

import glob
import os
import runpy
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

NODE_CLOCK_PATH = "/etc/tandem-lab/fake-clock"  # in a lab node: the agent's clock, when faked
FAKED_VARIABLES = (
    "LD_PRELOAD",
    "FAKETIME",
    "FAKETIME_TIMESTAMP_FILE",
    "FAKETIME_NO_CACHE",
    "FAKETIME_DONT_FAKE_MONOTONIC",
)


class FakeClockError(RuntimeError):
    pass


def library(root: Path = Path("/")) -> str:
    """The preload library of Debian's libfaketime package (on the system at `root`), as a
    path on that system."""
    found = sorted(
        str(Path("/") / Path(p).relative_to(root)) for p in glob.glob(str(root / "usr/lib/*/faketime/libfaketime.so.1"))
    )
    if not found:
        raise FakeClockError(
            "libfaketime is not installed: apt-get install faketime (scripts/install-deps.sh installs it)"
        )
    return found[0]


def environment(clock_file: Path, preload: str | None = None) -> dict[str, str]:
    """What to add to a process's environment to fake its wall clock from `clock_file`."""
    return {
        "LD_PRELOAD": preload or library(),
        "FAKETIME_TIMESTAMP_FILE": str(clock_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def unit_dropin(python: str, root: Path) -> str:
    """A drop-in for a lab node's tandem-agent.service (the node's file system at `root`) that
    starts the agent under libfaketime with the clock in NODE_CLOCK_PATH."""
    env = environment(Path(NODE_CLOCK_PATH), library(root))
    assignments = " ".join(f"{key}={value}" for key, value in env.items())
    return (
        "# Lab only: the agent's wall clock is faked (tandem_lab.fakeclock).\n"
        f"[Service]\nEnvironment={assignments}\nExecStart=\n"
        f"ExecStart={python} -m {__name__} tandem_agent $TANDEM_AGENT_ARGS\n"
    )


def clock_spec(spec: str) -> str:
    """`spec` with an explicit rate: libfaketime keeps the last rate it read until a line sets
    another, so after `+0 x0.5` a plain `+60s` would still run at half speed."""
    return spec if " x" in spec else f"{spec} x1"


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(seconds)


def _true_clock_env(env: Any) -> dict[str, str]:
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if k not in FAKED_VARIABLES}


def _patch() -> None:
    import time

    time.sleep = _sleep  # type: ignore[assignment]
    original = subprocess.Popen.__init__

    def init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        if len(rest) >= 10:  # env given positionally: (bufsize, executable, ..., cwd, env)
            rest = (*rest[:9], _true_clock_env(rest[9]), *rest[10:])
        else:
            kwargs["env"] = _true_clock_env(kwargs.get("env"))
        original(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = init  # type: ignore[method-assign]


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m tandem_lab.fakeclock MODULE [ARGS...]")
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    _patch()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
