"""Every report format renders from a run directory alone, with the right verdicts and counts."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from resilience import evidence
from resilience.errors import UserError
from resilience.history import Record
from resilience.reports import FORMATS, render, render_all
from resilience.reports.plots import per_second_series, percentile, replica_series
from run_fixtures import load_generator



@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four fixture runs, every format rendered once."""
    made: dict[str, Path] = load_generator().make_runs(tmp_path_factory.mktemp("reports"))
    for run_dir in made.values():
        render_all(run_dir)
    return made


EXPECTED = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "aborted": "ABORTED"}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_every_format_renders_with_the_verdict(runs: dict[str, Path], kind: str) -> None:
    run_dir = runs[kind]
    for name, _ in FORMATS.values():
        assert (run_dir / name).stat().st_size > 0, name
    html = (run_dir / "report.html").read_text()
    assert f'<div class="verdict-word">{EXPECTED[kind]}</div>' in html
    assert "target <b>local</b>" in html
    assert json.loads((run_dir / "report.json").read_text())["verdict"] == kind
    assert EXPECTED[kind] in (run_dir / "report.md").read_text().splitlines()[0]
    assert "on target `local`" in (run_dir / "report.md").read_text()


def test_html_is_self_contained(runs: dict[str, Path]) -> None:
    html = (runs["fail"] / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the report must not load anything"
    assert "<link" not in html and "<script" not in html
    assert html.count("<svg") == 4  # latency, availability, requests, replicas
    assert "failover: postgres → postgres-2" in html
    assert "healed: postgres-1 rewind 3.1 s" in html
    assert "recovered (RTO 21.5 s)" in html


def test_html_escapes_text_from_the_run(tmp_path: Path) -> None:
    run_dir = load_generator().make_run(tmp_path, "pass")
    result = json.loads((run_dir / "result.json").read_text())
    result["hypothesis"] = "<script>alert(1)</script>"
    (run_dir / "result.json").write_text(json.dumps(result))
    html = render(run_dir, "html").read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_junit_counts_and_parses(runs: dict[str, Path]) -> None:
    def suite(kind: str) -> ET.Element:
        root = ET.parse(runs[kind] / "junit.xml").getroot()
        found = root.find("testsuite")
        assert found is not None
        return found

    passing = suite("pass")
    assert passing.get("name") == "pod-kill"
    assert (passing.get("failures"), passing.get("errors"), passing.get("tests")) == ("0", "0", "5")
    props = {p.get("name"): p.get("value") for p in passing.iter("property")}
    assert props["target"] == "local" and str(props["run_dir"]).endswith("20250310T053000Z-pod-kill")

    failing = suite("fail")  # rto_s and p99_ms breached, plus the deviation
    assert failing.get("failures") == "3" and len(failing.findall("testcase/failure")) == 3
    rto = next(c for c in failing.findall("testcase") if c.get("name") == "rto_s [fault]")
    failure = rto.find("failure")
    assert failure is not None and "21.5 s" in (failure.get("message") or "")

    inconclusive = suite("inconclusive")  # rpo_s and lost_writes could not be measured
    assert inconclusive.get("errors") == "2" and inconclusive.get("failures") == "0"
    assert {e.get("type") for e in inconclusive.iter("error")} == {"inconclusive"}

    aborted = suite("aborted")
    run_case = next(c for c in aborted.findall("testcase") if c.get("name") == "run")
    error = run_case.find("error")
    assert error is not None and error.get("type") == "aborted" and "stop condition" in (error.get("message") or "")


def test_pdf_has_several_pages(runs: dict[str, Path]) -> None:
    for run_dir in runs.values():
        data = (run_dir / "report.pdf").read_bytes()
        assert data.startswith(b"%PDF")
        pages = re.search(rb"/Type /Pages\s*/Count (\d+)", data) or re.search(rb"/Count (\d+)", data)
        assert pages and int(pages.group(1)) > 1


def test_json_report_is_strict_json_with_schema_version(runs: dict[str, Path]) -> None:
    text = (runs["inconclusive"] / "report.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["schema_version"] == 1 and data["report"]["kind"] == "resilience-run-report"
    assert data["report"]["summary"] == {"met": 3, "breached": 0, "inconclusive": 2, "reported": 0, "total": 5}


def test_rendering_is_deterministic_so_a_sealed_run_stays_intact(runs: dict[str, Path]) -> None:
    run_dir = runs["pass"]
    evidence.write_manifest(run_dir)
    render_all(run_dir)  # re-render offline into the sealed directory
    result = evidence.verify(run_dir)
    assert result.ok, result.summary()
    history = run_dir / "history.jsonl"
    data = bytearray(history.read_bytes())
    data[-3] = ord("9") if data[-3] != ord("9") else ord("8")
    history.write_bytes(bytes(data))
    tampered = evidence.verify(run_dir)
    assert tampered.status == evidence.MODIFIED and tampered.changed == ["history.jsonl"]


def test_render_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="result.json does not exist"):
        render(tmp_path, "html")


def test_unknown_format_lists_the_known_ones(runs: dict[str, Path]) -> None:
    with pytest.raises(UserError, match="html, pdf, json, junit, md"):
        render(runs["pass"], "docx")


def test_infinite_rto_renders_as_unbounded(tmp_path: Path) -> None:
    run_dir = load_generator().make_run(tmp_path, "fail")
    result = json.loads((run_dir / "result.json").read_text())
    result["measurements"][0]["value"] = float("inf")
    (run_dir / "result.json").write_text(json.dumps(result))
    assert "unbounded (never recovered)" in render(run_dir, "md").read_text()
    assert json.loads(render(run_dir, "json").read_text())["measurements"][0]["value"] == "inf"


def rec(t: float, status: str = "ok", latency: float | None = 0.01, source: str = "load") -> Record:
    return Record(t, source, "GET /menu", status, latency)


def test_per_second_series_counts_statuses_and_fills_gaps() -> None:
    series = per_second_series([rec(0.1), rec(0.9, "fail"), rec(0.95, "unknown", 2.0), rec(3.2),
                                rec(1.5, "info", None, source="phase")])
    assert [s.second for s in series] == [0, 1, 2, 3]
    first = series[0]
    assert (first.ok, first.fail, first.unknown, first.requests) == (1, 1, 1, 3)
    assert first.availability == pytest.approx(1 / 3)
    assert first.p99_ms == pytest.approx(2000.0)  # the timeout counts: slow failures are not hidden
    assert series[1].requests == 0 and series[1].availability is None and series[1].p50_ms is None


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 50) == 50.0
    assert percentile([7.0], 99) == 7.0


