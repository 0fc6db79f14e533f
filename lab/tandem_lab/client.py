"""The lab's client: polls the floating IP over HTTP, writes to PostgreSQL through it and
stores files on the echo service there.

It writes as the application role `APP_USER` with its password from ``PGPASSWORD`` (libpq
reads it), admitted by the HACluster's spec.chain.postgres.clientAccess with scram-sha-256,
as a real application would be. Files go to `PUT /files/f<seq>` of the echo service on
`--file-port` (tandem_lab.echo), which stores them on the primary's DRBD mount.

Runs inside the client namespace. Every acknowledged write and file is logged (flushed)
before the next one is sent, so after any fault the checker can demand that each logged id
is on the final primary, and each logged file on its mount with that sha256. Output: one
JSON object per line in `--log`:

    {"t": <monotonic s>, "http": "<node>"|null}     one HTTP poll (null: no answer)
    {"t": <monotonic s>, "ack": <id>, "node": ...}  one acknowledged INSERT
    {"t": <monotonic s>, "write_error": "..."}       a failed write (not acknowledged)
    {"t": <monotonic s>, "file": "f<seq>", "sha256": ..., "node": ...}
                                                     one file stored (201 with its sha256)
    {"t": <monotonic s>, "file_error": "..."}        a file not stored (not acknowledged)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

import psycopg

TABLE = "tandem_acks"
APP_USER = "tandem_app"

# How long the client waits on a silent server, as any application behind a floating IP must
# bound it. A query the old primary received but never answered leaves nothing to retransmit,
# so without keepalives the client waits for the kernel's default of two hours; with them its
# probes reach whoever holds the address now, which resets the connection, or nobody, and the
# connection is given up after about 4 s. A query sent into the void is retransmitted for about
# 15 minutes unless tcp_user_timeout bounds how long it may go unacknowledged.
CONNECTION_BOUNDS: dict[str, Any] = {
    "connect_timeout": 1,
    "keepalives": 1,
    "keepalives_idle": 1,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 4000,
}


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


def first_id(requested: int | None) -> int:
    """Where a client's ids start. A module's scenarios run one client after another against
    one table; each starting at 1 would spend its first seconds (or minutes, after thousands of
    writes) on duplicate ids without a single acknowledgement."""
    return requested if requested is not None else time.time_ns() // 1000


def write_loop(vip: str, port: int, interval: float, log: Log, stop: threading.Event, *, start_id: int) -> None:
    next_id = start_id
    conn: psycopg.Connection[Any] | None = None
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(
                    host=vip, port=port, user=APP_USER, dbname="postgres", autocommit=True, **CONNECTION_BOUNDS
                )
                conn.execute("SET statement_timeout = '2s'")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} "
                    "(id bigint PRIMARY KEY, node text, at timestamptz DEFAULT now())"
                )
            node = conn.execute(
                f"INSERT INTO {TABLE} (id, node) VALUES (%s, current_setting('cluster_name')) RETURNING node",
                (next_id,),
            ).fetchone()
            log.write({"ack": next_id, "node": node[0] if node else None})
            next_id += 1
        except psycopg.errors.UniqueViolation:
            next_id += 1  # acknowledged before a reconnect; never reuse an id
        except (psycopg.Error, OSError) as exc:
            log.write({"write_error": str(exc).strip().splitlines()[0][:200] if str(exc) else type(exc).__name__})
            if conn is not None:
                conn.close()
            conn = None
            stop.wait(0.05)
            continue
        stop.wait(interval)


def file_content(seq: int) -> bytes:
    """File f<seq>'s content: a few hundred bytes, different for every seq and the same at
    every retry (a retried PUT that did land stores what the acknowledgement names)."""
    noise = hashlib.sha256(f"tandem lab file {seq}".encode()).hexdigest()
    return f"f{seq}\n{noise * 8}\n".encode()


def file_loop(vip: str, port: int, interval: float, log: Log, stop: threading.Event) -> None:
    """PUT a new file every `interval`; a file is logged only when the service answered 201
    with the sha256 of what was sent, otherwise the same file is tried again."""
    seq = 1
    while not stop.is_set():
        name, body = f"f{seq}", file_content(seq)
        digest = hashlib.sha256(body).hexdigest()
        request = urllib.request.Request(f"http://{vip}:{port}/files/{name}", data=body, method="PUT")
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:  # noqa: S310 - lab VIP
                status, answer = resp.status, resp.read().decode(errors="replace").strip()
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, exc.read().decode(errors="replace").strip()
        except OSError as exc:
            log.write({"file_error": f"{name}: {exc}"[:200]})
            stop.wait(interval)
            continue
        node, _, stored = answer.partition(" ")
        if status == 201 and stored == digest:
            log.write({"file": name, "sha256": digest, "node": node})
            seq += 1
        else:
            log.write({"file_error": f"{name}: {status} {answer}"[:200]})
        stop.wait(interval)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--vip", required=True)
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--pg-port", type=int, default=0, help="0: no PostgreSQL writes")
    p.add_argument(
        "--file-port", type=int, default=None, help="the echo service storing files (default: --http-port); 0: no files"
    )
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument(
        "--file-interval",
        type=float,
        default=0.25,
        help="seconds between files (the lab's 32 MiB volume holds about 8,000)",
    )
    p.add_argument(
        "--start-id",
        type=int,
        default=None,
        help="the first write's id (default: the wall clock in microseconds, so that clients run one "
        "after another against one table never collide)",
    )
    p.add_argument("--log", type=Path, required=True)
    args = p.parse_args(argv)
    log = Log(args.log)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [
        threading.Thread(target=poll_http, daemon=True, args=(args.vip, args.http_port, args.interval, log, stop))
    ]
    if args.pg_port:
        threads.append(
            threading.Thread(
                target=write_loop,
                daemon=True,
                args=(args.vip, args.pg_port, args.interval, log, stop),
                kwargs={"start_id": first_id(args.start_id)},
            )
        )
    file_port = args.http_port if args.file_port is None else args.file_port
    if file_port:
        threads.append(
            threading.Thread(target=file_loop, daemon=True, args=(args.vip, file_port, args.file_interval, log, stop))
        )
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
