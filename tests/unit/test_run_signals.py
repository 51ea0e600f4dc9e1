"""SIGTERM and SIGHUP end a run the way Ctrl-C does: rollback, sealed as aborted, exit 1 — in every phase.

The whole of `resilience run` (the launcher, Chaos Toolkit and its own SIGTERM handler, our control,
the fault actions, Run.finish) runs here against a fake target and a fake load, with a 1-2-1 s
experiment; the signal is sent to this process while the run is in the phase under test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from resilience import evidence, launcher, rundeps, runbuild
from resilience.checkers.measurement import EXIT_CODES
from resilience.config import load_settings
from resilience.experiments import PROJECT_ROOT
from resilience.history import FAULT, History, Record
from resilience.load.clock_sync import ClockSync
from resilience.load.process import LoadStats
from resilience.run import Run
from resilience.targets.base import Component, RollbackStep, StackStatus
from resilience.targets.target import COMPOSITIONS, Target

from test_salvage import FakeNemesis, QuietPlatform, closed_port_url


class HealthyPlatform(QuietPlatform):
    def status(self) -> StackStatus:
        return StackStatus(self.name, True, self._url, "process",
                           [Component("api-1", "api", "replica", "zone-a", None, "127.0.0.1:1", True)])


class FakeLoad:
    """A load that serves every request: one ok row per 0.05 s from start to stop (orders every 4th)."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.started: float | None = None
        self.stopped: float | None = None

    def start(self) -> None:
        self.started = time.monotonic()

    def running(self) -> bool:
        return self.stopped is None

    def stats(self) -> LoadStats:
        return LoadStats(t=time.monotonic() - self.origin, users=100_000, target_users=100_000, requests=10, rps=20.0,
                         error_pct=0.0, p99_ms=5.0, stage=0, done=False)

    def stop(self) -> None:
        if self.stopped is None:
            self.stopped = time.monotonic()

    def records(self) -> list[Record]:
        assert self.started is not None
        start, end = self.started - self.origin, (self.stopped or time.monotonic()) - self.origin
        count = int((end - start) / 0.05)
        return [Record(round(start + i * 0.05, 3), "load", "POST /orders" if i % 4 == 0 else "GET /menu", "ok",
                       0.005, f"k{i}" if i % 4 == 0 else None, {"order_id": f"o{i}"} if i % 4 == 0 else None)
                for i in range(count)]

    def log_tail(self) -> str:
        return ""

    def clock_sync(self) -> ClockSync:
        return ClockSync(0.0, 0.0, "shared")


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """zone-failure, every duration cut to a second or two, no read-back."""
    raw = yaml.safe_load((PROJECT_ROOT / "experiments" / "zone-failure.yaml").read_text())
    ext = next(e for e in raw["extensions"] if e.get("name") == "resilience")
    ext["durations"] = {"steady_s": 1.5, "fault_s": 2, "recovery_s": 1.5}
    ext["measures"] = ["availability", "rto"]
    ext["targets"] = {**(ext.get("targets") or {}), "rto_hold_s": 1}
    path = tmp_path / "zone-failure.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """build_run gives a Run with the fake target and load; SIGTERM outside the run is harmless to pytest."""
    made: dict[str, Any] = {}

    def build_run(spec: Any, settings: Any, options: rundeps.RunOptions) -> Run:
        nemesis = FakeNemesis()
        target = Target(COMPOSITIONS["local"], HealthyPlatform(closed_port_url()), {"local": nemesis})
        run = Run(spec, settings, options, target=target, load_plan=rundeps.LoadPlan(spec.load, "process"),
                  load_factory=lambda url, settings, run_dir, origin, run_id: FakeLoad(origin),
                  store=evidence.EvidenceStore(tmp_path / "reports"))
        made.update(run=run, nemesis=nemesis)
        return run
    monkeypatch.setattr(runbuild, "build_run", build_run)
    previous = signal.signal(signal.SIGTERM, lambda *args: None)
    try:
        yield made
    finally:
        signal.signal(signal.SIGTERM, previous)


def args(tmp_path: Path, experiment: Path) -> argparse.Namespace:
    return argparse.Namespace(
        experiment=str(experiment), profile="full", users=None, spawn_rate=None, stages=None, workers=None,
        user_class=None, think_time=None, target="local", context=None, set_target=[],
        reports_dir=str(tmp_path / "reports"), keep_up=True, seed=None, quiet=True)


def signal_when(made: dict[str, Any], phase: str, signum: int, after_s: float = 0.3) -> threading.Thread:
    """Send `signum` to this process `after_s` into the run's `phase`."""
    def wait() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run = made.get("run")
            if run is not None and run.phase == phase:
                time.sleep(after_s)
                os.kill(os.getpid(), signum)
                return
            time.sleep(0.02)
    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def outcome(made: dict[str, Any]) -> tuple[Any, list[Record]]:
    run: Run = made["run"]
    assert run.result is not None and run.run_dir is not None
    assert evidence.verify(run.run_dir, ledger=run.run_dir.parent / evidence.LEDGER).ok
    return run.result, History.load(run.run_dir / "history.jsonl").sorted()


