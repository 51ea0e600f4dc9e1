"""The game-day compliance report: every run reported with its verdict, controls mapped, nothing dropped."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from resilience import evidence
from resilience.config import EvidenceSettings, Settings
from resilience.errors import UserError
from resilience.gameday import gameday_verdict, load_suites, run_gameday
from resilience.gameday_verify import run_verify_step
from resilience.reports.compliance import (CONTROL_IDS, COVERAGE, framework_scope, overall_verdict)
from run_fixtures import load_generator
from test_gameday_verify import verification

SUITES = Path(__file__).resolve().parents[2] / "experiments" / "suites.yaml"
NOW = datetime(2025, 3, 10, 6, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def gameday(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default suite over the four fixture runs; traffic-spike crashes the harness; backup-verify (a step)
    passes through a stand-in verification (tests/unit/test_gameday_verify.py covers the step)."""
    reports = tmp_path_factory.mktemp("reports")
    runs = load_generator().make_runs(reports)
    by_experiment = {json.loads((p / "result.json").read_text())["experiment"]: p for p in runs.values()}
    for name, run_dir in by_experiment.items():
        evidence.seal_run(run_dir, name, json.loads((run_dir / "result.json").read_text())["verdict"])

    def run_one(experiment: str) -> Path:
        if experiment == "traffic-spike":
            raise RuntimeError("locust exited with code 1")
        return by_experiment[experiment]

    settings = Settings(evidence=EvidenceSettings(frameworks_in_scope=("SOC 2", "PCI DSS")))

    def run_step(name: str) -> Path:
        return run_verify_step(settings, reports, datetime.now(timezone.utc), verify=lambda s: verification())
    return run_gameday("default", run_one, reports, settings, suites_file=SUITES, now=lambda: NOW, run_step=run_step)


def test_gameday_writes_a_sealed_report_directory(gameday: Path) -> None:
    assert gameday.name == "20250310T060000Z-gameday-default"
    assert {p.name for p in gameday.iterdir()} == {"compliance.html", "compliance.pdf", "compliance.json",
                                                  "alert-coverage.json", "alert-coverage.md", evidence.MANIFEST}
    assert evidence.verify(gameday).ok
    assert evidence.verify_ledger(gameday.parent).ok


def test_every_run_is_reported_with_its_verdict(gameday: Path) -> None:
    model = json.loads((gameday / "compliance.json").read_text())
    verdicts = {e["experiment"]: e["verdict"] for e in model["experiments"]}
    assert verdicts == {"pod-kill": "pass", "zone-failure": "fail", "db-failover": "inconclusive",
                        "redis-outage": "aborted", "traffic-spike": "aborted", "backup-verify": "pass"}
    spike = next(e for e in model["experiments"] if e["experiment"] == "traffic-spike")
    assert "locust exited with code 1" in spike["aborted_reason"]
    assert model["overall_verdict"] == "aborted" and gameday_verdict(gameday) == "aborted"
    html = (gameday / "compliance.html").read_text()
    for word in ("PASS", "FAIL", "INCONCLUSIVE", "ABORTED"):
        assert f">{word}</span>" in html


def test_each_run_quotes_its_manifest_digest(gameday: Path) -> None:
    model = json.loads((gameday / "compliance.json").read_text())
    html = (gameday / "compliance.html").read_text()
    for e in model["experiments"]:
        if e["run_dir"]:
            digest = evidence.manifest_digest(gameday.parent / e["run_dir"])
            assert digest and e["manifest_sha256"] == digest and digest in html


def test_metadata_has_utc_and_ist_and_the_target(gameday: Path) -> None:
    meta = json.loads((gameday / "compliance.json").read_text())["metadata"]
    assert meta["generated_at_utc"] == "2025-03-10T06:00:00Z"
    assert meta["generated_at_ist"].startswith("2025-03-10T11:30:00+05:30")
    assert meta["targets"] == ["local"] and meta["harness_git_commit"]


def test_findings_carry_remediation_hints(gameday: Path) -> None:
    findings = json.loads((gameday / "compliance.json").read_text())["findings"]
    rto = next(f for f in findings if f["finding"].startswith("rto_s"))
    assert rto["experiment"] == "zone-failure" and rto["severity"] == "high" and "Patroni" in rto["remediation"]
    assert any(f["experiment"] == "db-failover" and "could not be measured" in f["finding"] for f in findings)
    assert any(f["experiment"] == "redis-outage" and f["finding"].startswith("run aborted") for f in findings)
    assert any(f["experiment"] == "traffic-spike" for f in findings)


