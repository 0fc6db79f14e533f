"""The DRBD driver with the real drbdadm and the lab's kernel stand-in, in real namespaces.

Topology: LabNetwork(prefix="tdd", subnet=30): data nodes alpha (198.19.30.2) and beta
(198.19.30.3) and the diskless tiebreaker witness (198.19.30.4), all on the replication
bridge. Each node runs its own stand-in "kernel" daemon inside its namespace; every command
goes through `drbdadm` (Debian's drbd-utils) with `--drbdsetup=`/`--drbdmeta=` pointing at the
stand-in. Each test uses its own resource (name, minor, port) and takes it down at the end;
the module fixture stops every daemon and removes every namespace, even on failure.

Faults are real network faults: `lab.cut(node, "repl")` takes the node's bridge port down (the
daemons notice by ping timeout, as DRBD does); a pair partition is a blackhole route in both
namespaces.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tandem.api.drbdvolume import DRBDVolumeSpec
from tandem_agent.drivers.base import Outcome
from tandem_agent.drivers.drbd import (
    Drbd,
    DrbdConfigInvalid,
    NoQuorum,
    NoUpToDateData,
    PeerIsPrimary,
    ResourceStatus,
    parse_status,
    render_resource,
)
from tandem_lab.drbdsim import control
from tandem_lab.netns import LabNetwork, run_ip

pytestmark = pytest.mark.lab

PREFIX = "tdd"
SUBNET = 30
HOSTS = {"alpha": 2, "beta": 3, "witness": 4}
PING_TIMEOUT = 0.8
RESYNC_RATE = 150  # blocks (4 KiB) per second: a 100-block resync takes ~0.7 s


def repl_ip(name: str) -> str:
    return f"198.19.{SUBNET}.{HOSTS[name]}"


@dataclass
class Node:
    name: str
    namespace: str
    state_dir: Path
    drbd: Drbd

    def write(self, res: str, blocks: int) -> str:
        return control.write(self.state_dir, res, blocks)

    def digest(self, res: str) -> str:
        return str(control.digest(self.state_dir, res)["digest"])

    def log(self) -> str:
        return control.kernel_log(self.state_dir)

    def st(self, res: str) -> ResourceStatus:
        """The status through the driver: drbdsetup (the stand-in) in the namespace, parsed."""
        st = self.drbd.status(res)
        assert st is not None, f"{res} is not up on {self.name}"
        return st

    def fast(self, res: str) -> ResourceStatus:
        """The same `status --json` document read from the daemon without a process: for polling."""
        rc, out, err = control.drbdsetup(self.state_dir, "status", res, "--json")
        assert rc == 0, err
        [st] = parse_status(out)
        return st


@dataclass
class Lab:
    net: LabNetwork
    nodes: dict[str, Node]
    base: Path
    resources: list[tuple[str, list[str]]] = field(default_factory=list)
    blackholes: list[tuple[str, str]] = field(default_factory=list)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def partition(self, a: str, b: str) -> None:
        """Cut only the path between a and b: both still reach every other node."""
        for src, dst in ((a, b), (b, a)):
            run_ip(["-n", self.nodes[src].namespace, "route", "add", "blackhole", f"{repl_ip(dst)}/32"])
            self.blackholes.append((src, dst))

    def heal_partitions(self) -> None:
        while self.blackholes:
            src, dst = self.blackholes.pop()
            run_ip(["-n", self.nodes[src].namespace, "route", "del", "blackhole", f"{repl_ip(dst)}/32"], check=False)


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 15.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("drbd")
    net = LabNetwork(prefix=PREFIX, subnet=SUBNET)
    started: list[Path] = []
    nodes: dict[str, Node] = {}
    try:
        net.create()
        for name, index in HOSTS.items():
            host = net.add_host(name, index)
            state_dir = base / name / "state"
            control.start(state_dir, netns=host.namespace, ping_timeout=PING_TIMEOUT, resync_rate=RESYNC_RATE)
            started.append(state_dir)
            drbd = Drbd(
                base / name / "drbd.d",
                node_name=name,
                netns=host.namespace,
                drbdsetup=control.DRBDSETUP,
                drbdmeta=control.DRBDMETA,
                env=control.lab_env(state_dir),
            )
            nodes[name] = Node(name, host.namespace, state_dir, drbd)
        yield Lab(net, nodes, base)
    finally:
        pids = [control.pid_of(d) for d in started]
        for state_dir in started:
            control.stop(state_dir)
        net.destroy()
    left = run_ip(["netns", "list"]).stdout
    assert f"{PREFIX}-" not in left, f"namespaces left behind: {left}"
    for pid in pids:
        assert pid is None or not Path(f"/proc/{pid}").exists(), f"daemon {pid} left behind"


@pytest.fixture
def cleanup(lab: Lab) -> Iterator[Lab]:
    """Per test: heal every cut and partition and take the test's resources down."""
    try:
        yield lab
    finally:
        lab.heal_partitions()
        for name in HOSTS:
            lab.net.heal(name, "repl")
        while lab.resources:
            res, names = lab.resources.pop()
            for name in names:
                try:
                    lab[name].drbd.down(res)
                except Exception as exc:  # report, but keep cleaning up
                    print(f"cleanup: down {res} on {name}: {exc}")


