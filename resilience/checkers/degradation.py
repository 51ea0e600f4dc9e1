"""What a gray failure costs: the longest request, and how long the service takes to be normal again.

A slow or lossy path rarely fails requests; it makes them slow, and a client
without a timeout can wait for TCP's retransmission limit (~15 minutes on Linux).
So the worst case is a figure of its own (`longest_request_ms`, with the request
that set it), and recovery is judged on latency as well as on success: after the
fault is removed, the service is back when every 1-second bucket of completions
succeeds (ok ratio >= the RTO success ratio) and keeps its P99 within `p99_ms`,
for RECOVERED_HOLD_S seconds in a row (`recovered_after_fault_s`).

Pure functions of the history, like every checker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from ..history import FAULT, OK, Record
from .latency import percentile
from .measurement import Measurement, judge
from .windows import Window, completion_time, is_load_request

RECOVERED_HOLD_S = 3  # short profiles give the recovery phase 10 s: a 10 s hold (the RTO's) would rarely fit

LONGEST_DEFINITION = (
    "Longest request = the largest latency of any load request started in the window (the whole run), in ms, "
    "with the request that set it (operation, start, outcome, phase). A timed-out request counts with the "
    "client's timeout, so a value at the timeout means a request hung at least that long. Reported, not judged."
)
RECOVERED_DEFINITION = (
    "Recovered after the fault = time from the fault's removal (the first fault/rollback record after the fault "
    "took effect; without one, the recovery phase start) until the service is normal again: the start of the "
    f"first run of {RECOVERED_HOLD_S} consecutive 1-second buckets of load completions (start + latency), aligned "
    "on the removal, each with >= 1 request, a success ratio >= the RTO success ratio and a nearest-rank P99 "
    "<= the p99_ms target. Precision 1 s. Never normal before the load ended: unbounded (inf) if the load ran at "
    f"least {RECOVERED_HOLD_S} s past the removal, else inconclusive. Judged only when targets.recovered_s is set."
)


@dataclass(frozen=True)
class Recovered:
    """When the service was normal again after the fault's removal. seconds: None unknown, inf never."""

    seconds: float | None
    removed_t: float | None
    normal_t: float | None = None
    reason: str | None = None
    buckets: int = 0

    def detail(self) -> dict[str, Any]:
        return {"removed_t": self.removed_t, "normal_t": self.normal_t, "hold_s": RECOVERED_HOLD_S,
                "buckets_judged": self.buckets}


def removal_time(records: Sequence[Record], fault_t: float | None, phases: dict[str, Window]) -> float | None:
    """When the fault was removed: the first fault/rollback after it took effect, else the recovery phase start."""
    start = fault_t if fault_t is not None else -math.inf
    rollbacks = [r.t for r in records if r.source == FAULT and r.op == "rollback" and r.t >= start]
    if rollbacks:
        return min(rollbacks)
    recovery = phases.get("recovery")
    return recovery[0] if recovery else None


def recovered_after(records: Sequence[Record], *, removed_t: float | None, p99_ms: float,
                    success_ratio: float) -> Recovered:
    """Seconds from the removal until RECOVERED_HOLD_S normal seconds in a row began (see the module docstring)."""
    if removed_t is None:
        return Recovered(None, None, reason="the history has no fault removal (no fault/rollback, no recovery phase)")
    done = [(completion_time(r), r) for r in records if is_load_request(r)]
    after = [(moment, r) for moment, r in done if moment >= removed_t]
    if not after:
        return Recovered(None, removed_t, reason="no load request completed after the fault was removed")
    judged = math.floor(max(moment for moment, _ in after) - removed_t)
    buckets: list[list[Record]] = [[] for _ in range(judged)]
    for moment, record in after:
        index = int(moment - removed_t)
        if index < judged:
            buckets[index].append(record)

    def normal(bucket: list[Record]) -> bool:
        if not bucket or sum(r.status == OK for r in bucket) / len(bucket) < success_ratio:
            return False
        p99 = percentile(sorted(r.latency or 0.0 for r in bucket), 99)
        return p99 is not None and p99 * 1000.0 <= p99_ms

    run = 0
    for index, bucket in enumerate(buckets):
        run = run + 1 if normal(bucket) else 0
        if run == RECOVERED_HOLD_S:
            start = index - RECOVERED_HOLD_S + 1
            return Recovered(float(start), removed_t, normal_t=removed_t + start, buckets=judged)
    if judged >= RECOVERED_HOLD_S:
        return Recovered(math.inf, removed_t, buckets=judged,
                         reason=f"never {RECOVERED_HOLD_S} normal seconds in a row in the {judged} s of load after "
                                f"the fault was removed")
    return Recovered(None, removed_t, buckets=judged,
                     reason=f"only {judged} whole second(s) of load after the fault was removed; "
                            f"{RECOVERED_HOLD_S} are needed")


def longest_request(records: Sequence[Record], window: Window | None,
                    phases: dict[str, Window]) -> Measurement:
    """`longest_request_ms` over `window` (the whole run), with the request that set it; reported only."""
    start, end = window if window is not None else (-math.inf, math.inf)
    timed = [r for r in records if is_load_request(r) and r.latency is not None and start <= r.t < end]
    if not timed:
        return judge("longest_request_ms", None, "ms", None, phase="overall", definition=LONGEST_DEFINITION,
                     reason="no load requests with a latency in the run")
    worst = max(timed, key=lambda r: r.latency or 0.0)
    phase = next((name for name, (a, b) in phases.items() if a <= worst.t < b), None)
    detail = {"op": worst.op, "t": worst.t, "status": worst.status, "phase": phase, "requests": len(timed)}
    return judge("longest_request_ms", round((worst.latency or 0.0) * 1000.0, 3), "ms", None, phase="overall",
                 definition=LONGEST_DEFINITION, detail=detail)


def measurements(records: Sequence[Record], *, overall: Window | None, phases: dict[str, Window],
                 fault_t: float | None, p99_ms: float, success_ratio: float,
                 recovered_target_s: float | None) -> list[Measurement]:
    """`longest_request_ms` (reported) and `recovered_after_fault_s` (judged when a target is given)."""
    result = recovered_after(records, removed_t=removal_time(records, fault_t, phases), p99_ms=p99_ms,
                             success_ratio=success_ratio)
    return [longest_request(records, overall, phases),
            judge("recovered_after_fault_s", result.seconds, "s", recovered_target_s, "<=", phase="recovery",
                  definition=RECOVERED_DEFINITION, detail={**result.detail(), "p99_ms": p99_ms,
                                                           "success_ratio": success_ratio}, reason=result.reason)]
