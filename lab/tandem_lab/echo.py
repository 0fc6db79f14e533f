"""The lab's service: a small HTTP server that answers every GET with its node's name and, given
a data directory, stores the files PUT to it.

A client polling a floating IP sees which node serves it. `PUT /files/<name>` answers 201
("<node> <sha256>") only once the file is durably on disk (written to a temporary name,
fsync'ed, renamed into place, its directory fsync'ed), so a file the client saw acknowledged
must be on the volume whatever happens next: the lab's proof that data on a DRBD mount
survives a failover (tandem_lab.harness.missing_files). Whatever keeps it from storing the
file answers 503, never 2xx.

The lab gives each echo unit that a chain with mounts runs an environment file
(`environment_files`): the data directory below the chain's first mount point, and that mount
point, which must be mounted for a file to be stored (otherwise it would land on the root
file system beneath it, hidden once the agent mounts the volume again).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import secrets
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FILES_PATH = "/files/"
FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
MAX_BODY = 1024 * 1024
ECHO_UNIT = re.compile(r"lab-echo@(?P<port>\d+)\.service")
ENVIRONMENT_FILE = "/etc/tandem-lab/echo-{port}.env"
FILES_DIRECTORY = "lab-files"


def data_dir(mount_point: str) -> str:
    """Where the echo services of a chain store files: below the chain's first mount point."""
    return f"{mount_point.rstrip('/')}/{FILES_DIRECTORY}"


def environment_files(docs: Sequence[dict[str, Any]], node: str) -> dict[str, str]:
    """The environment file (path in the node -> content) of every echo unit that a chain
    with mounts runs on `node`; lab-echo@.service reads it. ValueError when two chains on the
    node name the same echo unit with different mounts (one unit cannot serve both)."""
    files: dict[str, str] = {}
    for doc in docs:
        spec = doc["spec"]
        if doc["kind"] != "HACluster" or node not in {n["name"] for n in spec["nodes"]}:
            continue
        chain = spec.get("chain", {})
        mounts = chain.get("mounts") or []
        if not mounts:
            continue
        mount_point = mounts[0]["mountPoint"]
        content = f"ECHO_DATA_DIR={data_dir(mount_point)}\nECHO_MOUNT_POINT={mount_point}\n"
        for service in chain.get("services", []):
            match = ECHO_UNIT.fullmatch(service.get("unit", ""))
            if match is None:
                continue
            path = ENVIRONMENT_FILE.format(port=match["port"])
            if files.setdefault(path, content) != content:
                raise ValueError(
                    f"HACluster {doc['metadata']['name']}: spec.chain.services {service['name']} "
                    f"runs {service['unit']} on {node}, which another chain with another mount "
                    "runs there too; give each chain's echo service a port of its own"
                )
    return files


class FileStore:
    """Stores files in `directory`, each durably before `put` returns, and only while
    `mount_point` (when given) is mounted and holds `directory`."""

    def __init__(self, directory: Path, mount_point: Path | None = None) -> None:
        self.directory, self.mount_point = directory, mount_point

    def put(self, name: str, body: bytes) -> str:
        """Store `body` as `name` and return its sha256 once it is on disk; OSError when it
        could not be (the caller must then not acknowledge it)."""
        self._check_mounted()
        with contextlib.suppress(FileExistsError):
            self.directory.mkdir()
            _fsync_directory(self.directory.parent)  # only when made: its entry, durable too
        directory = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._check_mounted(directory)
            temporary = f".{name}.{secrets.token_hex(4)}.tmp"  # a leading dot: never a name
            try:
                self._write(directory, temporary, body)
                os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=directory)
                raise
            os.fsync(directory)
        finally:
            os.close(directory)
        return hashlib.sha256(body).hexdigest()

    @staticmethod
    def _write(directory: int, name: str, body: bytes) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=directory)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _check_mounted(self, directory: int | None = None) -> None:
        """OSError unless the mount point is mounted and (given an open `directory`) holds it:
        checked again after opening, so an unmount in between cannot go unnoticed."""
        if self.mount_point is None:
            return
        if not os.path.ismount(self.mount_point):
            raise OSError(f"{self.mount_point} is not mounted: not storing on the file system beneath it")
        if directory is not None and os.fstat(directory).st_dev != os.stat(self.mount_point).st_dev:
            raise OSError(f"{self.directory} is not on the file system mounted at {self.mount_point}")


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_server(node: str, bind: str, port: int, store: FileStore | None) -> ThreadingHTTPServer:
    """The echo server, not yet serving: GET answers `node`; PUT /files/<name> stores in
    `store` (404 without one)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a body that never arrives ends the request instead of its thread

        def do_GET(self) -> None:
            self._answer(200, node)

        def do_PUT(self) -> None:
            status, text = self._put()
            if status >= 500:
                print(f"PUT {self.path}: {status} {text}", file=sys.stderr, flush=True)
            self._answer(status, text)

        def _put(self) -> tuple[int, str]:
            if not self.path.startswith(FILES_PATH):
                return 404, f"PUT {FILES_PATH}<name> only"
            if store is None:
                return 404, "no data directory configured (--data-dir or ECHO_DATA_DIR)"
            name = self.path[len(FILES_PATH) :]
            if not FILE_NAME.fullmatch(name):
                return 400, (f"file name {name[:120]!r}: use 1 to 100 of A-Z a-z 0-9 . _ -, not starting with a dot")
            try:
                length = int(self.headers["Content-Length"])
            except (TypeError, ValueError):
                length = -1
            if length < 0:
                return 411, "a Content-Length of 0 or more bytes is required"
            if length > MAX_BODY:
                return 413, f"body of {length} bytes: at most {MAX_BODY} bytes"
            body = self.rfile.read(length)
            if len(body) != length:
                return 400, f"body cut short: {len(body)} of {length} bytes"
            try:
                digest = store.put(name, body)
            except OSError as exc:
                return 503, f"not stored {name}: {exc}"
            return 201, f"{node} {digest}"

        def _answer(self, status: int, text: str) -> None:
            body = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return

    return ThreadingHTTPServer((bind, port), Handler)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--bind", default="0.0.0.0")  # noqa: S104 - inside the node's own namespace
    p.add_argument("--name", default=os.environ.get("NODE_NAME", "unknown"))
    p.add_argument(
        "--data-dir",
        type=Path,
        default=os.environ.get("ECHO_DATA_DIR") or None,
        help="store PUT /files/<name> here (created when missing); default $ECHO_DATA_DIR, none: PUT answers 404",
    )
    p.add_argument(
        "--mount-point",
        type=Path,
        default=os.environ.get("ECHO_MOUNT_POINT") or None,
        help="store only while this is mounted; default $ECHO_MOUNT_POINT",
    )
    args = p.parse_args(argv)
    if args.mount_point is not None and args.data_dir is None:
        p.error("--mount-point (or ECHO_MOUNT_POINT) needs --data-dir (or ECHO_DATA_DIR)")
    store = None if args.data_dir is None else FileStore(args.data_dir, args.mount_point)
    make_server(args.name, args.bind, args.port, store).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
