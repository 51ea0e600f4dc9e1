"""The Kubernetes HPA algorithm (autoscaling/v2), pure and deterministic.

The local controller asks `Autoscaler.decide()` once per sync period with the
current replica count and the average CPU utilization (percent of the replica's
CPU limit). The steps follow kubernetes/pkg/controller/podautoscaler/horizontal.go
so that the local target scales the way a cluster would:

1. metric recommendation: ``ceil(current * utilization / target)``, or ``current``
   when ``|utilization / target - 1| <= tolerance``;
2. stabilization (``stabilizeRecommendationWithBehaviors``): every raw
   recommendation is remembered; scaling up uses the *lowest* recommendation of
   the scale-up window, scaling down the *highest* of the scale-down window;
3. rate limits (``convertDesiredReplicasWithBehaviorRate``): scale up by at most
   max(percent %, pods) per period (``selectPolicy: Max``), scale down by at most
   percent % per period, counted from the scale events of the last period;
4. clamp to [min_replicas, max_replicas].

Time is whatever the caller passes as ``now`` (seconds, monotonic), which keeps
the class free of clocks and easy to test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from resilience.config import Autoscaling

# A float product like 10 * (77 / 70) = 11.000000000000002 must not round up to 12.
_CEIL_EPSILON = 1e-9


@dataclass(frozen=True)
class HpaSpec:
    """What a HorizontalPodAutoscaler spec (with `behavior`) says, in our units."""

    min_replicas: int = 3
    max_replicas: int = 9
    target_utilization: float = 70.0  # percent of the CPU limit
    tolerance: float = 0.1
    scale_up_stabilization_s: float = 0.0
    scale_down_stabilization_s: float = 300.0
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    scale_up_period_s: float = 15.0
    scale_down_percent: float = 100.0
    scale_down_period_s: float = 15.0

    @classmethod
    def from_settings(cls, autoscaling: Autoscaling) -> HpaSpec:
        """The spec the local target uses, from `stack.autoscaling` in the settings."""
        return cls(
            min_replicas=autoscaling.min_replicas,
            max_replicas=autoscaling.max_replicas,
            target_utilization=float(autoscaling.target_cpu_utilization),
            tolerance=autoscaling.tolerance,
            scale_up_stabilization_s=autoscaling.scale_up_stabilization_s,
            scale_down_stabilization_s=autoscaling.scale_down_stabilization_s,
            scale_up_percent=float(autoscaling.scale_up_percent),
            scale_up_pods=autoscaling.scale_up_pods,
            scale_up_period_s=autoscaling.scale_up_period_s,
            scale_down_percent=float(autoscaling.scale_down_percent),
            scale_down_period_s=autoscaling.scale_down_period_s,
        )


@dataclass(frozen=True)
class Decision:
    """One evaluation: the replica count to run now, and why."""

    desired: int  # what the controller should scale to (== current: do nothing)
    recommendation: int  # the raw metric recommendation (before stabilization and limits)
    reason: str  # human-readable, for the history and logs
    stabilized: int | None = None  # after the stabilization windows, before rate limits

    def to_json(self) -> dict[str, object]:
        return {"desired": self.desired, "recommendation": self.recommendation,
                "stabilized": self.stabilized, "reason": self.reason}


@dataclass(frozen=True)
class _Recommendation:
    t: float
    replicas: int


@dataclass(frozen=True)
class _ScaleEvent:
    t: float
    change: int  # replicas added (scale-up) or removed (scale-down), always > 0


def metric_recommendation(current_replicas: int, utilization_percent: float,
                          target_percent: float, tolerance: float) -> int:
    """``ceil(current * utilization / target)``; ``current`` inside the tolerance band."""
    ratio = utilization_percent / target_percent
    if abs(ratio - 1.0) <= tolerance:
        return current_replicas
    return max(0, math.ceil(current_replicas * ratio - _CEIL_EPSILON))


def scale_up_limit(current_replicas: int, added_in_period: int, removed_in_period: int,
                   percent: float, pods: int) -> int:
    """The most replicas allowed now: max of the Pods and Percent policies (selectPolicy Max)."""
    period_start = current_replicas - added_in_period + removed_in_period
    by_pods = period_start + pods
    by_percent = math.ceil(period_start * (1 + percent / 100.0) - _CEIL_EPSILON)
    return max(by_pods, by_percent)


def scale_down_limit(current_replicas: int, added_in_period: int, removed_in_period: int,
                     percent: float) -> int:
    """The fewest replicas allowed now by the Percent policy (Kubernetes truncates here)."""
    period_start = current_replicas - added_in_period + removed_in_period
    return int(period_start * (1 - percent / 100.0) + _CEIL_EPSILON)


class Autoscaler:
    """The HPA controller's decision logic for one scale target, with its own history.

    `decide()` assumes the caller applies every decision it returns: a `desired`
    different from `current_replicas` is remembered as a scale event, which the
    rate limits of the next periods count.
    """

    def __init__(self, spec: HpaSpec) -> None:
        self.spec = spec
        self._recommendations: list[_Recommendation] = []
        self._scale_ups: list[_ScaleEvent] = []
        self._scale_downs: list[_ScaleEvent] = []

    def decide(self, now: float, current_replicas: int, utilization_percent: float | None) -> Decision:
        """The replica count for `now`, given the average utilization (None: no metrics)."""
        spec = self.spec
        if current_replicas > spec.max_replicas:
            return self._record(now, current_replicas, Decision(
                spec.max_replicas, current_replicas,
                f"current replicas {current_replicas} above max_replicas {spec.max_replicas}"))
        if current_replicas < spec.min_replicas:
            return self._record(now, current_replicas, Decision(
                spec.min_replicas, current_replicas,
                f"current replicas {current_replicas} below min_replicas {spec.min_replicas}"))
        if utilization_percent is None:
            # Kubernetes skips the whole evaluation when metrics are missing.
            return Decision(current_replicas, current_replicas, "no utilization metrics: keeping the current count")

        raw = metric_recommendation(current_replicas, utilization_percent,
                                    spec.target_utilization, spec.tolerance)
        stabilized, stabilize_reason = self._stabilize(now, current_replicas, raw)
        desired, limit_reason = self._limit_rate(now, current_replicas, stabilized)
        reason = (f"utilization {utilization_percent:.1f}% vs target {spec.target_utilization:g}% "
                  f"-> recommend {raw}; {stabilize_reason}; {limit_reason}")
        return self._record(now, current_replicas, Decision(desired, raw, reason, stabilized))

    # -- the steps -----------------------------------------------------------
    def _stabilize(self, now: float, current: int, raw: int) -> tuple[int, str]:
        """Lowest recommendation of the scale-up window, highest of the scale-down window."""
        spec = self.spec
        up_cutoff = now - spec.scale_up_stabilization_s
        down_cutoff = now - spec.scale_down_stabilization_s
        up_recommendation = raw
        down_recommendation = raw
        for rec in self._recommendations:
            if rec.t > up_cutoff:
                up_recommendation = min(up_recommendation, rec.replicas)
            if rec.t > down_cutoff:
                down_recommendation = max(down_recommendation, rec.replicas)

        stabilized = max(current, up_recommendation)
        stabilized = min(stabilized, down_recommendation)

        oldest_needed = min(up_cutoff, down_cutoff)
        self._recommendations = [r for r in self._recommendations if r.t > oldest_needed]
        self._recommendations.append(_Recommendation(now, raw))

        if stabilized == raw:
            return stabilized, "recommendation is stable"
        if stabilized > raw:
            return stabilized, (f"scale-down stabilized to {stabilized} "
                                f"(highest recommendation in the last {spec.scale_down_stabilization_s:g} s)")
        return stabilized, (f"scale-up stabilized to {stabilized} "
                            f"(lowest recommendation in the last {spec.scale_up_stabilization_s:g} s)")

    def _limit_rate(self, now: float, current: int, stabilized: int) -> tuple[int, str]:
        """Apply the scaling policies and the min/max bounds."""
        spec = self.spec
        if stabilized > current:
            added = _changes_since(self._scale_ups, now - spec.scale_up_period_s)
            removed = _changes_since(self._scale_downs, now - spec.scale_up_period_s)
            limit = max(current, scale_up_limit(current, added, removed, spec.scale_up_percent, spec.scale_up_pods))
            if limit < spec.max_replicas:
                allowed, why = limit, (f"scale-up limited to {limit} (max of {spec.scale_up_percent:g}% "
                                       f"and {spec.scale_up_pods} pods per {spec.scale_up_period_s:g} s)")
            else:
                allowed, why = spec.max_replicas, f"capped at max_replicas {spec.max_replicas}"
            if stabilized > allowed:
                return allowed, why
        elif stabilized < current:
            added = _changes_since(self._scale_ups, now - spec.scale_down_period_s)
            removed = _changes_since(self._scale_downs, now - spec.scale_down_period_s)
            limit = min(current, scale_down_limit(current, added, removed, spec.scale_down_percent))
            if limit > spec.min_replicas:
                allowed, why = limit, (f"scale-down limited to {limit} ({spec.scale_down_percent:g}% "
                                       f"per {spec.scale_down_period_s:g} s)")
            else:
                allowed, why = spec.min_replicas, f"floored at min_replicas {spec.min_replicas}"
            if stabilized < allowed:
                return allowed, why
        return stabilized, "within limits"

    def _record(self, now: float, current: int, decision: Decision) -> Decision:
        """Remember the scale event the caller is about to perform."""
        longest = max(self.spec.scale_up_period_s, self.spec.scale_down_period_s)
        self._scale_ups = [e for e in self._scale_ups if e.t > now - longest]
        self._scale_downs = [e for e in self._scale_downs if e.t > now - longest]
        if decision.desired > current:
            self._scale_ups.append(_ScaleEvent(now, decision.desired - current))
        elif decision.desired < current:
            self._scale_downs.append(_ScaleEvent(now, current - decision.desired))
        return decision


def _changes_since(events: list[_ScaleEvent], cutoff: float) -> int:
    return sum(e.change for e in events if e.t > cutoff)
