"""Per-second series of load requests, for plots and tables in reports."""

from __future__ import annotations

import math
from typing import Any, Iterable

from ..history import FAIL, OK, Record
from .latency import percentile, to_ms
from .windows import is_load_request


def per_second_series(records: Iterable[Record], start: float, end: float) -> list[dict[str, Any]]:
    """One row per second from `start` to `end`, requests placed by their start time.

    Row keys: t (the second's start), requests, ok, fail, unknown, availability
    (None for a second without requests), p50_ms, p99_ms (None without latencies).
    The last second may be partial when end - start is not a whole number.
    """
    seconds = max(0, math.ceil(end - start))
    counts = [[0, 0, 0] for _ in range(seconds)]  # ok, fail, unknown
    latencies: list[list[float]] = [[] for _ in range(seconds)]
    for record in records:
        if not is_load_request(record) or not start <= record.t < end:
            continue
        second = int(record.t - start)
        if second >= seconds:  # float rounding at the very end
            continue
        column = 0 if record.status == OK else 1 if record.status == FAIL else 2
        counts[second][column] += 1
        if record.latency is not None:
            latencies[second].append(record.latency)
    rows = []
    for second in range(seconds):
        ok, fail, unknown = counts[second]
        total = ok + fail + unknown
        values = sorted(latencies[second])
        rows.append({
            "t": start + second,
            "requests": total,
            "ok": ok,
            "fail": fail,
            "unknown": unknown,
            "availability": ok / total if total else None,
            "p50_ms": to_ms(percentile(values, 50)),
            "p99_ms": to_ms(percentile(values, 99)),
        })
    return rows