def test_replica_series_reads_controller_records() -> None:
    records = [Record(2.0, "controller", "replicas", "info", detail={"ready": 2, "desired": 3}),
               Record(1.0, "controller", "replicas", "info", detail={"ready": 3, "desired": 3}),
               Record(1.5, "controller", "scale", "info", detail={"from": 3, "to": 4})]
    assert replica_series(records) == [(1.0, 3, 3), (2.0, 2, 3)]


def test_a_reported_only_figure_is_labelled_reported_never_met(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A figure judged against no target (target null) is context, not an achieved objective."""
    from resilience.launcher import print_result as _print_result
    from resilience.results import RunResult
    from resilience.reports.run import STATUS_COLOURS
    run_dir = load_generator().make_run(tmp_path, "pass")
    result = json.loads((run_dir / "result.json").read_text())
    result["measurements"].append({"name": "p99_ms_fault", "value": 2003.0, "unit": "ms", "target": None,
                                   "comparison": "<=", "status": "met", "phase": "fault", "definition": "context",
                                   "detail": {}})
    (run_dir / "result.json").write_text(json.dumps(result))
    html = render(run_dir, "html").read_text()
    row = next(r for r in html.split("<tr>") if "p99_ms_fault" in r).split("</tr>")[0]
    assert ">reported</span>" in row and ">met</span>" not in row
    assert STATUS_COLOURS["reported"] in row and STATUS_COLOURS["met"] not in row
    assert "1 reported only" in html
    md = render(run_dir, "md").read_text()
    assert next(line for line in md.splitlines() if "p99_ms_fault" in line).endswith("ℹ️ reported |")
    assert json.loads(render(run_dir, "json").read_text())["measurements"][-1]["status"] == "met"  # JSON unchanged
    assert render(run_dir, "pdf").stat().st_size > 0
    _print_result(RunResult.from_json(result))
    line = next(line for line in capsys.readouterr().out.splitlines() if "p99_ms_fault" in line)
    assert line.rstrip().endswith("reported") and not line.rstrip().endswith("met")


def test_the_terminal_table_keeps_long_measurement_names_in_line(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from resilience.launcher import print_result
    from resilience.results import RunResult
    run_dir = load_generator().make_run(tmp_path, "pass")
    result = json.loads((run_dir / "result.json").read_text())
    result["measurements"].append({"name": "backend_calls_per_request_recovery", "value": 1.38, "unit": "calls",
                                   "target": None, "comparison": "<=", "status": "met", "phase": "recovery",
                                   "definition": "context", "detail": {}})
    print_result(RunResult.from_json(result))
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ") and "  " in line[2:]
            and not line.startswith("  evidence")]
    # every row's "measured" column ends at the same place as the header's
    ends = {line.index("measured") + len("measured") if "measurement" in line else None for line in rows[:1]}
    header_end = ends.pop()
    assert all(len(line) >= header_end and line[header_end - 1] != " " for line in rows[1:]), rows
