"""Issue 13: no value of a spec can become code where the agent writes it.

Hostile strings go to every renderer (the DRBD resource file, postgresql.conf, pg_hba.conf,
systemctl and mount command lines): each is either refused, naming the field, or read back by
the real parser (drbdadm, postgres -C) or the documented one (pg_hba.conf's tokens) as exactly
the value given. The API's model and the agent's check refuse the same values, so nothing the
API server stores is refused later on a node; and a cluster whose stored spec the agent does
refuse is skipped without stopping the node's other clusters.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import tandem_agent.__main__ as agent_main
from tandem.api.drbdvolume import DRBDNode, DRBDVolumeSpec
from tandem.api.hacluster import FilesystemMount as ApiMount
from tandem.api.hacluster import PostgresSpec, ServiceSpec
from tandem_agent.chain import ChainRunner, NodeEnvironment, ResolvedCluster
from tandem_agent.drivers.base import DriverError
from tandem_agent.drivers.drbd import DrbdSpecInvalid, drbd_quote, render_resource, render_top_config
from tandem_agent.drivers.mounts import FilesystemMount, MountSpecError
from tandem_agent.drivers.postgres import ClientRule, PostgresConfig, render_hba, render_settings
from tandem_agent.drivers.services import SystemdBackend, validate_unit

# The issue's disk: written unescaped it passes drbdadm dump and adds a handler run as root.
ISSUE_DISK = (
    '/dev/vg0/mail";\n    meta-disk internal;\n    address ipv4 198.19.1.2:7789;\n  }\n'
    '  handlers { split-brain "/bin/sh -c id"; }\n  skip on "decoy" {\n    disk "/dev/vg0/mail'
)

FRAGMENTS = [
    '"',
    "'",
    "\\",
    '\\"',
    "''",
    "\n",
    "\r",
    "\t",
    "\0",
    "\x7f",
    ";",
    "{",
    "}",
    "#",
    ",",
    " ",
    "$(id)",
    "`id`",
    "/",
    "..",
    ":",
    "=",
    "é",
    "\u2028",
    'handlers { split-brain "id"; }',
]
hostile = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=8).map("".join)
hostile_path = st.one_of(hostile, hostile.map(lambda s: "/" + s), st.from_regex(r"\A/[A-Za-z0-9._+@:/-]{0,40}\Z"))

DRBDADM = shutil.which("drbdadm")
POSTGRES = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)), None)
# Missing tools fail the test (make setup installs them), never skip it: a skipped read-back
# would hide that nothing checked the renderers against the real parsers.
needs_drbdadm = pytest.mark.usefixtures("drbdadm_installed")
needs_postgres = pytest.mark.usefixtures("postgres_runnable")


@pytest.fixture
def drbdadm_installed() -> None:
    assert DRBDADM is not None, "drbdadm not found: apt-get install drbd-utils (make setup does)"


@pytest.fixture
def postgres_runnable() -> None:
    assert POSTGRES is not None, "PostgreSQL's server binary not found: apt-get install postgresql"
    assert os.geteuid() == 0 and shutil.which("runuser"), "run as root: postgres -C runs as postgres"


few = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
fewer = settings(few, max_examples=25)  # each example starts postgres (about 0.1 s)


def drbd_spec(disk: str = "/dev/vg0/mail", name: str = "mail1", resource: str = "mail-store") -> DRBDVolumeSpec:
    """A valid volume, then (unvalidated, as if stored before a rule existed) the given values."""
    spec = DRBDVolumeSpec.model_validate(
        {
            "cluster": "mail",
            "resourceName": "mail-store",
            "minor": 3,
            "nodes": [
                {"name": "mail1", "disk": "/dev/vg0/mail", "address": "198.19.1.2", "nodeId": 0},
                {"name": "mail2", "disk": "/dev/vg0/mail", "address": "198.19.1.3", "nodeId": 1},
            ],
            "quorum": {"mode": "off"},
        }
    )
    first = DRBDNode.model_construct(name=name, disk=disk, address="198.19.1.2", node_id=0)
    return spec.model_copy(update={"resource_name": resource, "nodes": [first, spec.nodes[1]]})


def drbdadm(tmp: Path, resource_text: str, *args: str, node: str = "mail1") -> subprocess.CompletedProcess[str]:
    """The real drbdadm on a configuration holding only `resource_text` (no kernel involved)."""
    (tmp / "drbd.d").mkdir(exist_ok=True)
    (tmp / "drbd.d" / "r.res").write_text(resource_text)
    (tmp / "drbd.conf").write_text(render_top_config(tmp / "drbd.d"))
    assert DRBDADM is not None
    return subprocess.run(
        [DRBDADM, "-c", str(tmp / "drbd.conf"), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, __DRBD_NODE__=node),
        check=False,
        timeout=30,
    )


def has_handlers(dump: str) -> bool:
    """Whether drbdadm's dump holds a handlers section (commands drbdadm runs as root)."""
    return any(line.split()[:2] == ["handlers", "{"] for line in dump.splitlines())


