"""The PostgreSQL driver against two real PostgreSQL servers in two network namespaces.

Topology: LabNetwork(prefix="tdp", subnet=20); node n1 in namespace tdp-n1 (replication
address 198.19.20.2) and n2 in tdp-n2 (198.19.20.3). Each runs its own server (Debian's
packages, as the ``postgres`` OS user) listening on its replication address only, port 5432;
streaming, pg_basebackup and pg_rewind go over the replication bridge and authenticate with
scram-sha-256 (the password below, hostile on purpose: quotes, a backslash, colons). The test talks to each
server over its own Unix socket (``<data dir>.run``), which is reachable from the root
namespace. Data lives in a temporary directory under /tmp owned by ``postgres``.

Facts are checked with SQL on the servers themselves (rows, ``pg_stat_replication``
``client_addr``), not only with the driver's own status. Every test stops both servers and
removes both namespaces and the directory, also when it fails.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tandem_agent.core import departure_confirmed
from tandem_agent.drivers.postgres import (
    ClientRule,
    NotInitializedError,
    NotRunningError,
    Postgres,
    PostgresConfig,
    SourceNotPrimaryError,
    SourceRefusedError,
    SourceUnreachableError,
    WrongRoleError,
    parse_lsn,
)
from tandem_lab.client import APP_USER, TABLE, read_log
from tandem_lab.netns import LabHost, LabNetwork

pytestmark = pytest.mark.lab

PREFIX = "tdp"
SUBNET = 20
PORT = 5432
NODES = {"n1": 2, "n2": 3}
PASSWORD = 'it\'s a "pass\\word": with:colons $(x)'


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Node:
    host: LabHost
    pg: Postgres

    @property
    def addr(self) -> str:
        assert self.host.repl_address is not None
        return self.host.repl_address

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.pg.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


@dataclass
class Lab:
    net: LabNetwork
    n1: Node
    n2: Node

    def start_pair(self) -> None:
        """n1 primary, n2 a standby streaming from it; returns once it streams."""
        assert self.n1.pg.init_primary().changed
        self.n1.sql("CREATE TABLE acks (id int PRIMARY KEY, node text NOT NULL)")
        assert self.n2.pg.clone_standby(self.n1.addr, PORT).changed
        assert self.n2.pg.start_standby(self.n1.addr, PORT).changed
        wait_streaming(self.n1, self.n2)

    def diverge_and_crash_n1(self) -> None:
        """n2 promoted while n1 keeps running as a primary and takes a write n2 never sees
        (the histories diverge); then n1 dies without a shutdown checkpoint, as on power loss,
        so pg_rewind has to run crash recovery on it first."""
        self.start_pair()
        self.n1.sql("INSERT INTO acks SELECT g, 'n1' FROM generate_series(1, 10) g")
        wait_replayed(self.n1, self.n2)
        assert self.n2.pg.promote().changed
        self.n1.sql("INSERT INTO acks VALUES (999, 'n1-diverged')")
        self.n2.sql("INSERT INTO acks VALUES (11, 'n2')")
        assert self.n1.pg.stop("immediate").changed


def assert_follows_n2_history(n1: Node, n2: Node) -> None:
    """n1 replays a new write of n2 and holds n2's history only: the diverged row 999 is gone."""
    n2.sql("INSERT INTO acks VALUES (12, 'n2')")
    wait_replayed(n2, n1)
    ids = [r["id"] for r in n1.sql("SELECT id FROM acks ORDER BY id")]
    assert ids == [*range(1, 13)]


def wait_streaming(primary: Node, standby: Node) -> None:
    wait_for(
        lambda: primary.pg.status().streaming_standbys == 1 and standby.pg.status().receiving,
        f"{standby.host.name} streaming from {primary.host.name}",
    )


def wait_replayed(primary: Node, standby: Node) -> None:
    """Until the standby replayed everything the primary has written so far."""
    target = parse_lsn(primary.sql("SELECT pg_current_wal_lsn()::text AS l")[0]["l"])

    def caught_up() -> bool:
        replay = standby.pg.status().replay_lsn
        return replay is not None and parse_lsn(replay) >= target

    wait_for(caught_up, f"{standby.host.name} replaying up to {target:X}")