def test_control_matrix_maps_experiments_to_controls(gameday: Path) -> None:
    model = json.loads((gameday / "compliance.json").read_text())
    coverage = model["coverage"]
    assert [c["id"] for c in coverage["controls"]] == CONTROL_IDS
    rows = {r["experiment"]: r for r in coverage["rows"]}
    assert "SOC 2 CC7.4" in rows["zone-failure"]["controls"]
    assert "ISO/IEC 27001:2022 A.8.13" in rows["db-failover"]["controls"]
    assert coverage["summary"]["SOC 2 A1.3"]["state"].startswith("partly evidenced")
    html = (gameday / "compliance.html").read_text()
    for needle in ("A1.2", "CC9.1", "A.5.29", "A.8.16", "12.10.1", "12.10.2", "Art. 32(1)(c)", "Rule 6(1)",
                   "Sign-off", "Reviewer", "Approver"):
        assert needle in html
    pdf = (gameday / "compliance.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and int(re.findall(rb"/Count (\d+)", pdf)[0]) > 1


def test_framework_scope_comes_from_settings(gameday: Path) -> None:
    scope = json.loads((gameday / "compliance.json").read_text())["scope"]["frameworks"]
    assert scope["SOC 2"] == "in scope" and scope["PCI DSS v4.0"] == "in scope"
    assert scope["GDPR"] == "readiness claim only"
    mapping, unknown = framework_scope(("iso 27001", "HIPAA"))
    assert mapping["ISO/IEC 27001:2022"] == "in scope" and unknown == ["HIPAA"]


def test_coverage_table_names_only_known_controls() -> None:
    for kind, controls in COVERAGE.items():
        for control_id, rationale in controls:
            assert control_id in CONTROL_IDS, (kind, control_id)
            assert rationale and "\n" not in rationale
    assert set(COVERAGE) == {"pod-kill", "zone-failure", "db-failover", "redis-outage", "traffic-spike",
                             "data-corruption", "database-loss", "region-failure", "backup-verify"}


def test_overall_verdict_is_the_worst() -> None:
    assert overall_verdict(["pass", "pass"]) == "pass"
    assert overall_verdict(["pass", "inconclusive"]) == "inconclusive"
    assert overall_verdict(["inconclusive", "fail"]) == "fail"
    assert overall_verdict(["fail", "aborted"]) == "aborted"
    assert overall_verdict([]) == "inconclusive"


def test_load_suites_reads_the_shipped_file() -> None:
    suites = load_suites(SUITES)
    assert suites["default"] == ["pod-kill", "zone-failure", "db-failover", "redis-outage", "traffic-spike",
                                 "backup-verify"]
    assert suites["quick"] == ["pod-kill", "db-failover"]


def test_bad_suites_file_and_unknown_suite_name_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "suites.yaml"
    bad.write_text("suites:\n  quick: pod-kill\n")
    with pytest.raises(UserError, match="suite 'quick' must be a non-empty list"):
        load_suites(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_suites(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="Known suites: cloud, default, quick"):
        run_gameday("nightly", lambda name: tmp_path, tmp_path, Settings(), suites_file=SUITES)


def test_interrupted_gameday_still_reports_and_reraises(tmp_path: Path) -> None:
    run_dir = load_generator().make_run(tmp_path, "pass")

    def run_one(experiment: str) -> Path:
        if experiment == "db-failover":
            raise KeyboardInterrupt
        return run_dir

    with pytest.raises(KeyboardInterrupt):
        run_gameday("quick", run_one, tmp_path, dataclasses.replace(Settings()), suites_file=SUITES,
                    now=lambda: NOW)
    report = next(tmp_path.glob("*-gameday-quick"))
    model = json.loads((report / "compliance.json").read_text())
    assert [(e["experiment"], e["verdict"]) for e in model["experiments"]] == [("pod-kill", "pass"),
                                                                                ("db-failover", "aborted")]
    assert "interrupted" in model["experiments"][1]["aborted_reason"]


def test_the_fault_to_experiment_mapping_reads_the_registry() -> None:
    """A run under any experiment name gets the compliance row of its fault, named as the registry names it."""
    from types import SimpleNamespace

    from resilience.fault_registry import FAULTS
    from resilience.reports.compliance import KIND_BY_CAPABILITY, experiment_kind
    assert set(KIND_BY_CAPABILITY) <= set(FAULTS)
    from resilience.reports.compliance_dr import DR_COVERAGE
    assert set(KIND_BY_CAPABILITY.values()) <= set(COVERAGE)  # every kind has a row
    assert set(COVERAGE) - set(DR_COVERAGE) <= set(KIND_BY_CAPABILITY.values())  # every failover row is some fault's
    assert KIND_BY_CAPABILITY["traffic_spike"] == "traffic-spike"  # was `spike_traffic`, which no fault is called
    for name, kind in KIND_BY_CAPABILITY.items():
        run: Any = SimpleNamespace(fault={"capability": name})
        assert experiment_kind(run, "our-own-name") == kind, name
