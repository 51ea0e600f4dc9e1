"""Reports and `check` say what is true: exit codes with one meaning each, honest labels, a strict JUnit."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from resilience.cli import EXIT_DIFFERS, main
from resilience.recheck import recheck
from resilience.reports import render
from run_fixtures import load_generator


def recomputable(tmp_path: Path, kind: str) -> Path:
    """A fixture run whose result.json is what its history gives (so `check` finds it the same)."""
    run_dir: Path = load_generator().make_run(tmp_path / "reports", kind)
    recomputed, _ = recheck(run_dir)
    (run_dir / "result.json").write_text(json.dumps(recomputed.to_json()))
    return run_dir


def test_check_exit_codes_tell_a_failed_run_from_a_changed_result(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = recomputable(tmp_path, "pass")
    result = json.loads((run_dir / "result.json").read_text())
    assert main(["check", str(run_dir)]) == (0 if result["verdict"] == "pass" else 1)
    result["verdict"] = "fail" if result["verdict"] == "pass" else "pass"  # an intact run that failed looks like
    (run_dir / "result.json").write_text(json.dumps(result))  # ... this only when result.json was changed
    assert main(["check", str(run_dir)]) == EXIT_DIFFERS == 3
    assert "DIFFERENT" in capsys.readouterr().err


def test_check_exits_1_for_an_intact_run_that_did_not_pass(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    for kind in ("fail", "inconclusive", "aborted"):
        run_dir = recomputable(tmp_path / kind, kind)
        verdict = json.loads((run_dir / "result.json").read_text())["verdict"]
        code = main(["check", str(run_dir)])
        out = capsys.readouterr().out
        assert "same measurements and verdict as stored" in out
        assert code == (0 if verdict == "pass" else 1), (kind, verdict)


def test_check_of_a_copied_run_prints_where_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = recomputable(tmp_path, "pass")
    copy = tmp_path / "elsewhere" / run_dir.name
    shutil.copytree(run_dir, copy)
    main(["check", str(copy)])
    out = capsys.readouterr().out
    assert f"evidence: {copy}" in out and f"the run was written to {run_dir}" in out


def with_reported_and_p99(tmp_path: Path) -> Path:
    run_dir: Path = load_generator().make_run(tmp_path / "reports", "pass")
    result = json.loads((run_dir / "result.json").read_text())
    result["started_at"] = "2025-03-10T05:30:00.123456+00:00"
    result["measurements"] += [
        {"name": "p99_ms", "value": 12.0, "unit": "ms", "target": 200.0, "comparison": "<=", "status": "met",
         "phase": "overall", "definition": "p99", "detail": {"excludes": "fault phase"}},
        {"name": "availability_fault", "value": 0.8, "unit": "ratio", "target": None, "comparison": ">=",
         "status": "met", "phase": "fault", "definition": "availability in the fault", "detail": {}}]
    (run_dir / "result.json").write_text(json.dumps(result))
    return run_dir


def test_junit_has_no_testcase_for_a_reported_only_figure_and_a_schema_timestamp(tmp_path: Path) -> None:
    run_dir = with_reported_and_p99(tmp_path)
    suite = ET.parse(render(run_dir, "junit")).getroot().find("testsuite")
    assert suite is not None
    names = [c.get("name") for c in suite.findall("testcase")]
    assert not any(n and n.startswith("availability_fault") for n in names)
    assert suite.get("tests") == str(len(names))
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert "reported: availability_fault [fault]" in props
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.get("timestamp") or "")
    assert suite.get("timestamp") == "2025-03-10T05:30:00"


def test_p99_is_labelled_as_judged_outside_the_fault_phase(tmp_path: Path) -> None:
    run_dir = with_reported_and_p99(tmp_path)
    for fmt in ("md", "junit", "html"):
        text = render(run_dir, fmt).read_text()
        assert "p99_ms [all but the fault phase]" in text, fmt
        assert "p99_ms [overall]" not in text, fmt


def test_verify_of_the_reports_folder_says_to_verify_each_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = recomputable(tmp_path, "pass")
    assert main(["verify", str(run_dir.parent)]) == 2
    err = capsys.readouterr().err
    assert "holds run directories" in err and "never sealed" not in err


def test_a_mistyped_ledger_head_is_bad_input_not_tampering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = recomputable(tmp_path, "pass")
    assert main(["verify", str(run_dir), "--ledger-head", "3f2a-typo"]) == 2
    err = capsys.readouterr().err
    assert "64 hex digits" in err and "broken" not in err


def test_gameday_json_prints_one_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import dataclass

    from resilience import cli

    @dataclass
    class Made:
        run_dir: str

    def fake_run(name: str, args: object, settings: object) -> Made:
        return Made(str(load_generator().make_run(tmp_path / "reports", "pass")))

    monkeypatch.setattr(cli, "run_experiment", fake_run)
    code = cli.main(["gameday", "--suite", "quick", "--json", "--reports-dir", str(tmp_path / "reports")])
    out = capsys.readouterr().out
    data = json.loads(out)  # the whole output is one JSON object
    assert data["suite"] == "quick" and data["verdict"] in ("pass", "fail", "inconclusive", "aborted")
    assert code == (0 if data["verdict"] == "pass" else 1)
    assert (Path(data["report_dir"]) / "compliance.json").is_file()
