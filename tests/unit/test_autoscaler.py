"""The HPA algorithm: the classic examples from the Kubernetes documentation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from resilience.config import Autoscaling
from resilience.targets.local.autoscaler import (
    Autoscaler,
    HpaSpec,
    metric_recommendation,
    scale_down_limit,
    scale_up_limit,
)

# No stabilization, generous limits: isolates the metric formula.
PLAIN = HpaSpec(min_replicas=1, max_replicas=50, target_utilization=70, tolerance=0.1,
                scale_up_stabilization_s=0, scale_down_stabilization_s=0,
                scale_up_percent=1000, scale_up_pods=100, scale_up_period_s=15,
                scale_down_percent=100, scale_down_period_s=15)


def test_four_pods_at_double_the_target_become_eight() -> None:
    decision = Autoscaler(PLAIN).decide(now=0.0, current_replicas=4, utilization_percent=140)
    assert decision.recommendation == 8
    assert decision.desired == 8


def test_recommendation_rounds_up() -> None:
    # 3 * 100/70 = 4.29 -> 5
    assert metric_recommendation(3, 100, 70, 0.1) == 5
    # float noise must not add a replica: 10 * 77/70 = 11.000000000000002
    assert metric_recommendation(10, 77, 70, 0.0) == 11


@pytest.mark.parametrize("utilization", [63.5, 70.0, 76.9])
def test_within_tolerance_keeps_the_count(utilization: float) -> None:
    decision = Autoscaler(PLAIN).decide(now=0.0, current_replicas=5, utilization_percent=utilization)
    assert decision.desired == 5
    assert decision.recommendation == 5


def test_just_outside_tolerance_scales() -> None:
    decision = Autoscaler(PLAIN).decide(now=0.0, current_replicas=5, utilization_percent=78)
    assert decision.desired == 6  # ceil(5 * 78/70) = ceil(5.57)


def test_clamped_to_max_replicas() -> None:
    spec = replace(PLAIN, max_replicas=6)
    decision = Autoscaler(spec).decide(now=0.0, current_replicas=4, utilization_percent=280)
    assert decision.recommendation == 16
    assert decision.desired == 6
    assert "max_replicas" in decision.reason


def test_clamped_to_min_replicas() -> None:
    spec = replace(PLAIN, min_replicas=3)
    decision = Autoscaler(spec).decide(now=0.0, current_replicas=6, utilization_percent=5)
    assert decision.recommendation == 1
    assert decision.desired == 3


def test_current_outside_bounds_is_brought_inside() -> None:
    spec = replace(PLAIN, min_replicas=3, max_replicas=9)
    assert Autoscaler(spec).decide(0.0, 12, 70).desired == 9
    assert Autoscaler(spec).decide(0.0, 1, None).desired == 3


def test_no_metrics_keeps_the_count() -> None:
    decision = Autoscaler(PLAIN).decide(now=0.0, current_replicas=4, utilization_percent=None)
    assert decision.desired == 4
    assert "no utilization" in decision.reason


def test_scale_up_limited_to_max_of_percent_and_pods_per_period() -> None:
    spec = replace(PLAIN, scale_up_percent=100, scale_up_pods=4, scale_up_period_s=15)
    scaler = Autoscaler(spec)
    # 2 replicas at 10x the target want 20; 100% of 2 = +2, 4 pods = +4 -> 6.
    first = scaler.decide(now=0.0, current_replicas=2, utilization_percent=700)
    assert first.recommendation == 20
    assert first.desired == 6
    # Within the same 15 s period the budget is spent (the period started at 2 replicas).
    second = scaler.decide(now=5.0, current_replicas=6, utilization_percent=700)
    assert second.desired == 6
    # A new period starts from 6: max(6 * 2, 6 + 4) = 12.
    third = scaler.decide(now=15.5, current_replicas=6, utilization_percent=700)
    assert third.desired == 12


def test_scale_up_percent_wins_for_large_counts() -> None:
    assert scale_up_limit(10, 0, 0, percent=100, pods=4) == 20
    assert scale_up_limit(2, 0, 0, percent=100, pods=4) == 6
    # replicas added earlier in the period count against the budget
    assert scale_up_limit(6, 4, 0, percent=100, pods=4) == 6


def test_scale_down_limit_by_percent() -> None:
    assert scale_down_limit(10, 0, 0, percent=50) == 5
    assert scale_down_limit(5, 0, 5, percent=50) == 5  # 5 already removed from 10 this period
    assert scale_down_limit(10, 0, 0, percent=100) == 0


def test_scale_down_waits_for_the_stabilization_window() -> None:
    spec = replace(PLAIN, min_replicas=2, scale_down_stabilization_s=30)
    scaler = Autoscaler(spec)
    assert scaler.decide(0.0, 8, 70).desired == 8  # steady at target: recommendation 8
    # Load drops: the raw recommendation is 2, but 8 is still in the window.
    for t in (5.0, 10.0, 20.0, 29.0):
        decision = scaler.decide(t, 8, 10)
        assert decision.recommendation == 2
        assert decision.desired == 8, t
    # At 30.5 s the recommendation of t=0 has left the window; the highest left is 2.
    assert scaler.decide(30.5, 8, 10).desired == 2


def test_scale_down_follows_the_highest_recommendation_in_the_window() -> None:
    spec = replace(PLAIN, min_replicas=1, scale_down_stabilization_s=30)
    scaler = Autoscaler(spec)
    scaler.decide(0.0, 10, 70)  # recommendation 10
    scaler.decide(10.0, 10, 42)  # recommendation 6
    scaler.decide(20.0, 10, 28)  # recommendation 4
    # At 31 s the 10 has expired; 6 (t=10) is now the highest in the window.
    decision = scaler.decide(31.0, 10, 7)
    assert decision.recommendation == 1
    assert decision.stabilized == 6
    assert decision.desired == 6


def test_scale_down_rate_limited_by_percent_per_period() -> None:
    spec = replace(PLAIN, min_replicas=1, scale_down_percent=50, scale_down_period_s=15)
    scaler = Autoscaler(spec)
    assert scaler.decide(0.0, 8, 7).desired == 4  # wants 1, may remove 50% of 8
    assert scaler.decide(5.0, 4, 7).desired == 4  # same period: already removed 4 of 8
    assert scaler.decide(16.0, 4, 7).desired == 2  # new period: 50% of 4


def test_scale_up_stabilization_takes_the_lowest_recommendation() -> None:
    spec = replace(PLAIN, scale_up_stabilization_s=10)
    scaler = Autoscaler(spec)
    assert scaler.decide(0.0, 4, 70).desired == 4
    # A spike: the raw recommendation is 8, but 4 is in the up window.
    assert scaler.decide(3.0, 4, 140).desired == 4
    # After the window only spike recommendations remain.
    assert scaler.decide(11.0, 4, 140).desired == 8


def test_spec_from_settings() -> None:
    spec = HpaSpec.from_settings(Autoscaling(min_replicas=2, max_replicas=7, target_cpu_utilization=60))
    assert (spec.min_replicas, spec.max_replicas, spec.target_utilization) == (2, 7, 60.0)
    assert spec.scale_up_pods == 4
    assert spec.scale_down_stabilization_s == 30.0
