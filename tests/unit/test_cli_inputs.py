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


def test_faults_says_what_the_settings_allow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    assert cli.main(["faults", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    failover = next(f for f in data["faults"] if f["name"] == "fail_over_database")
    assert failover["targets"]["kubernetes"]["supported"] is False  # the default: kubernetes.database external
    assert "kubernetes.database" in failover["targets"]["kubernetes"]["why_not"]
    cache = next(f for f in data["faults"] if f["name"] == "stop_cache")
    assert "failover only" in cache["targets"]["aws"]["condition"]
    config = tmp_path / "resilience.yaml"
    config.write_text("kubernetes:\n  database: cloudnativepg\n")
    assert cli.main(["faults", "--json", "--config", str(config)]) == 0
    data = json.loads(capsys.readouterr().out)
    failover = next(f for f in data["faults"] if f["name"] == "fail_over_database")
    assert failover["targets"]["kubernetes"]["supported"] is True
    # the dry-run agrees with the table
    config.write_text("kubernetes:\n  allowed_contexts: [c]\n")
    code = cli.main(["run", "db-failover", "--target", "kubernetes", "--context", "c", "--dry-run",
                     "--config", str(config)])
    assert code == 2 and "kubernetes.database" in capsys.readouterr().err


def test_a_cloud_run_without_settings_names_every_allow_list_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from resilience.config import load_settings
    monkeypatch.chdir(tmp_path)  # no resilience.yaml here
    monkeypatch.delenv("RESILIENCE_CONFIG", raising=False)
    code = cli.main(["run", "zone-failure", "--target", "aws", "--context", "eks-1", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2
    for setting in ("kubernetes.allowed_contexts", "aws.allowed_accounts", "aws.allowed_regions",
                    "aws.allowed_resources"):
        assert setting in err
    # the file it offers is complete: saved as it is, the dry-run passes
    (tmp_path / "resilience.yaml").write_text(err.split("first):\n\n", 1)[1])
    settings = load_settings(tmp_path / "resilience.yaml")
    assert settings.kubernetes.allowed_contexts == ("eks-1",)
    assert cli.main(["run", "zone-failure", "--target", "aws", "--context", "eks-1", "--dry-run"]) == 0
    assert yaml.safe_load((tmp_path / "resilience.yaml").read_text())["aws"]["allowed_regions"] == ["ap-south-1"]


def test_config_defaults_explain_every_key_and_read_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from resilience.config import Settings, load_settings
    assert cli.main(["config", "--defaults"]) == 0
    text = capsys.readouterr().out
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, rest = line.partition(":")
            assert "  # " in rest and rest.split("  # ", 1)[1].strip(), f"no explanation for {key.strip()}"
    config = tmp_path / "resilience.yaml"
    config.write_text(text)
    assert load_settings(config).to_json() | {"source": "defaults"} == Settings().to_json()
    assert "lost_writes" in yaml.safe_load(text)["targets"]


def test_config_output_is_a_settings_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resilience.config import load_settings
    config = tmp_path / "mine.yaml"
    config.write_text("stack:\n  replicas: 4\n")
    assert cli.main(["config", "--config", str(config)]) == 0
    again = tmp_path / "again.yaml"
    again.write_text(capsys.readouterr().out)
    assert cli.main(["config", "--config", str(again)]) == 0
    assert load_settings(again).stack.replicas == 4


def test_the_rbac_generator_reads_the_settings_file_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from resilience.targets.kubernetes import rbac
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESILIENCE_CONFIG", raising=False)
    (tmp_path / "resilience.yaml").write_text("kubernetes:\n  harness_namespace: chaos-here\n")
    assert rbac.main([]) == 0
    assert "chaos-here" in capsys.readouterr().out


def test_an_experiments_folder_here_is_announced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import shutil
    (tmp_path / "experiments").mkdir()
    shutil.copy(ROOT / "experiments" / "pod-kill.yaml", tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESILIENCE_CONFIG", raising=False)
    assert cli.main(["list"]) == 0
    captured = capsys.readouterr()
    assert "pod-kill" in captured.out and "zone-failure" not in captured.out
    assert "the experiment catalogue is" in captured.err and str(tmp_path / "experiments") in captured.err


def test_up_on_aws_without_settings_names_every_allow_list_before_asking(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESILIENCE_CONFIG", raising=False)
    assert cli.main(["up", "--target", "aws", "--context", "eks-1"]) == 2  # no --yes: it never got to ask
    err = capsys.readouterr().err
    assert "aws.allowed_accounts" in err and "aws.allowed_regions" in err and "kubernetes.allowed_contexts" in err


def test_set_target_help_names_every_target() -> None:
    import dataclasses

    from resilience.config import Targets
    run = cli.build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    text = next(a.help for a in run._actions if "--set-target" in a.option_strings) or ""
    assert all(f.name in text for f in dataclasses.fields(Targets))
