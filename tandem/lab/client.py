"""The lab's client: polls the floating IP over HTTP and writes to PostgreSQL through it.

It writes as the application role `APP_USER` with its password from ``PGPASSWORD`` (libpq
reads it), admitted by the HACluster's spec.chain.postgres.clientAccess with scram-sha-256,
as a real application would be.

Runs inside the client namespace. Every acknowledged write is logged (flushed) before the
next one is sent, so after any fault the checker can demand that each logged id is on the
final primary. Output: one JSON object per line in `--log`:

    {"t": <monotonic s>, "http": "<node>"|null}     one HTTP poll (null: no answer)
    {"t": <monotonic s>, "ack": <id>, "node": ...}  one acknowledged INSERT
    {"t": <monotonic s>, "write_error": "..."}       a failed write (not acknowledged)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import psycopg

TABLE = "tandem_acks"
APP_USER = "tandem_app"


class Log:
    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record | {"t": round(time.monotonic(), 4)})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


def poll_http(vip: str, port: int, interval: float, log: Log, stop: threading.Event) -> None:
    url = f"http://{vip}:{port}/"
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=0.5) as resp:  # noqa: S310 - lab VIP
                node = resp.read().decode().strip()
        except OSError:
            node = None
        log.write({"http": node})
        stop.wait(interval)


def write_loop(vip: str, port: int, interval: float, log: Log, stop: threading.Event, *,
               start_id: int) -> None:
    next_id = start_id
    conn: psycopg.Connection[Any] | None = None
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(host=vip, port=port, user=APP_USER, dbname="postgres",
                                       connect_timeout=1, autocommit=True)
                conn.execute("SET statement_timeout = '2s'")
                conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} "
                             "(id bigint PRIMARY KEY, node text, at timestamptz DEFAULT now())")
            node = conn.execute(
                f"INSERT INTO {TABLE} (id, node) VALUES (%s, current_setting('cluster_name')) "
                "RETURNING node", (next_id,)).fetchone()
            log.write({"ack": next_id, "node": node[0] if node else None})
            next_id += 1
        except psycopg.errors.UniqueViolation:
            next_id += 1  # acknowledged before a reconnect; never reuse an id
        except (psycopg.Error, OSError) as exc:
            log.write({"write_error": str(exc).strip().splitlines()[0][:200] if str(exc) else
                       type(exc).__name__})
            if conn is not None:
                conn.close()
            conn = None
            stop.wait(0.05)
            continue
        stop.wait(interval)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--vip", required=True)
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--pg-port", type=int, default=0, help="0: no PostgreSQL writes")
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--start-id", type=int, default=1)
    p.add_argument("--log", type=Path, required=True)
    args = p.parse_args(argv)
    log = Log(args.log)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=poll_http, daemon=True,
                                args=(args.vip, args.http_port, args.interval, log, stop))]
    if args.pg_port:
        threads.append(threading.Thread(target=write_loop, daemon=True, args=(
            args.vip, args.pg_port, args.interval, log, stop), kwargs={"start_id": args.start_id}))
    for thread in threads:
        thread.start()
    while not stop.is_set():
        stop.wait(0.5)
    for thread in threads:
        thread.join(timeout=5)
    return 0


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by SIGKILL
    return records


if __name__ == "__main__":
    sys.exit(main())
