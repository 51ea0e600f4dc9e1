"""The default game-day suite verifies a backup (issue 19 item 4): a step recorded like the experiments, its
evidence (checks, backup, verdict) in the compliance report; skipped with the reason where there is no backup."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from resilience import evidence
from resilience.config import Settings
from resilience.errors import UserError
from resilience.gameday import SuiteGuard, load_suites, run_gameday, suite_guard, validate_suites
from resilience.gameday_verify import BACKUP_VERIFY, NO_STEP_RUNNER, is_step, run_verify_step, step_plan, step_refusal
from resilience.reports.run import load_run

SUITES = Path(__file__).resolve().parents[2] / "experiments" / "suites.yaml"
NOW = datetime(2025, 3, 10, 6, 0, 0, tzinfo=timezone.utc)


def verification(*failed: str, restored: int = 1840) -> dict[str, Any]:
    """A Verification's JSON as backup_verify writes it; the named checks failed."""
    details = {"pgbackrest verify": "every file's checksum and size as recorded",
               "restore": "20250310-055500F restored and recovered to its stop point in a scratch instance",
               "orders integrity": f"orders created before 2025-03-10T05:55:00+00:00: restored {restored} (md5 ab), "
                                   f"live primary {restored} (md5 ab)"}
    checks = [{"name": name, "ok": name not in failed, "detail": detail, "seconds": 1.0}
              for name, detail in details.items()]
    return {"schema_version": 1, "experiment": BACKUP_VERIFY, "verdict": "fail" if failed else "pass", "repo": 1,
            "backup": {"label": "20250310-055500F", "type": "full", "start": NOW.timestamp() - 300,
                       "stop": NOW.timestamp() - 290, "size_bytes": 30_000_000, "wal_start": "a", "wal_stop": "b"},
            "checks": checks}


def test_the_default_suite_ends_with_the_backup_verify_step_and_validates() -> None:
    suites = load_suites(SUITES)
    assert suites["default"][-1] == BACKUP_VERIFY and is_step(BACKUP_VERIFY)
    assert BACKUP_VERIFY not in suites["cloud"]  # nothing to verify on aws today
    assert "default (6)" in validate_suites(SUITES)  # a step is no experiment file, and validates


def test_the_step_runs_through_run_step_and_its_evidence_is_in_the_compliance_report(tmp_path: Path) -> None:
    ran: list[str] = []

    def run_one(experiment: str) -> Path:
        raise AssertionError(f"{experiment} is a step, not an experiment")

    def run_step(name: str) -> Path:
        ran.append(name)
        return run_verify_step(Settings(), tmp_path, NOW, verify=lambda s: verification())

    (tmp_path / "suites.yaml").write_text("suites:\n  dr: [backup-verify]\n")
    report = run_gameday("dr", run_one, tmp_path, Settings(), suites_file=tmp_path / "suites.yaml",
                         now=lambda: NOW, run_step=run_step)
    assert ran == [BACKUP_VERIFY]
    model = json.loads((report / "compliance.json").read_text())
    section = model["experiments"][0]
    assert section["experiment"] == BACKUP_VERIFY and section["verdict"] == "pass"
    assert model["overall_verdict"] == "pass"
    observed = {m["measure"]: (m["observed"], m["status"]) for m in section["measurements"]}
    assert observed["backup_checks_passed"] == ("3", "met")
    assert observed["orders_compared"] == ("1,840", "met")
    assert observed["backup_age_s"][1] == "met"
    assert "pgbackrest verify" in (report / "compliance.html").read_text()


def test_a_step_run_is_a_sealed_run_directory_that_reads_back_like_any_run(tmp_path: Path) -> None:
    run_dir = run_verify_step(Settings(), tmp_path, NOW, verify=lambda s: verification())
    assert evidence.verify(run_dir).ok and evidence.verify_ledger(tmp_path).ok
    run = load_run(run_dir)
    assert (run.experiment, run.verdict, run.target) == (BACKUP_VERIFY, "pass", "local")
    data = json.loads((run_dir / "result.json").read_text())
    assert data["backup"]["label"] == "20250310-055500F" and len(data["checks"]) == 3


