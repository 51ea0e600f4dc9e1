"""The game-day's backup-verify step against a real backup: a scratch live primary (as in test_backups.py),
a real pgBackRest backup and verification, sealed as an experiment-shaped run the compliance report reads."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from resilience import evidence
from resilience.backup_verify import Sources, verify_backup
from resilience.config import Settings
from resilience.gameday import run_gameday
from resilience.gameday_verify import run_verify_step
from resilience.targets.local import backup_config as bc
from test_backups import live_instance, pytestmark  # noqa: F401 (same skip: root, PostgreSQL 15, pgbackrest)


def test_the_step_verifies_a_real_backup_and_the_compliance_report_shows_its_checks(tmp_path: Path) -> None:
    with live_instance("rsl-gd-verify-") as live:
        live.pgbackrest("stanza-create")
        live.pgbackrest("backup", "--type=full", "--repo=1")

        def verify(settings: Settings) -> dict[str, Any]:
            sources = Sources(bc.repo_paths(live.settings), lambda q: live.pg.sql(q, db="meals"))
            return verify_backup(sources, repo=1).to_json()

        (tmp_path / "suites.yaml").write_text("suites:\n  dr: [backup-verify]\n")
        report = run_gameday("dr", lambda e: tmp_path, tmp_path / "reports", Settings(),
                             suites_file=tmp_path / "suites.yaml",
                             run_step=lambda name: run_verify_step(Settings(), tmp_path / "reports",
                                                                   datetime.now(timezone.utc), verify=verify))
    model = json.loads((report / "compliance.json").read_text())
    section = model["experiments"][0]
    assert section["verdict"] == "pass" and model["overall_verdict"] == "pass", section
    observed = {m["measure"]: m["observed"] for m in section["measurements"]}
    assert observed["backup_checks_passed"] == "3" and observed["orders_compared"] == "2,000"
    run_dir = tmp_path / "reports" / section["run_dir"]
    assert evidence.verify(run_dir).ok
    assert [c["name"] for c in json.loads((run_dir / "result.json").read_text())["checks"]] == \
        ["pgbackrest verify", "restore", "orders integrity"]
