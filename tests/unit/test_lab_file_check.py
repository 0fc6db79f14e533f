"""The lab's file checker without a lab: the command it runs in a node (run here on the host)
and the comparison of acknowledged with stored files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tandem_lab.client import file_content
from tandem_lab.echo import FileStore
from tandem_lab.harness import STORED_FILES, lost_files, missing_files
from tests.unit.test_lab_echo import mount_point_of

NODE = "mail1"


def stored(mount_point: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    """The checker's command in a node, run here with this interpreter."""
    return subprocess.run(
        [sys.executable, "-c", STORED_FILES, str(mount_point), str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_node_command_lists_every_stored_file_and_its_sha256(tmp_path: Path) -> None:
    data = tmp_path / "lab-files"
    for seq in (1, 2, 10):
        FileStore(data).put(f"f{seq}", file_content(seq))
    (data / ".f11.0123abcd.tmp").write_bytes(b"a write cut short")
    result = stored(mount_point_of(tmp_path), data)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {f"f{seq}": hashlib.sha256(file_content(seq)).hexdigest() for seq in (1, 2, 10)}


def test_the_node_command_finds_nothing_in_a_missing_directory(tmp_path: Path) -> None:
    result = stored(mount_point_of(tmp_path), tmp_path / "lab-files")
    assert (result.returncode, json.loads(result.stdout)) == (0, {})


def test_the_node_command_fails_when_the_mount_point_is_not_mounted(tmp_path: Path) -> None:
    assert not os.path.ismount(tmp_path)
    result = stored(tmp_path, tmp_path / "lab-files")
    assert result.returncode != 0
    assert result.stderr.strip() == f"{tmp_path} is not mounted"


def test_lost_files_names_missing_and_changed_files_in_the_order_written() -> None:
    acked = {"f1": "a" * 64, "f10": "b" * 64, "f2": "c" * 64, "f3": "d" * 64}
    present = {"f1": "a" * 64, "f2": "e" * 64, "f3": "d" * 64, "f99": "f" * 64}
    assert lost_files(acked, present) == [
        f"f2 has sha256 {'e' * 12}..., acknowledged {'c' * 12}...",
        "f10 missing",
    ]


def test_nothing_is_lost_when_every_acknowledged_file_is_stored_as_acknowledged() -> None:
    acked = {f"f{seq}": hashlib.sha256(file_content(seq)).hexdigest() for seq in range(1, 50)}
    assert lost_files(acked, acked | {"f50": "0" * 64}) == []
    assert lost_files({}, {"f1": "0" * 64}) == []


class Cluster:
    """The two calls missing_files makes of a LabCluster: the HACluster and a node's exec."""

    def __init__(self, mounts: list[dict[str, str]]) -> None:
        self.mounts = mounts
        self.execs: list[list[str]] = []

    def hacluster(self, name: str) -> dict[str, Any]:
        return {"spec": {"chain": {"mounts": self.mounts}}}

    def machine(self, node: str) -> Cluster:
        return self

    def exec(self, argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.execs.append(argv)
        return subprocess.CompletedProcess(argv, 0, json.dumps({"f1": "a" * 64}), "")


def test_missing_files_reads_the_chains_mount_once() -> None:
    cluster = Cluster([{"volume": "v", "mountPoint": "/srv/mail"}])
    lost = missing_files(cluster, NODE, {"f1": "a" * 64, "f2": "b" * 64})  # type: ignore[arg-type]
    assert lost == ["f2 missing"]
    assert [argv[-2:] for argv in cluster.execs] == [["/srv/mail", "/srv/mail/lab-files"]]


def test_missing_files_checks_nothing_when_nothing_was_acknowledged() -> None:
    cluster = Cluster([])
    assert missing_files(cluster, NODE, {}) == []  # type: ignore[arg-type]
    assert cluster.execs == []


def test_files_acknowledged_by_a_chain_without_a_mount_are_an_error() -> None:
    with pytest.raises(AssertionError, match="1 files acknowledged, but HACluster mail has no mount to store them on"):
        missing_files(Cluster([]), NODE, {"f1": "a" * 64})  # type: ignore[arg-type]