def _stale_namespace_free(namespace: str) -> None:
    """Remove a namespace left by a killed run, refuse one that still has processes."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False)
    if pids.returncode != 0:
        return  # does not exist
    if pids.stdout.strip():
        pytest.fail(
            f"namespace {namespace} is in use (pids {pids.stdout.split()}): is bench.postgres "
            "or another run of this test going on?"
        )
    subprocess.run(["ip", "netns", "del", namespace], check=False)


def postmaster_pid(pg: Postgres) -> int:
    return int((pg.config.data_dir / "postmaster.pid").read_text().splitlines()[0])


def _force_stop(pg: Postgres) -> None:
    """Stop a server whatever state it is in; SIGKILL its postmaster as the last resort."""
    try:
        pg.stop("fast", timeout=20)
        return
    except Exception:  # noqa: BLE001 - cleanup must go on
        pass
    try:
        pg.stop("immediate", timeout=10)
        return
    except Exception:  # noqa: BLE001
        pass
    if (pg.config.data_dir / "postmaster.pid").exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster_pid(pg), signal.SIGKILL)


@pytest.fixture
def lab() -> Iterator[Lab]:
    for name in NODES:
        _stale_namespace_free(f"{PREFIX}-{name}")
    postgres_user = pwd.getpwnam("postgres")
    base = Path(tempfile.mkdtemp(prefix="tdp-pg-", dir="/tmp"))
    os.chown(base, postgres_user.pw_uid, postgres_user.pw_gid)
    net = LabNetwork(prefix=PREFIX, subnet=SUBNET)
    servers: list[Postgres] = []
    try:
        net.create()
        nodes = {}
        for name, index in NODES.items():
            host = net.add_host(name, index)
            assert host.repl_address is not None
            pg = Postgres(
                PostgresConfig(
                    node_name=name,
                    data_dir=base / name / "data",
                    port=PORT,
                    listen_addresses=(host.repl_address,),
                    netns=host.namespace,
                    replication_password=PASSWORD,
                    replication_peers=tuple(f"198.19.{SUBNET}.{i}" for i in NODES.values()),
                    settings={"shared_buffers": "16MB", "max_connections": 20},
                    initdb_args=("--encoding=UTF8", "--locale=C", "--no-sync"),
                )
            )
            servers.append(pg)
            nodes[name] = Node(host, pg)
        yield Lab(net, nodes["n1"], nodes["n2"])
    finally:
        for pg in servers:
            _force_stop(pg)
        net.destroy()
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------------------- tests


def test_standby_streams_over_the_replication_network_and_reports_lag(lab: Lab) -> None:
    n1, n2 = lab.n1, lab.n2
    lab.start_pair()
    # Idempotent: a second call of each changes nothing.
    assert not n1.pg.init_primary().changed
    assert not n1.pg.start_primary().changed
    assert not n2.pg.clone_standby(n1.addr, PORT).changed
    assert not n2.pg.start_standby(n1.addr, PORT).changed

    # Seen by the primary itself: one walsender, from n2's replication address.
    rows = n1.sql("SELECT application_name, client_addr::text AS a, state FROM pg_stat_replication")
    assert rows == [{"application_name": "n2", "a": "198.19.20.3/32", "state": "streaming"}]
    p, s = n1.pg.status(), n2.pg.status()
    assert (p.role, p.timeline, p.streaming_standbys) == ("primary", 1, 1)
    assert (s.role, s.timeline, s.upstream) == ("standby", 1, f"{n1.addr}:{PORT}")
    assert s.receiving and s.streaming_standbys == 0

    # Rows written on the primary are readable on the standby; lag 0 when caught up.
    n1.sql("INSERT INTO acks SELECT g, 'n1' FROM generate_series(1, 100) g")
    wait_replayed(n1, n2)
    assert n2.sql("SELECT count(*) AS c FROM acks")[0]["c"] == 100
    assert wait_for(lambda: n2.pg.status().replay_lag_s == 0.0, "lag 0 after catch-up") is True

    # Hold replay back: the standby receives but does not apply, and the lag grows.
    n2.sql("SELECT pg_wal_replay_pause()")
    n1.sql("INSERT INTO acks VALUES (101, 'n1')")

    def received_not_replayed() -> bool:
        st = n2.pg.status()
        assert st.receive_lsn is not None and st.replay_lsn is not None
        return parse_lsn(st.receive_lsn) > parse_lsn(st.replay_lsn)

    wait_for(received_not_replayed, "WAL received but not replayed")
    time.sleep(1.2)
    lag = n2.pg.status().replay_lag_s
    assert lag is not None and 1.2 <= lag < 60
    assert n2.sql("SELECT count(*) AS c FROM acks")[0]["c"] == 100
    n2.sql("SELECT pg_wal_replay_resume()")
    wait_for(lambda: n2.pg.status().replay_lag_s == 0.0, "lag back to 0 after resume")
    assert n2.sql("SELECT count(*) AS c FROM acks")[0]["c"] == 101


def test_promote_is_idempotent_and_accepts_writes(lab: Lab) -> None:
    n2 = lab.n2
    lab.start_pair()
    assert not n2.pg.writable()
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        n2.sql("INSERT INTO acks VALUES (1, 'n2')")

    first = n2.pg.promote(timeout=30)
    assert first.changed and "timeline 2" in first.detail
    second = n2.pg.promote(timeout=30)
    assert not second.changed and "already primary" in second.detail

    assert n2.pg.writable()
    n2.sql("INSERT INTO acks VALUES (1, 'n2')")
    assert n2.sql("SELECT node FROM acks") == [{"node": "n2"}]
    st = n2.pg.status()
    assert (st.role, st.timeline, st.receiving, st.replay_lag_s) == ("primary", 2, False, None)

    # Stop is idempotent and the clean stop leaves a shutdown checkpoint in the control file.
    stopped = n2.pg.stop("fast")
    assert stopped.changed and "shut down" in stopped.detail
    st = n2.pg.status()
    assert not st.running and st.cluster_state == "shut down" and st.timeline == 2
    assert st.checkpoint_lsn is not None
    assert not n2.pg.stop("fast").changed
    assert not n2.pg.writable()


def test_rewind_turns_the_diverged_former_primary_into_a_standby(lab: Lab) -> None:
    n1, n2 = lab.n1, lab.n2
    lab.diverge_and_crash_n1()
    assert n1.pg.status().cluster_state == "in production"

    outcome = n1.pg.rewind_as_standby(n2.addr, PORT)
    assert outcome.changed and outcome.detail.startswith("rewound from 198.19.20.3:5432")
    wait_streaming(n2, n1)
    st = n1.pg.status()
    assert (st.role, st.timeline, st.upstream) == ("standby", 2, f"{n2.addr}:{PORT}")
    rows = n2.sql("SELECT application_name, client_addr::text AS a FROM pg_stat_replication")
    assert rows == [{"application_name": "n1", "a": "198.19.20.2/32"}]

    assert_follows_n2_history(n1, n2)
    assert not n1.pg.rewind_as_standby(n2.addr, PORT).changed


def test_a_failed_rewind_is_replaced_by_a_fresh_clone_keeping_the_old_data(lab: Lab) -> None:
    """A rewind cut short (the source restarting half-way, say) leaves a data directory that
    pg_rewind cannot use again; here its control file is gone. The former primary is cloned
    afresh instead of failing forever, and the old directory is kept aside."""
    n1, n2 = lab.n1, lab.n2
    lab.diverge_and_crash_n1()
    data = n1.pg.config.data_dir
    (data / "global" / "pg_control").unlink()

    outcome = n1.pg.rewind_as_standby(n2.addr, PORT)
    assert outcome.changed
    assert "rewind of n1 from 198.19.20.3:5432 failed" in outcome.detail
    assert f"kept as {data}.failed-rewind" in outcome.detail
    wait_streaming(n2, n1)
    assert (data.parent / "data.failed-rewind" / "PG_VERSION").exists()
    assert_follows_n2_history(n1, n2)
    assert not n1.pg.rewind_as_standby(n2.addr, PORT).changed


def test_clean_switchover_keeps_every_acknowledged_row(lab: Lab) -> None:
    n1, n2 = lab.n1, lab.n2
    lab.start_pair()
    acked: list[int] = []
    stop_writing = threading.Event()
    writer_error: list[BaseException] = []

    def writer() -> None:
        # One INSERT per commit (autocommit); an id counts once its commit returned.
        try:
            with n1.pg.connect() as conn:
                for i in range(1, 1_000_000):
                    if stop_writing.is_set():
                        return
                    conn.execute("INSERT INTO acks VALUES (%s, 'n1')", (i,))
                    acked.append(i)
        except psycopg.Error as exc:  # the old primary going away ends the writer
            writer_error.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    wait_for(lambda: len(acked) >= 200, "200 acknowledged inserts")

    # Switchover while the writer is still writing: stop old primary fast, promote, write.
    t0 = time.monotonic()
    assert n1.pg.stop("fast").changed
    thread.join(timeout=10)
    assert not thread.is_alive() and writer_error, "the writer must have lost the old primary"
    old = n1.pg.status()
    assert old.cluster_state == "shut down" and old.checkpoint_lsn is not None
    # The standby received the old primary's shutdown checkpoint before promotion.
    received = n2.pg.status().receive_lsn
    assert received is not None and parse_lsn(received) > parse_lsn(old.checkpoint_lsn)
    assert n2.pg.promote(timeout=30).changed
    n2.sql("INSERT INTO acks VALUES (0, 'n2')")  # the first write on the new primary
    elapsed = time.monotonic() - t0

    present = {r["id"] for r in n2.sql("SELECT id FROM acks WHERE node = 'n1'")}
    missing = sorted(set(acked) - present)
    assert not missing, f"{len(missing)} acknowledged rows lost, first {missing[:5]}"
    assert len(acked) >= 200 and elapsed < 30

    # The old primary shut down cleanly and nothing diverged: it follows without a rewind.
    outcome = n1.pg.rewind_as_standby(n2.addr, PORT)
    assert outcome.changed and outcome.detail.startswith("no rewind required")
    wait_streaming(n2, n1)
    wait_replayed(n2, n1)
    assert n1.sql("SELECT count(*) AS c FROM acks")[0]["c"] == len(present) + 1


def test_synchronous_replication_holds_commits_while_the_standby_is_down(lab: Lab) -> None:
    """Commits wait for the named standby and proceed once it is back.

    A client-side cancel of such a wait does not produce an error: PostgreSQL commits
    locally and only warns. And ``statement_timeout`` does not bound the wait at all (it is
    disabled before the commit runs), so "blocked" is measured with a thread here.
    """
    n1, n2 = lab.n1, lab.n2
    lab.start_pair()
    assert n1.pg.set_synchronous_standbys(["n2"]).changed
    assert not n1.pg.set_synchronous_standbys(["n2"]).changed
    assert n1.sql("SHOW synchronous_standby_names") == [{"synchronous_standby_names": 'ANY 1 ("n2")'}]
    wait_for(lambda: n1.pg.status().sync_standbys == ("n2",), "n2 acknowledged as sync")
    before = parse_lsn(n1.sql("SELECT pg_current_wal_lsn()::text AS l")[0]["l"])
    t = time.monotonic()
    n1.sql("INSERT INTO acks VALUES (1, 'sync-up')")
    assert time.monotonic() - t < 5
    flushed = dict(n1.pg.status().flushed)
    assert set(flushed) == {"n2"} and parse_lsn(flushed["n2"]) > before, (
        "a synchronous commit returns only once the standby flushed it"
    )

    assert n2.pg.stop("fast").changed
    done = threading.Event()
    result: list[Any] = []

    def commit(value: int) -> None:
        try:
            with n1.pg.connect() as conn:
                conn.execute("INSERT INTO acks VALUES (%s, 'sync-down')", (value,))
                result.append("committed")
        except psycopg.Error as exc:
            result.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=commit, args=(2,), daemon=True)
    worker.start()
    assert not done.wait(2.0), f"commit returned without the sync standby: {result}"
    # Flushed locally, but invisible to others until the standby acknowledges it.
    assert n1.sql("SELECT count(*) AS c FROM acks WHERE id = 2")[0]["c"] == 0

    # A cancelled wait only warns: the client sees success, which must not count as an ack.
    with n1.pg.connect() as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        timer = threading.Timer(1.0, conn.cancel_safe)
        timer.start()
        try:
            conn.execute("INSERT INTO acks VALUES (3, 'cancelled')")
        finally:
            timer.cancel()
        assert any("canceling wait for synchronous replication" in n for n in notices), notices

    assert n2.pg.start_standby(n1.addr, PORT).changed
    assert done.wait(30), "the held commit did not complete after the standby came back"
    worker.join(5)
    assert result == ["committed"]
    wait_replayed(n1, n2)
    assert [r["id"] for r in n2.sql("SELECT id FROM acks ORDER BY id")] == [1, 2, 3]

    # Back to asynchronous: commits no longer wait for the stopped standby.
    assert n1.pg.set_synchronous_standbys([]).changed
    assert n2.pg.stop("fast").changed
    t = time.monotonic()
    n1.sql("INSERT INTO acks VALUES (4, 'async')")
    assert time.monotonic() - t < 2


# A query that keeps its backend busy on the CPU (no wait, so no check for the postmaster's
# death), then reads the streaming standbys, as the agent's status query does.
BUSY_THEN_STREAMING = """
SELECT busy.n, ARRAY(SELECT application_name::text FROM pg_stat_replication
                      WHERE state = 'streaming' AND busy.n > 0) AS streaming_names
  FROM (SELECT count(*) AS n FROM pg_class a, pg_class b, pg_class c, generate_series(1, 4) d) busy
