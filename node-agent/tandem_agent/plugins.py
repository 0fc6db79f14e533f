"""Agent plugins: what a development package (the lab) adds to `tandem-agent`.

A plugin is a class registered in the entry-point group `tandem.agent.plugins`; the agent
makes one of each at start. It may add command-line arguments and provide the node's DRBD
volumes, a fence that replaces spec.failover.fence.method, and kinds of `--watchdog`. The
development package tandem-lab registers one (tandem_lab.agent_plugin); the product none, so
without tandem-lab `tandem-agent --help` shows no lab flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from tandem.api.drbdvolume import DRBDVolumeSpec

if TYPE_CHECKING:
    from tandem_agent.chain import ChainRunner
    from tandem_agent.watchdog import Watchdog

GROUP = "tandem.agent.plugins"
T = TypeVar("T")

VolumeFactory = Callable[[str, DRBDVolumeSpec], Any]
# The fence replacing spec.failover.fence.method: (reason, the chain's runner, the watchdog).
Fence = Callable[[str, "ChainRunner", "Watchdog"], None]


class AgentPlugin:
    """The hooks, each doing nothing by default."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        return None

    def volume_factory(self, args: argparse.Namespace) -> VolumeFactory | None:
        """The DRBD volumes of this node, or None for the real DRBD."""
        return None

    def fence(self, args: argparse.Namespace) -> Fence | None:
        """A fence replacing spec.failover.fence.method, or None to keep the spec's."""
        return None

    def watchdogs(self) -> Mapping[str, Callable[[str], Watchdog]]:
        """`--watchdog KIND:ARGUMENT` kinds this plugin opens, by KIND."""
        return {}


def installed() -> tuple[AgentPlugin, ...]:
    """One of each plugin installed beside the agent."""
    return tuple(entry.load()() for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name))


def first(plugins: Sequence[AgentPlugin], hook: Callable[[AgentPlugin], T | None]) -> T | None:
    """The first plugin's answer to `hook` that is not None."""
    for plugin in plugins:
        answer = hook(plugin)
        if answer is not None:
            return answer
    return None