# ----------------------------------------------------------------------------------- DRBD


def test_the_api_refuses_the_issues_disk_naming_the_field() -> None:
    doc = drbd_spec().model_dump(by_alias=True)
    doc["nodes"][0]["disk"] = ISSUE_DISK
    with pytest.raises(ValidationError) as refused:
        DRBDVolumeSpec.model_validate(doc)
    assert "nodes.0.disk" in str(refused.value)
    assert "no spaces, quotes, backslashes or control characters" in str(refused.value)


@needs_drbdadm
def test_the_issues_disk_written_unescaped_would_add_a_handler(tmp_path: Path) -> None:
    """What the renderer used to write: drbdadm accepts it and would run the handler as root."""
    text = render_resource(drbd_spec()).replace('disk "/dev/vg0/mail";', f'disk "{ISSUE_DISK}";', 1)
    dumped = drbdadm(tmp_path, text, "dump", "mail-store")
    assert dumped.returncode == 0, dumped.stderr
    assert has_handlers(dumped.stdout) and 'split-brain      "/bin/sh -c id"' in dumped.stdout


def test_the_renderer_refuses_the_issues_disk_naming_the_field() -> None:
    with pytest.raises(DrbdSpecInvalid) as refused:
        render_resource(drbd_spec(disk=ISSUE_DISK))
    assert "spec.nodes[0].disk" in str(refused.value) and "must be an absolute path" in str(refused.value)


@needs_drbdadm
@few
@given(value=hostile)
@example(value='/dev/vg0/mail"; } handlers { split-brain "/bin/sh -c id"; } #\\')
@example(value='\u2028"; } handlers { split-brain "id"; } #')  # found by hypothesis: multi-byte
def test_a_drbd_string_is_refused_or_read_back_exactly(tmp_path: Path, value: str) -> None:
    try:
        quoted = drbd_quote(value)
    except ValueError:
        return
    text = render_resource(drbd_spec()).replace('disk "/dev/vg0/mail";', f"disk {quoted};", 1)
    read = drbdadm(tmp_path, text, "sh-ll-dev", "mail-store")
    assert read.returncode == 0, read.stderr
    assert read.stdout.removesuffix("\n").split("\n")[-1] == value
    assert not has_handlers(drbdadm(tmp_path, text, "dump", "mail-store").stdout)


@needs_drbdadm
@few
@given(disk=hostile_path, name=st.one_of(hostile, st.just("mail1")), resource=st.one_of(hostile, st.just("r-1")))
@example(disk="/dev/disk/by-id/ata-X_Y:1+2@3.4", name="mail1", resource="r-1")
def test_a_drbdvolume_is_refused_or_read_back_exactly(tmp_path: Path, disk: str, name: str, resource: str) -> None:
    try:
        text = render_resource(drbd_spec(disk, name, resource))
    except DrbdSpecInvalid as refused:
        assert refused.problems and all(p.startswith("spec.") for p in refused.problems)
        return
    read = drbdadm(tmp_path, text, "sh-ll-dev", resource, node=name)
    assert read.returncode == 0, read.stderr
    assert read.stdout.removesuffix("\n").split("\n")[-1] == disk
    assert not has_handlers(drbdadm(tmp_path, text, "dump", resource, node=name).stdout)


@given(disk=hostile_path)
def test_the_api_and_the_renderer_accept_the_same_disks(disk: str) -> None:
    doc = drbd_spec().model_dump(by_alias=True)
    doc["nodes"][0]["disk"] = disk
    try:
        DRBDVolumeSpec.model_validate(doc)
        api_accepts = True
    except ValidationError:
        api_accepts = False
    try:
        render_resource(drbd_spec(disk=disk))
        agent_accepts = True
    except DrbdSpecInvalid:
        agent_accepts = False
    assert api_accepts == agent_accepts


