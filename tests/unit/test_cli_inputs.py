"""What a newcomer's first mistakes get: the dry-run refuses what the run refuses, and blames the right thing."""

from __future__ import annotations

from pathlib import Path

import pytest

from resilience import cli

ROOT = Path(__file__).resolve().parents[2]


def dry_run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["run", *argv, "--dry-run"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("pair,says", [
    ("rto=60", "unknown setting 'targets.rto'"),
    ("availability=99.9", "fraction in (0, 1]"),
    ("rto_s=abc", "must be a number"),
    ("rto_s=1e400", "finite"),
    ("rto_s=-1", "positive"),
])
def test_the_dry_run_refuses_a_target_the_run_would_refuse(pair: str, says: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = dry_run(capsys, "zone-failure", "--set-target", pair)
    assert code == 2 and says in err
    assert "--set-target" in err and "zone-failure.yaml" not in err  # the flag is to blame, not the file


@pytest.mark.parametrize("flags,blamed", [
    (["--workers", "0"], "--workers"),
    (["--stages", "20s"], "--stages"),
    (["--users", "-1"], "--users"),
    (["--spawn-rate", "0"], "--spawn-rate"),
])
def test_a_load_flag_mistake_names_the_flag(flags: list[str], blamed: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = dry_run(capsys, "pod-kill", *flags)
    assert code == 2 and f"error: {blamed}:" in err and "pod-kill.yaml" not in err


def test_the_plan_shows_the_seed_the_load_and_the_targets(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = dry_run(capsys, "pod-kill", "--seed", "7", "--set-target", "rto_s=60", "--users", "12")
    assert code == 0
    assert "seed: 7" in out and "(seed 7)" in out and "seed None" not in out
    assert "load: 12 users" in out
    assert "rto_s 60" in out and "lost_writes 0" in out


def test_validate_accepts_the_whole_experiments_folder(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in sorted((ROOT / "experiments").glob("*.yaml"))]
    assert any(f.endswith("suites.yaml") for f in files)
    assert cli.main(["validate", *files]) == 0
    assert "suites.yaml: valid suites file" in capsys.readouterr().out


def test_validate_refuses_a_suite_naming_an_unknown_experiment(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    suites = tmp_path / "suites.yaml"
    suites.write_text("suites:\n  nightly: [pod-kill, no-such-experiment]\n")
    assert cli.main(["validate", str(suites)]) == 2
    assert "no-such-experiment" in capsys.readouterr().err


def test_gameday_dry_run_plans_every_experiment_of_the_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["gameday", "--suite", "quick", "--dry-run", "--profile", "short"]) == 0
    out = capsys.readouterr().out
    assert "== pod-kill" in out and "== db-failover" in out
