"""Lab network: one network namespace per node, a management bridge and a replication bridge.

Every lab address comes from 198.18.0.0/15 (the benchmarking range), so nothing a test sends
can reach a real network. The management network (``198.18.<n>.0/24``) is shared with the
root namespace (where the API server listens) and the client namespace; floating IPs live
there. The replication network (``198.19.<n>.0/24``) joins only the data nodes and carries
DRBD and PostgreSQL streaming. Cutting one host-side veth is a partition of that one link.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

MGMT = "mgmt"
REPL = "repl"
LINKS = (MGMT, REPL)


class LabNetworkError(RuntimeError):
    """An `ip` command of the lab network failed."""


def run_ip(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one `ip` command (an argument list) and raise with its stderr on failure."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabNetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class LabHost:
    """One namespace of the lab: a data node, a witness or the client."""

    name: str
    namespace: str
    index: int
    mgmt_address: str
    repl_address: str | None
    mgmt_host_veth: str
    repl_host_veth: str | None


@dataclass
class LabNetwork:
    """The namespaces and bridges of one lab; `prefix` keeps parallel labs apart.

    `subnet` picks the third octet so that two labs (say, a test run and a demo) never share
    addresses: management is 198.18.<subnet>.0/24 and replication 198.19.<subnet>.0/24.
    """

    prefix: str = "tdm"
    subnet: int = 0
    hosts: dict[str, LabHost] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.subnet <= 255:
            raise ValueError(f"subnet must be within 0..255, got {self.subnet}")
        if len(self.prefix) > 5:
            raise ValueError(f"prefix {self.prefix!r} is too long: interface names are 15 chars")

    @property
    def mgmt_bridge(self) -> str:
        return f"{self.prefix}-br-{MGMT}"

    @property
    def repl_bridge(self) -> str:
        return f"{self.prefix}-br-{REPL}"

    @property
    def mgmt_gateway(self) -> str:
        """Address of the root namespace on the management bridge (the API server's)."""
        return f"198.18.{self.subnet}.1"

    def create(self) -> None:
        """Create both bridges and give the root namespace its management address."""
        for bridge in (self.mgmt_bridge, self.repl_bridge):
            if run_ip(["link", "show", bridge], check=False).returncode != 0:
                run_ip(["link", "add", bridge, "type", "bridge"])
            run_ip(["link", "set", bridge, "up"])
        addr = f"{self.mgmt_gateway}/24"
        shown = run_ip(["-o", "addr", "show", "dev", self.mgmt_bridge]).stdout
        if addr not in shown:
            run_ip(["addr", "add", addr, "dev", self.mgmt_bridge])

    def add_host(self, name: str, index: int, replication: bool = True) -> LabHost:
        """Add a namespace with a management link and, for data nodes, a replication link.

        `index` (2..250) is the host part of both addresses.
        """
        host = self.describe_host(name, index, replication)
        run_ip(["netns", "add", host.namespace])
        run_ip(["-n", host.namespace, "link", "set", "lo", "up"])
        self._plug(host.namespace, host.mgmt_host_veth, MGMT, self.mgmt_bridge, host.mgmt_address)
        if host.repl_host_veth and host.repl_address:
            self._plug(host.namespace, host.repl_host_veth, REPL, self.repl_bridge, host.repl_address)
        return host

    def describe_host(self, name: str, index: int, replication: bool = True) -> LabHost:
        """Record a host's names and addresses (all derived from `index`) without creating it,
        so another process can act on a lab that is already running."""
        if not 2 <= index <= 250:
            raise ValueError(f"host index must be within 2..250, got {index}")
        host = LabHost(
            name,
            f"{self.prefix}-{name}",
            index,
            f"198.18.{self.subnet}.{index}",
            f"198.19.{self.subnet}.{index}" if replication else None,
            f"{self.prefix}{index}{MGMT}",
            f"{self.prefix}{index}{REPL}" if replication else None,
        )
        self.hosts[name] = host
        return host

    def _plug(self, namespace: str, host_side: str, link: str, bridge: str, address: str) -> None:
        peer_tmp = f"{host_side}p"
        run_ip(["link", "add", host_side, "type", "veth", "peer", "name", peer_tmp])
        run_ip(["link", "set", peer_tmp, "netns", namespace])
        run_ip(["-n", namespace, "link", "set", peer_tmp, "name", link])
        run_ip(["-n", namespace, "addr", "add", f"{address}/24", "dev", link])
        run_ip(["-n", namespace, "link", "set", link, "up"])
        run_ip(["link", "set", host_side, "master", bridge])
        run_ip(["link", "set", host_side, "up"])

    def cut(self, name: str, link: str) -> None:
        """Partition one host's link (``mgmt`` or ``repl``) by taking its bridge port down."""
        run_ip(["link", "set", self._host_veth(name, link), "down"])

    def heal(self, name: str, link: str) -> None:
        run_ip(["link", "set", self._host_veth(name, link), "up"])

    def _host_veth(self, name: str, link: str) -> str:
        if link not in LINKS:
            raise ValueError(f"link must be one of {LINKS}, got {link!r}")
        host = self.hosts[name]
        veth = host.mgmt_host_veth if link == MGMT else host.repl_host_veth
        if veth is None:
            raise ValueError(f"host {name!r} has no {link} link")
        return veth

    def destroy(self) -> None:
        """Remove every namespace and bridge of this lab; safe to call twice."""
        for host in list(self.hosts.values()):
            for veth in (host.mgmt_host_veth, host.repl_host_veth):
                if veth:
                    run_ip(["link", "del", veth], check=False)
            run_ip(["netns", "del", host.namespace], check=False)
        self.hosts.clear()
        for bridge in (self.mgmt_bridge, self.repl_bridge):
            run_ip(["link", "del", bridge], check=False)


def claim_namespace(namespace: str) -> None:
    """Remove a namespace a killed run left behind; refuse one that has processes in it."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False)
    if pids.returncode != 0:
        return
    if pids.stdout.strip():
        raise SystemExit(f"namespace {namespace} is in use (pids {pids.stdout.split()}); stop it")
    subprocess.run(["ip", "netns", "del", namespace], check=False)
