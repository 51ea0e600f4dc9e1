"""A fault step's start and completion in the history, and the fault actions' use of the run (public API only)."""

from __future__ import annotations

import ast
import inspect
import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from chaoslib.exceptions import ActivityFailed, InterruptExecution

from resilience import active, faults
from resilience.abort import Aborted
from resilience.errors import HarnessError
from resilience.experiments import StopCondition, load as load_experiment
from resilience.fault_registry import FaultCall
from resilience.history import FAULT, PARTIAL, Record, load_partial
from resilience.monitor import StopWatch
from resilience.run import INJECT_DONE, ROLLBACK_DONE, Run
from resilience.targets.base import RollbackStep

from test_run_interrupts import fake_run
from test_salvage import FakeTarget, closed_port_url

STEP_S = 0.2  # how long the slow fake target takes for each call


class SlowTarget(FakeTarget):
    """Takes STEP_S for every fault and rollback call, like a drain; `broken` makes the fault calls fail."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__(closed_port_url())
        self.broken = broken

    def inject(self, call: FaultCall, seed: int | None = None, **kwargs: Any) -> RollbackStep:
        time.sleep(STEP_S)
        if self.broken:
            raise RuntimeError("the zone would not go")
        return super().inject(call, seed, **kwargs)

    def rollback(self, step: RollbackStep) -> None:
        time.sleep(STEP_S)
        super().rollback(step)


def started(tmp_path: Path, target: FakeTarget) -> Run:
    run = fake_run(tmp_path, target)
    run.run_dir = run.store.open_run(run.spec.name, run.started_at)
    run.history.stream_to(run.path(PARTIAL))
    run.mark_phase("steady")
    return run


def fault_records(run: Run) -> list[Record]:
    """The fault steps' records (the effect records are test_fault_effect.py's)."""
    return [r for r in run.history.records if r.source == FAULT and r.op != "effect"]


# -- the history: start and completion ------------------------------------------------------------------------

def test_an_injection_records_its_start_and_then_its_completion(tmp_path: Path) -> None:
    run = started(tmp_path, SlowTarget())
    before = run.history.now()
    run.inject("lose_zone", {"zone": "primary"})
    inject, done = fault_records(run)
    assert (inject.op, inject.status, done.op, done.status) == ("inject", "ok", INJECT_DONE, "ok")
    assert before <= inject.t < inject.t + STEP_S <= done.t
    assert done.detail == {"capability": "lose_zone", "seconds": pytest.approx(done.t - inject.t, abs=1e-5)}
    # the inject record is what it always was: stamped at the start, what the fault phase and RPO measure from
    assert inject.detail and inject.detail["rollback"]["capability"] == "restore_zone"
    assert run.fault_info["injected_t"] == inject.t and run.phase == "fault"
    # both are streamed as they happen: a harness killed after the call still leaves them
    streamed = [r.op for r in load_partial(run.path(PARTIAL))[0].records if r.source == FAULT]
    assert streamed == ["inject", INJECT_DONE, "effect"]  # this fake declares no signal: in effect at its call


def test_a_rollback_records_its_start_and_then_its_completion(tmp_path: Path) -> None:
    run = started(tmp_path, SlowTarget())
    run.inject("lose_zone", {})
    run.rollback_all()
    rollback, done = fault_records(run)[2:]
    assert (rollback.op, rollback.status, done.op, done.status) == ("rollback", "ok", ROLLBACK_DONE, "ok")
    assert done.t - rollback.t >= STEP_S and done.detail["capability"] == "restore_zone"  # type: ignore[index]
    assert run.fault_info["rolled_back_t"] >= done.t and run.phase == "recovery"


def test_a_failed_injection_records_both_as_failed(tmp_path: Path) -> None:
    run = started(tmp_path, SlowTarget(broken=True))
    with pytest.raises(RuntimeError):
        run.inject("lose_zone", {})
    inject, done = fault_records(run)
    assert (inject.status, done.op, done.status) == ("fail", INJECT_DONE, "fail")
    assert inject.detail and inject.detail["error"] == "the zone would not go" and done.t - inject.t >= STEP_S
    # nothing was handed over before the failure: nothing to undo, and no rollback counted as failed
    assert json.loads(run.path("rollback.json").read_text())["steps"][0]["status"] == "not-injected"
    assert run.rollback_all() == [] and run._facts().failed_rollbacks == 0


def test_a_failed_injection_is_a_deviation_and_no_rto_is_measured_from_it() -> None:
    from resilience.checkers.windows import fault_time
    from resilience.results import run_deviations
    failed = Record(1.0, FAULT, "inject", "fail", None, None, {"capability": "lose_zone", "error": "no such zone"})
    assert fault_time([failed]) is None
    assert run_deviations({"status": "completed"}, 0, [failed]) == [
        "the fault lose_zone could not be injected: no such zone"]


def test_a_failed_injection_whose_step_was_handed_over_is_rolled_back(tmp_path: Path) -> None:
    target = RecordingTarget(fail_after_recording=True)
    run = started(tmp_path, target)
    target.run_dir = run.run_dir
    with pytest.raises(RuntimeError):
        run.inject("lose_zone", {"zone": "zone-a"})
    assert [s["capability"] for s in run.rollback_all()] == ["restore_zone"]
    assert target.rolled_back and target.rolled_back[0].arguments["nodes"] == ["n1"]


def test_release_undoes_one_fault_now_and_leaves_the_others_pending(tmp_path: Path) -> None:
    target = FakeTarget(closed_port_url())
    run = started(tmp_path, target)
    run.inject("lose_zone", {})
    run.inject("kill_replicas", {"count": 1})
    run.release("lose_zone")
    assert [s.capability for s in target.rolled_back] == ["restore_zone"]
    steps = json.loads(run.path("rollback.json").read_text())["steps"]
    assert [(s["fault"], s["status"]) for s in steps] == [("lose_zone", "done"), ("kill_replicas", "pending")]
    assert run.phase == "fault"  # not the run's rollback: the fault goes on


# -- the fault actions use the run's public API only -----------------------------------------------------------

PUBLIC = {name for name in dir(faults.FaultRun) if not name.startswith("_")} | {"spec"}


def test_faults_py_touches_the_run_only_through_fault_run() -> None:
    tree = ast.parse(inspect.getsource(faults))
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "run"}
    assert used and used <= PUBLIC, used - PUBLIC
    assert not any(isinstance(node, ast.Global) for node in ast.walk(tree))
    for name in PUBLIC:  # ... and Run offers all of it, publicly
        assert not name.startswith("_") and (hasattr(Run, name) or name == "spec"), name


class FakeRun:
    """Only FaultRun's members; anything else a fault action reached for would be an AttributeError."""

    def __init__(self, experiment: str = "zone-failure") -> None:
        self.spec = load_experiment(experiment, "short")
        self.calls: list[tuple[Any, ...]] = []
        self.aborted: str | None = None  # hold() raises Aborted with this reason
        self.load_stalls = False  # wait_for_load_stage() times out

    def inject(self, fault: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("inject", fault, arguments))
        return {"capability": fault}

    def hold(self, seconds: float) -> None:
        self.calls.append(("hold", seconds))
        if self.aborted:
            raise Aborted(self.aborted)

    def check_abort(self) -> None:
        self.calls.append(("check_abort",))

    def then(self, fault: str, arguments: dict[str, Any], session: Any) -> None:
        """What the local target's fault module does after the injection (a composite's steps come back here)."""
        from resilience.targets.local.nemesis import LocalNemesis
        module = LocalNemesis.FAULTS.module(fault)
        assert module is not None, fault
        module.then(session)

    def release(self, fault: str) -> None:
        self.calls.append(("release", fault))

    def undo(self, fault: str) -> list[dict[str, Any]]:
        self.calls.append(("undo", fault))
        return []

    def rollback_all(self) -> list[dict[str, Any]]:
        self.calls.append(("rollback_all",))
        return []

    def wait_for_load_stage(self, stage: int, timeout_s: float) -> None:
        self.calls.append(("wait_for_load_stage", stage))
        if self.load_stalls:
            raise HarnessError("timed out")

    def record_traffic_spike(self, from_users: int, to_users: int) -> float:
        self.calls.append(("record_traffic_spike", from_users, to_users))
        return 1.0

    def end_fault(self) -> None:
        self.calls.append(("end_fault",))

    def load_stats(self) -> Any:
        return None

    def ready_replicas(self) -> int:
        return 3

    def note_probe_error(self, probe: str, exc: BaseException) -> None:
        self.calls.append(("probe-error", probe))

    def fault_ended_early(self, fault: str, reason: str, *, interrupted: bool) -> None:
        self.calls.append(("ended_early", fault, reason, interrupted))