def make_spec(
    res: str,
    minor: int,
    port: int,
    *,
    witness: bool = True,
    quorum: str = "majority",
    on_no_quorum: str = "io-error",
    sb: tuple[str, str, str] = ("disconnect", "disconnect", "disconnect"),
) -> DRBDVolumeSpec:
    doc: dict[str, Any] = {
        "cluster": "mail",
        "resourceName": res,
        "minor": minor,
        "port": port,
        "nodes": [
            {"name": "alpha", "disk": f"/dev/lab/alpha-{res}", "address": repl_ip("alpha"), "nodeId": 0},
            {"name": "beta", "disk": f"/dev/lab/beta-{res}", "address": repl_ip("beta"), "nodeId": 1},
        ],
        "quorum": {"mode": quorum, "onNoQuorum": on_no_quorum},
        "splitBrain": {"afterSb0pri": sb[0], "afterSb1pri": sb[1], "afterSb2pri": sb[2]},
    }
    if witness:
        doc["tiebreaker"] = {"name": "witness", "address": repl_ip("witness"), "nodeId": 2}
    return DRBDVolumeSpec.model_validate(doc)


def bring_up(lab: Lab, spec: DRBDVolumeSpec, *, skip_sync: bool = True) -> list[str]:
    res = spec.resource_name
    names = ["alpha", "beta"] + (["witness"] if spec.tiebreaker else [])
    lab.resources.append((res, names))
    for name in names:
        drbd = lab[name].drbd
        drbd.apply_config(spec)
        drbd.create_md(res)
        assert drbd.up(res).changed
    for name in names:
        wait_for(
            f"{name} connected to all peers of {res}", lambda n=name: all(p.connected for p in lab[n].fast(res).peers)
        )
    if skip_sync:
        assert lab["alpha"].drbd.skip_initial_sync(res).changed
        for name in ("alpha", "beta"):
            wait_for(f"{name} UpToDate", lambda n=name: lab[n].fast(res).disk_state == "UpToDate")
    return names


def peer(lab: Lab, node: str, res: str, other: str) -> Any:
    return lab[node].fast(res).peer(other)


