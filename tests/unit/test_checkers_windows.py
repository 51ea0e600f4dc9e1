"""Phase windows, the fault time and the overall window of a history."""

from resilience.checkers.windows import (completion_time, fault_time, in_window, is_load_request, load_requests,
                                         overall_window, phase_windows)
from resilience.history import Record


def phase(t: float, name: str) -> Record:
    return Record(t, "phase", name, "info")


def req(t: float, status: str = "ok", latency: float | None = 0.01) -> Record:
    return Record(t, "load", "GET /menu", status, latency)


def test_phase_windows_run_from_each_phase_record_to_the_next():
    records = [phase(1.0, "steady"), phase(11.0, "fault"), phase(16.0, "recovery"), phase(30.0, "end"), req(31.0)]
    assert phase_windows(records) == {"steady": (1.0, 11.0), "fault": (11.0, 16.0), "recovery": (16.0, 30.0)}


def test_last_phase_without_end_runs_to_the_last_completion():
    records = [phase(0.0, "steady"), phase(5.0, "fault"), req(7.0, latency=2.5)]
    assert phase_windows(records)["fault"] == (5.0, 9.5)


def test_unsorted_records_and_repeated_phase_keep_the_first_occurrence():
    records = [phase(20.0, "end"), phase(10.0, "fault"), phase(0.0, "steady"), phase(15.0, "fault")]
    windows = phase_windows(records)
    assert windows["fault"] == (10.0, 15.0)
    assert windows["steady"] == (0.0, 10.0)


def test_empty_history_has_no_windows_no_fault_and_no_overall_window():
    assert phase_windows([]) == {}
    assert fault_time([]) is None
    assert overall_window([]) is None


def test_fault_time_prefers_the_first_inject_record_over_the_fault_phase():
    records = [phase(0.0, "steady"), phase(9.0, "fault"), Record(12.0, "fault", "inject", "ok"),
               Record(10.0, "fault", "inject", "ok"), Record(20.0, "fault", "rollback", "ok")]
    assert fault_time(records) == 10.0
    assert fault_time(records[:2]) == 9.0


def test_overall_window_spans_the_phases_or_the_whole_history():
    records = [req(0.5), phase(1.0, "steady"), phase(4.0, "fault"), phase(8.0, "end"), req(9.0)]
    assert overall_window(records) == (1.0, 8.0)
    start, end = overall_window([req(2.0), req(5.0, latency=1.0)]) or (0.0, 0.0)
    assert start == 2.0 and 6.0 <= end < 6.001


def test_load_requests_exclude_users_records_probes_and_info():
    records = [req(1.0), req(2.0, "unknown"), Record(1.5, "load", "users", "info", detail={"users": 5}),
               Record(1.6, "probe", "GET /health/ready", "ok", 0.01)]
    assert [r.t for r in load_requests(records)] == [1.0, 2.0]
    assert not is_load_request(records[2])


def test_completion_time_and_half_open_windows():
    assert completion_time(req(1.0, latency=2.0)) == 3.0
    assert completion_time(req(1.0, latency=None)) == 1.0
    assert [r.t for r in in_window([req(1.0), req(2.0), req(3.0)], (1.0, 3.0))] == [1.0, 2.0]