"""


def test_a_backend_outliving_its_postmaster_says_nobody_streams_and_a_fresh_read_cannot_connect(lab: Lab) -> None:
    """Why a standby leaves the Lease's list only on a second, fresh read
    (`core.departure_confirmed`): a backend that was running when the postmaster died answers
    after the WAL senders exited with it, so it says no standby streams; a read that connects
    afresh finds no server at all."""
    n1 = lab.n1
    lab.start_pair()
    sender = n1.sql("SELECT pid FROM pg_stat_replication WHERE application_name = 'n2'")[0]["pid"]
    answer: list[Any] = []

    def busy_read() -> None:
        try:
            with n1.pg.connect() as conn:
                answer.append(conn.execute(BUSY_THEN_STREAMING).fetchone())
        except psycopg.Error as exc:
            answer.append(exc)

    reader = threading.Thread(target=busy_read, daemon=True)
    reader.start()
    time.sleep(0.5)
    os.kill(postmaster_pid(n1.pg), signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{sender}").exists(), "the WAL sender gone with its postmaster")
    assert reader.is_alive(), "the busy query ended before the postmaster died: make it longer"
    reader.join(120)
    assert not reader.is_alive(), "the busy query never answered"
    row = answer[0]
    assert not isinstance(row, Exception), f"the backend did not outlive its postmaster: {row}"
    assert row["n"] > 0 and row["streaming_names"] == []

    again = n1.pg.status()
    assert again.role is None
    assert not departure_confirmed(("n2",), again.role, again.streaming_names)


def test_the_lab_client_gives_up_a_write_whose_server_vanished_before_answering(lab: Lab, tmp_path: Path) -> None:
    """A query the server received but never answered leaves the client nothing to retransmit:
    without keepalives (`tandem_lab.client.CONNECTION_BOUNDS`) it waits for the kernel's two
    hours, and an e2e client once sat out a forced failover that way. Here the INSERT waits
    on a lock on n1 when n1 drops off the network (or, by the timing, the next INSERT goes
    into the void, which tcp_user_timeout bounds); the client must log an error within
    seconds (and so reconnect)."""
    n1, n2 = lab.n1, lab.n2
    n1.pg = Postgres(replace(n1.pg.config, client_access=(ClientRule("postgres", APP_USER, f"198.19.{SUBNET}.0/24"),)))
    assert n1.pg.init_primary().changed
    n1.sql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD 'lab-client'")
    n1.sql(f"GRANT CREATE ON SCHEMA public TO {APP_USER}")
    log = tmp_path / "client.log"
    argv = ["ip", "netns", "exec", n2.host.namespace, sys.executable, "-m", "tandem_lab.client"]
    argv += ["--vip", n1.addr, "--pg-port", str(PORT), "--http-port", "1", "--file-port", "0", "--log", str(log)]
    client = subprocess.Popen(
        argv, env=os.environ | {"PGPASSWORD": "lab-client"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: any("ack" in r for r in read_log(log)), "a first acknowledged write")
        with n1.pg.connect() as holder, holder.transaction():
            holder.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
            wait_for(
                lambda: n1.sql(
                    "SELECT pid FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'", (APP_USER,)
                ),
                "the client's INSERT waiting on the lock",
            )
            lab.net.cut("n1", "repl")
            vanished = time.monotonic()
            error = wait_for(
                lambda: [r for r in read_log(log) if "write_error" in r and r["t"] >= vanished],
                "the client giving up the unanswered write",
                timeout=15,
            )[0]
            assert error["t"] - vanished < 10, error
    finally:
        client.terminate()
        client.wait(timeout=10)


def test_errors_say_what_to_do(lab: Lab) -> None:
    n1, n2 = lab.n1, lab.n2
    with pytest.raises(NotInitializedError, match=r"clone_standby\(host, port\)"):
        n2.pg.start_standby(n1.addr, PORT)
    with pytest.raises(NotRunningError, match="start it with start_standby"):
        n2.pg.promote()
    lab.start_pair()
    with pytest.raises(WrongRoleError, match=r"rewind_as_standby"):
        n1.pg.start_standby(n2.addr, PORT)
    with pytest.raises(WrongRoleError, match=r"promote\(\) it instead"):
        n2.pg.start_primary()
    # Following the new holder before it promoted would keep n1 on the old timeline: refused,
    # with n1 left running as it was.
    with pytest.raises(SourceNotPrimaryError, match=r"from 198.19.20.3:5432 yet: it is still in recovery"):
        n1.pg.rewind_as_standby(n2.addr, PORT)
    assert n1.pg.status().role == "primary"
    assert n2.pg.promote().changed

    # Rewinding while the new primary is cut off: refused before touching the running node.
    n1.sql("INSERT INTO acks VALUES (1, 'n1-diverged')")
    lab.net.cut("n2", "repl")
    try:
        with pytest.raises(SourceUnreachableError, match="198.19.20.3:5432.*replication link"):
            n1.pg.rewind_as_standby(n2.addr, PORT)
        assert n1.pg.status().role == "primary"  # still running, untouched
    finally:
        lab.net.heal("n2", "repl")
    assert n1.pg.rewind_as_standby(n2.addr, PORT).changed
    wait_streaming(n2, n1)


# ----------------------------------------------------------------------------- authentication


def psql_from(node: Node, conninfo: str) -> subprocess.CompletedProcess[str]:
    """psql in `node`'s namespace, with no password from anywhere but `conninfo`."""
    bin_dir = node.pg.bin_dir
    return subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            node.host.namespace,
            str(bin_dir / "psql"),
            "-X",
            "-w",
            "-A",
            "-t",
            "-d",
            conninfo,
            "-c",
            "SELECT current_user",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": os.environ["PATH"], "PGPASSFILE": "/nonexistent", "PGCONNECT_TIMEOUT": "5"},
    )


