"""Every settings block we ship (deploy/ manifests and the docs) goes through the CLI's dry-run.

A shipped example that the tool refuses is worse than none: the weekly CronJob's
settings once lacked aws.allowed_regions and aws.allowed_resources, so its first
run stopped with exit 2. Here each block is written to a file and the command it
goes with is run with --dry-run (no client is created, nothing is called).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from resilience import cli
from resilience.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
SETTING_SECTIONS = {f for f in Settings.__dataclass_fields__ if f != "source"}


def cronjob_settings_and_command() -> tuple[str, list[str]]:
    documents = [d for d in yaml.safe_load_all((ROOT / "deploy" / "cronjob-gameday.yaml").read_text()) if d]
    config_map = next(d for d in documents if d["kind"] == "ConfigMap")
    cronjob = next(d for d in documents if d["kind"] == "CronJob")
    command = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    return config_map["data"]["resilience.yaml"], list(command)


def doc_yaml_blocks() -> list[tuple[str, str]]:
    """(file, block) for every ```yaml block in README.md and docs/ that is a settings file (or part of one)."""
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```ya?ml\n(.*?)```", path.read_text(), flags=re.S):
            data = yaml.safe_load(block)
            if isinstance(data, dict) and data and set(data) <= SETTING_SECTIONS:
                out.append((path.name, block))
    return out


def with_config(argv: list[str], config: Path) -> list[str]:
    """The command with its --config pointing at `config` (added when it had none)."""
    argv = list(argv)
    if "--config" in argv:
        argv[argv.index("--config") + 1] = str(config)
    else:
        argv += ["--config", str(config)]
    return argv


def test_the_cronjob_game_day_passes_its_own_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings, command = cronjob_settings_and_command()
    config = tmp_path / "resilience.yaml"
    config.write_text(settings)
    assert command[0] == "resilience"
    code = cli.main(with_config(command[1:], config) + ["--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.count("== ") == 5  # every experiment of the suite was planned
    # faults on aws are AWS FIS experiments (aws.injection: fis, the default)
    assert "aws:rds:failover-db-cluster" in out and "aws:elasticache:replicationgroup-interrupt-az-power" in out


def test_the_kind_contract_settings_load_and_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = ROOT / "deploy" / "kind" / "resilience-kind.yaml"
    for experiment in ("pod-kill", "zone-failure", "traffic-spike"):
        code = cli.main(["run", experiment, "--target", "kubernetes", "--context", "kind-resilience",
                         "--config", str(config), "--profile", "short", "--dry-run"])
        assert code == 0, capsys.readouterr().err


def test_the_eks_walkthrough_settings_pass_its_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "eks-walkthrough.md").read_text()
    block = next(b for name, b in doc_yaml_blocks() if name == "eks-walkthrough.md")
    config = tmp_path / "resilience.yaml"
    config.write_text(block)
    commands = [line.strip() for line in text.splitlines() if line.strip().startswith("resilience run")
                and "--dry-run" in line]
    assert commands
    for command in commands:
        code = cli.main(with_config(command.split()[1:], config))
        assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize("name,block", doc_yaml_blocks(), ids=lambda v: v if v.endswith(".md") else "")
def test_every_settings_block_in_the_docs_loads(name: str, block: str, tmp_path: Path) -> None:
    config = tmp_path / "resilience.yaml"
    config.write_text(block)
    load_settings(config)  # an unknown key or a bad value raises UserError naming it


def test_there_are_settings_blocks_in_the_docs() -> None:
    assert {name for name, _ in doc_yaml_blocks()} >= {"eks-walkthrough.md", "in-cluster-load.md"}
