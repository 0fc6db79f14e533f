"""The agent's discovery loop reads its world from the watch mirrors only when they changed:
the same counts give back the same world, with no copy and no write of the on-disk cache; a
change of status alone is written to disk at most every WORLD_WRITE_SECONDS."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from tandem.kube.errors import Unavailable
from tandem_agent import __main__ as world
from tandem_agent.__main__ import Agent


class Mirrors:
    def __init__(self) -> None:
        self.count = 1
        self.synced = True
        self.reads = 0
        self.name = "c"
        self.phase = "Up"

    def changes(self, plural: str) -> tuple[int, ...]:
        if not self.synced:
            raise Unavailable(None, "the watch of haclusters is not synced")
        return (self.count,)

    def objects(self, plural: str) -> list[dict[str, Any]]:
        self.reads += 1
        return [{"metadata": {"name": f"{plural}-{self.name}"}, "status": {"phase": f"{self.phase}"}}]


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    agent = Agent.__new__(Agent)  # no API client: only what read_world uses
    agent.args = argparse.Namespace(state_dir=tmp_path)
    agent.watches = Mirrors()  # type: ignore[assignment]
    agent.clusters = {}
    agent._world = None
    agent._written = None
    return agent


def test_the_world_is_read_again_only_when_a_mirror_changed(agent: Agent) -> None:
    mirrors: Mirrors = agent.watches  # type: ignore[assignment]
    first = agent.read_world()
    written = agent.cache_file.stat().st_mtime_ns
    assert agent.read_world() is first and mirrors.reads == 3
    assert agent.cache_file.stat().st_mtime_ns == written
    mirrors.count, mirrors.name = 2, "d"
    assert agent.read_world()["haclusters"] == [{"metadata": {"name": "haclusters-d"}, "status": {"phase": "Up"}}]
    assert mirrors.reads == 6


def on_disk(agent: Agent) -> Any:
    return json.loads(agent.cache_file.read_text())["haclusters"]


def test_a_change_of_status_alone_reaches_the_disk_within_the_write_interval(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirrors: Mirrors = agent.watches  # type: ignore[assignment]
    clock = [1000.0]
    monkeypatch.setattr(world.time, "monotonic", lambda: clock[0])
    agent.read_world()
    mirrors.count, mirrors.phase = 2, "Down"
    assert agent.read_world()["haclusters"][0]["status"] == {"phase": "Down"}
    assert on_disk(agent)[0]["status"] == {"phase": "Up"}  # status alone: not yet
    clock[0] += world.WORLD_WRITE_SECONDS
    mirrors.count = 3
    agent.read_world()
    assert on_disk(agent)[0]["status"] == {"phase": "Down"}
    mirrors.count, mirrors.name = 4, "new"
    agent.read_world()
    assert on_disk(agent)[0]["metadata"]["name"] == "haclusters-new"  # a new object: at once


def test_an_unsynced_mirror_is_an_outage_even_when_nothing_changed(agent: Agent) -> None:
    mirrors: Mirrors = agent.watches  # type: ignore[assignment]
    agent.read_world()
    mirrors.synced = False
    agent.clusters = {"ns/c": object()}  # type: ignore[dict-item]
    with pytest.raises(Unavailable):
        agent.read_world()