@pytest.fixture
def fake() -> Iterator[FakeRun]:
    run = FakeRun()
    active.activate(run)  # type: ignore[arg-type]
    yield run
    active.activate(None)


def test_the_fake_run_has_exactly_fault_runs_members() -> None:
    assert {n for n in vars(FakeRun) if not n.startswith("_")} | {"spec"} == PUBLIC


def test_hold_replication_kills_the_primary_then_releases_the_held_senders(fake: FakeRun) -> None:
    faults.hold_replication(hold_s=2.0)
    assert [c[:2] for c in fake.calls] == [("inject", "hold_replication"), ("hold", 2.0),
                                           ("inject", "fail_over_database"), ("release", "hold_replication"),
                                           ("hold", fake.spec.durations.fault_s)]


def test_traffic_spike_waits_for_the_step_records_it_and_ends_the_fault(fake: FakeRun) -> None:
    fake.spec = load_experiment("traffic-spike", "short")
    stages = fake.spec.load.stages
    faults.traffic_spike()
    assert fake.calls == [("wait_for_load_stage", 1), ("record_traffic_spike", stages[0].users, stages[1].users),
                          ("hold", stages[1].duration_s), ("end_fault",)]


def test_an_abort_interrupts_chaos_toolkit_and_a_harness_error_fails_the_activity(fake: FakeRun) -> None:
    fake.aborted = "stop condition"
    with pytest.raises(InterruptExecution, match="stop condition"):
        faults.lose_zone()
    fake.aborted = None
    faults.pause_replicas(hold_s=1.0)
    assert fake.calls[-2:] == [("hold", 1.0), ("undo", "pause_replicas")]  # this fault only, not every pending one
    assert faults.platform_serving() is False  # no load figures yet
    fake.spec = load_experiment("traffic-spike", "short")
    fake.load_stalls = True
    with pytest.raises(ActivityFailed, match="never reached its spike stage: timed out"):
        faults.traffic_spike()


