"""The lab's echo service storing files (PUT /files/<name>), on loopback against a temporary
directory, and the environment files that give each chain's echo units their data directory."""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tandem_lab import echo
from tandem_lab.cluster import LAB_SAMPLES
from tandem_lab.echo import MAX_BODY, FileStore, environment_files, make_server

NODE = "mail1"


def mount_point_of(path: Path) -> Path:
    """The mount point of the file system holding `path`."""
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path


Serve = Callable[[FileStore | None], int]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start an echo server on 127.0.0.1 with a given store; returns its port."""
    servers = []

    def start(store: FileStore | None) -> int:
        server = make_server(NODE, "127.0.0.1", 0, store)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_get_still_answers_the_node_name(serve: Serve, tmp_path: Path) -> None:
    assert request(serve(FileStore(tmp_path)), "GET", "/") == (200, f"{NODE}\n")


def test_put_answers_201_after_the_file_is_synced_renamed_and_its_directory_synced(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    fsync, rename = os.fsync, os.rename

    def recording_fsync(fd: int) -> None:
        steps.append("fsync directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        fsync(fd)

    def recording_rename(*args: object, **kwargs: object) -> None:
        steps.append("rename")
        rename(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(echo.os, "fsync", recording_fsync)
    monkeypatch.setattr(echo.os, "rename", recording_rename)
    data = tmp_path / "lab-files"  # created by the service
    body = b"hello\n" * 100
    port = serve(FileStore(data))
    status, answer = request(port, "PUT", "/files/f1", body)
    assert (status, answer) == (201, f"{NODE} {hashlib.sha256(body).hexdigest()}\n")
    # the new data directory's entry in its parent first, then the file's
    assert steps == ["fsync directory", "fsync file", "rename", "fsync directory"]
    assert (data / "f1").read_bytes() == body
    assert [p.name for p in data.iterdir()] == ["f1"]  # no temporary file left
    steps.clear()
    assert request(port, "PUT", "/files/f2", body)[0] == 201
    assert steps == ["fsync file", "rename", "fsync directory"]


def test_a_second_put_replaces_the_file(serve: Serve, tmp_path: Path) -> None:
    port = serve(FileStore(tmp_path))
    assert request(port, "PUT", "/files/a.txt", b"one")[0] == 201
    assert request(port, "PUT", "/files/a.txt", b"two")[0] == 201
    assert (tmp_path / "a.txt").read_bytes() == b"two"


@pytest.mark.parametrize("name", [".hidden", "..", "a%2Fb", "a%20b", "x" * 101, "", "%C3%A9", "f1?x=1"])
def test_a_bad_file_name_is_refused_with_400(serve: Serve, tmp_path: Path, name: str) -> None:
    status, answer = request(serve(FileStore(tmp_path)), "PUT", f"/files/{name}", b"x")
    assert status == 400
    assert "use 1 to 100 of A-Z a-z 0-9 . _ -, not starting with a dot" in answer
    assert list(tmp_path.iterdir()) == []


def test_a_path_below_files_is_refused(serve: Serve, tmp_path: Path) -> None:
    assert request(serve(FileStore(tmp_path)), "PUT", "/files/a/b", b"x")[0] == 400
    assert request(serve(FileStore(tmp_path)), "PUT", "/other/a", b"x")[0] == 404
    assert list(tmp_path.iterdir()) == []


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(serve: Serve, tmp_path: Path) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", serve(FileStore(tmp_path)), timeout=5)
    try:
        conn.putrequest("PUT", "/files/big")
        conn.putheader("Content-Length", str(MAX_BODY + 1))
        conn.endheaders()  # no body sent: the answer must not wait for it
        response = conn.getresponse()
        assert response.status == 413
        assert f"at most {MAX_BODY} bytes" in response.read().decode()
    finally:
        conn.close()
    assert list(tmp_path.iterdir()) == []


def test_a_body_at_the_limit_is_stored(serve: Serve, tmp_path: Path) -> None:
    body = os.urandom(MAX_BODY)
    assert request(serve(FileStore(tmp_path)), "PUT", "/files/big", body)[0] == 201
    assert (tmp_path / "big").read_bytes() == body


def test_without_a_data_directory_put_answers_404(serve: Serve) -> None:
    status, answer = request(serve(None), "PUT", "/files/f1", b"x")
    assert (status, answer) == (404, "no data directory configured (--data-dir or ECHO_DATA_DIR)\n")


@pytest.mark.parametrize("where", ["the directory is a file", "its parent is a file", "its parent is missing"])
def test_a_directory_that_cannot_hold_the_file_answers_503(serve: Serve, tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("not a directory\n")
    data = {
        "the directory is a file": tmp_path / "file",
        "its parent is a file": tmp_path / "file" / "lab-files",
        "its parent is missing": tmp_path / "gone" / "lab-files",
    }[where]
    status, answer = request(serve(FileStore(data)), "PUT", "/files/f1", b"x")
    assert status == 503
    assert answer.startswith("not stored f1: ")


def test_an_io_error_answers_503_and_leaves_no_file(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(echo.os, "fsync", failing_fsync)
    status, answer = request(serve(FileStore(tmp_path)), "PUT", "/files/f1", b"x")
    assert (status, answer) == (503, "not stored f1: [Errno 5] Input/output error\n")
    assert list(tmp_path.iterdir()) == []


def test_nothing_is_stored_while_the_mount_point_is_not_mounted(serve: Serve, tmp_path: Path) -> None:
    assert not os.path.ismount(tmp_path)
    status, answer = request(serve(FileStore(tmp_path / "lab-files", tmp_path)), "PUT", "/files/f1", b"x")
    assert status == 503
    assert f"{tmp_path} is not mounted: not storing on the file system beneath it" in answer
    assert list(tmp_path.iterdir()) == []  # not even the data directory


def test_files_are_stored_while_the_mount_point_is_mounted(serve: Serve, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "lab-files", mount_point_of(tmp_path))
    assert request(serve(store), "PUT", "/files/f1", b"x")[0] == 201
    assert (tmp_path / "lab-files" / "f1").read_bytes() == b"x"


def test_the_mount_point_must_hold_the_data_directory(tmp_path: Path) -> None:
    """A data directory on another file system than the mount point's (the state after a lazy
    unmount, the directory beneath it) is refused."""
    other = Path("/proc") if mount_point_of(tmp_path) != Path("/proc") else Path("/sys")
    with pytest.raises(OSError, match=f"is not on the file system mounted at {other}"):
        FileStore(tmp_path / "lab-files", other).put("f1", b"x")


def test_mail_sample_gives_each_echo_unit_its_chains_mount() -> None:
    docs = list(yaml.safe_load_all((LAB_SAMPLES / "mail.yaml").read_text()))
    content = "ECHO_DATA_DIR=/srv/mail/lab-files\nECHO_MOUNT_POINT=/srv/mail\n"
    expected = {f"/etc/tandem-lab/echo-{port}.env": content for port in (8080, 2525, 1143)}
    assert environment_files(docs, "mail1") == expected
    assert environment_files(docs, "mail2") == expected
    assert environment_files(docs, "elsewhere") == {}


def test_a_chain_without_a_mount_gives_its_echo_unit_no_data_directory() -> None:
    docs = list(yaml.safe_load_all((LAB_SAMPLES / "trio.yaml").read_text()))
    assert [d for d in docs if d["kind"] == "HACluster"]  # the sample runs an echo unit
    assert environment_files(docs, "trio1") == {}


def test_one_echo_unit_in_two_chains_with_different_mounts_is_refused() -> None:
    def chain(name: str, mount: str) -> dict[str, object]:
        return {
            "kind": "HACluster",
            "metadata": {"name": name},
            "spec": {
                "nodes": [{"name": "n1"}],
                "chain": {
                    "mounts": [{"volume": "v", "mountPoint": mount}],
                    "services": [{"name": "web", "unit": "lab-echo@8080.service"}],
                },
            },
        }

    with pytest.raises(ValueError, match="HACluster b: spec.chain.services web runs lab-echo@8080.service on n1"):
        environment_files([chain("a", "/srv/a"), chain("b", "/srv/b")], "n1")
