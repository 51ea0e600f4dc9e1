"""Latency percentiles of load requests (P50, P95, P99), exact.

We sort the latencies and take the nearest rank rather than use an HDR
histogram: a run holds at most a few million requests, which sorts in about a
second, and the result is exact instead of "within 0.1%" (HDR's 3 significant
digits are coarser than 1 ms above one second).

Failed and timed-out requests count, with the latency they had (a timeout's
latency is its timeout), so a service cannot improve its P99 by failing fast
or by hanging until the client gives up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..history import Record
from .measurement import Measurement, judge
from .windows import PHASES, Window, is_load_request

DEFINITION = (
    "P99 (and P50, P95) = the nearest-rank percentile of the latencies of the load generator's requests "
    "whose start time falls in the window: the smallest latency L such that at least 99% of the requests "
    "took <= L. Computed exactly from the sorted latencies, reported in ms. Every request with a latency "
    "counts, failed and timed-out ones included (a timeout's latency is the client timeout), so failing "
    "fast cannot improve it. A window without requests is inconclusive. The judged p99_ms covers the whole "
    "run except the fault phase (the fault is judged by RTO and availability); per-phase figures are reported."
)  # unchanged: stored runs are re-checked against it. p99_ms_fault is judged with targets.p99_fault_ms (> 0).


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile `p` (0 < p <= 100) of already sorted values; None when empty."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile p must be in (0, 100], got {p}")
    if not sorted_values:
        return None
    rank = math.ceil(p / 100 * len(sorted_values))  # 1-based
    return sorted_values[max(rank, 1) - 1]


def to_ms(seconds: float | None) -> float | None:
    """Seconds to milliseconds, kept to the microsecond."""
    return None if seconds is None else round(seconds * 1000.0, 3)


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles of one window, in ms (None when the window had no requests)."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    def to_json(self) -> dict[str, float | int | None]:
        return {"count": self.count, "p50_ms": self.p50_ms, "p95_ms": self.p95_ms,
                "p99_ms": self.p99_ms, "max_ms": self.max_ms}


def summarize(latencies_s: Iterable[float]) -> LatencySummary:
    """P50/P95/P99/max in ms of latencies given in seconds."""
    values = sorted(latencies_s)
    return LatencySummary(
        count=len(values),
        p50_ms=to_ms(percentile(values, 50)),
        p95_ms=to_ms(percentile(values, 95)),
        p99_ms=to_ms(percentile(values, 99)),
        max_ms=to_ms(values[-1]) if values else None,
    )


def request_latencies(records: Iterable[Record], windows: Sequence[Window] | None = None) -> list[float]:
    """Latencies (s) of load requests started inside any of `windows` (all requests when None)."""
    requests = [r for r in records if r.latency is not None and is_load_request(r)]
    if windows is None:
        return [r.latency for r in requests if r.latency is not None]
    return [r.latency for start, end in windows for r in requests
            if r.latency is not None and start <= r.t < end]


def latency_summary(records: Iterable[Record], windows: Sequence[Window] | None = None) -> LatencySummary:
    """Latency percentiles of the load requests started inside any of `windows`."""
    return summarize(request_latencies(records, windows))


def judged_windows(overall: Window, phases: dict[str, Window]) -> list[Window]:
    """The whole run minus the fault phase: where the P99 target applies."""
    fault = phases.get("fault")
    if fault is None:
        return [overall]
    start, end = overall
    pieces = [(start, min(end, fault[0])), (max(start, fault[1]), end)]
    return [(a, b) for a, b in pieces if b > a]


def measurements(records: Sequence[Record], *, overall: Window | None, phases: dict[str, Window],
                 target_ms: float | None, fault_target_ms: float | None = None) -> list[Measurement]:
    """`p99_ms` judged outside the fault phase; `p99_ms_<phase>` per phase, reported only, except
    `p99_ms_fault` when the experiment sets a degraded-mode objective (`fault_target_ms`)."""
    records = [r for r in records if r.latency is not None and is_load_request(r)]  # filter once, not per window
    windows = judged_windows(overall, phases) if overall is not None else []
    summary = latency_summary(records, windows)
    reason = None if summary.count else "no load requests with a latency outside the fault phase"
    result = [judge("p99_ms", summary.p99_ms, "ms", target_ms, "<=", phase="overall", definition=DEFINITION,
                    detail={**summary.to_json(), "windows": [list(w) for w in windows], "excludes": "fault phase"}, reason=reason)]
    for phase in PHASES:
        if phase not in phases:
            continue
        summary = latency_summary(records, [phases[phase]])
        judged = fault_target_ms if phase == "fault" and fault_target_ms else None
        result.append(judge(f"p99_ms_{phase}", summary.p99_ms, "ms", judged, "<=", phase=phase,
                            definition=DEFINITION, detail={**summary.to_json(), "window": list(phases[phase])},
                            reason=None if summary.count else f"no load requests in the {phase} phase"))
    return result