def test_a_standby_with_the_wrong_password_cannot_replicate_and_with_the_right_one_can(lab: Lab) -> None:
    n1, n2 = lab.n1, lab.n2
    assert n1.pg.init_primary().changed
    right = n2.pg
    n2.pg = Postgres(replace(right.config, replication_password="not the password"))
    with pytest.raises(
        SourceRefusedError, match="refused the replication user replicator.*password authentication failed"
    ):
        n2.pg.clone_standby(n1.addr, PORT)
    assert not n2.pg.initialized
    assert not any(n2.pg.config.data_dir.iterdir())  # nothing half-cloned left behind

    n2.pg = right
    assert n2.pg.clone_standby(n1.addr, PORT).changed
    assert n2.pg.start_standby(n1.addr, PORT).changed
    wait_streaming(n1, n2)
    # The passfile is the postgres user's alone, and the conninfo points at it.
    passfile = n2.pg.config.passfile
    st = passfile.stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, pwd.getpwnam("postgres").pw_uid)
    conninfo = n2.sql("SHOW primary_conninfo")[0]["primary_conninfo"]
    assert f"passfile={passfile}" in conninfo and "password" not in conninfo
    auto = (n2.pg.config.data_dir / "postgresql.auto.conf").read_text()
    assert "with:colons" not in auto and "with:colons" not in conninfo


