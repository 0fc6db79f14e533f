"""`tandem-agent` (or `python -m tandem_agent`): the node agent process.

It finds every HACluster that lists this node, in every namespace or in the namespaces given
with --namespace, resolves the DRBDVolumes and FloatingIPs each chain names (from the
cluster's own namespace), and runs one `ClusterAgent` per cluster. A cluster it cannot build
is refused on this node alone (tandem_agent.invalid): reported InvalidSpec, never started,
and judged again once its inputs change.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from tandem.api.drbdvolume import DRBDVolumeSpec
from tandem.api.floatingip import FloatingIPSpec
from tandem.api.hacluster import (
    INVALID_SPEC,
    HAClusterSpec,
    IneligibleReason,
    PostgresSpec,
    ServiceSpec,
)
from tandem.kube.connect import load_client
from tandem.kube.errors import Forbidden, KubeError
from tandem.metrics_server import address_argument
from tandem_agent import host, metrics
from tandem_agent.agent import (
    HEARTBEAT_SECONDS,
    ClusterAgent,
    ClusterIntent,
    intent_of,
    with_dependency,
)
from tandem_agent.chain import ChainRunner, NodeEnvironment, ResolvedCluster, floating_addresses
from tandem_agent.core import ChainState, Ineligible, ineligible_report
from tandem_agent.credentials import FIELD, CredentialsError, replication_password
from tandem_agent.drivers.addresses import AddressSpecError
from tandem_agent.drivers.postgres import ClientRule, ConfigError, PostgresConfig
from tandem_agent.drivers.services import SystemdBackend, UnitStates
from tandem_agent.fence import current_fencer
from tandem_agent.invalid import InvalidSpec, problem_of
from tandem_agent.kube import AgentWatches, Kube
from tandem_agent.plugins import AgentPlugin, first, installed
from tandem_agent.volumes import drbd_volume_factory
from tandem_agent.watchdog import DeviceWatchdog, NoWatchdog, SharedWatchdog, Watchdog

log = logging.getLogger("tandem_agent")

T = TypeVar("T")
WATCH_SYNC_SECONDS = 5.0
# Where each PostgresConfig value comes from, to name it when the driver refuses it.
POSTGRES_FIELDS = {
    "data_dir": "spec.chain.postgres.dataDirectory",
    "config_dir": "spec.chain.postgres.configDirectory",
    "port": "spec.chain.postgres.port",
    "replication_user": "spec.chain.postgres.replicationUser",
    "replication_password": FIELD,
    "replication_peers": "spec.nodes[*].replicationAddress",
    "node_name": "--node",
}


def parse_args(argv: list[str] | None = None, plugins: Sequence[AgentPlugin] | None = None) -> argparse.Namespace:
    """The command line; `plugins` (default: those installed, tandem_agent.plugins) may add
    arguments, and are kept in the result as `plugins`."""
    plugins = installed() if plugins is None else tuple(plugins)
    watchdog_kinds = {kind for plugin in plugins for kind in plugin.watchdogs()}
    p = argparse.ArgumentParser(prog="tandem-agent", description=__doc__)
    p.set_defaults(plugins=plugins)
    p.add_argument(
        "--node", default=os.environ.get("NODE_NAME"), help="this node's Kubernetes Node name (env NODE_NAME)"
    )
    p.add_argument(
        "--namespace",
        action="append",
        default=None,
        metavar="NAMESPACE",
        help="serve only the HAClusters of this namespace (repeatable; env "
        "TANDEM_NAMESPACE, comma-separated); default: every namespace",
    )
    p.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file; in-cluster service account when unset",
    )
    p.add_argument("--state-dir", default="/var/lib/tandem", type=Path)
    p.add_argument("--drbd-config-dir", default="/etc/drbd.d", type=Path)
    p.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="VOLUME=PATH",
        help="block device to mount for a DRBDVolume (default /dev/drbd<minor>)",
    )
    p.add_argument(
        "--pg-data-dir", type=Path, default=None, help="override spec.chain.postgres.dataDirectory on this node"
    )
    p.add_argument("--pg-bin-dir", type=Path, default=None)
    p.add_argument(
        "--pg-password-file",
        type=Path,
        default=os.environ.get("TANDEM_PG_PASSWORD_FILE") or None,
        help="host installs: file holding the PostgreSQL replication password, used "
        "when spec.chain.postgres.credentialsSecret is not set "
        "(env TANDEM_PG_PASSWORD_FILE)",
    )
    p.add_argument(
        "--watchdog",
        default=os.environ.get("TANDEM_WATCHDOG", "none"),
        help="none, device (/dev/watchdog), device:<path>"
        + "".join(f", {kind}:<argument>" for kind in sorted(watchdog_kinds))
        + "; env TANDEM_WATCHDOG",
    )
    p.add_argument(
        "--host-exec",
        choices=host.HOST_EXEC_MODES,
        default=os.environ.get("TANDEM_HOST_EXEC", "direct"),
        help="direct: run host commands as they are (host install, lab); nsenter: "
        "from a container, run them in PID 1's namespaces and reach host paths "
        "through /proc/1/root (the DaemonSet); env TANDEM_HOST_EXEC",
    )
    p.add_argument(
        "--scope-daemons",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("TANDEM_SCOPE_DAEMONS", "") in ("1", "true", "yes"),
        help="start PostgreSQL (pg_ctl start) under `systemd-run --scope`, outside "
        "the agent's cgroup, so stopping the agent does not kill it (needs "
        "systemd on the host); env TANDEM_SCOPE_DAEMONS=1",
    )
    p.add_argument(
        "--metrics-address",
        type=address_argument,
        metavar="HOST:PORT",
        default=os.environ.get("TANDEM_METRICS_ADDRESS", ":9464"),
        help="serve /metrics, /healthz, /primary/<namespace>/<cluster> and "
        "/replica/<namespace>/<cluster> here (default :9464, every IPv4 "
        "address; [::]:9464 for IPv6; empty: off); env TANDEM_METRICS_ADDRESS",
    )
    p.add_argument("--poll-interval", type=float, default=0.1)
    p.add_argument("--log-level", default="INFO")
    for plugin in plugins:
        plugin.add_arguments(p)
    args = p.parse_args(argv)
    kind = args.watchdog.partition(":")[0]
    if args.watchdog != "none" and kind != "device" and kind not in watchdog_kinds:
        p.error(f"--watchdog {args.watchdog!r}: expected none, device or device:<path> (e.g. device:/dev/watchdog1)")
    listed = args.namespace or os.environ.get("TANDEM_NAMESPACE", "").split(",")
    args.namespace = tuple(dict.fromkeys(n.strip() for item in listed for n in item.split(",") if n.strip()))
    if not args.node:
        p.error("--node (or env NODE_NAME) is required: the Kubernetes Node this agent runs on")
    for item in args.device:
        if "=" not in item:
            p.error(f"--device {item!r}: expected VOLUME=PATH, e.g. mail-store=/dev/loop3")
    return args


def key_of(obj: dict[str, Any]) -> str:
    """`namespace/name`: HAClusters of two namespaces may share a name."""
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def resolve(obj: dict[str, Any], world: dict[str, list[dict[str, Any]]]) -> ResolvedCluster:
    """The HACluster with the DRBDVolumes and FloatingIPs its chain names, from its own
    namespace. Raises InvalidSpec (or pydantic's ValidationError) naming the field when the
    chain cannot be built from them."""
    spec = HAClusterSpec.model_validate(obj["spec"])
    namespace = obj["metadata"].get("namespace")
    found = {
        plural: {o["metadata"]["name"]: o["spec"] for o in world[plural] if o["metadata"].get("namespace") == namespace}
        for plural in ("drbdvolumes", "floatingips")
    }
    volumes = {
        name: _named(DRBDVolumeSpec, name, f"spec.chain.volumes[{i}]", found["drbdvolumes"], namespace)
        for i, name in enumerate(spec.chain.volumes)
    }
    fips = {
        name: _named(FloatingIPSpec, name, f"spec.chain.floatingIPs[{i}]", found["floatingips"], namespace)
        for i, name in enumerate(spec.chain.floating_ips)
    }
    for i, mount in enumerate(spec.chain.mounts):
        if mount.volume not in volumes:
            raise InvalidSpec(
                f"spec.chain.mounts[{i}].volume",
                f"DRBDVolume {mount.volume} is not in spec.chain.volumes: add it there",
            )
    for i, name in enumerate(spec.chain.floating_ips):
        try:
            floating_addresses(fips[name])
        except AddressSpecError as exc:
            raise InvalidSpec(f"spec.chain.floatingIPs[{i}]", f"FloatingIP {name}: {exc}") from exc
    return ResolvedCluster(obj["metadata"]["name"], spec, volumes, fips, namespace)


M = TypeVar("M", DRBDVolumeSpec, FloatingIPSpec)


def _named(model: type[M], name: str, field: str, found: Mapping[str, Any], namespace: str | None) -> M:
    kind = model.__name__.removesuffix("Spec")
    if name not in found:
        raise InvalidSpec(
            field, f"{kind} {name} does not exist in namespace {namespace}: create it or remove it from the chain"
        )
    try:
        return model.model_validate(found[name])
    except ValidationError as exc:
        raise InvalidSpec(field, f"{kind} {name}: {problem_of(exc)}") from exc


def clusters_of(world: dict[str, list[dict[str, Any]]], node: str) -> dict[str, dict[str, Any]]:
    """The HAClusters that list `node`, by namespace/name."""
    return {
        key_of(o): o
        for o in world["haclusters"]
        if node in [n.get("name") for n in (o.get("spec") or {}).get("nodes") or []]
    }


Inputs = tuple[tuple[str, str, str, int], ...]


def inputs_of(obj: dict[str, Any], world: dict[str, list[dict[str, Any]]]) -> Inputs:
    """What building a cluster depends on: its spec (uid and generation), and the DRBDVolumes
    and FloatingIPs of its namespace (one it names may appear or change)."""

    def mark(plural: str, o: dict[str, Any]) -> tuple[str, str, str, int]:
        meta = o["metadata"]
        return plural, meta["name"], str(meta.get("uid", "")), int(meta.get("generation", 0))

    namespace = obj["metadata"].get("namespace")
    return (
        mark("haclusters", obj),
        *sorted(
            mark(plural, o)
            for plural in ("drbdvolumes", "floatingips")
            for o in world[plural]
            if o["metadata"].get("namespace") == namespace
        ),
    )


@dataclass(frozen=True)
class Refusal:
    """A cluster this node cannot act on: why (`<field>: <problem and fix>`), and the inputs
    that were judged."""

    problem: str
    inputs: Inputs


def prepare(
    clusters: Mapping[str, dict[str, Any]],
    world: dict[str, list[dict[str, Any]]],
    running: Collection[str],
    refused: Mapping[str, Refusal],
    build: Callable[[dict[str, Any]], T],
) -> tuple[dict[str, T], dict[str, Refusal]]:
    """Build each cluster of this node that does not run yet, or say why it cannot be built.

    Each is built on its own and whatever it raises becomes its refusal, so one cluster never
    keeps another from starting. A refused cluster is built again only once its inputs
    change: nothing else can make it buildable, and it is not logged over and over."""
    built: dict[str, T] = {}
    refusals: dict[str, Refusal] = {}
    for key, obj in clusters.items():
        if key in running:
            continue
        inputs = inputs_of(obj, world)
        old = refused.get(key)
        if old is not None and old.inputs == inputs:
            refusals[key] = old
            continue
        try:
            built[key] = build(obj)
        except Exception as exc:
            refusals[key] = Refusal(problem_of(exc), inputs)
    return built, refusals


def refusal_report(node: str, problem: str, epoch: int) -> dict[str, Any]:
    """This node's status entry for a cluster it refuses: not eligible, naming the field, and
    running nothing of the chain (role Unknown: neither primary nor standby)."""
    return {
        "name": node,
        "role": "Unknown",
        "epoch": epoch,
        "eligible": False,
        **ineligible_report(Ineligible(IneligibleReason.INVALID_SPEC, problem)),
        "message": f"{problem}; this node runs none of the chain until that is fixed"[:1024],
    }


def node_environment(
    args: argparse.Namespace, read_secret: Callable[[str, str], dict[str, str] | None]
) -> NodeEnvironment:
    """How this node does things, from the command line; `read_secret(namespace, name)`
    reads a Secret for the replication password."""

    unit_states = UnitStates()  # one systemctl show for all the node's clusters

    def services(cluster: str, specs: Sequence[ServiceSpec]) -> Any:
        return SystemdBackend.for_services(specs, unit_states)

    def postgres(cluster: ResolvedCluster, password: str | None) -> PostgresConfig:
        spec = cluster.spec.chain.postgres
        assert spec is not None
        rules = []
        for i, r in enumerate(spec.client_access):
            try:
                rules.append(ClientRule(r.database, r.user, r.address))
            except ValueError as exc:
                raise InvalidSpec(f"spec.chain.postgres.clientAccess[{i}]", str(exc)) from exc
        try:
            return PostgresConfig(
                node_name=args.node,
                data_dir=args.pg_data_dir or Path(spec.data_directory),
                config_dir=Path(spec.config_directory) if spec.config_directory else None,
                port=spec.port,
                # Every address: a promotion does not restart the server, so it could not bind
                # the floating IPs that arrive with it; pg_hba.conf decides who gets in.
                listen_addresses=("*",),
                bin_dir=args.pg_bin_dir or (Path(spec.bin_directory) if spec.bin_directory else None),
                replication_user=spec.replication_user,
                replication_password=password,
                replication_peers=tuple(n.replication_address for n in cluster.spec.nodes if n.replication_address),
                client_access=tuple(rules),
                start_timeout=spec.start_timeout_seconds,
                # A hung server must not hold a status read up for long (2 s: libpq's least).
                connect_timeout=2,
            )
        except ConfigError as exc:
            field = (
                "--pg-data-dir"
                if exc.field == "data_dir" and args.pg_data_dir
                else POSTGRES_FIELDS.get(exc.field, "spec.chain.postgres")
            )
            raise InvalidSpec(field, str(exc)) from exc

    def password(spec: PostgresSpec, namespace: str) -> str:
        return replication_password(spec, namespace, lambda name: read_secret(namespace, name), args.pg_password_file)

    return NodeEnvironment(
        node=args.node,
        state_dir=args.state_dir,
        volume_driver=volume_factory(args),
        service_backend=services,
        postgres_config=postgres,
        replication_password=password,
        device_for_volume=dict(item.split("=", 1) for item in args.device),
    )


def volume_factory(args: argparse.Namespace) -> Any:
    """The real DRBD, unless a plugin provides the volumes (the lab's stand-in)."""
    return first(args.plugins, lambda plugin: plugin.volume_factory(args)) or drbd_volume_factory(
        args.node, args.drbd_config_dir
    )


WORLD_KINDS = ("haclusters", "drbdvolumes", "floatingips")
# The copy on disk is written at once when an object appears, goes, or has a new spec or
# deletion mark; a change of status only alone waits this long (with hundreds of clusters
# some status changes on nearly every sync, and the copy is megabytes).
WORLD_WRITE_SECONDS = 10.0


def world_outline(world: Mapping[str, list[dict[str, Any]]]) -> frozenset[tuple[str, str, str, int, bool]]:
    """What of the world a restart without the API server needs at once: which objects exist,
    at which generation (their spec), and which are being deleted."""
    return frozenset(
        (
            plural,
            str(obj["metadata"].get("namespace", "")),
            str(obj["metadata"].get("name", "")),
            int(obj["metadata"].get("generation") or 0),
            bool(obj["metadata"].get("deletionTimestamp")),
        )
        for plural, objects in world.items()
        for obj in objects
    )


class Agent:
    """All clusters of this node."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.api = load_client(args.kubeconfig)
        # What the agent reads, mirrored by watches (no polling of the API server).
        self.watches = AgentWatches(self.api, args.namespace)
        # One Kube per namespace served: a ClusterAgent's Lease and report live in its own.
        self.kubes: dict[str, Kube] = {}
        self.clusters: dict[str, ClusterAgent] = {}
        self.refused: dict[str, Refusal] = {}
        self.inputs: dict[str, Inputs] = {}  # of the spec each running cluster was last offered
        self._reported: dict[str, tuple[str, float]] = {}  # refused: (problem, when reported)
        # The last world read, with the mirrors' change counts it was read at.
        self._world: tuple[tuple[tuple[int, ...], ...], dict[str, list[dict[str, Any]]]] | None = None
        self._written: tuple[frozenset[tuple[str, str, str, int, bool]], float] | None = None  # outline, when
        self.stopping = threading.Event()

    def kube(self, namespace: str) -> Kube:
        if namespace not in self.kubes:
            self.kubes[namespace] = Kube(self.api, namespace, self.args.node, self.watches)
        return self.kubes[namespace]

    @functools.cached_property
    def environment(self) -> NodeEnvironment:
        """One for the node: its clusters share what it reads of systemd and the addresses."""
        return node_environment(self.args, self._read_secret)

    def _read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            return self.kube(namespace).read_secret(name)
        except KubeError as exc:
            if isinstance(exc, Forbidden):
                raise CredentialsError(
                    f"{FIELD}: the agent may not read Secret {name} in namespace "
                    f"{namespace} (HTTP 403): list {name} in the resourceNames of Role "
                    "tandem-agent-secrets there, bound to the agent (docs/postgres.md)"
                ) from exc
            raise CredentialsError(f"{FIELD}: cannot read Secret {name} now: {exc}") from exc

    @property
    def cache_file(self) -> Path:
        state_dir: Path = self.args.state_dir
        return state_dir / "objects.json"

    def read_world(self) -> dict[str, list[dict[str, Any]]]:
        """The tandem objects of the namespaces served; cached on disk so that an agent restarted
        while the API server is unreachable still knows which chains may be up here, and
        can tear them down."""
        try:
            changes = tuple(self.watches.changes(plural) for plural in WORLD_KINDS)
            if self._world is not None and self._world[0] == changes:
                return self._world[1]  # nothing changed: no copy, no file write
            world = {plural: self.watches.objects(plural) for plural in WORLD_KINDS}
        except KubeError:
            if self.clusters or not self.cache_file.exists():
                raise
            log.warning("API server unreachable: using the objects cached in %s", self.cache_file)
            cached: dict[str, list[dict[str, Any]]] = json.loads(self.cache_file.read_text())
            return cached
        self._write_world(world)
        self._world = (changes, world)
        return world

    def _write_world(self, world: dict[str, list[dict[str, Any]]]) -> None:
        outline, now = world_outline(world), time.monotonic()
        if self._written is not None and self._written[0] == outline and now - self._written[1] < WORLD_WRITE_SECONDS:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(world, sort_keys=True))
        os.replace(tmp, self.cache_file)
        self._written = (outline, now)

    def sync(self) -> None:
        """Start a ClusterAgent for every HACluster naming this node, refresh the intent of
        those running, and report those refused. What one cluster raises stays with it."""
        world = self.read_world()
        clusters = clusters_of(world, self.args.node)
        for key, obj in clusters.items():
            if key in self.clusters:
                self._contained(key, self._refresh, key, obj, world)
        built, refused = prepare(clusters, world, self.clusters, self.refused, lambda obj: self._build(obj, world))
        for key, refusal in refused.items():
            old = self.refused.get(key)
            if old is None or old.problem != refusal.problem:
                log.warning("%s: not started: %s: %s", key, INVALID_SPEC, refusal.problem)
        self.refused = refused
        self._reported = {k: v for k, v in self._reported.items() if k in refused}
        for key, agent in built.items():
            self.inputs[key] = inputs_of(clusters[key], world)
            self._contained(key, self._start, key, agent)
        for key, refusal in refused.items():
            self._contained(key, self._report_refusal, clusters[key], refusal)

    def _contained(self, key: str, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except Exception:
            log.exception("%s: unexpected error (the node's other clusters carry on)", key)

    def _refresh(self, key: str, obj: dict[str, Any], world: dict[str, list[dict[str, Any]]]) -> None:
        """The intent at every sync; a changed spec (or an object it names) is built again and
        offered to the running cluster, which applies it live or when its chain is down."""
        agent = self.clusters[key]
        agent.update_intent(self._with_dependency(obj, intent_of(obj, self.args.node)))
        inputs = inputs_of(obj, world)
        if inputs == self.inputs.get(key):
            return
        self.inputs[key] = inputs
        try:
            cluster = resolve(obj, world)
            candidate = ChainRunner(cluster, self.environment)
        except Exception as exc:
            log.warning("%s: the changed spec is not applied: %s", key, problem_of(exc))
            agent.refuse_spec(problem_of(exc))
            return
        agent.offer_spec(candidate, int(obj["metadata"].get("generation", 0)))

    def _build(self, obj: dict[str, Any], world: dict[str, list[dict[str, Any]]]) -> ClusterAgent:
        """Everything of one cluster's agent but its threads: no I/O, so building it again
        after a refusal costs nothing."""
        cluster = resolve(obj, world)
        runner = ChainRunner(cluster, self.environment)
        watchdog = self.shared_watchdog.handle(key_of(obj))
        return ClusterAgent(
            self.kube(obj["metadata"]["namespace"]),
            cluster,
            runner,
            self._with_dependency(obj, intent_of(obj, self.args.node)),
            current_fencer(runner, watchdog, first(self.args.plugins, lambda plugin: plugin.fence(self.args))),
            watchdog,
            poll_interval=self.args.poll_interval,
        )

    def _start(self, key: str, agent: ClusterAgent) -> None:
        agent.start()
        self.clusters[key] = agent
        log.info("%s: running (nodes %s)", key, ", ".join(n.name for n in agent.cluster.spec.nodes))

    def _report_refusal(self, obj: dict[str, Any], refusal: Refusal) -> None:
        """This node's entry for a refused cluster, when its problem changed or as the
        heartbeat (the operator counts only fresh reports)."""
        key, now = key_of(obj), time.monotonic()
        last = self._reported.get(key)
        if last is not None and last[0] == refusal.problem and now - last[1] < HEARTBEAT_SECONDS:
            return
        name, kube = obj["metadata"]["name"], self.kube(obj["metadata"]["namespace"])
        try:
            lease = kube.read_lease(name)
            kube.report(
                name,
                refusal_report(self.args.node, refusal.problem, lease.epoch if lease else 0)
                | {"heartbeatTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
            )
        except KubeError as exc:
            log.debug("%s: report failed: %s", key, exc)
            return
        self._reported[key] = (refusal.problem, now)

    @functools.cached_property
    def shared_watchdog(self) -> SharedWatchdog:
        """The node's watchdog, opened once for all of its clusters."""
        return SharedWatchdog(self._node_watchdog())

    def _node_watchdog(self) -> Watchdog:
        choice = self.args.watchdog
        if choice == "device" or choice.startswith("device:"):
            return DeviceWatchdog(Path(choice.removeprefix("device").removeprefix(":") or "/dev/watchdog"))
        kind, _, argument = choice.partition(":")
        plugins: Sequence[AgentPlugin] = self.args.plugins
        for plugin in plugins:
            opener = plugin.watchdogs().get(kind)
            if opener is not None:
                return opener(argument)
        return NoWatchdog()

    def _with_dependency(self, obj: dict[str, Any], intent: ClusterIntent) -> ClusterIntent:
        dependency = (obj["spec"].get("dependsOn") or {}).get("name")
        if not dependency:
            return intent
        other = self.clusters.get(f"{obj['metadata'].get('namespace', '')}/{dependency}")
        if other is None:
            return with_dependency(intent, False, f"{dependency} does not run on this node")
        if other.runner.state is not ChainState.UP or other.acting_epoch() is None:
            return with_dependency(intent, False, f"{dependency} is not primary on this node")
        return with_dependency(intent, True, f"{dependency} is up on this node")

    def run(self) -> None:
        # The first sync decides from the API server's objects, not from the copy on disk,
        # unless the server does not answer in time.
        if not self.watches.start().wait_synced(WATCH_SYNC_SECONDS):
            log.warning(
                "the watches have not listed within %.0fs (%s); going on",
                WATCH_SYNC_SECONDS,
                "; ".join(self.watches.problems()),
            )
        while not self.stopping.is_set():
            try:
                self.sync()
            except KubeError as exc:
                log.debug("listing HAClusters failed: %s", exc)
            self.stopping.wait(0.5)
        for agent in self.clusters.values():
            agent.stop()
        self.watches.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    host.configure(host.HostAccess(exec_mode=args.host_exec, scope_daemons=args.scope_daemons))
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s {args.node} %(levelname)s %(message)s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    agent = Agent(args)
    signal.signal(signal.SIGTERM, lambda *_: agent.stopping.set())
    server = metrics.start(
        args.metrics_address,
        lambda: metrics.node_state(args.node, agent.clusters, {key: r.problem for key, r in agent.refused.items()}),
    )
    started = time.monotonic()
    log.info(
        "agent for node %s, namespaces %s, host commands %s%s",
        args.node,
        ", ".join(args.namespace) or "all",
        args.host_exec,
        ", PostgreSQL in its own systemd scope" if args.scope_daemons else "",
    )
    try:
        agent.run()
    except KeyboardInterrupt:
        agent.stopping.set()
    if server is not None:
        server.stop()
    log.info("agent stopped after %.0fs", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
