"""Latency percentiles: exactness against a sorted reference, what counts, which windows are judged."""

import math
import random

import numpy
import pytest

from resilience.checkers.latency import judged_windows, latency_summary, measurements, percentile, summarize
from resilience.history import Record


def req(t: float, latency: float | None, status: str = "ok") -> Record:
    return Record(t, "load", "GET /menu", status, latency)


def reference_nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(p / 100 * len(ordered)) - 1]


def test_percentile_nearest_rank_small_cases():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 50) == 50.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 99) is None
    assert percentile([1.0, 2.0], 99) == 2.0  # with two requests, P99 is the slower one
    with pytest.raises(ValueError):
        percentile(values, 0)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_percentiles_are_exact_on_random_data(seed: int):
    rng = random.Random(seed)
    size = rng.choice([1, 3, 99, 100, 101, 1000, 12345])
    latencies = [rng.lognormvariate(-4.0, 1.2) for _ in range(size)]  # seconds, heavy tail
    summary = summarize(latencies)
    for p, got in ((50, summary.p50_ms), (95, summary.p95_ms), (99, summary.p99_ms)):
        expected_s = reference_nearest_rank(latencies, p)
        assert got == round(expected_s * 1000, 3)
        assert got == pytest.approx(numpy.percentile(latencies, p, method="inverted_cdf") * 1000, abs=0.0005)
    assert summary.count == size and summary.max_ms == round(max(latencies) * 1000, 3)


def test_failures_and_timeouts_count_with_their_latency():
    fast = [req(i / 100, 0.010) for i in range(95)]
    timeouts = [req(1.0 + i / 100, 2.0, "unknown") for i in range(5)]
    assert latency_summary(fast + timeouts).p99_ms == 2000.0
    assert latency_summary(fast + timeouts).p50_ms == 10.0
    no_latency = [req(0.5, None, "unknown")]
    assert latency_summary(no_latency).count == 0 and latency_summary(no_latency).p99_ms is None


def test_judged_windows_cut_out_the_fault_phase():
    assert judged_windows((0.0, 30.0), {"fault": (10.0, 15.0)}) == [(0.0, 10.0), (15.0, 30.0)]
    assert judged_windows((0.0, 30.0), {}) == [(0.0, 30.0)]
    assert judged_windows((10.0, 30.0), {"fault": (10.0, 15.0)}) == [(15.0, 30.0)]


def test_p99_ms_is_judged_outside_the_fault_phase_and_reported_per_phase():
    steady = [req(i / 100, 0.020) for i in range(1000)]
    fault = [req(10.0 + i / 100, 1.5) for i in range(500)]
    recovery = [req(15.0 + i / 100, 0.050) for i in range(500)]
    phases = {"steady": (0.0, 10.0), "fault": (10.0, 15.0), "recovery": (15.0, 20.0)}
    result = {m.name: m for m in measurements(steady + fault + recovery, overall=(0.0, 20.0), phases=phases,
                                              target_ms=200.0)}
    assert result["p99_ms"].value == 50.0 and result["p99_ms"].status == "met"
    assert result["p99_ms"].detail["count"] == 1500
    assert result["p99_ms_fault"].value == 1500.0 and result["p99_ms_fault"].target is None
    assert result["p99_ms_steady"].value == 20.0 and result["p99_ms_recovery"].value == 50.0


def test_p99_breached_and_inconclusive():
    slow = measurements([req(i / 10, 0.3) for i in range(10)], overall=(0.0, 1.0), phases={}, target_ms=200.0)
    assert slow[0].status == "breached" and slow[0].value == 300.0
    empty = measurements([], overall=None, phases={}, target_ms=200.0)
    assert empty[0].status == "inconclusive"
