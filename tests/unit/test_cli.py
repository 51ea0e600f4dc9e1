"""Bad input gets one clear paragraph and exit code 2, before anything is started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from resilience.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "resilience run zone-failure" in out and "exit codes" in out


def test_list_shows_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("pod-kill", "zone-failure", "db-failover", "redis-outage", "traffic-spike"):
        assert name in out
    assert "INVALID" not in out


def test_unknown_experiment_names_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "zone-failur"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'zone-failur'" in err and "zone-failure" in err and "resilience list" in err


def test_unknown_target_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--target", "mars"]) == 2
    assert "unknown target 'mars'" in capsys.readouterr().err


def test_broken_yaml_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: [unclosed\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not valid YAML" in err


def test_bad_field_names_the_field_and_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "experiments" / "pod-kill.yaml").read_text()
    bad = tmp_path / "pod-kill.yaml"
    bad.write_text(text.replace("measures: [availability, p99, rto]", "measures: [availability, speed]"))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "extensions.resilience.measures" in err and "'speed'" in err


def test_impossible_targets_are_refused_before_anything_runs(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "pod-kill", "--set-target", "availability=1.5", "--reports-dir", str(tmp_path)]) == 2
    assert "targets.availability" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_config_file_names_the_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "resilience.yaml"
    config.write_text("stack:\n  replicas: 99\n")
    assert main(["config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "stack.replicas" in err


def test_defaults_file_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--defaults"]) == 0
    config = tmp_path / "resilience.yaml"
    config.write_text(capsys.readouterr().out)
    assert main(["config", "--config", str(config)]) == 0


def test_missing_binary_names_the_package_and_the_command(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "RESILIENCE_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, "-m", "resilience.cli", "up"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert "haproxy (Debian package haproxy)" in proc.stderr and "scripts/bootstrap.sh" in proc.stderr
    assert not (tmp_path / "state").exists()


def test_kubernetes_dry_run_prints_the_plan_and_respects_the_allow_list(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "resilience.yaml"
    config.write_text("kubernetes:\n  allowed_contexts: [staging]\n")
    assert main(["run", "zone-failure", "--target", "kubernetes", "--context", "staging", "--dry-run",
                 "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "server-side apply Deployment" in out and "resilience.dev/cordoned-by" in out
    assert "/eviction" in out and "drain_nodes" not in out  # our own drain: allowed namespaces only
    assert "zone=primary" not in out and "removing resilience.dev/cordoned-by" in out
    assert main(["run", "zone-failure", "--target", "kubernetes", "--context", "prod", "--dry-run",
                 "--config", str(config)]) == 2
    assert "allowed_contexts" in capsys.readouterr().err