# ----------------------------------------------------------------------------- PostgreSQL


def postgres_reads(rendered: str, name: str) -> str:
    """What PostgreSQL's own configuration parser makes of `name` in `rendered` (postgres -C,
    run as postgres: it refuses root; pytest's tmp_path is not readable by that user)."""
    assert POSTGRES is not None
    with tempfile.TemporaryDirectory(prefix="tandem-pgconf-") as tmp:
        os.chmod(tmp, 0o755)
        Path(tmp, "tandem.conf").write_text(rendered)
        Path(tmp, "top.conf").write_text(f"data_directory = '{tmp}'\ninclude '{tmp}/tandem.conf'\n")
        argv = ["runuser", "-u", "postgres", "--", str(POSTGRES), f"--config-file={tmp}/top.conf", "-C", name]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.removesuffix("\n")


def pg_config(**overrides: Any) -> PostgresConfig:
    values: dict[str, Any] = {
        "node_name": "node1",
        "data_dir": Path("/var/lib/postgresql/15/main"),
        "replication_peers": ("198.19.20.2",),
    }
    return PostgresConfig(**(values | overrides))


@needs_postgres
@fewer
@given(value=hostile)
@example(value="'; archive_command = 'id' # \\' é")
def test_a_setting_is_refused_or_read_back_exactly_by_postgres(value: str) -> None:
    try:
        rendered = render_settings(pg_config(settings={"tandem.probe": value}), None)
    except ValueError:
        return
    assert postgres_reads(rendered, "tandem.probe") == value


@needs_postgres
@fewer
@given(directory=hostile_path)
@example(directory="/etc/postgresql/15/main")
def test_a_config_directory_is_refused_or_read_back_exactly_by_postgres(directory: str) -> None:
    try:
        config = pg_config(config_dir=Path(directory))
    except ValueError as refused:
        assert "config_dir" in str(refused)
        return
    rendered = render_settings(config, None)
    # PostgreSQL canonicalizes a file setting (canonicalize_path): '//' becomes '/'.
    assert postgres_reads(rendered, "hba_file") == re.sub("/+", "/", str(config.conf_dir / "pg_hba.conf"))


def hba_tokens(line: str) -> list[str]:
    """pg_hba.conf's tokens (hba.c next_token): blanks separate them, double quotes group, a
    doubled double quote inside them is one, '#' outside them starts a comment."""
    tokens, current, quoted, started = [], "", False, False
    i = 0
    while i < len(line):
        c = line[i]
        if quoted and c == '"' and line[i + 1 : i + 2] == '"':
            current, i = current + '"', i + 2
            continue
        if c == '"':
            quoted, started = not quoted, True
        elif not quoted and c == "#":
            break
        elif not quoted and c in " \t,":
            if started:
                tokens.append(current)
            current, started = "", False
        else:
            current, started = current + c, True
        i += 1
    if started:
        tokens.append(current)
    return tokens


@given(database=st.one_of(hostile, st.just("mail")), user=st.one_of(hostile, st.just("webmail")))
@example(database="mail", user="webmail")
def test_a_client_rule_is_refused_or_read_back_exactly(database: str, user: str) -> None:
    try:
        rule = ClientRule(database, user, "198.18.0.0/24")
    except ValueError as refused:
        assert "client access rule" in str(refused)
        return
    last = render_hba(pg_config(client_access=(rule,))).splitlines()[-1]
    assert hba_tokens(last) == ["host", database, user, "198.18.0.0/24", "scram-sha-256"]


@given(user=st.one_of(hostile, st.sampled_from(["repl user", "replicator", "all", "Repl", "pg_x"])))
def test_the_api_and_the_agent_accept_the_same_replication_users(user: str) -> None:
    """The issue's case: a user the API accepted and the agent refused while building the chain."""
    try:
        PostgresSpec.model_validate({"replicationUser": user})
        api_accepts = True
    except ValidationError:
        api_accepts = False
    try:
        config = pg_config(replication_user=user)
        agent_accepts = True
    except ValueError:
        agent_accepts = False
    assert api_accepts == agent_accepts
    if agent_accepts:
        rules = [hba_tokens(line) for line in render_hba(config).splitlines() if line.startswith("host")]
        assert rules and all(tokens[2] == user for tokens in rules)