def watch_resync(lab: Lab, target: str, source: str, res: str, timeout: float = 30) -> list[tuple[str, int]]:
    """Watch the target until the resync is done; returns (replication state, out-of-sync) samples.

    The samples are `drbdsetup status --json` documents parsed by the driver's parser, read
    from the node's daemon directly (no process per sample, so a loaded machine can not make
    the test miss a sub-second resync); the final state is then checked through drbdadm's path.
    """
    samples: list[tuple[str, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = lab[target].fast(res)
        p = st.peer(source)
        assert p is not None
        samples.append((p.replication_state, p.out_of_sync_bytes))
        if st.disk_state == "UpToDate" and p.replication_state == "Established":
            final = lab[target].st(res)
            assert (final.disk_state, final.peer(source).replication_state) == ("UpToDate", "Established")
            return samples
        time.sleep(0.02)
    raise AssertionError(f"resync {source} -> {target} did not finish: {samples[-5:]}")


def assert_resync_progressed(samples: list[tuple[str, int]]) -> None:
    """The target went through SyncTarget, out-of-sync data seen, never growing, ending in sync.

    Callers resync >= 100 blocks (~0.7 s at the lab's rate), long enough for the polls.
    """
    during = [oos for state, oos in samples if state == "SyncTarget"]
    assert during, f"never saw SyncTarget: {samples}"
    assert all(a >= b for a, b in zip(during, during[1:], strict=False)), f"out-of-sync grew: {samples}"
    assert during[0] > 0, f"no out-of-sync data seen during the resync: {samples}"
    assert samples[-1] == ("Established", 0)


# ------------------------------------------------------------------------------ config


def test_drbdadm_dump_validates_the_rendered_file_and_rejects_a_broken_one(tmp_path: Path) -> None:
    spec = make_spec("cfg0", 90, 7890)
    drbd = Drbd(tmp_path / "drbd.d", node_name="alpha")
    dump = drbd.validate(render_resource(spec), "cfg0")
    # drbdadm's own normalized dump: it parsed every host, the diskless witness and our options.
    assert "on alpha {" in dump and "on beta {" in dump and "on witness {" in dump
    assert "disk             none;" in dump
    assert "quorum           majority;" in dump and "on-no-quorum     io-error;" in dump
    assert "after-sb-0pri    disconnect;" in dump
    assert "address          ipv4 198.19.30.4:7890;" in dump

    first = drbd.apply_config(spec)
    assert first.changed and (tmp_path / "drbd.d" / "cfg0.res").read_text() == render_resource(spec)
    assert drbd.apply_config(spec) == Outcome(False, f"{tmp_path / 'drbd.d' / 'cfg0.res'} is up to date")

    broken = render_resource(spec).replace("node-id 1;", "node-id 1").replace('on "witness"', 'on "w!tness"')
    with pytest.raises(DrbdConfigInvalid) as exc:
        drbd.validate(broken, "cfg0")
    assert "cfg0.res" in exc.value.output and exc.value.output.strip()

    duplicate = render_resource(spec).replace("node-id 1;", "node-id 0;")
    with pytest.raises(DrbdConfigInvalid, match="node-id"):
        drbd.validate(duplicate, "cfg0")


# ------------------------------------------------------------------------------ roles, sync


def test_initial_sync_promotion_refusals_and_switchover(cleanup: Lab) -> None:
    lab, res = cleanup, "r1"
    bring_up(lab, make_spec(res, 11, 7711), skip_sync=False)
    for name in ("alpha", "beta"):
        st = lab[name].st(res)
        assert (st.role, st.disk_state, st.quorum) == ("Secondary", "Inconsistent", True)
        assert {p.name: (p.connection_state, p.disk_state) for p in st.peers} == {
            ("beta" if name == "alpha" else "alpha"): ("Connected", "Inconsistent"),
            "witness": ("Connected", "Diskless"),
        }
    wst = lab["witness"].st(res)
    assert (wst.disk_state, wst.client) == ("Diskless", True)

    # Inconsistent data can not be promoted; --force only when asked for.
    with pytest.raises(NoUpToDateData) as refused:
        lab["alpha"].drbd.primary(res)
    assert (refused.value.code, refused.value.reason) == (-2, "Need access to UpToDate data")
    assert refused.value.returncode == 17
    assert lab["alpha"].st(res).role == "Secondary"

    assert lab["alpha"].drbd.primary(res, force=True).changed
    samples = watch_resync(lab, "beta", "alpha", res)
    assert_resync_progressed(samples)
    assert samples[0][1] > 0
    a, b = lab["alpha"].st(res), lab["beta"].st(res)
    assert (a.role, a.disk_state, a.peer("beta").disk_state) == ("Primary", "UpToDate", "UpToDate")
    assert (b.role, b.disk_state, b.peer("alpha").role) == ("Secondary", "UpToDate", "Primary")
    assert lab["alpha"].digest(res) == lab["beta"].digest(res)

    # Idempotent; a second primary is refused while connected; a Secondary can not be written.
    assert lab["alpha"].drbd.primary(res) == Outcome(False, f"{res} is already Primary")
    with pytest.raises(PeerIsPrimary) as two:
        lab["beta"].drbd.primary(res)
    assert (two.value.code, two.value.reason) == (-1, "Multiple primaries not allowed by config")
    with pytest.raises(control.SimError, match="Wrong medium type"):
        lab["beta"].write(res, 1)

    lab["alpha"].write(res, 10)
    assert lab["alpha"].digest(res) == lab["beta"].digest(res)
    api = lab["alpha"].st(res).to_api("alpha")
    assert (api.role, api.disk_state, api.connection_state, api.peer_role, api.peer_disk_state) == (
        "Primary",
        "UpToDate",
        "Connected",
        "Secondary",
        "UpToDate",
    )

    # Planned switchover: demote fully, then promote the other node.
    assert lab["alpha"].drbd.secondary(res).changed
    assert lab["alpha"].drbd.secondary(res) == Outcome(False, f"{res} is already Secondary")
    wait_for("beta sees alpha Secondary", lambda: peer(lab, "beta", res, "alpha").role == "Secondary")
    assert lab["beta"].drbd.primary(res).changed
    lab["beta"].write(res, 7)
    assert lab["alpha"].digest(res) == lab["beta"].digest(res)

    # The "kernel" state survives a restart of beta's daemon; the peers reconnect.
    control.stop(lab["beta"].state_dir)
    wait_for("alpha notices", lambda: peer(lab, "alpha", res, "beta").connection_state == "Connecting")
    control.start(
        lab["beta"].state_dir, netns=lab["beta"].namespace, ping_timeout=PING_TIMEOUT, resync_rate=RESYNC_RATE
    )
    wait_for("beta reconnected", lambda: all(p.connected for p in lab["beta"].fast(res).peers))
    st = lab["beta"].st(res)
    assert (st.role, st.disk_state) == ("Primary", "UpToDate")
    wait_for("alpha UpToDate again", lambda: lab["alpha"].fast(res).disk_state == "UpToDate")
    assert lab["alpha"].digest(res) == lab["beta"].digest(res)

    assert lab["beta"].drbd.down(res).changed
    assert lab["beta"].drbd.status(res) is None
    assert lab["beta"].drbd.down(res) == Outcome(False, f"{res} is already down")


# ------------------------------------------------------------------------------ link faults


def test_cutting_the_primarys_replication_link_loses_quorum_and_resyncs_after_heal(cleanup: Lab) -> None:
    lab, res = cleanup, "r2"
    bring_up(lab, make_spec(res, 12, 7712, on_no_quorum="suspend-io"))
    alpha, beta = lab["alpha"], lab["beta"]
    assert alpha.drbd.primary(res).changed
    alpha.write(res, 5)

    lab.net.cut("alpha", "repl")
    wait_for("alpha lost both peers", lambda: all(p.connection_state == "Connecting" for p in alpha.fast(res).peers))
    st = alpha.st(res)
    assert (st.role, st.quorum, st.suspended) == ("Primary", False, True)
    assert {p.disk_state for p in st.peers} == {"DUnknown"} and {p.role for p in st.peers} == {"Unknown"}
    with pytest.raises(control.SimError, match="suspended"):
        alpha.write(res, 1)

    wait_for("beta sees alpha gone", lambda: peer(lab, "beta", res, "alpha").connection_state == "Connecting")
    wait_for("beta's data UpToDate again", lambda: beta.fast(res).disk_state == "UpToDate")
    st = beta.st(res)
    assert st.quorum is True and st.peer("witness").connected
    assert beta.drbd.primary(res).changed  # quorum through the tiebreaker
    beta.write(res, 100)
    winner = beta.digest(res)

    lab.net.heal("alpha", "repl")
    wait_for("alpha back with the witness", lambda: alpha.fast(res).peer("witness").connected)
    time.sleep(2.0)  # both are Primary: DRBD refuses to connect them
    assert not alpha.st(res).peer("beta").connected
    assert "Multiple primaries not allowed by config" in alpha.log() + beta.log()
    assert alpha.st(res).quorum is False  # it can not regain quorum through the diskless node

    assert alpha.drbd.secondary(res).changed
    samples = watch_resync(lab, "alpha", "beta", res)
    assert_resync_progressed(samples)
    assert max(oos for _, oos in samples) <= 105 * 4096
    assert alpha.digest(res) == winner
    st = alpha.st(res)
    assert (st.role, st.disk_state, st.quorum, st.suspended) == ("Secondary", "UpToDate", True, False)


def test_a_secondary_cut_off_from_the_primary_alone_becomes_outdated(cleanup: Lab) -> None:
    lab, res = cleanup, "r3"
    bring_up(lab, make_spec(res, 13, 7713))
    alpha, beta = lab["alpha"], lab["beta"]
    assert alpha.drbd.primary(res).changed

    # alpha and beta lose each other but both still see the witness: beta is Outdated.
    lab.partition("alpha", "beta")
    wait_for("beta outdated", lambda: beta.fast(res).disk_state == "Outdated")
    assert beta.st(res).peer("alpha").connection_state == "Connecting"
    assert beta.st(res).peer("witness").connected
    assert alpha.st(res).quorum is True  # tiebreaker keeps the primary's quorum
    alpha.write(res, 120)
    with pytest.raises(NoUpToDateData):
        beta.drbd.primary(res)
    lab.heal_partitions()
    assert_resync_progressed(watch_resync(lab, "beta", "alpha", res))
    assert alpha.digest(res) == beta.digest(res)

    # beta isolated from everyone: it keeps UpToDate data but has no quorum.
    lab.net.cut("beta", "repl")
    wait_for("beta alone", lambda: not any(p.connected for p in beta.fast(res).peers))
    wait_for("beta settled", lambda: beta.fast(res).disk_state != "Consistent", timeout=5)
    st = beta.st(res)
    assert (st.disk_state, st.quorum) == ("UpToDate", False)
    with pytest.raises(NoQuorum) as nq:
        beta.drbd.primary(res)
    assert (nq.value.code, nq.value.reason) == (-25, "No quorum")
    assert nq.value.info == "1 of 2 nodes visible, need 2 for quorum"
    wait_for("alpha notices", lambda: alpha.fast(res).peer("beta").connection_state == "Connecting")
    assert alpha.st(res).quorum is True
    alpha.write(res, 100)
    lab.net.heal("beta", "repl")
    assert_resync_progressed(watch_resync(lab, "beta", "alpha", res))
    assert alpha.digest(res) == beta.digest(res)

    # A graceful disconnect from the Primary outdates the Secondary.
    assert alpha.drbd.disconnect(res, "beta").changed
    assert alpha.drbd.disconnect(res, "beta").changed is False
    assert alpha.st(res).peer("beta").connection_state == "StandAlone"
    wait_for("beta outdated", lambda: beta.fast(res).disk_state == "Outdated")
    assert alpha.st(res).peer("beta").disk_state == "Outdated"
    with pytest.raises(NoUpToDateData):
        beta.drbd.primary(res)
    alpha.write(res, 100)
    assert alpha.drbd.connect(res).changed
    assert_resync_progressed(watch_resync(lab, "beta", "alpha", res))
    assert alpha.digest(res) == beta.digest(res)


# ------------------------------------------------------------------------------ split brain


def _diverge(lab: Lab, res: str, alpha_writes: int, beta_writes: int) -> None:
    """alpha Primary, link cut, beta promoted: both write while disconnected."""
    alpha, beta = lab["alpha"], lab["beta"]
    assert alpha.drbd.primary(res).changed
    lab.net.cut("alpha", "repl")
    wait_for("beta lost alpha", lambda: beta.fast(res).peer("alpha").connection_state == "Connecting")
    wait_for("beta UpToDate", lambda: beta.fast(res).disk_state == "UpToDate")
    assert beta.drbd.primary(res).changed
    if alpha_writes:
        alpha.write(res, alpha_writes)
    beta.write(res, beta_writes)


def _reconfigure(lab: Lab, spec: DRBDVolumeSpec) -> None:
    for name in ("alpha", "beta"):
        lab[name].drbd.down(spec.resource_name)
    for name in ("alpha", "beta"):
        assert lab[name].drbd.apply_config(spec).changed
        lab[name].drbd.up(spec.resource_name)
    for name in ("alpha", "beta"):
        wait_for("reconnected", lambda n=name: lab[n].fast(spec.resource_name).peers[0].connected)


def test_split_brain_is_detected_and_the_after_sb_policies_apply(cleanup: Lab) -> None:
    lab, res = cleanup, "r4"
    alpha, beta = lab["alpha"], lab["beta"]
    bring_up(lab, make_spec(res, 14, 7714, witness=False, quorum="off"))

    # Two primaries that both wrote: after-sb-2pri disconnect, both StandAlone.
    _diverge(lab, res, alpha_writes=10, beta_writes=100)
    winner = beta.digest(res)
    assert alpha.digest(res) != winner
    lab.net.heal("alpha", "repl")
    for name in ("alpha", "beta"):
        wait_for(f"{name} StandAlone", lambda n=name: lab[n].fast(res).peers[0].connection_state == "StandAlone")
    assert "Split-Brain detected but unresolved, dropping connection!" in alpha.log()
    assert "Split-Brain detected but unresolved" in beta.log()
    # Manual recovery: the victim discards its data.
    assert alpha.drbd.secondary(res).changed
    assert alpha.drbd.connect(res, discard_my_data=True).changed
    assert beta.drbd.connect(res).changed
    assert_resync_progressed(watch_resync(lab, "alpha", "beta", res))
    assert alpha.digest(res) == winner
    assert beta.drbd.secondary(res).changed

    # after-sb-0pri discard-least-changes: both demoted, the node with fewer changes loses them.
    _reconfigure(
        lab,
        make_spec(res, 14, 7714, witness=False, quorum="off", sb=("discard-least-changes", "disconnect", "disconnect")),
    )
    _diverge(lab, res, alpha_writes=10, beta_writes=100)
    winner = beta.digest(res)
    assert alpha.drbd.secondary(res).changed and beta.drbd.secondary(res).changed
    mark = len(alpha.log())
    lab.net.heal("alpha", "repl")
    assert_resync_progressed(watch_resync(lab, "alpha", "beta", res))
    assert alpha.digest(res) == winner
    assert "Split-Brain detected, 0 primaries, automatically solved" in alpha.log()[mark:]

    # after-sb-1pri discard-secondary: the Secondary loses its changes, even the larger ones.
    _reconfigure(
        lab,
        make_spec(
            res, 14, 7714, witness=False, quorum="off", sb=("discard-zero-changes", "discard-secondary", "disconnect")
        ),
    )
    _diverge(lab, res, alpha_writes=120, beta_writes=5)
    winner = beta.digest(res)
    assert alpha.drbd.secondary(res).changed
    mark = len(alpha.log())
    lab.net.heal("alpha", "repl")
    assert_resync_progressed(watch_resync(lab, "alpha", "beta", res))
    assert alpha.digest(res) == winner
    assert "Split-Brain detected, 1 primaries, automatically solved" in alpha.log()[mark:]
    assert beta.st(res).role == "Primary"
    assert beta.drbd.secondary(res).changed

    # A Primary that wrote nothing while cut off started no new data generation: no split
    # brain, just a resync from the node that wrote (DRBD 9 creates the new UUID lazily).
    _diverge(lab, res, alpha_writes=0, beta_writes=100)
    winner = beta.digest(res)
    assert alpha.drbd.secondary(res).changed
    mark = len(alpha.log())
    lab.net.heal("alpha", "repl")
    assert_resync_progressed(watch_resync(lab, "alpha", "beta", res))
    assert alpha.digest(res) == winner
    assert "Split-Brain" not in alpha.log()[mark:]
    assert beta.drbd.secondary(res).changed

    # discard-zero-changes can not decide when both wrote: unresolved, StandAlone.
    _diverge(lab, res, alpha_writes=4, beta_writes=6)
    assert alpha.drbd.secondary(res).changed and beta.drbd.secondary(res).changed
    lab.net.heal("alpha", "repl")
    wait_for("alpha StandAlone", lambda: alpha.fast(res).peers[0].connection_state == "StandAlone")
    assert "after-sb-0pri discard-zero-changes" in alpha.log()
    assert alpha.digest(res) != beta.digest(res)


def test_only_the_kernel_daemon_runs_in_a_node_namespace(lab: Lab) -> None:
    """drbdadm and the stand-in's CLI ran inside the namespace and left no process behind."""
    out = subprocess.run(
        ["ip", "netns", "pids", lab["alpha"].namespace], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [str(control.pid_of(lab["alpha"].state_dir))]
