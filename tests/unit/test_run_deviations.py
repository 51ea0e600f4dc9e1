"""Why a run deviated, from its journal, its rollbacks and its history (pure)."""

from __future__ import annotations

from resilience.history import FAULT, INFO, OK, PLATFORM, Record
from resilience.results import run_deviations


def record(source: str, op: str, detail: dict | None = None) -> Record:
    return Record(1.0, source, op, INFO, None, None, detail or {})


def test_a_clean_run_has_no_deviation() -> None:
    records = [record(PLATFORM, "heal", {"components": {"postgres-1": {"seconds": 3.1, "action": "rewind"}}}),
               Record(2.0, FAULT, "rollback", OK, None, None, {})]
    assert run_deviations({"status": "completed", "deviated": False}, 0, records) == []


def test_a_heal_that_failed_marks_the_run_deviated_naming_the_component() -> None:
    failed = record(PLATFORM, "heal_failed", {"components": {"postgres-1": "not streaming from the primary postgres-2"}})
    deviations = run_deviations({"status": "completed"}, 0, [failed])
    assert len(deviations) == 1 and "postgres-1: not streaming" in deviations[0]


def test_failed_rollbacks_and_chaos_toolkit_deviation_are_each_named() -> None:
    deviations = run_deviations({"status": "failed", "deviated": True}, 2, [])
    assert len(deviations) == 3 and "2 rollback(s) failed" in deviations
