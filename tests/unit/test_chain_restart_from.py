"""ChainRunner.restart_from: the repair of a member that what is above it stands on (a
filesystem mounted again) restarts it with everything above it, as a resource group does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem.api.hacluster import HAClusterSpec
from tandem_agent.agent import repaired_how
from tandem_agent.chain import ChainRunner, NodeEnvironment, ResolvedCluster, Step, StepFailed
from tandem_agent.drivers import mounts
from tandem_agent.drivers.base import DriverError, Outcome
from tandem_agent.drivers.drbd import ResourceStatus


def runner(tmp_path: Path, calls: list[str], busy: str | None = None) -> ChainRunner:
    spec = HAClusterSpec.model_validate({"nodes": [{"name": "mail1"}, {"name": "mail2"}]})
    env = NodeEnvironment(
        node="mail1",
        state_dir=tmp_path,
        volume_driver=lambda *_: None,  # type: ignore[arg-type, return-value]
        service_backend=lambda *_: None,  # type: ignore[arg-type, return-value]
        postgres_config=None,  # type: ignore[arg-type]
        replication_password=lambda *_: "pw",
    )
    chain = ChainRunner(ResolvedCluster("mail", spec, {}, {}), env)

    def step(name: str) -> Step:
        def up() -> Outcome:
            calls.append(f"up {name}")
            return Outcome(True)

        def down() -> Outcome:
            if name == busy:
                raise DriverError(f"{name} is busy")
            calls.append(f"down {name}")
            return Outcome(True)

        return Step(name, up, down)

    chain.steps = [step(name) for name in ("drbd", "mount", "ips", "services")]
    return chain


def test_the_member_and_everything_above_it_stop_in_reverse_and_start_in_order(tmp_path: Path) -> None:
    calls: list[str] = []
    outcome = runner(tmp_path, calls).restart_from("mount")
    assert calls == ["down services", "down ips", "down mount", "up mount", "up ips", "up services"]
    assert outcome.changed and outcome.detail == "stopped and started again: mount, ips, services"


def test_a_stop_that_fails_starts_again_what_it_had_stopped_and_names_the_step(tmp_path: Path) -> None:
    calls: list[str] = []
    with pytest.raises(StepFailed, match="mount: mount is busy"):
        runner(tmp_path, calls, busy="mount").restart_from("mount")
    assert calls == ["down services", "down ips", "up ips", "up services"]


class SecondaryVolume:
    def observe(self) -> ResourceStatus:
        return ResourceStatus("store", 0, "Secondary", False, "UpToDate", False, None, ())


def test_a_mounted_filesystem_on_a_failed_volume_is_left_for_the_volume_repair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its writes fail because DRBD was demoted under it, and the volume's own check may not
    have told yet: restarting the chain from the mount would fail at mounting a Secondary
    device and leave everything above it stopped."""
    calls: list[str] = []
    chain = runner(tmp_path, calls)
    chain.volumes = {"store": SecondaryVolume()}  # type: ignore[dict-item]
    monkeypatch.setattr(mounts, "filesystem_mounted", lambda fs: True)
    fs = mounts.FilesystemMount(device="/dev/drbd0", target="/srv", fstype="ext4")
    with pytest.raises(DriverError, match="DRBD volume store under it failed: it is Secondary, not Primary"):
        chain._mount_again(fs, "store")  # noqa: SLF001
    assert calls == []


def test_a_repair_that_changed_nothing_does_not_claim_it_did() -> None:
    assert repaired_how("Volume", Outcome(True, "Secondary -> Primary")) == "promoted again in place"
    assert (
        repaired_how("Volume", Outcome(False, "mail-store is already Primary"))
        == "nothing to repair in place (mail-store is already Primary)"
    )
    assert repaired_how("Mount", Outcome(True, "unmounted and mounted again, stopped and started again: x")) == (
        "mounted again in place: unmounted and mounted again, stopped and started again: x"
    )
