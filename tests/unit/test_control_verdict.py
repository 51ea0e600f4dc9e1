"""Plain `chaos run` keeps our verdict: the control marks the journal so the Chaos Toolkit CLI exits 1."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import InterruptExecution

from resilience import active, control


@dataclass
class FakeResult:
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict}


@dataclass
class FakeRun:
    verdict: str
    run_dir: Path | None = Path("reports/x")
    owned_by_control: bool = False
    error: BaseException | None = None
    closed: list[bool] = field(default_factory=list)

    def finish(self, journal: dict[str, Any]) -> FakeResult:
        return FakeResult(self.verdict)


@pytest.mark.parametrize("verdict,status,deviated", [
    ("pass", "completed", False), ("fail", "completed", True),
    ("inconclusive", "failed", False), ("aborted", "aborted", False)])
def test_the_journal_carries_the_verdict(verdict: str, status: str, deviated: bool) -> None:
    journal: dict[str, Any] = {"status": "completed", "deviated": False}
    active.activate(FakeRun(verdict))  # type: ignore[arg-type]
    try:
        control.after_experiment_control({}, journal)
    finally:
        active.activate(None)
    assert (journal["status"], journal["deviated"]) == (status, deviated)
    assert journal["extensions"][-1]["result"]["verdict"] == verdict
    # what the Chaos Toolkit CLI does with it (chaostoolkit/commands/run.py): exit 1 unless completed and not deviated
    assert (journal["status"] != "completed" or journal["deviated"]) == (verdict != "pass")


def test_a_set_up_error_under_plain_chaos_run_is_a_warning_and_stops_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "resilience.yaml"
    bad.write_text("stack:\n  replicas: many\n")
    monkeypatch.setenv("RESILIENCE_CONFIG", str(bad))
    with caplog.at_level(logging.WARNING, logger="chaostoolkit"):
        with pytest.raises(InterruptExecution, match="stack.replicas"):
            control.before_experiment_control({})
    assert any("stack.replicas" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