def test_a_failed_check_fails_the_step_and_names_the_check(tmp_path: Path) -> None:
    run = load_run(run_verify_step(Settings(), tmp_path, NOW, verify=lambda s: verification("pgbackrest verify")))
    assert run.verdict == "fail"
    m = run.measurement("backup_checks_passed")
    assert m is not None and m.value == 2 and m.status == "breached"
    assert "pgbackrest verify: every file" in m.detail["reason"]


def test_a_verification_that_cannot_be_made_is_inconclusive_with_the_reason(tmp_path: Path) -> None:
    def no_backup(settings: Settings) -> dict[str, Any]:
        raise UserError("repo1 holds no backup yet: the stack takes the first one in the background after `up`")
    run = load_run(run_verify_step(Settings(), tmp_path, NOW, verify=no_backup))
    assert run.verdict == "inconclusive"
    m = run.measurement("backup_checks_passed")
    assert m is not None and m.value is None and "repo1 holds no backup yet" in m.detail["reason"]
    assert "repo1 holds no backup yet" in str(run.result.error)


def test_a_stack_started_for_the_step_says_what_its_backup_holds(tmp_path: Path) -> None:
    run = load_run(run_verify_step(Settings(), tmp_path, NOW,
                                   verify=lambda s: {**verification(restored=0), "stack_started": True}))
    m = run.measurement("orders_compared")
    assert run.verdict == "pass" and m is not None and m.value == 0 and "--keep-up" in m.detail["reason"]


@pytest.mark.parametrize("target", ["kubernetes", "aws"])
def test_on_a_target_without_backups_the_step_is_skipped_with_the_reason_never_passed(tmp_path: Path,
                                                                                      target: str) -> None:
    settings = Settings()
    reason = step_refusal(BACKUP_VERIFY, target, settings)
    assert reason and f"the {target} target keeps no backups" in reason
    assert "skipped" in step_plan(BACKUP_VERIFY, target, settings)

    def never(name: str) -> Path:
        raise AssertionError("a refused step must not run")
    (tmp_path / "suites.yaml").write_text("suites:\n  dr: [backup-verify]\n")
    report = run_gameday("dr", never, tmp_path, settings, suites_file=tmp_path / "suites.yaml", now=lambda: NOW,
                         guard=SuiteGuard(lambda e: step_refusal(e, target, settings)), run_step=never)
    model = json.loads((report / "compliance.json").read_text())
    assert model["experiments"][0]["verdict"] == "skipped" and model["overall_verdict"] == "inconclusive"
    assert reason in model["experiments"][0]["skipped_reason"]
    assert any(reason in f["finding"] for f in model["findings"])


def test_the_local_guard_lets_the_step_run_unless_backups_are_off() -> None:
    settings = Settings()
    guard = suite_guard("local", settings)
    assert guard.refusal(BACKUP_VERIFY) is None and guard.before(BACKUP_VERIFY) is None
    off = dataclasses.replace(settings, stack=dataclasses.replace(
        settings.stack, backup=dataclasses.replace(settings.stack.backup, enabled=False)))
    assert "backups are off" in str(suite_guard("local", off).refusal(BACKUP_VERIFY))


def test_without_a_step_runner_the_step_is_skipped_saying_so_and_nothing_is_started(tmp_path: Path) -> None:
    (tmp_path / "suites.yaml").write_text("suites:\n  dr: [backup-verify]\n")
    report = run_gameday("dr", lambda e: tmp_path, tmp_path, Settings(), suites_file=tmp_path / "suites.yaml",
                         now=lambda: NOW)
    section = json.loads((report / "compliance.json").read_text())["experiments"][0]
    assert section["verdict"] == "skipped" and section["skipped_reason"] == NO_STEP_RUNNER
