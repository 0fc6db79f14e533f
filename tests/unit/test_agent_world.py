"""The agent's discovery loop reads its world from the watch mirrors only when they changed:
the same counts give back the same world, with no copy and no write of the on-disk cache."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from tandem.kube.errors import Unavailable
from tandem_agent.__main__ import Agent


class Mirrors:
    def __init__(self) -> None:
        self.count = 1
        self.synced = True
        self.reads = 0

    def changes(self, plural: str) -> tuple[int, ...]:
        if not self.synced:
            raise Unavailable(None, "the watch of haclusters is not synced")
        return (self.count,)

    def objects(self, plural: str) -> list[dict[str, Any]]:
        self.reads += 1
        return [{"metadata": {"name": f"{plural}-{self.count}"}}]


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    agent = Agent.__new__(Agent)  # no API client: only what read_world uses
    agent.args = argparse.Namespace(state_dir=tmp_path)
    agent.watches = Mirrors()  # type: ignore[assignment]
    agent.clusters = {}
    agent._world = None
    return agent


def test_the_world_is_read_again_only_when_a_mirror_changed(agent: Agent) -> None:
    mirrors: Mirrors = agent.watches  # type: ignore[assignment]
    first = agent.read_world()
    written = agent.cache_file.stat().st_mtime_ns
    assert agent.read_world() is first and mirrors.reads == 3
    assert agent.cache_file.stat().st_mtime_ns == written
    mirrors.count = 2
    assert agent.read_world()["haclusters"] == [{"metadata": {"name": "haclusters-2"}}]
    assert mirrors.reads == 6


def test_an_unsynced_mirror_is_an_outage_even_when_nothing_changed(agent: Agent) -> None:
    mirrors: Mirrors = agent.watches  # type: ignore[assignment]
    agent.read_world()
    mirrors.synced = False
    agent.clusters = {"ns/c": object()}  # type: ignore[dict-item]
    with pytest.raises(Unavailable):
        agent.read_world()
