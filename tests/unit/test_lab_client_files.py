"""The lab client's file writer against an echo server on loopback: a file is logged only
when the service stored it and answered its sha256, and one not stored is tried again."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem_lab.client import Log, file_content, file_loop, read_log
from tandem_lab.echo import FileStore, make_server

NODE = "mail1"


class WrongDigest(FileStore):
    """Stores the file but answers another sha256 (a service the client must not trust)."""

    def put(self, name: str, body: bytes) -> str:
        super().put(name, body)
        return "0" * 64


class Writer:
    """The client's file loop in a thread, writing to an echo server on 127.0.0.1."""

    def __init__(self, store: FileStore | None, log: Path) -> None:
        self.server = make_server(NODE, "127.0.0.1", 0, store)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.log, self.stop = log, threading.Event()
        self.thread = threading.Thread(
            target=file_loop, daemon=True, args=("127.0.0.1", self.server.server_address[1], 0.01, Log(log), self.stop)
        )
        self.thread.start()

    def wait_for(self, what: str, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in read_log(self.log) if what in r]
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(f"fewer than {count} {what} records within {timeout}s: {read_log(self.log)[-5:]}")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def writers() -> Iterator[list[Writer]]:
    started: list[Writer] = []
    yield started
    for writer in started:
        writer.close()


def test_every_logged_file_is_stored_with_the_logged_sha256(tmp_path: Path, writers: list[Writer]) -> None:
    data = tmp_path / "lab-files"
    writer = Writer(FileStore(data), tmp_path / "client.log")
    writers.append(writer)
    writer.wait_for("file", count=5)
    writer.close()
    acked = [r for r in read_log(writer.log) if "file" in r]
    assert [r["file"] for r in acked] == [f"f{seq}" for seq in range(1, len(acked) + 1)]
    for seq, record in enumerate(acked, start=1):
        assert record["node"] == NODE
        assert record["sha256"] == hashlib.sha256(file_content(seq)).hexdigest()
        assert hashlib.sha256((data / record["file"]).read_bytes()).hexdigest() == record["sha256"]


def test_file_contents_differ_and_hold_their_sequence_number() -> None:
    contents = [file_content(seq) for seq in range(1, 200)]
    assert len(set(contents)) == len(contents)
    assert all(300 <= len(c) <= 1000 for c in contents)
    assert file_content(7).startswith(b"f7\n") and file_content(7) == file_content(7)


def test_refused_files_are_logged_as_errors_and_never_acknowledged(tmp_path: Path, writers: list[Writer]) -> None:
    writer = Writer(None, tmp_path / "client.log")
    writers.append(writer)
    errors = writer.wait_for("file_error", count=3)
    writer.close()
    assert errors[0]["file_error"] == "f1: 404 no data directory configured (--data-dir or ECHO_DATA_DIR)"
    assert not [r for r in read_log(writer.log) if "file" in r]


def test_a_201_with_another_sha256_is_not_an_acknowledgement(tmp_path: Path, writers: list[Writer]) -> None:
    writer = Writer(WrongDigest(tmp_path / "lab-files"), tmp_path / "client.log")
    writers.append(writer)
    errors = writer.wait_for("file_error", count=2)
    writer.close()
    assert errors[0]["file_error"] == f"f1: 201 {NODE} {'0' * 64}"
    assert not [r for r in read_log(writer.log) if "file" in r]


def test_a_file_not_stored_is_tried_again_under_the_same_name(tmp_path: Path, writers: list[Writer]) -> None:
    blocked = tmp_path / "lab-files"
    blocked.write_text("a file where the directory should be\n")
    writer = Writer(FileStore(blocked), tmp_path / "client.log")
    writers.append(writer)
    assert writer.wait_for("file_error")[0]["file_error"].startswith("f1: 503 not stored f1: ")
    blocked.unlink()
    acked = writer.wait_for("file", count=2)
    assert [r["file"] for r in acked[:2]] == ["f1", "f2"]


def test_a_service_that_does_not_answer_is_logged_as_an_error(tmp_path: Path) -> None:
    server = make_server(NODE, "127.0.0.1", 0, None)
    port = server.server_address[1]
    server.server_close()  # nothing listens there now
    stop = threading.Event()
    thread = threading.Thread(target=file_loop, args=("127.0.0.1", port, 0.01, Log(tmp_path / "client.log"), stop))
    thread.start()
    time.sleep(0.2)
    stop.set()
    thread.join(timeout=5)
    records = read_log(tmp_path / "client.log")
    assert records and all("file_error" in r and r["file_error"].startswith("f1: ") for r in records)