def test_a_network_connection_without_the_password_is_refused(lab: Lab) -> None:
    n1, n2 = lab.n1, lab.n2
    lab.start_pair()
    target = f"host={n1.addr} port={PORT} dbname=postgres"
    no_password = psql_from(n2, f"{target} user=replicator")
    assert no_password.returncode != 0 and "no password supplied" in no_password.stderr
    wrong = psql_from(n2, f"{target} user=replicator password=wrong")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
    superuser = psql_from(n2, f"{target} user=postgres")
    assert superuser.returncode != 0 and "no pg_hba.conf entry" in superuser.stderr
    right = psql_from(n2, f"{target} user=replicator passfile={n2.pg.config.passfile}")
    assert right.returncode == 0, right.stderr
    assert right.stdout.strip() == "replicator"
    hba = (n1.pg.config.conf_dir / "pg_hba.conf").read_text().splitlines()
    assert not any(line.split()[-1:] == ["trust"] for line in hba)


def test_the_password_is_a_scram_verifier_set_once_and_never_reset(lab: Lab) -> None:
    n1 = lab.n1
    assert n1.pg.init_primary().changed
    verifier = n1.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'replicator'")[0]
    assert verifier["rolpassword"].startswith("SCRAM-SHA-256$4096:")
    assert n1.pg.stop("fast").changed
    assert n1.pg.start_primary().changed
    assert not n1.pg.start_primary().changed  # running: nothing to do
    again = n1.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'replicator'")[0]
    assert again == verifier  # not reset to NULL, not even re-salted
    assert "with:colons" not in n1.pg.config.log_file.read_text()

    rotated = Postgres(replace(n1.pg.config, replication_password="rotated"))
    assert rotated.start_primary().changed
    new = n1.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'replicator'")[0]
    assert new != verifier


