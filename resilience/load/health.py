"""The load generator's own health: how busy its CPU is and how late its event loop runs.

A Locust process is one Python thread running gevent. When it saturates, its
requests wait for the loop before they are sent and after they are answered,
so the latencies it records grow although the platform did nothing wrong.
Two figures show it: the process's CPU share (CPU seconds per wall second,
100% = one core, the most one Python thread can use) and the loop lag (how
much later than asked a 0.1 s sleep wakes up). `SATURATED_*` are where we stop
trusting latency figures.
"""

from __future__ import annotations

import time
from typing import Any, Callable

SAMPLE_INTERVAL_S = 0.1  # the lag probe's sleep
REPORT_INTERVAL_S = 2.0  # how often a `generator` row is written
SATURATED_CPU_PCT = 90.0  # Locust warns at the same share
SATURATED_LAG_MS = 50.0  # a request may be stamped up to this much late


class GeneratorHealth:
    """CPU share and the worst loop lag since the last `take()`; `probe()` runs in a greenlet."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.process_time):
        self.clock = clock
        self.cpu_clock = cpu_clock
        self._since = (clock(), cpu_clock())
        self._worst_lag_s = 0.0

    def lag(self, seconds: float) -> None:
        """One lag sample: the probe woke `seconds` later than it asked."""
        self._worst_lag_s = max(self._worst_lag_s, seconds)

    def take(self) -> dict[str, float]:
        """{"cpu_pct", "lag_ms"} since the previous take, and start a new interval."""
        now, cpu = self.clock(), self.cpu_clock()
        wall = max(now - self._since[0], 1e-9)
        figures = {"cpu_pct": round(100.0 * (cpu - self._since[1]) / wall, 1),
                   "lag_ms": round(1000.0 * self._worst_lag_s, 1)}
        self._since, self._worst_lag_s = (now, cpu), 0.0
        return figures

    def probe(self) -> None:
        """Forever: sleep SAMPLE_INTERVAL_S on the gevent loop and record how late it woke (run as a greenlet)."""
        import gevent

        while True:
            start = self.clock()
            gevent.sleep(SAMPLE_INTERVAL_S)
            self.lag(max(0.0, self.clock() - start - SAMPLE_INTERVAL_S))


def saturated(figures: dict[str, Any]) -> bool:
    """Whether one health sample says the generator, not the platform, set the pace."""
    return (float(figures.get("cpu_pct") or 0.0) >= SATURATED_CPU_PCT
            or float(figures.get("lag_ms") or 0.0) >= SATURATED_LAG_MS)
