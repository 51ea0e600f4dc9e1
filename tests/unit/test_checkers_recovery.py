"""RTO on hand-built histories: precision, hold window, write path, unbounded and inconclusive cases."""

import math

import pytest

from resilience.checkers.recovery import measurement, recovery_time
from resilience.history import Record

FAULT = 10.0


def traffic(start: float, end: float, outcome, step: float = 0.02) -> list[Record]:
    """A request every `step` s; every third one places an order. outcome(t, op) -> (status, latency)."""
    records = []
    for i in range(round((end - start) / step)):
        t = round(start + i * step, 6)
        op = "POST /orders" if i % 3 == 0 else "GET /menu"
        status, latency = outcome(t, op)
        records.append(Record(t, "load", op, status, latency, key=f"k{i}" if op == "POST /orders" else None))
    return records


def fails_between(bad_start: float, bad_end: float, status: str = "fail", latency: float = 0.005):
    return lambda t, op: (status, latency) if bad_start <= t < bad_end else ("ok", latency)


def test_outage_of_five_seconds_is_measured_within_50_ms():
    result = recovery_time(traffic(0.0, 40.0, fails_between(10.0, 15.0)), fault_t=FAULT)
    assert result.rto_s == pytest.approx(5.0, abs=0.05)
    assert result.unhealthy_seconds == 5 and result.write_path_checked


def test_outage_not_aligned_on_a_second_is_still_precise():
    result = recovery_time(traffic(0.0, 40.0, fails_between(10.0, 15.37)), fault_t=FAULT)
    assert result.rto_s == pytest.approx(5.37, abs=0.05)


def test_frozen_service_with_client_timeouts_recovers_when_the_freeze_ends():
    """Freeze [10, 15): requests time out after 2 s; those that can wait get an ok answer at 15.0."""
    def outcome(t: float, op: str) -> tuple[str, float]:
        if FAULT <= t < 15.0:
            if 15.0 - t > 2.0:
                return "unknown", 2.0
            return "ok", 15.0 - t + 0.003
        return "ok", 0.005
    result = recovery_time(traffic(0.0, 40.0, outcome), fault_t=FAULT)
    assert result.rto_s == pytest.approx(5.0, abs=0.05)


def test_frozen_service_with_patient_clients_recovers_when_the_freeze_ends():
    """No errors at all, only silence: every request made during the freeze completes at 15.5."""
    def outcome(t: float, op: str) -> tuple[str, float]:
        return ("ok", 15.5 - t) if FAULT <= t < 15.5 else ("ok", 0.005)
    result = recovery_time(traffic(0.0, 40.0, outcome), fault_t=FAULT)
    assert result.rto_s == pytest.approx(5.5, abs=0.05)


def test_no_bad_moment_after_the_fault_is_rto_zero():
    result = recovery_time(traffic(0.0, 40.0, fails_between(0.0, 0.0)), fault_t=FAULT)
    assert result.rto_s == 0.0 and result.recovered_t == FAULT


def test_failures_before_the_fault_do_not_count():
    result = recovery_time(traffic(0.0, 40.0, fails_between(5.0, 9.9)), fault_t=FAULT)
    assert result.rto_s == 0.0


def test_unknown_is_not_ok():
    result = recovery_time(traffic(0.0, 40.0, fails_between(10.0, 13.0, status="unknown")), fault_t=FAULT)
    assert result.rto_s == pytest.approx(3.0, abs=0.05)


def test_a_few_failures_within_the_success_ratio_do_not_delay_recovery():
    def outcome(t: float, op: str) -> tuple[str, float]:
        if 10.0 <= t < 12.0:
            return "fail", 0.005
        return ("fail", 0.005) if round(t * 200) % 200 == 7 else ("ok", 0.005)  # 1 in 200 fails
    result = recovery_time(traffic(0.0, 40.0, outcome, step=0.005), fault_t=FAULT)
    assert result.rto_s == pytest.approx(2.0, abs=0.05)
    strict = recovery_time(traffic(0.0, 40.0, outcome, step=0.005), fault_t=FAULT, success_ratio=1.0)
    assert strict.rto_s == math.inf  # a failure every second: never 100% for 10 s


def test_recovers_then_fails_again_inside_the_hold_window():
    bad = lambda t, op: ("fail", 0.005) if 10.0 <= t < 12.0 or 17.0 <= t < 18.0 else ("ok", 0.005)  # noqa: E731
    result = recovery_time(traffic(0.0, 40.0, bad), fault_t=FAULT)
    assert result.rto_s == pytest.approx(8.0, abs=0.05)


def test_never_recovers_is_unbounded_and_breached():
    result = recovery_time(traffic(0.0, 40.0, fails_between(10.0, 40.0)), fault_t=FAULT)
    assert result.rto_s == math.inf
    assert "never stayed healthy" in (result.reason or "")
    judged = measurement(result, target_s=900.0)
    assert judged.status == "breached" and judged.value == math.inf


def test_recovering_too_late_to_complete_a_hold_window_is_unbounded():
    result = recovery_time(traffic(0.0, 40.0, fails_between(10.0, 35.0)), fault_t=FAULT)
    assert result.rto_s == math.inf


def test_broken_write_path_delays_recovery_even_when_reads_succeed():
    def outcome(t: float, op: str) -> tuple[str, float]:
        return ("fail", 0.005) if op == "POST /orders" and 10.0 <= t < 16.0 else ("ok", 0.005)
    result = recovery_time(traffic(0.0, 40.0, outcome), fault_t=FAULT)
    assert result.rto_s == pytest.approx(6.0, abs=0.07)


