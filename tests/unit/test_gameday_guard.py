"""A game-day asks its target before each experiment: a refused one is skipped with the reason (not a failure),
and a pacer may hold the next one back or skip it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from resilience.config import Settings
from resilience.gameday import SuiteGuard, run_gameday, suite_guard
from resilience.reports.compliance import overall_verdict

SUITES = Path(__file__).resolve().parents[2] / "experiments" / "suites.yaml"
NOW = datetime(2025, 3, 10, 6, 0, 0, tzinfo=timezone.utc)


def test_skipped_experiments_are_reported_with_the_reason_and_do_not_fail_the_game_day(tmp_path: Path) -> None:
    asked: list[str] = []

    def refusal(experiment: str) -> str | None:
        return "stop_cache cannot run on the aws target: no full outage" if experiment == "redis-outage" else None

    def before(experiment: str) -> str | None:
        asked.append(experiment)
        return None if experiment != "traffic-spike" else "the TestFailover quota is used up"

    def run_one(experiment: str) -> Path:
        raise AssertionError(f"{experiment} should not run here")
    guard = SuiteGuard(refusal, before)
    report = run_gameday("quick", lambda e: run_one(e), tmp_path, Settings(), suites_file=SUITES, now=lambda: NOW,
                         guard=SuiteGuard(lambda e: "refused: " + e))
    data = json.loads((report / "compliance.json").read_text())
    assert [e["verdict"] for e in data["experiments"]] == ["skipped", "skipped"]
    assert data["overall_verdict"] == "inconclusive"  # nothing ran: nothing is evidenced
    assert [f["severity"] for f in data["findings"]] == ["low", "low"]
    assert "refused: pod-kill" in (report / "compliance.html").read_text()
    assert guard.refusal("redis-outage") and guard.before("traffic-spike") and asked == ["traffic-spike"]


def test_the_overall_verdict_leaves_skipped_experiments_aside() -> None:
    assert overall_verdict(["pass", "skipped", "pass"]) == "pass"
    assert overall_verdict(["skipped"]) == "inconclusive"
    assert overall_verdict(["fail", "skipped"]) == "fail"


def test_the_local_target_s_guard_refuses_what_the_local_nemesis_refuses() -> None:
    guard = suite_guard("local", Settings())
    assert guard.refusal("pod-kill") is None and guard.before("pod-kill") is None
