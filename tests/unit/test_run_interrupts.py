"""Evidence as it happens: the streamed history, atomic rollback.json, and Ctrl-C while a run finishes.

The Run here has a fake target and a fake load (no stack, no Locust): only the
harness's own finishing logic is exercised.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from resilience import evidence
from resilience import readback as readback_module
from resilience import run as run_module
from resilience.config import load_settings
from resilience.experiments import load as load_experiment
from resilience.atomic import write_json_atomic
from resilience.history import PARTIAL, History, Record, load_partial
from resilience.rollbackfile import RollbackEntry, write_rollback_file
from resilience.results import RunResult
from resilience.rundeps import LoadPlan, RunOptions
from resilience.targets.base import RollbackStep

from test_salvage import FakeTarget, closed_port_url, load_rows


# -- the streamed history -------------------------------------------------------------------------------------

def test_harness_records_reach_the_partial_file_as_they_are_added(tmp_path: Path) -> None:
    history = History()
    history.add("phase", "steady")
    history.stream_to(tmp_path / PARTIAL)
    history.add("fault", "inject", "ok", detail={"capability": "lose_zone"})
    history.extend([Record(1.0, "load", "GET /menu", "ok", 0.01), Record(2.0, "check", "readback", "ok")])
    # read while the stream is still open, as after a SIGKILL
    streamed, header = load_partial(tmp_path / PARTIAL)
    assert [(r.source, r.op) for r in streamed.records] == [("phase", "steady"), ("fault", "inject"),
                                                            ("check", "readback")]  # load rows stream elsewhere
    assert header["pid"] == os.getpid() and streamed.origin_monotonic == history.origin_monotonic
    history.close_stream()
    history.add("phase", "end")  # after close: not streamed, no error
    assert len(load_partial(tmp_path / PARTIAL)[0].records) == 3


def test_a_line_cut_by_a_kill_is_skipped(tmp_path: Path) -> None:
    history = History()
    history.stream_to(tmp_path / PARTIAL)
    history.add("phase", "steady")
    history.close_stream()
    with (tmp_path / PARTIAL).open("a") as f:
        f.write('[3.0,"phase","fau')
    assert [r.op for r in load_partial(tmp_path / PARTIAL)[0].records] == ["steady"]


# -- atomic rewrites ------------------------------------------------------------------------------------------

def test_rollback_file_rewrites_go_through_mkstemp_in_the_same_directory(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real = tempfile.mkstemp

    def spy(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real(*args, **kwargs)
        made.append(name)
        return fd, name
    monkeypatch.setattr(tempfile, "mkstemp", spy)
    path = tmp_path / "rollback.json"
    write_rollback_file(path, {"target": "local", "steps": []})
    write_rollback_file(path, {"target": "local", "steps": [{"fault": "x"}]})
    assert len(made) == 2 and all(Path(name).parent == tmp_path for name in made)
    assert json.loads(path.read_text())["steps"] == [{"fault": "x"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rollback.json"]  # no temporary file left
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_rewrite_leaves_the_old_file_whole_and_no_temporary(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rollback.json"
    write_json_atomic(path, {"version": 1})

    def crash(*args: Any) -> None:
        raise KeyboardInterrupt  # e.g. Ctrl-C between the write and the rename
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(path, {"version": 2})
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["rollback.json"]


# -- Ctrl-C while the run finishes ------------------------------------------------------------------------------

class FakeLoad:
    """What Run.finish needs of LoadProcess: stop it and read its rows."""

    def __init__(self) -> None:
        self.stopped = 0

    def stop(self) -> None:
        self.stopped += 1

    def records(self) -> list[Record]:
        return load_rows(kill_t=40.0)

    def running(self) -> bool:
        return self.stopped == 0

    def stats(self) -> None:
        return None  # it never reported: the run's load summary says so


def fake_run(tmp_path: Path, target: FakeTarget, experiment: str = "zone-failure") -> run_module.Run:
    """A Run given a fake target, no load generator and an evidence store under tmp_path."""
    def no_load(*args: Any) -> Any:
        raise AssertionError("these tests drive the run without starting a load generator")
    spec = load_experiment(experiment, "short")
    return run_module.Run(spec, load_settings(None), RunOptions(reports_dir=tmp_path, progress=False), target=target,
                          load_plan=LoadPlan(spec.load, "process"), load_factory=no_load,
                          store=evidence.EvidenceStore(tmp_path))


@pytest.fixture
def live_run(tmp_path: Path) -> run_module.Run:
    """A run in its fault phase with one pending rollback, as Run.begin and inject leave it (without a stack)."""
    run = fake_run(tmp_path, FakeTarget(closed_port_url()))
    run.run_dir = run.store.open_run(run.spec.name, run.started_at)
    run.history.stream_to(run.path(PARTIAL))
    run._write_json("settings.json", run._settings_json())
    run.load = FakeLoad()
    run.history.origin_monotonic -= 40.0  # the fake rows cover 40 s before now
    run.mark_phase("steady", t=1.0)
    run.history.add("fault", "inject", "ok", t=10.0, detail={"capability": "lose_zone", "arguments": {}})
    run.fault_info = {"capability": "lose_zone", "arguments": {}, "injected_t": 10.0}
    run.mark_phase("fault", t=10.0)
    run.rollbacks.append(RollbackEntry("lose_zone", {}, RollbackStep("restore_zone"), "pending"))
    run._write_rollbacks()
    run.rollback_all()  # Chaos Toolkit's rollback: the run is now in its recovery phase
    return run


# result.json's keys, in the order `resilience run` has always written them
RESULT_KEYS = ["schema_version", "experiment", "title", "hypothesis", "description", "target", "target_detail",
               "run_dir", "verdict", "aborted_reason", "deviations", "measurements", "phases", "fault", "started_at",
               "ended_at", "duration_s", "load", "profile", "error", "harness", "tool_versions", "generator"]


def sealed(run: run_module.Run) -> RunResult:
    assert run.run_dir is not None
    assert evidence.verify(run.run_dir, ledger=run.run_dir.parent / evidence.LEDGER).ok
    assert not (run.run_dir / PARTIAL).exists()
    stored = json.loads((run.run_dir / "result.json").read_text())
    assert list(stored) == RESULT_KEYS and RunResult.from_json(stored).to_json() == stored
    return RunResult.from_json(stored)


def test_ctrl_c_in_the_recovery_window_ends_as_an_aborted_run_with_full_evidence(
        live_run: run_module.Run, monkeypatch: pytest.MonkeyPatch) -> None:
    def ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(live_run, "hold", ctrl_c)
    result = live_run.finish({"status": "completed", "deviated": False})
    assert result.verdict == "aborted" and result.aborted_reason == "interrupted (Ctrl-C) during recovery"
    assert sealed(live_run).to_json() == result.to_json() and live_run.load.stopped >= 1
    ops = [r.op for r in History.load(live_run.path("history.jsonl")).sorted() if r.source == "phase"]
    assert ops[-3:] == ["recovery", "abort", "end"]
    assert (live_run.path("report.html")).is_file()


def test_ctrl_c_while_writing_the_reports_starts_the_results_over_as_aborted(
        live_run: run_module.Run, monkeypatch: pytest.MonkeyPatch) -> None:
    import resilience.reports as reports
    real = reports.render_all
    calls: list[Path] = []

    def interrupted_once(run_dir: Path) -> list[Path]:
        calls.append(run_dir)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(run_dir)
    monkeypatch.setattr(live_run, "hold", lambda seconds: None)
    monkeypatch.setattr(reports, "render_all", interrupted_once)
    result = live_run.finish({"status": "completed", "deviated": False})
    assert len(calls) == 2 and result.verdict == "aborted"
    assert result.aborted_reason == "interrupted (Ctrl-C) during writing the results and reports"
    assert sealed(live_run).verdict == "aborted"


def test_a_second_ctrl_c_stops_at_once_and_the_streamed_history_remains(
        live_run: run_module.Run, monkeypatch: pytest.MonkeyPatch) -> None:
    def ctrl_c(*args: Any) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(live_run, "hold", ctrl_c)
    monkeypatch.setattr(live_run, "_collect_platform_events", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        live_run.finish({"status": "completed", "deviated": False})
    assert not live_run.path("result.json").exists()
    streamed = load_partial(live_run.path(PARTIAL))[0].records
    assert [r.op for r in streamed if r.source == "phase"][-3:] == ["recovery", "abort", "end"]


def test_an_interrupted_run_reads_back_its_orders_when_the_platform_answers(
        live_run: run_module.Run, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    monkeypatch.setattr(readback_module, "stack_answers", lambda url: True)
    monkeypatch.setattr(readback_module, "readback", lambda url, records, now: read.append(url) or [])
    assert "rpo" in live_run.spec.measures
    result = live_run.finish({"status": "interrupted", "deviated": False})
    assert result.verdict == "aborted" and read == [live_run.target.url()]
