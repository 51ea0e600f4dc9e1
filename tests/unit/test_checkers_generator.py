"""Generator health from hand-built histories (resilience.checkers.generator) and its effect on the verdict."""

from __future__ import annotations

from typing import Any

from resilience.checkers import compute
from resilience.checkers.generator import deviations, generator_report, spawn_behind, untrusted_latency
from resilience.config import Targets
from resilience.history import INFO, LOAD, OK, PHASE, Record


def info(t: float, op: str, **detail: Any) -> Record:
    return Record(t, LOAD, op, INFO, None, None, detail)


def requests(start: float, end: float, latency: float = 0.02) -> list[Record]:
    return [Record(start + i * 0.1, LOAD, "GET /menu", OK, latency, None, None) for i in range(int((end - start) * 10))]


def phases() -> list[Record]:
    return [Record(0.0, PHASE, "steady", INFO, None, None, None), Record(30.0, PHASE, "end", INFO, None, None, None)]


def test_a_healthy_generator_leaves_latency_judged() -> None:
    records = phases() + requests(0, 30) + [info(t, "generator", cpu_pct=40.0, lag_ms=2.0, users=20, target_users=20)
                                            for t in (2, 4, 6)]
    report = generator_report(records)
    assert not report.saturated and report.max_cpu_pct == 40.0 and untrusted_latency(report) is None
    p99 = next(m for m in compute(records, targets=Targets(), measures=["p99"]) if m.name == "p99_ms")
    assert p99.status == "met"


def test_a_saturated_generator_makes_the_judged_p99_inconclusive() -> None:
    records = phases() + requests(0, 30) + [info(2, "generator", cpu_pct=40.0, lag_ms=2.0, users=20),
                                            info(4, "generator", cpu_pct=99.0, lag_ms=180.0, users=20)]
    report = generator_report(records)
    assert report.saturated and report.saturated_at == (4,)
    reason = untrusted_latency(report)
    assert reason is not None and "99.0%" in reason and "--workers" in reason
    p99 = next(m for m in compute(records, targets=Targets(), measures=["p99"]) if m.name == "p99_ms")
    assert p99.status == "inconclusive" and p99.value is not None and "saturated" in p99.detail["reason"]


def test_lag_alone_is_saturation() -> None:
    assert generator_report([info(2, "generator", cpu_pct=30.0, lag_ms=60.0)]).saturated


def test_falling_behind_the_ramp_is_found_after_the_grace() -> None:
    # 0 -> 1000 users at 100/s: due by 10 s + max(5, 2.5) = 15 s after the stage began at t=1
    records = [info(1, "users", users=1000, spawn_rate=100.0)]
    records += [info(t, "generator", users=min(1000, int(60 * (t - 1))), target_users=1000) for t in range(2, 30, 2)]
    behind = spawn_behind(records)
    assert len(behind) == 1 and behind[0].t == 16 and behind[0].users == 900 and behind[0].due_t == 16.0
    assert "fell behind" in deviations(generator_report(records))[0]


def test_a_ramp_that_keeps_up_is_not_behind_and_steps_down_are_ignored() -> None:
    records = [info(1, "users", users=100, spawn_rate=50.0)]
    records += [info(t, "generator", users=min(100, 50 * (t - 1)), target_users=100) for t in range(2, 12, 2)]
    records += [info(12, "users", users=10, spawn_rate=50.0), info(14, "generator", users=100, target_users=10)]
    assert spawn_behind(records) == []


def test_a_lost_worker_and_dropped_rows_are_deviations() -> None:
    records = [info(8.5, "worker-lost", worker="w2", why="no heartbeat", users=10, workers_live=1, last_rows_t=4.2),
               info(30, "summary", recorded=90, reported=100, dropped=10)]
    found = deviations(generator_report(records))
    assert any("w2" in d and "t=8.5" in d and "t=4.2" in d for d in found)
    assert any("10 request rows" in d for d in found)


def test_clock_uncertainty_is_stated_on_time_measurements() -> None:
    records = phases() + requests(0, 30) + [info(0.5, "clock", offset_s=0.2, uncertainty_s=0.004, method="rt")]
    measured = compute(records, targets=Targets(), measures=["rto", "p99"])
    rto = next(m for m in measured if m.name == "rto_s")
    assert rto.detail["clock_uncertainty_s"] == 0.004
    assert all("clock_uncertainty_s" not in m.detail for m in measured if m.unit != "s")


def test_saturation_during_the_ramp_up_before_the_measured_phases_does_not_count() -> None:
    ramp = [info(-4, "generator", cpu_pct=30.0, lag_ms=400.0, users=900), info(-2, "generator", cpu_pct=99.0)]
    records = phases() + requests(0, 30) + ramp + [info(t, "generator", cpu_pct=20.0, lag_ms=2.0) for t in (2, 4)]
    measured = compute(records, targets=Targets(), measures=["p99"])
    assert next(m for m in measured if m.name == "p99_ms").status == "met"
    assert generator_report(records).saturated  # the run's generator section still says it happened


def test_the_report_tells_ramp_up_saturation_from_saturation_while_measuring() -> None:
    ramp_only = phases() + [info(-2, "generator", cpu_pct=100.0), info(4, "generator", cpu_pct=20.0)]
    report = generator_report(ramp_only).to_json()
    assert report["saturated"] and report["saturated_in_measured_phases"] == 0
    measuring = phases() + [info(-2, "generator", cpu_pct=100.0), info(4, "generator", lag_ms=70.0)]
    assert generator_report(measuring).to_json()["saturated_in_measured_phases"] == 1
    from resilience.reports.content import generator_text
    assert "ramp-up only" in generator_text(report, 1)
    assert "SATURATED in the measured phases" in generator_text(generator_report(measuring).to_json(), 2)
