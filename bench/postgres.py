"""Benchmark: PostgreSQL promote time and clean switchover time between two lab namespaces.

    python -m bench.postgres --json bench/results/postgres.json [--runs 5]

Lab: LabNetwork(prefix="tdp", subnet=20), the same as tests/lab/test_postgres.py: n1 in
namespace tdp-n1 (198.19.20.2) and n2 in tdp-n2 (198.19.20.3), one real PostgreSQL each
(Debian's packages, run as ``postgres``), streaming over the replication bridge. Do not run it
while that test runs: it refuses to start if the namespaces have processes in them.

Each run starts from a primary and a standby that streams and has replayed everything. A
client connected to the standby's Unix socket beforehand retries ``INSERT`` every 2 ms; its
first committed insert is "first write accepted". Roles alternate between runs; in between,
untimed, the old primary rejoins with `rewind_as_standby` and streams again.

* ``promote``: from calling `Postgres.promote()` (``pg_ctl promote``) on the standby until the
  client's first accepted write. The old primary keeps running meanwhile (it is rewound after).
* ``promote_call``: how long `promote()` itself takes (it returns once its own write check
  committed, so it bounds ``promote`` from above, up to polling granularity).
* ``switchover``: from ``stop("fast")`` on the primary (final checkpoint, standbys receive all
  WAL) through `promote()` on the standby until the client's first accepted write.
* ``switchover_stop``: the ``stop("fast")`` part of it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.report import emit, percentiles
from tandem_agent.drivers.postgres import Postgres, PostgresConfig, parse_lsn
from tandem_lab.netns import LabNetwork, claim_namespace

PREFIX = "tdp"
SUBNET = 20
PORT = 5432
NODES = {"n1": 2, "n2": 3}
CLIENT_RETRY = 0.002


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class FirstWrite:
    """A client on the future primary that retries INSERT until one commits."""

    def __init__(self, pg: Postgres, tag: str) -> None:
        self._conn = psycopg.connect(
            host=str(pg.config.run_dir),
            port=pg.config.port,
            user=pg.config.superuser,
            dbname="postgres",
            autocommit=True,
        )
        self._tag = tag
        self.accepted_at: float | None = None
        self.attempts = 0
        self._go = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def start(self) -> None:
        self._go.set()

    def _loop(self) -> None:
        self._go.wait()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.attempts += 1
            try:
                self._conn.execute("INSERT INTO bench (tag) VALUES (%s)", (self._tag,))
                self.accepted_at = time.monotonic()
                return
            except psycopg.errors.ReadOnlySqlTransaction:
                time.sleep(CLIENT_RETRY)

    def wait(self) -> float:
        self._thread.join(70)
        self._conn.close()
        if self.accepted_at is None:
            raise RuntimeError(f"no write accepted after {self.attempts} attempts")
        return self.accepted_at


def force_stop(pg: Postgres) -> None:
    for mode in ("fast", "immediate"):
        try:
            pg.stop(mode, timeout=20)
            return
        except Exception:  # noqa: BLE001 - cleanup goes on
            pass
    pidfile = pg.config.data_dir / "postmaster.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().splitlines()[0]), signal.SIGKILL)


class Pair:
    def __init__(self, base: Path, net: LabNetwork) -> None:
        self.pgs: dict[str, Postgres] = {}
        self.addr: dict[str, str] = {}
        password = secrets.token_urlsafe(24)
        for name, index in NODES.items():
            host = net.add_host(name, index)
            assert host.repl_address is not None
            self.addr[name] = host.repl_address
            self.pgs[name] = Postgres(
                PostgresConfig(
                    node_name=name,
                    data_dir=base / name / "data",
                    port=PORT,
                    listen_addresses=(host.repl_address,),
                    netns=host.namespace,
                    replication_password=password,
                    replication_peers=tuple(f"198.19.{SUBNET}.{i}" for i in NODES.values()),
                    settings={"shared_buffers": "16MB", "max_connections": 20},
                    initdb_args=("--encoding=UTF8", "--locale=C", "--no-sync"),
                )
            )
        self.primary, self.standby = "n1", "n2"

    def setup(self) -> None:
        p, s = self.pgs[self.primary], self.pgs[self.standby]
        p.init_primary()
        with p.connect() as conn:
            conn.execute("CREATE TABLE bench (id bigserial PRIMARY KEY, tag text, at timestamptz DEFAULT now())")
        s.clone_standby(self.addr[self.primary], PORT)
        s.start_standby(self.addr[self.primary], PORT)
        self.settle()

    def settle(self) -> None:
        """Until the standby streams and has replayed all the primary wrote (one fresh row)."""
        p, s = self.pgs[self.primary], self.pgs[self.standby]
        wait_for(lambda: p.status().streaming_standbys == 1 and s.status().receiving, "streaming")
        with p.connect() as conn:
            conn.execute("INSERT INTO bench (tag) VALUES ('settle')")
            row = conn.execute("SELECT pg_current_wal_lsn()::text AS l").fetchone()
        assert row is not None
        target = parse_lsn(row["l"])

        def replayed() -> bool:
            lsn = s.status().replay_lsn
            return lsn is not None and parse_lsn(lsn) >= target

        wait_for(replayed, "replay caught up")

    def swap_and_rejoin(self) -> None:
        """The old primary follows the new one (untimed)."""
        self.primary, self.standby = self.standby, self.primary
        self.pgs[self.standby].rewind_as_standby(self.addr[self.primary], PORT)
        self.settle()


def run_promote(pair: Pair) -> dict[str, float]:
    standby = pair.pgs[pair.standby]
    client = FirstWrite(standby, "promote")
    t0 = time.monotonic()
    client.start()
    outcome = standby.promote(timeout=60)
    t1 = time.monotonic()
    accepted = client.wait()
    if not outcome.changed:
        raise RuntimeError(f"promote changed nothing: {outcome.detail}")
    return {"promote": accepted - t0, "promote_call": t1 - t0}


def run_switchover(pair: Pair) -> dict[str, float]:
    primary, standby = pair.pgs[pair.primary], pair.pgs[pair.standby]
    client = FirstWrite(standby, "switchover")
    t0 = time.monotonic()
    client.start()
    primary.stop("fast")
    t1 = time.monotonic()
    standby.promote(timeout=60)
    accepted = client.wait()
    return {"switchover": accepted - t0, "switchover_stop": t1 - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results there (default: stdout)")
    parser.add_argument("--runs", type=int, default=5, help="runs per case (default 5)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: the lab needs network namespaces")

    for name in NODES:
        claim_namespace(f"{PREFIX}-{name}")
    owner = pwd.getpwnam("postgres")
    base = Path(tempfile.mkdtemp(prefix="tdp-bench-", dir="/tmp"))
    os.chown(base, owner.pw_uid, owner.pw_gid)
    net = LabNetwork(prefix=PREFIX, subnet=SUBNET)
    pair: Pair | None = None
    samples: dict[str, list[float]] = {}
    try:
        net.create()
        pair = Pair(base, net)
        pair.setup()
        for case in (run_promote, run_switchover):
            for i in range(args.runs):
                result = case(pair)
                for key, value in result.items():
                    samples.setdefault(key, []).append(value)
                print(
                    f"{case.__name__} {i + 1}/{args.runs}: " + ", ".join(f"{k} {v:.3f}s" for k, v in result.items()),
                    file=sys.stderr,
                )
                pair.swap_and_rejoin()
    finally:
        if pair is not None:
            for pg in pair.pgs.values():
                force_stop(pg)
        net.destroy()
        shutil.rmtree(base, ignore_errors=True)

    results: dict[str, dict[str, Any]] = {key: percentiles(v) for key, v in samples.items()}
    emit("postgres", results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