def test_a_second_without_any_order_is_unhealthy():
    records = [r for r in traffic(0.0, 40.0, fails_between(0.0, 0.0))
               if not (r.op == "POST /orders" and 13.0 <= r.t < 14.0)]
    result = recovery_time(records, fault_t=FAULT)
    assert result.rto_s == pytest.approx(4.0, abs=0.07)


def test_without_any_orders_the_write_path_rule_is_dropped_and_said_so():
    records = [r for r in traffic(0.0, 40.0, fails_between(10.0, 12.0)) if r.op != "POST /orders"]
    result = recovery_time(records, fault_t=FAULT)
    assert result.rto_s == pytest.approx(2.0, abs=0.05)
    assert not result.write_path_checked and "not checked" in result.detail()["write_path"]


def test_no_fault_is_inconclusive():
    result = recovery_time(traffic(0.0, 40.0, fails_between(0.0, 0.0)), fault_t=None)
    assert result.rto_s is None and "no fault" in (result.reason or "")
    assert measurement(result, target_s=900.0).status == "inconclusive"


def test_empty_history_is_inconclusive():
    result = recovery_time([], fault_t=FAULT)
    assert result.rto_s is None and measurement(result, target_s=900.0).status == "inconclusive"


def test_less_than_a_hold_window_of_load_after_the_fault_is_inconclusive():
    result = recovery_time(traffic(0.0, 16.0, fails_between(10.0, 12.0)), fault_t=FAULT)
    assert result.rto_s is None and "hold window" in (result.reason or "")


def test_hold_and_ratio_are_parameters():
    records = traffic(0.0, 20.0, fails_between(10.0, 11.0))
    assert recovery_time(records, fault_t=FAULT, hold_s=10.0).rto_s is None  # only 9 s of data after the fault
    assert recovery_time(records, fault_t=FAULT, hold_s=3.0).rto_s == pytest.approx(1.0, abs=0.05)
    half_bad = traffic(0.0, 30.0, lambda t, op: ("fail", 0.005) if op == "GET /menu" and round(t * 50) % 3 == 1
                       else ("ok", 0.005))
    assert recovery_time(half_bad, fault_t=FAULT, success_ratio=0.5).rto_s == 0.0
    assert recovery_time(half_bad, fault_t=FAULT, success_ratio=0.99).rto_s == math.inf


def test_measurement_is_judged_against_the_target_and_carries_the_definition():
    result = recovery_time(traffic(0.0, 40.0, fails_between(10.0, 15.0)), fault_t=FAULT)
    met = measurement(result, target_s=900.0)
    assert met.name == "rto_s" and met.unit == "s" and met.status == "met" and "hold window" in met.definition
    assert met.detail["fault_t"] == FAULT and met.detail["recovered_t"] == pytest.approx(15.0, abs=0.05)
    assert measurement(result, target_s=4.0).status == "breached"


# -- a run cut short (aborted: Ctrl-C, stop condition, a killed harness) ---------------------------------------

def test_an_aborted_run_that_ends_before_a_hold_window_after_its_last_failure_is_inconclusive():
    """Failing until 30 s, load until 35 s, then the run was stopped: recovery could not have been seen."""
    records = traffic(0.0, 35.0, fails_between(10.0, 30.0))
    complete = recovery_time(records, fault_t=FAULT)
    assert complete.rto_s == math.inf  # a complete run that ended like this never recovered: breached
    cut = recovery_time(records, fault_t=FAULT, cut_short=True)
    assert cut.rto_s is None and "cut short" in (cut.reason or "")
    assert cut.detail()["cut_short"] is True and cut.detail()["last_bad_t"] == pytest.approx(30.0, abs=0.05)
    assert measurement(cut, target_s=900.0).status == "inconclusive"


def test_an_aborted_run_still_failing_at_the_very_end_is_inconclusive():
    cut = recovery_time(traffic(0.0, 30.0, fails_between(10.0, 30.0)), fault_t=FAULT, cut_short=True)
    assert cut.rto_s is None and measurement(cut, target_s=900.0).status == "inconclusive"


def test_an_aborted_run_observed_a_whole_hold_window_past_its_last_failure_stays_breached():
    """The write path stayed broken without failed requests (no orders at all) for more than a hold window."""
    records = [r for r in traffic(0.0, 40.0, fails_between(10.0, 12.0))
               if not (r.op == "POST /orders" and r.t >= 12.0)]
    cut = recovery_time(records, fault_t=FAULT, cut_short=True)
    assert cut.rto_s == math.inf and "never stayed healthy" in (cut.reason or "")
    assert measurement(cut, target_s=900.0).status == "breached"


def test_an_aborted_run_that_recovered_keeps_its_rto():
    records = traffic(0.0, 40.0, fails_between(10.0, 15.0))
    assert recovery_time(records, fault_t=FAULT, cut_short=True).rto_s == pytest.approx(5.0, abs=0.05)


def test_compute_reads_cut_short_from_an_abort_record_in_the_history():
    from resilience.checkers import compute
    from resilience.config import Targets
    records = traffic(0.0, 35.0, fails_between(10.0, 30.0))
    phases = [Record(0.0, "phase", "steady", "info"), Record(FAULT, "phase", "fault", "info")]
    [complete] = compute(records + phases, targets=Targets(), measures=["rto"])
    assert complete.status == "breached" and complete.value == math.inf
    abort = Record(35.0, "phase", "abort", "info", detail={"reason": "interrupted (Ctrl-C) during fault"})
    [cut] = compute(records + phases + [abort], targets=Targets(), measures=["rto"])
    assert cut.status == "inconclusive" and cut.value is None and "cut short" in cut.detail["reason"]