def test_a_debian_layout_with_the_configuration_outside_the_data_directory(lab: Lab) -> None:
    """n1 keeps postgresql.conf in its own directory (as Debian's /etc/postgresql/15/main),
    whose hba_file points elsewhere: tandem's files go beside it and win; n1 streams to n2,
    and after a divergence and a crash it is rewound (pg_rewind --config-file) and follows."""
    n1 = lab.n1
    etc = n1.pg.config.data_dir.parent / "etc"
    etc.mkdir(parents=True)
    (etc / "postgresql.conf").write_text(
        f"data_directory = '{n1.pg.config.data_dir}'\nhba_file = '/nonexistent/pg_hba.conf'\n"
    )
    os.chown(etc, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
    os.chown(etc / "postgresql.conf", pwd.getpwnam("postgres").pw_uid, -1)
    n1.pg = Postgres(replace(n1.pg.config, config_dir=etc))
    lab.diverge_and_crash_n1()
    outcome = n1.pg.rewind_as_standby(lab.n2.addr, PORT)
    assert outcome.changed and outcome.detail.startswith("rewound from")
    wait_streaming(lab.n2, n1)
    assert n1.sql("SHOW hba_file") == [{"hba_file": str(etc / "pg_hba.conf")}]
    assert n1.sql("SHOW config_file") == [{"config_file": str(etc / "postgresql.conf")}]
    assert_follows_n2_history(n1, lab.n2)