def test_a_fault_activity_ended_early_is_reported_to_the_run_never_left_as_a_whole_outage(
        fake: FakeRun, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(seconds: float) -> None:  # chaoslib's own SIGTERM handler, inside the hold
        raise InterruptExecution("SIGTERM signal received")
    monkeypatch.setattr(fake, "hold", interrupted)
    with pytest.raises(InterruptExecution):
        faults.lose_zone()
    assert fake.calls[-1] == ("ended_early", "lose_zone", "SIGTERM signal received", True)

    def broken(seconds: float) -> None:
        raise HarnessError("the supervisor went away")
    monkeypatch.setattr(fake, "hold", broken)
    with pytest.raises(ActivityFailed):
        faults.fail_over_database()
    assert fake.calls[-1] == ("ended_early", "fail_over_database",
                              "the fault activity ended early: the supervisor went away", False)

    def not_injected(fault: str, arguments: dict[str, Any]) -> dict[str, Any]:
        raise HarnessError("no such zone")
    monkeypatch.setattr(fake, "inject", not_injected)
    with pytest.raises(ActivityFailed):  # never injected: a failed injection (a deviation), not a cut-short fault
        faults.lose_zone()
    assert fake.calls[-1][1] == "fail_over_database"  # nothing new: the injection itself failed


def test_without_an_active_run_the_actions_say_how_to_get_one() -> None:
    with pytest.raises(HarnessError, match="resilience.control"):
        faults.lose_zone()


# -- the stop condition ----------------------------------------------------------------------------------------

class Stats:
    def __init__(self, error_pct: float, rps: float = 10.0) -> None:
        self.error_pct, self.rps = error_pct, rps


def test_the_stop_condition_fires_after_for_s_under_the_floor_and_a_recovery_resets_it() -> None:
    watch = StopWatch(StopCondition(availability_floor=0.5, for_s=3.0))
    assert watch.observe(100.0, Stats(90)) is None  # under the floor from 100 s
    assert watch.observe(102.0, Stats(90, rps=0)) is None  # no requests: neither starts nor ends the stretch
    assert watch.observe(103.0, Stats(90)) == "stop condition: availability 10.0% stayed under the floor 50% for 3 s"
    assert watch.observe(104.0, Stats(10)) is None  # back over the floor: a new stretch must last 3 s again
    assert watch.observe(105.0, Stats(90)) is None and watch.observe(107.9, Stats(90)) is None
    assert watch.observe(108.0, Stats(90)) is not None


class RecordingTarget(FakeTarget):
    """Hands its undo step over before acting, like a zone loss that must uncordon only what it cordoned."""

    def __init__(self, fail_after_recording: bool = False) -> None:
        super().__init__(closed_port_url())
        self.file_during_fault: dict[str, Any] | None = None
        self.run_dir: Path | None = None
        self.fail_after_recording = fail_after_recording

    def inject(self, call: FaultCall, seed: int | None = None, **kwargs: Any) -> RollbackStep:
        step = RollbackStep("restore_zone", {"zone": "zone-a", "nodes": ["n1"]}, "uncordon n1", "local")
        kwargs["record"](step)
        assert self.run_dir is not None
        self.file_during_fault = json.loads((self.run_dir / "rollback.json").read_text())
        if self.fail_after_recording:
            raise RuntimeError("the API server went away mid-fault")
        return step


def test_a_step_handed_over_before_the_fault_acts_is_in_rollback_json_at_once(tmp_path: Path) -> None:
    target = RecordingTarget()
    run = started(tmp_path, target)
    target.run_dir = run.run_dir
    run.inject("lose_zone", {"zone": "zone-a"})
    during = target.file_during_fault
    assert during is not None
    entry = during["steps"][0]
    assert entry["status"] == "injecting" and entry["step"]["arguments"]["nodes"] == ["n1"]


def test_undoing_one_fault_leaves_the_others_pending_and_records_as_a_rollback_does(tmp_path: Path) -> None:
    """pause_replicas undoes itself after its hold: its rollback only, with the records and the recovery phase
    that `rollback_all` writes for it."""
    target = FakeTarget(closed_port_url())
    run = started(tmp_path, target)
    run.inject("lose_zone", {"zone": "zone-a"})
    run.inject("pause_replicas", {})
    assert [s["capability"] for s in run.undo("pause_replicas")] == ["none"]
    assert [e.status for e in run.rollbacks] == ["pending", "done"]
    assert [(r.op, r.detail and r.detail.get("capability")) for r in fault_records(run)][-2:] == [
        ("rollback", "none"), (ROLLBACK_DONE, "none")]
    assert run.phase == "recovery" and "rolled_back_t" in run.fault_info
    assert [s["capability"] for s in run.rollback_all()] == ["restore_zone"]


def test_the_serving_probe_says_not_serving_and_records_why_when_the_target_cannot_answer(
        fake: FakeRun, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    def broken() -> int:
        raise OSError("control socket gone")

    monkeypatch.setattr(fake, "load_stats", lambda: SimpleNamespace(rps=10.0, error_pct=0.0))
    monkeypatch.setattr(fake, "ready_replicas", broken)
    assert faults.platform_serving() is False
    assert ("probe-error", "platform_serving") in fake.calls
