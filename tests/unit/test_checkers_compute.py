"""compute(): the whole set of measurements for a synthetic run, judged against targets."""

import json
import math

import pytest

from resilience.checkers import MEASURES, compute
from resilience.checkers.measurement import verdict
from resilience.config import Targets
from resilience.errors import UserError
from resilience.history import Record

ALL = [m for m in MEASURES if m != "restore"]  # a failover run: "restore" measures recovery from backup


def synthetic_run(step: float = 0.005, outage: tuple[float, float] = (30.0, 33.0), lost: int = 0) -> list[Record]:
    """steady [0,30) · fault [30,40) (inject at 30) · recovery [40,70) · end 70; a request every `step` s.

    Every fourth request places an order; every acknowledged order is read back, the first `lost` as missing.
    """
    records = [Record(0.0, "phase", "steady", "info"), Record(30.0, "phase", "fault", "info"),
               Record(30.0, "fault", "inject", "ok", detail={"capability": "kill_replicas"}),
               Record(40.0, "fault", "rollback", "ok"), Record(40.0, "phase", "recovery", "info"),
               Record(70.0, "phase", "end", "info"), Record(0.0, "load", "users", "info", detail={"users": 50}),
               Record(0.0, "controller", "replicas", "info", detail={"ready": 3, "desired": 3}),
               Record(31.0, "load", "users", "info", detail={"users": 500}),
               Record(32.0, "controller", "replicas", "info", detail={"ready": 3, "desired": 6}),
               Record(45.0, "controller", "replicas", "info", detail={"ready": 6, "desired": 6})]
    readbacks: list[Record] = []
    for i in range(round(70.0 / step)):
        t = i * step
        status = "fail" if outage[0] <= t < outage[1] else "ok"
        latency = 0.150 if 30.0 <= t < 40.0 else 0.010 + (i % 100) / 10000  # 10.0 .. 19.9 ms outside the fault
        if i % 4 == 0:
            key = f"order-{i}"
            detail = {"order_id": i, "seq": i} if status == "ok" else None
            records.append(Record(t, "load", "POST /orders", status, latency, key, detail))
            if status == "ok":
                found = "fail" if len(readbacks) < lost else "ok"
                readbacks.append(Record(75.0, "check", "readback", found, None, key, {"order_id": i, "ack_t": t}))
        else:
            records.append(Record(t, "load", "GET /menu", status, latency))
    return records + readbacks


def by_name(measurements) -> dict:
    return {m.name: m for m in measurements}


def test_a_whole_run_produces_every_measurement_in_a_fixed_order():
    result = compute(synthetic_run(), targets=Targets(), measures=ALL)
    assert [m.name for m in result] == [
        "availability", "availability_overall", "availability_steady", "availability_fault",
        "availability_recovery",
        "p99_ms", "p99_ms_steady", "p99_ms_fault", "p99_ms_recovery",
        "rto_s", "rpo_s", "lost_writes", "autoscale_s", "autoscale_first_s",
        "longest_request_ms", "recovered_after_fault_s", "two_writable_primaries"]
    assert all(m.definition for m in result)
    json.dumps([m.to_json() for m in result])  # reports serialize them


def test_values_of_a_whole_run():
    measures = [m for m in ALL if m != "primaries"]  # a kill has no pg_writable rounds: that check is inconclusive
    result = by_name(compute(synthetic_run(), targets=Targets(availability=0.9), measures=measures))
    assert result["availability"].value == 1.0  # steady + recovery: the outage is inside the fault window
    assert result["availability"].status == "met"
    assert result["availability_overall"].value == pytest.approx(67 / 70, abs=1e-4)
    assert result["availability_fault"].value == pytest.approx(0.7, abs=1e-3)
    assert result["p99_ms"].value == 19.8 and result["p99_ms_fault"].value == 150.0  # 99th of 10.0..19.9
    assert result["rto_s"].value == pytest.approx(3.0, abs=0.2)  # first ok completes at 33.15
    assert result["rpo_s"].value == 0.0 and result["lost_writes"].value == 0
    assert result["autoscale_s"].value == 14.0 and result["autoscale_first_s"].value == 14.0
    assert verdict(list(result.values())) == "pass"


def test_lost_writes_and_strict_targets_fail_the_run():
    result = by_name(compute(synthetic_run(lost=2), targets=Targets(rto_s=1.0), measures=["rto", "rpo"]))
    assert set(result) == {"rto_s", "rpo_s", "lost_writes"}
    assert result["lost_writes"].value == 2 and result["rto_s"].status == "breached"
    assert result["rpo_s"].value == pytest.approx(30.0, abs=0.05)  # the first order was acked at 0.0 + 10 ms
    assert verdict(list(result.values())) == "fail"


def test_fault_time_can_be_given():
    result = by_name(compute(synthetic_run(), fault_t=31.0, targets=Targets(), measures=["rto"]))
    assert result["rto_s"].value == pytest.approx(2.15, abs=0.05)


def test_empty_history_is_inconclusive_everywhere_and_does_not_crash():
    result = compute([], targets=Targets(), measures=ALL)
    assert result and all(m.status == "inconclusive" for m in result)
    assert verdict(result) == "inconclusive"


def test_unknown_measure_is_a_user_error_naming_it():
    with pytest.raises(UserError, match="'latency'"):
        compute([], targets=Targets(), measures=["latency"])


def test_two_hundred_thousand_records():
    """Correct at scale (200k requests, ~2.9k/s); the speed is checked by hand, not asserted here."""
    records = synthetic_run(step=0.00035)
    assert len(records) > 200_000
    result = by_name(compute(records, targets=Targets(availability=0.9), measures=ALL))
    assert result["rto_s"].value == pytest.approx(3.15, abs=0.01)
    outside_fault = sorted(r.latency for r in records if r.source == "load" and r.latency is not None
                           and not 30.0 <= r.t < 40.0)
    expected_p99 = outside_fault[math.ceil(0.99 * len(outside_fault)) - 1]
    assert result["lost_writes"].value == 0 and result["p99_ms"].value == round(expected_p99 * 1000, 3)
    assert not math.isinf(result["autoscale_s"].value or math.inf)
