"""Gray-failure measurements on hand-built histories: the fault window's P99 against a degraded-mode target,
the longest request, and the time to be normal again after the fault is removed."""

import math

from resilience.checkers import compute
from resilience.checkers.degradation import RECOVERED_HOLD_S, recovered_after, removal_time
from resilience.config import Targets
from resilience.history import Record


def slow_run(fault_ms: float = 150.0, slow_after_s: float = 0.0, hang_s: float | None = None) -> list[Record]:
    """steady [0,10) · fault [10,20) (effect at 10, rollback at 20) · recovery [20,30) · end 30; 20 requests/s.

    Requests take 20 ms, `fault_ms` during the fault, and stay at `fault_ms` for `slow_after_s` after the
    removal (a pool draining its queue); one request started at 12 s hangs `hang_s` if given.
    """
    records = [Record(0.0, "phase", "steady", "info"), Record(10.0, "phase", "fault", "info"),
               Record(10.0, "fault", "inject", "ok"), Record(10.0, "fault", "effect", "ok"),
               Record(20.0, "fault", "rollback", "ok"), Record(20.0, "phase", "recovery", "info"),
               Record(30.0, "phase", "end", "info")]
    for i in range(600):
        t = i * 0.05
        slow = 10.0 <= t < 20.0 + slow_after_s
        records.append(Record(t, "load", "GET /menu", "ok", fault_ms / 1000 if slow else 0.020))
    if hang_s is not None:
        records.append(Record(12.0, "load", "POST /orders", "unknown", hang_s, "k-hang"))
    return records


def by_name(measurements) -> dict:
    return {m.name: m for m in measurements}


def test_the_fault_window_p99_is_judged_only_against_a_degraded_mode_target():
    reported = by_name(compute(slow_run(250.0), targets=Targets(), measures=["p99"]))
    assert reported["p99_ms_fault"].value == 250.0 and reported["p99_ms_fault"].target is None
    assert reported["p99_ms"].status == "met"  # the whole run minus the fault: 20 ms
    judged = by_name(compute(slow_run(250.0), targets=Targets(p99_fault_ms=500), measures=["p99"]))
    assert judged["p99_ms_fault"].target == 500 and judged["p99_ms_fault"].status == "met"
    breached = by_name(compute(slow_run(600.0), targets=Targets(p99_fault_ms=500), measures=["p99"]))
    assert breached["p99_ms_fault"].status == "breached"


def test_the_fault_window_availability_is_judged_against_availability_fault():
    records = [r if not (r.source == "load" and 10 <= r.t < 11) else Record(r.t, r.source, r.op, "fail", r.latency)
               for r in slow_run()]
    result = by_name(compute(records, targets=Targets(availability_fault=0.99), measures=["availability"]))
    assert result["availability_fault"].value == 0.9 and result["availability_fault"].status == "breached"


def test_the_longest_request_names_the_request_that_hung():
    result = by_name(compute(slow_run(hang_s=30.0), targets=Targets(), measures=["degradation"]))
    longest = result["longest_request_ms"]
    assert longest.value == 30000.0 and longest.target is None
    assert longest.detail["op"] == "POST /orders" and longest.detail["phase"] == "fault"
    assert longest.detail["status"] == "unknown"


def test_recovered_at_once_when_the_removal_ends_the_slowness():
    result = by_name(compute(slow_run(), targets=Targets(recovered_s=5), measures=["degradation"]))
    recovered = result["recovered_after_fault_s"]
    assert recovered.value == 0.0 and recovered.status == "met"
    assert recovered.detail["removed_t"] == 20.0


def test_recovery_waits_for_latency_back_under_p99_not_only_for_success():
    # every request succeeds all along, but stays slow 4.5 s after the removal: normal from the 5th second
    result = by_name(compute(slow_run(300.0, slow_after_s=4.5), targets=Targets(recovered_s=3), measures=["degradation"]))
    recovered = result["recovered_after_fault_s"]
    assert recovered.value == 5.0 and recovered.status == "breached"
    assert recovered.detail["normal_t"] == 25.0


def test_never_normal_again_is_unbounded_and_too_little_load_is_inconclusive():
    never = by_name(compute(slow_run(300.0, slow_after_s=20.0), targets=Targets(), measures=["degradation"]))
    assert never["recovered_after_fault_s"].value == math.inf
    records = [r for r in slow_run() if not (r.source == "load" and r.t >= 21.5)]
    short = recovered_after(records, removed_t=20.0, p99_ms=200.0, success_ratio=0.99)
    assert short.seconds is None and f"{RECOVERED_HOLD_S} are needed" in (short.reason or "")


def test_the_removal_is_the_rollback_else_the_recovery_phase():
    records = slow_run()
    assert removal_time(records, 10.0, {"recovery": (21.0, 30.0)}) == 20.0
    without = [r for r in records if r.op != "rollback"]
    assert removal_time(without, 10.0, {"recovery": (21.0, 30.0)}) == 21.0
    assert removal_time(without, 10.0, {}) is None
