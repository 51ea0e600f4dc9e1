"""The compliance report maps detection to SOC 2 CC7.2/CC7.3 and ISO/IEC 27001 A.8.16, citing the runs that
measured detection_s, and says so plainly when none did."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from run_fixtures import load_generator

from resilience import evidence
from resilience.checkers.detection import AlertTimeline, DetectionResult, measurements
from resilience.config import Settings
from resilience.reports.compliance import GamedayEntry, build_compliance, write_compliance
from resilience.reports.compliance_detection import DETECTION_CONTROLS, detection_evidence

NOW = datetime(2025, 3, 10, 6, 0, 0, tzinfo=timezone.utc)
CONFIG = {"scrape_s": 1.0, "evaluation_s": 1.0, "group_wait_s": 0.0, "for_s": {"DatabaseDown": 2.0}}


def detection_run_dir(tmp_path: Path, *, notified: bool = True, unreachable: str | None = None) -> Path:
    """The fixture pass run, re-labelled db-failover, with the detection checker's measurements."""
    run_dir = load_generator().make_run(tmp_path, "pass")
    first = AlertTimeline("DatabaseDown", 11.0, 12.0, 13.1 if notified else None, 19.5 if notified else None)
    result = DetectionResult(("DatabaseDown",), CONFIG, unreachable, 10.0, 10.1, 20.0,
                             first if notified else None, {"DatabaseDown": first},
                             () if notified else ("DatabaseDown",), ())
    data = json.loads((run_dir / "result.json").read_text())
    verdict = "pass" if notified and not unreachable else ("inconclusive" if unreachable else "fail")
    data.update(experiment="db-failover", verdict=verdict, measurements=[m.to_json() for m in measurements(result)])
    (run_dir / "result.json").write_text(json.dumps(data))
    evidence.seal_run(run_dir, "db-failover", verdict)
    return run_dir


def test_runs_without_detection_are_no_evidence_and_the_statement_says_so(tmp_path: Path) -> None:
    found = detection_evidence(load_generator().make_runs(tmp_path).values())
    assert found["runs"] == []
    assert found["statement"].startswith("No run in this game-day measured detection")
    assert set(found["controls"]) == set(DETECTION_CONTROLS) == {"SOC 2 CC7.2", "SOC 2 CC7.3",
                                                                 "ISO/IEC 27001:2022 A.8.16"}


def test_a_run_that_measured_detection_is_cited_per_control(tmp_path: Path) -> None:
    run_dir = detection_run_dir(tmp_path / "a")
    found = detection_evidence([run_dir, None])
    [cited] = found["runs"]
    assert cited["detection_s"] == 3.0 and cited["bound_s"] == 4.0 and cited["alert"] == "DatabaseDown"
    assert cited["from_injection_s"] == 3.1 and cited["alert_cleared_s"] == -0.5 and cited["manifest_sha256"]
    assert cited["missed"] == [] and cited["false_alerts"] == 0
    assert found["controls"]["SOC 2 CC7.2"]["runs"] == [run_dir.name]
    assert "1 of 1 run(s) detected the fault with the expected alert within its bound" in found["statement"]
    assert "detection took 3-3 s from the impact" in found["statement"]


def test_missed_and_unreachable_runs_are_cited_as_gaps_not_evidence(tmp_path: Path) -> None:
    found = detection_evidence([detection_run_dir(tmp_path / "a", notified=False),
                                detection_run_dir(tmp_path / "b", unreachable="the monitoring was unreachable")])
    missed, blind = found["runs"]
    assert missed["missed"] == ["DatabaseDown"] and missed["status"] == "breached"
    assert blind["status"] == "inconclusive" and blind["detection_s"] is None
    assert "0 of 2 run(s) detected" in found["statement"]
    assert "1 run(s) inconclusive" in found["statement"] and "1 run(s) show a detection gap" in found["statement"]


def test_the_compliance_report_has_the_detection_section(tmp_path: Path) -> None:
    entries = [GamedayEntry("db-failover", detection_run_dir(tmp_path / "a")),
               GamedayEntry("pod-kill", load_generator().make_run(tmp_path / "b", "pass"))]
    model = build_compliance(entries, Settings(), "alerts", "R-1", NOW)
    assert model["detection"]["runs"][0]["experiment"] == "db-failover"
    out = tmp_path / "report"
    out.mkdir()
    written = write_compliance(out, model)
    html = next(p for p in written if p.suffix == ".html").read_text()
    assert "6b. Detection (SOC 2 CC7.2, CC7.3, ISO/IEC 27001 A.8.16)" in html and "DatabaseDown" in html
    assert any(p.suffix == ".pdf" and p.stat().st_size > 0 for p in written)
