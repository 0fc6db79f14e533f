"""The pure parts of `tandem chaos`: the seeded plan, argument parsing and the verdict."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tandem.cli import main as cli_main
from tandem_lab import fakeclock
from tandem_lab.chaos import KINDS, Step, parse_duration, parse_kinds, passed, plan, table
from tandem_lab.cluster import keep_logs


def first(seed: int, n: int = 200, kinds: tuple[str, ...] = tuple(KINDS)) -> list[Step]:
    return list(itertools.islice(plan(seed, kinds), n))


def test_the_same_seed_replays_the_same_plan() -> None:
    assert first(7) == first(7)


def test_different_seeds_plan_differently() -> None:
    assert first(7) != first(8)


def test_a_long_plan_uses_every_kind_and_holds_within_its_range() -> None:
    steps = first(1, 500)
    assert {s.kind for s in steps} == set(KINDS)
    for s in steps:
        low, high = KINDS[s.kind][1]
        assert low <= s.hold <= high, s
        assert 0.5 <= s.rest <= 4.0
    settled = sum(s.settle for s in steps) / len(steps)
    assert 0.6 < settled < 0.9, "most faults wait for a steady pair, some do not"


def test_a_restricted_plan_uses_only_the_named_kinds() -> None:
    assert {s.kind for s in first(3, kinds=("crash", "isolate"))} == {"crash", "isolate"}


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("1h", 3600), ("1.5m", 90)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "10 minutes", "m", "10d"])
def test_bad_durations_name_the_flag_and_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"--duration .*90s, 10m or 1h"):
        parse_duration(text)


def test_unknown_fault_kinds_are_named_with_the_choices() -> None:
    assert parse_kinds("crash, isolate") == ("crash", "isolate")
    with pytest.raises(ValueError, match=r"unknown meteor; choose from crash, freeze"):
        parse_kinds("crash,meteor")
    with pytest.raises(ValueError, match="empty list"):
        parse_kinds(" , ")


def test_the_cli_refuses_bad_input_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["chaos", "--seed", "1", "--duration", "soon"]) == 2
    assert "--duration 'soon'" in capsys.readouterr().err
    assert cli_main(["chaos", "--seed", "1", "--faults", "meteor"]) == 2
    assert "unknown meteor" in capsys.readouterr().err
    assert cli_main(["chaos", "--seed", "1", "--json", "/nonexistent-dir/chaos.json"]) == 2
    assert "'/nonexistent-dir' does not exist" in capsys.readouterr().err
    assert cli_main(["chaos", "--seed", "1", "--keep-logs", "/nonexistent-dir/logs"]) == 2
    assert "--keep-logs '/nonexistent-dir/logs'" in capsys.readouterr().err


def test_the_cli_keeps_logs_only_in_a_new_or_empty_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "old.log").write_text("earlier run\n")
    assert cli_main(["chaos", "--seed", "1", "--keep-logs", str(tmp_path / "used")]) == 2
    assert "is not an empty directory" in capsys.readouterr().err
    assert (tmp_path / "used" / "old.log").read_text() == "earlier run\n"


def test_kept_logs_leave_out_postgres_logs(tmp_path: Path) -> None:
    work = tmp_path / "work"
    drbd = "lab/nodes/n1/upper/var/lib/tandem-lab/drbd/kernel.log"
    for name in (
        "lab/operator.log",
        "lab/nodes/n1/agent.log",
        "lab/nodes/n1/power.log",
        drbd,
        "lab/nodes/n1/upper/var/lib/postgresql/15/main.run/postgres.log",
        "plane/etcd.log",
    ):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(name)
    keep_logs(work, tmp_path / "kept")
    kept = sorted(str(f.relative_to(tmp_path / "kept")) for f in (tmp_path / "kept").rglob("*.log"))
    assert kept == ["lab/nodes/n1/agent.log", "lab/nodes/n1/power.log", drbd, "lab/operator.log", "plane/etcd.log"]


def result(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "seed": 1,
        "elapsed_s": 60.0,
        "faults_injected": {"crash": 2, "total": 2},
        "failover_s": {"n": 1, "p50": 3.1, "p90": 3.1, "p99": 3.1, "max": 3.1},
        "write_outage_s": None,
        "failovers": 1,
        "acked_writes": 900,
        "lost_acked_writes": 0,
        "acked_files": 120,
        "lost_acked_files": 0,
        "double_primary_instants": 0,
        "primary_without_lease": 0,
        "epoch_overlaps": 0,
        "not_recovered": 0,
        "fault_errors": 0,
        "settled_at_end": True,
        "observer_samples": 700,
    }
    return base | overrides


def test_a_clean_run_passes_and_says_so() -> None:
    assert passed(result())
    assert "PASSED" in table(result())
    assert "  lost_acked_files          0" in table(result()).splitlines()


@pytest.mark.parametrize(
    "failure",
    [
        {"lost_acked_writes": 1},
        {"lost_acked_files": 1},
        {"double_primary_instants": 2},
        {"primary_without_lease": 1},
        {"epoch_overlaps": 1},
        {"not_recovered": 1},
        {"fault_errors": 1},
        {"settled_at_end": False},
    ],
)
def test_any_violation_fails_the_run(failure: dict[str, object]) -> None:
    assert not passed(result(**failure))
    assert "FAILED" in table(result(**failure))


@pytest.mark.parametrize(
    ("spec", "written"), [("+60s", "+60s x1"), ("-60s", "-60s x1"), ("+0", "+0 x1"), ("+0 x2", "+0 x2")]
)
def test_clock_specs_always_set_a_rate(spec: str, written: str) -> None:
    assert fakeclock.clock_spec(spec) == written
