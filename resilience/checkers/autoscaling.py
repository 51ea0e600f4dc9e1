"""Autoscaling latency: how long after a load step the extra replicas were ready.

The load step comes from `load`/`users` records (or is given explicitly): the
baseline is the user count in force when the steady phase starts (the first
`users` record when there is no steady phase), and the step is the first later
`users` record above it. The spike lasts until a `users` record lowers the
load, or to the end of the history.

The count the autoscaler settles on is the last `desired` replica count it
reported during the spike (`controller`/`replicas` detail.desired, or
`controller`/`scale` detail.to); when no desired counts were recorded, the
highest ready count during the spike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from ..history import CONTROLLER, LOAD, PHASE, Record
from .measurement import Measurement, judge

USERS_OP = "users"

DEFINITION_SETTLED = (
    "Autoscaling latency = time from the load step (the first load/users record above the user count in force "
    "at the steady phase start, or the step time the experiment gives) until the ready replica count "
    "(controller/replicas detail.ready) first reaches the count the autoscaler settles on: the last desired "
    "count it reported before the load dropped again (highest ready count if it reported none). If the "
    "autoscaler never asked for more replicas than were ready at the step, or they never became ready: "
    "unbounded (inf). No controller records or no load step: inconclusive."
)
DEFINITION_FIRST = (
    "First extra replica = time from the load step until the ready replica count first exceeds the count "
    "ready at the step. Never: unbounded (inf). No controller records or no load step: inconclusive."
)


@dataclass(frozen=True)
class AutoscalingResult:
    """Autoscaling figures; None = could not be measured, inf = never happened."""

    settled_s: float | None
    first_s: float | None
    step_t: float | None = None
    baseline_users: int | None = None
    spike_users: int | None = None
    spike_end_t: float | None = None
    ready_at_step: int | None = None
    settled_replicas: int | None = None
    max_desired: int | None = None
    reason: str | None = None

    def detail(self) -> dict[str, Any]:
        return {"step_t": self.step_t, "baseline_users": self.baseline_users, "spike_users": self.spike_users,
                "spike_end_t": self.spike_end_t, "ready_at_step": self.ready_at_step,
                "settled_replicas": self.settled_replicas, "max_desired": self.max_desired}


def _int(detail: dict[str, Any] | None, key: str) -> int | None:
    value = (detail or {}).get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def user_counts(records: Iterable[Record]) -> list[tuple[float, int]]:
    """(t, users) of every load/users record, in history order."""
    return [(r.t, n) for r in records if r.source == LOAD and r.op == USERS_OP
            and (n := _int(r.detail, "users")) is not None]


def load_step(records: list[Record]) -> tuple[float, int, int] | None:
    """(step time, baseline users, users at the step) from the history's `users` records, or None."""
    users = user_counts(records)
    if not users:
        return None
    steady_start = min((r.t for r in records if r.source == PHASE and r.op == "steady"), default=None)
    before_steady = [u for u in users if steady_start is not None and u[0] <= steady_start]
    baseline_t, baseline = before_steady[-1] if before_steady else users[0]
    for t, n in users:
        if t > baseline_t and n > baseline:
            return t, baseline, n
    return None


def autoscaling_latency(records: Iterable[Record], *, step_t: float | None = None) -> AutoscalingResult:
    """Time from the load step to the settled replica count being ready, and to the first extra replica."""
    records = sorted(records, key=lambda r: r.t)
    replicas = [r for r in records if r.source == CONTROLLER and r.op == "replicas"
                and _int(r.detail, "ready") is not None]
    if not replicas:
        return AutoscalingResult(None, None, step_t=step_t,
                                 reason="no controller/replicas records: the ready replica count was not observed")
    baseline_users = spike_users = None
    if step_t is None:
        step = load_step(records)
        if step is None:
            return AutoscalingResult(None, None, reason="no load step: no load/users record rises above the baseline")
        step_t, baseline_users, spike_users = step

    users = user_counts(records)
    spike_end_t = next((t for (t, n), (_, previous) in zip(users[1:], users) if t > step_t and n < previous),
                       records[-1].t)

    before_step = [r for r in replicas if r.t <= step_t]
    ready_at_step = _int((before_step[-1] if before_step else replicas[0]).detail, "ready") or 0
    desired = [(r.t, n) for r in records if r.source == CONTROLLER and step_t <= r.t <= spike_end_t
               and (n := _desired(r)) is not None]
    during = [_int(r.detail, "ready") or 0 for r in replicas if step_t <= r.t <= spike_end_t]
    if desired:
        settled = desired[-1][1]
    elif during:
        settled = max(during)
    else:
        settled = ready_at_step
    facts: dict[str, Any] = dict(step_t=step_t, baseline_users=baseline_users, spike_users=spike_users,
                                 spike_end_t=spike_end_t, ready_at_step=ready_at_step, settled_replicas=settled,
                                 max_desired=max((n for _, n in desired), default=None))

    after = [(r.t, _int(r.detail, "ready") or 0) for r in replicas if r.t >= step_t]
    first_t = next((t for t, ready in after if ready > ready_at_step), None)
    first_s = math.inf if first_t is None else first_t - step_t
    if settled <= ready_at_step:
        return AutoscalingResult(math.inf, first_s, **facts,
                                 reason=f"the autoscaler never asked for more than the {ready_at_step} replicas "
                                        f"ready at the load step")
    settled_t = next((t for t, ready in after if ready >= settled), None)
    if settled_t is None:
        return AutoscalingResult(math.inf, first_s, **facts,
                                 reason=f"the ready count never reached the {settled} replicas the autoscaler "
                                        f"settled on")
    return AutoscalingResult(settled_t - step_t, first_s, **facts)


def _desired(record: Record) -> int | None:
    if record.op == "replicas":
        return _int(record.detail, "desired")
    if record.op == "scale":
        to = _int(record.detail, "to")
        return to if to is not None else _int(record.detail, "desired")
    return None


def measurements(result: AutoscalingResult, *, target_s: float | None) -> list[Measurement]:
    """`autoscale_s` and `autoscale_first_s`, both judged against the autoscaling target."""
    detail = result.detail()
    if result.first_s is None:
        first_reason = result.reason
    elif result.first_s == math.inf:
        first_reason = "no extra replica became ready after the load step"
    else:
        first_reason = None
    return [
        judge("autoscale_s", result.settled_s, "s", target_s, "<=", definition=DEFINITION_SETTLED,
              detail=detail, reason=result.reason),
        judge("autoscale_first_s", result.first_s, "s", target_s, "<=", definition=DEFINITION_FIRST,
              detail=detail, reason=first_reason),
    ]