@pytest.mark.parametrize("phase,signum", [("steady", signal.SIGTERM), ("fault", signal.SIGTERM),
                                          ("recovery", signal.SIGTERM), ("fault", signal.SIGHUP)])
def test_a_signal_in_a_phase_rolls_back_and_seals_the_run_as_aborted(
        phase: str, signum: int, built: dict[str, Any], experiment: Path, tmp_path: Path) -> None:
    previous_hup = signal.signal(signal.SIGHUP, lambda *a: None)
    try:
        sender = signal_when(built, phase, signum)
        result = launcher.run_experiment(str(experiment), args(tmp_path, experiment), load_settings(None))
        sender.join(5)
    finally:
        signal.signal(signal.SIGHUP, previous_hup)
    result, records = outcome(built)
    name = signal.Signals(signum).name
    assert result.verdict == "aborted" and EXIT_CODES[result.verdict] == 1
    assert result.aborted_reason == f"interrupted ({name}) during {phase}", result.aborted_reason
    injected = [r for r in records if r.source == FAULT and r.op == "inject"]
    if phase == "steady":  # the fault never ran; nothing to undo
        assert injected == [] and built["nemesis"].rolled_back == []
    else:  # the zone came back, once
        assert [s.capability for s in built["nemesis"].rolled_back] == ["restore_zone"]
    run_dir = Path(result.run_dir)
    steps = json.loads((run_dir / "rollback.json").read_text())["steps"]
    assert all(s["status"] in ("done", "not-injected") for s in steps)
    assert [r.op for r in records if r.source == "phase" and r.op == "abort"] == ["abort"]


def test_a_sigterm_while_finishing_still_seals_an_aborted_run(built: dict[str, Any], experiment: Path,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signal arrives while the run collects the platform's events, after the recovery window."""
    sent: list[int] = []

    def stop_observing(self: Target) -> None:
        if not sent:
            sent.append(signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs at the next bytecode of the main thread
    monkeypatch.setattr(Target, "stop_observing", stop_observing, raising=True)
    launcher.run_experiment(str(experiment), args(tmp_path, experiment), load_settings(None))
    result, records = outcome(built)
    assert result.verdict == "aborted"
    assert result.aborted_reason is not None and result.aborted_reason.startswith("interrupted (SIGTERM) during ")
    assert [s.capability for s in built["nemesis"].rolled_back] == ["restore_zone"]


def test_without_a_signal_the_same_run_passes(built: dict[str, Any], experiment: Path, tmp_path: Path) -> None:
    """The control case: the fake run is judged (every request ok), so the aborts above are the signal's doing."""
    launcher.run_experiment(str(experiment), args(tmp_path, experiment), load_settings(None))
    result, records = outcome(built)
    assert result.verdict == "pass", (result.deviations, [(m.name, m.status, m.detail.get("reason"))
                                                          for m in result.measurements])
    effects = [r for r in records if r.source == FAULT and r.op == "effect"]
    assert [r.status for r in effects] == ["ok"]  # this fake declares no signal: in effect at its call
