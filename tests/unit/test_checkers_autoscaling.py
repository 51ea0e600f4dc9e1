"""Autoscaling latency: the load step, the settled replica count, the first extra replica."""

import math

import pytest

from resilience.checkers.autoscaling import autoscaling_latency, load_step, measurements
from resilience.history import Record


def users(t: float, n: int) -> Record:
    return Record(t, "load", "users", "info", detail={"users": n})


def ready(t: float, ready_count: int, desired: int) -> Record:
    return Record(t, "controller", "replicas", "info", detail={"ready": ready_count, "desired": desired})


def scale(t: float, old: int, new: int) -> Record:
    return Record(t, "controller", "scale", "info", detail={"from": old, "to": new, "desired": new})


def spike_history() -> list[Record]:
    return [Record(0.0, "phase", "steady", "info"), users(0.0, 50), ready(0.0, 3, 3),
            users(20.0, 500), scale(21.0, 3, 6), ready(21.0, 3, 6), ready(25.0, 4, 6), ready(28.0, 6, 6),
            scale(36.0, 6, 9), ready(36.0, 6, 9), ready(40.0, 9, 9), ready(50.0, 9, 9),
            users(80.0, 50), scale(110.0, 9, 3), ready(111.0, 3, 3)]


def test_latency_from_step_to_settled_count_and_to_first_extra_replica():
    result = autoscaling_latency(spike_history())
    assert result.step_t == 20.0 and result.baseline_users == 50 and result.spike_users == 500
    assert result.spike_end_t == 80.0 and result.ready_at_step == 3 and result.settled_replicas == 9
    assert result.settled_s == 20.0 and result.first_s == 5.0
    judged = {m.name: m for m in measurements(result, target_s=120.0)}
    assert judged["autoscale_s"].status == "met" and judged["autoscale_first_s"].value == 5.0
    assert "settles on" in judged["autoscale_s"].definition
    assert measurements(result, target_s=10.0)[0].status == "breached"


def test_never_reaching_the_settled_count_is_unbounded():
    history = [r for r in spike_history() if not (r.op == "replicas" and (r.detail or {}).get("ready") == 9)]
    result = autoscaling_latency(history)
    assert result.settled_s == math.inf and result.first_s == 5.0
    assert "never reached the 9" in (result.reason or "")
    judged = {m.name: m for m in measurements(result, target_s=120.0)}
    assert judged["autoscale_s"].status == "breached" and judged["autoscale_first_s"].status == "met"


def test_an_autoscaler_that_never_scales_up_is_unbounded():
    history = [users(0.0, 50), ready(0.0, 3, 3), users(10.0, 500), ready(20.0, 3, 3), ready(30.0, 3, 3)]
    result = autoscaling_latency(history)
    assert result.settled_s == math.inf and result.first_s == math.inf
    judged = measurements(result, target_s=120.0)
    assert [m.status for m in judged] == ["breached", "breached"]


def test_no_controller_records_is_inconclusive():
    result = autoscaling_latency([users(0.0, 50), users(10.0, 500)])
    assert result.settled_s is None and result.first_s is None
    assert [m.status for m in measurements(result, target_s=120.0)] == ["inconclusive", "inconclusive"]
    assert autoscaling_latency([]).settled_s is None


def test_no_load_step_is_inconclusive_unless_the_step_time_is_given():
    history = [ready(0.0, 3, 3), ready(12.0, 3, 5), ready(15.0, 5, 5)]
    assert autoscaling_latency(history).settled_s is None
    explicit = autoscaling_latency(history, step_t=10.0)
    assert explicit.settled_s == 5.0 and explicit.first_s == 5.0


def test_baseline_is_the_load_in_force_when_the_steady_phase_starts():
    history = [users(0.0, 10), users(2.0, 50), Record(5.0, "phase", "steady", "info"), users(30.0, 400)]
    assert load_step(history) == (30.0, 50, 400)
    assert load_step([users(0.0, 10), users(2.0, 50)]) == (2.0, 10, 50)  # no steady phase: first record
    assert load_step([users(0.0, 10)]) is None


def test_settled_count_is_the_last_desired_before_the_load_drops():
    history = [users(0.0, 50), ready(0.0, 3, 3), users(10.0, 500), ready(11.0, 3, 9), ready(15.0, 6, 9),
               ready(20.0, 6, 7), ready(22.0, 7, 7), users(40.0, 50), ready(50.0, 3, 3)]
    result = autoscaling_latency(history)
    assert result.settled_replicas == 7 and result.max_desired == 9
    assert result.settled_s == pytest.approx(12.0) and result.first_s == pytest.approx(5.0)
