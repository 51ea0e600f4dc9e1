"""The compliance report's backup and DR controls cite runs that restored from backup, and say so when none did."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from run_fixtures import load_generator
from test_reports_recovery import recovery_records

from resilience import evidence
from resilience.checkers import restore
from resilience.config import Settings
from resilience.reports.compliance import GamedayEntry, build_compliance, write_compliance
from resilience.reports.compliance_dr import DR_CONTROLS, backup_and_dr

NOW = datetime(2025, 3, 10, 6, 0, 0, tzinfo=timezone.utc)


def restore_run_dir(tmp_path: Path, restore_ok: bool = True) -> Path:
    """The fixture pass run, re-labelled data-corruption, with the restore checker's measurements."""
    run_dir = load_generator().make_run(tmp_path, "pass")
    result = json.loads((run_dir / "result.json").read_text())
    measured = restore.measurements(recovery_records(restore_ok), rpo_target_s=300.0)
    result.update(experiment="data-corruption", verdict="pass" if restore_ok else "inconclusive",
                  measurements=[m.to_json() for m in measured])
    (run_dir / "result.json").write_text(json.dumps(result))
    evidence.seal_run(run_dir, "data-corruption", result["verdict"])
    return run_dir


def verify_run_dir(tmp_path: Path, ok: bool = True) -> Path:
    run_dir = tmp_path / "20250310T055000Z-backup-verify"
    run_dir.mkdir()
    (run_dir / "result.json").write_text(json.dumps({
        "schema_version": 1, "experiment": "backup-verify", "verdict": "pass" if ok else "fail", "repo": 1,
        "backup": {"label": "20250310-052000F"},
        "checks": [{"name": "pgbackrest verify", "ok": True, "detail": "", "seconds": 1.0},
                   {"name": "integrity", "ok": ok, "detail": "", "seconds": 1.0}]}))
    return run_dir


def test_failover_runs_alone_are_no_evidence_of_a_tested_restore(tmp_path: Path) -> None:
    runs = load_generator().make_runs(tmp_path)
    found = backup_and_dr(runs.values())
    assert found["restore_runs"] == [] and found["verify_runs"] == []
    assert found["statement"].startswith("No run in this game-day restored from backup")
    assert "Failover experiments keep the data on a standby" in found["statement"]
    assert set(found["controls"]) == set(DR_CONTROLS)


def test_a_restore_run_and_a_verification_are_cited(tmp_path: Path) -> None:
    restored, verified = restore_run_dir(tmp_path / "a"), verify_run_dir(tmp_path)
    found = backup_and_dr([restored, verified, None])
    [cited] = found["restore_runs"]
    assert cited["restored"] and cited["verdict"] == "pass" and cited["backup_label"] == "20250310-052000F"
    assert (cited["acknowledged"], cited["kept"], cited["lost"], cited["given_up"]) == (4, 3, 0, 1)
    assert cited["rpo_s"] == 1.0 and cited["manifest_sha256"]
    [check] = found["verify_runs"]
    assert check["checks"] == ["pgbackrest verify: ok", "integrity: ok"]
    assert found["controls"]["SOC 2 A1.3"] == {"restore_runs": [restored.name], "verify_runs": [verified.name]}
    assert "1 of 1 run(s) restored from backup and passed" in found["statement"]
    assert "1 of 1 backup verification(s) passed" in found["statement"]


def test_a_failed_restore_is_cited_as_not_evidence(tmp_path: Path) -> None:
    found = backup_and_dr([restore_run_dir(tmp_path, restore_ok=False)])
    [cited] = found["restore_runs"]
    assert not cited["restored"] and cited["reason"] == "the restore failed: repo1 unreadable"
    assert "none passed: no tested restore is evidenced" in found["statement"]
    assert "no backup verification" in found["statement"]


def test_the_compliance_report_has_the_backup_and_dr_section(tmp_path: Path) -> None:
    entries = [GamedayEntry("data-corruption", restore_run_dir(tmp_path / "a")),
               GamedayEntry("pod-kill", load_generator().make_run(tmp_path / "b", "pass"))]
    model = build_compliance(entries, Settings(), "dr", "R-1", NOW)
    assert model["backup_and_dr"]["restore_runs"][0]["experiment"] == "data-corruption"
    assert model["coverage"]["rows"][0]["controls"]["ISO/IEC 27001:2022 A.8.13"]
    out = tmp_path / "report"
    out.mkdir()
    write_compliance(out, model)
    html = (out / "compliance.html").read_text()
    assert "6a. Backup and disaster recovery" in html and "restored from backup and passed" in html
    assert (out / "compliance.pdf").stat().st_size > 0
    empty = build_compliance([entries[1]], Settings(), "quick", "R-2", NOW)
    assert empty["backup_and_dr"]["statement"].startswith("No run in this game-day restored from backup")