# --------------------------------------------------------------------- commands: units, mount


@given(unit=st.one_of(hostile, hostile.map(lambda s: s + ".service")))
def test_a_unit_is_refused_alike_or_passed_as_one_argument(unit: str) -> None:
    try:
        ServiceSpec.model_validate({"name": "svc", "unit": unit})
        api_accepts = True
    except ValidationError:
        api_accepts = False
    try:
        argv = SystemdBackend({"svc": validate_unit(unit)}).argv("start", unit)
    except DriverError:
        assert not api_accepts
        return
    assert api_accepts
    assert argv[-2:] == ["--", unit]


@given(options=st.lists(st.one_of(hostile, st.sampled_from(["noatime", "logbufs=8", "ro"])), max_size=4))
def test_mount_options_are_refused_alike_or_split_back_exactly(options: list[str]) -> None:
    try:
        ApiMount.model_validate({"volume": "v", "mountPoint": "/srv/data", "options": options})
        api_accepts = True
    except ValidationError:
        api_accepts = False
    try:
        argv = FilesystemMount("/dev/drbd3", "/srv/data", "xfs", tuple(options)).mount_argv("/srv/data")
    except MountSpecError:
        assert not api_accepts
        return
    assert api_accepts
    given_options = argv[argv.index("-o") + 1].split(",") if "-o" in argv else []
    assert given_options == options
    assert argv[-3:] == ["--", "/dev/drbd3", "/srv/data"]


@given(target=hostile_path)
def test_mount_points_are_refused_alike(target: str) -> None:
    try:
        ApiMount.model_validate({"volume": "v", "mountPoint": target})
        api_accepts = True
    except ValidationError:
        api_accepts = False
    try:
        argv = FilesystemMount("/dev/drbd3", target, "xfs").mount_argv(target)
    except MountSpecError:
        assert not api_accepts
        return
    assert api_accepts and argv[-1] == target


# ------------------------------------------------------------------- one cluster, not the node


def test_a_cluster_the_agent_refuses_leaves_the_nodes_other_clusters_running(tmp_path: Path) -> None:
    """Specs stored before the API refused them ("repl user", the issue's disk) are refused
    with the field named; the good cluster on the same node is still built."""

    def cluster(name: str, **chain: Any) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodes": [
                    {"name": "mail1", "replicationAddress": "198.19.0.1"},
                    {"name": "mail2", "replicationAddress": "198.19.0.2"},
                ],
                "chain": chain,
            },
        }

    volume = {
        "metadata": {"name": "store", "namespace": "default"},
        "spec": drbd_spec(disk=ISSUE_DISK).model_dump(by_alias=True),
    }
    world = {
        "haclusters": [
            cluster("bad-user", postgres={"replicationUser": "repl user"}),
            cluster("bad-disk", volumes=["store"]),
            cluster("good", postgres={"replicationUser": "replicator"}),
        ],
        "drbdvolumes": [volume],
        "floatingips": [],
    }

    def postgres(c: ResolvedCluster, password: str | None) -> PostgresConfig:
        assert c.spec.chain.postgres is not None
        return pg_config(replication_user=c.spec.chain.postgres.replication_user, os_user="root")

    env = NodeEnvironment(
        node="mail1",
        state_dir=tmp_path,
        volume_driver=lambda *_: None,  # type: ignore[arg-type, return-value]
        service_backend=lambda *_: None,  # type: ignore[arg-type, return-value]
        postgres_config=postgres,
        replication_password=lambda *_: "pw",
    )
    built, refused = agent_main.prepare(
        agent_main.clusters_of(world, "mail1"),
        world,
        running=(),
        refused={},
        build=lambda obj: ChainRunner(agent_main.resolve(obj, world), env),
    )

    assert list(built) == ["default/good"]
    assert refused["default/bad-user"].problem.startswith(
        "spec.chain.postgres.replicationUser: 'repl user' must be a lower-case PostgreSQL name"
    )
    assert refused["default/bad-disk"].problem.startswith(
        "spec.chain.volumes[0]: DRBDVolume store: spec.nodes[0].disk: "
    )
