"""Availability counts, per-phase measurements and the per-second series."""

import pytest

from resilience.checkers.availability import availability, count_requests, measurements
from resilience.history import Record


def req(t: float, status: str = "ok", latency: float | None = 0.01) -> Record:
    return Record(t, "load", "GET /menu", status, latency)


def test_unknown_counts_as_not_ok():
    records = [req(0.1), req(0.2), req(0.3, "unknown"), req(0.4, "fail")]
    counts = count_requests(records)
    assert (counts.ok, counts.fail, counts.unknown, counts.total) == (2, 1, 1, 4)
    assert availability(records) == 0.5


def test_info_records_and_other_sources_are_not_requests():
    records = [req(0.1), Record(0.2, "load", "users", "info", detail={"users": 10}),
               Record(0.3, "probe", "GET /health/ready", "fail", 0.01)]
    assert availability(records) == 1.0


def test_window_is_half_open_on_start_time_and_empty_window_is_none():
    records = [req(1.0, "fail"), req(2.0), req(2.5, latency=5.0)]
    assert availability(records, (1.0, 2.0)) == 0.0
    assert availability(records, (2.0, 3.0)) == 1.0
    assert availability(records, (10.0, 20.0)) is None
    assert availability([]) is None


def test_measurements_judge_normal_operation_and_report_overall_and_phases():
    records = ([req(t / 10) for t in range(100)] + [req(10.0 + t / 10, "fail") for t in range(10)]
               + [req(11.0 + t / 10) for t in range(9)] + [req(11.95, "unknown")])
    phases = {"steady": (0.0, 10.0), "fault": (10.0, 11.0), "recovery": (11.0, 12.0)}
    result = {m.name: m for m in measurements(records, overall=(0.0, 12.0), phases=phases, target=0.95)}
    assert set(result) == {"availability", "availability_overall", "availability_steady", "availability_fault",
                           "availability_recovery"}
    judged = result["availability"]  # steady + recovery: 109 ok of 110 (the unknown is not ok)
    assert judged.value == pytest.approx(109 / 110) and judged.status == "met"
    assert judged.phase == "steady+recovery" and judged.comparison == ">=" and "unknown" in judged.definition
    overall = result["availability_overall"]
    assert overall.value == pytest.approx(109 / 120) and overall.target is None
    assert overall.detail["requests"] == 120 and overall.detail["fail"] == 10
    assert result["availability_steady"].value == 1.0 and result["availability_steady"].target is None
    assert result["availability_fault"].value == 0.0 and result["availability_fault"].target is None


def test_fault_window_is_judged_only_with_a_fault_target():
    records = [req(t / 10) for t in range(100)] + [req(10.0 + t / 10, "fail") for t in range(2)] + \
        [req(10.2 + t / 10) for t in range(8)]
    phases = {"steady": (0.0, 10.0), "fault": (10.0, 11.0)}
    result = {m.name: m for m in measurements(records, overall=(0.0, 11.0), phases=phases, target=0.95,
                                              fault_target=0.99)}
    assert result["availability_fault"].value == pytest.approx(0.8)
    assert result["availability_fault"].status == "breached" and result["availability_fault"].target == 0.99
    assert result["availability"].status == "met"


def test_measurements_met_and_inconclusive_without_requests():
    met = measurements([req(0.5)], overall=(0.0, 1.0), phases={}, target=0.999)
    assert [m.status for m in met] == ["met", "met"]
    empty = measurements([], overall=None, phases={}, target=0.999)
    assert empty[0].status == "inconclusive" and empty[0].value is None and "no load requests" in empty[0].detail["reason"]


def test_phase_without_requests_is_inconclusive_not_a_pass():
    result = measurements([req(0.5)], overall=(0.0, 5.0), phases={"steady": (0.0, 1.0), "recovery": (4.0, 5.0)},
                          target=0.9)
    recovery = [m for m in result if m.name == "availability_recovery"][0]
    assert recovery.status == "inconclusive"
