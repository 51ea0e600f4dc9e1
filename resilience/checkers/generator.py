"""The load generator's own health, from its rows: so a slow generator is never taken for a slow platform.

The Locust processes write, besides one row per request:
- `load/generator` every 2 s: {"cpu_pct", "lag_ms", "users", "target_users",
  "saturated", per-worker figures with workers};
- `load/users` when a stage starts: {"users", "spawn_rate"};
- `load/worker-lost`: a worker that stopped sending heartbeats or rows;
- `load/summary` (written by the harness at the end): rows recorded vs.
  requests the workers counted vs. Locust's own count;
- `load/clock`: how the generator's clocks were reconciled with the harness's.

From these, pure functions say whether the latency figures can be trusted
(`untrusted_latency`), and what makes the run deviate (`deviations`): a lost
worker, dropped rows, or a generator that fell behind its target user count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..history import INFO, LOAD, Record
from .windows import overall_window, phase_windows
from ..load.health import REPORT_INTERVAL_S, SATURATED_CPU_PCT, SATURATED_LAG_MS, saturated

SPAWN_GRACE_S = 5.0  # beyond the ramp time the stage's spawn rate needs, before "behind" is reported
SPAWN_GRACE_SHARE = 0.25  # ... or this share of the ramp time, whichever is longer
BEHIND_SHARE = 0.98  # holding fewer than this share of the target users is being behind


@dataclass(frozen=True)
class SpawnBehind:
    """The generator held fewer users than its stage asked for, after the ramp should have ended."""

    t: float
    users: int
    target_users: int
    due_t: float  # when the stage's spawn rate should have reached the target

    def describe(self) -> str:
        return (f"the load generator fell behind its target: {self.users} of {self.target_users} users at "
                f"t={self.t:.1f} s, although the stage's spawn rate should have reached them by t={self.due_t:.1f} s")


@dataclass(frozen=True)
class GeneratorReport:
    """What the generator's own rows say about it (result.json's `generator`)."""

    samples: int = 0
    max_cpu_pct: float | None = None
    max_lag_ms: float | None = None
    saturated_at: tuple[float, ...] = ()  # times of the samples that crossed a threshold
    saturated_measured: int = 0  # of those, the samples inside the measured phases (not the ramp-up)
    workers_lost: tuple[dict[str, Any], ...] = ()
    behind: tuple[SpawnBehind, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    clock: dict[str, Any] = field(default_factory=dict)

    @property
    def saturated(self) -> bool:
        return bool(self.saturated_at)

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "max_cpu_pct": self.max_cpu_pct, "max_lag_ms": self.max_lag_ms,
                "saturated": self.saturated, "saturated_samples": len(self.saturated_at),
                "saturated_in_measured_phases": self.saturated_measured,
                "thresholds": {"cpu_pct": SATURATED_CPU_PCT, "lag_ms": SATURATED_LAG_MS},
                "workers_lost": list(self.workers_lost),
                "spawn_behind": [{"t": b.t, "users": b.users, "target_users": b.target_users, "due_t": b.due_t}
                                 for b in self.behind],
                "rows": self.summary, "clock": self.clock}


def _info(records: Sequence[Record], op: str) -> list[Record]:
    return [r for r in records if r.source == LOAD and r.op == op and r.status == INFO and r.detail is not None]


def generator_report(records: Sequence[Record]) -> GeneratorReport:
    samples = _info(records, "generator")
    cpu = [float(r.detail["cpu_pct"]) for r in samples if r.detail and r.detail.get("cpu_pct") is not None]
    lag = [float(r.detail["lag_ms"]) for r in samples if r.detail and r.detail.get("lag_ms") is not None]
    hot = tuple(r.t for r in samples if r.detail and (r.detail.get("saturated") or saturated(r.detail)))
    lost = tuple({"t": r.t, **(r.detail or {})} for r in _info(records, "worker-lost"))
    summaries = _info(records, "summary")
    clocks = _info(records, "clock")
    overall = overall_window(records, phase_windows(records))
    measured = len(_overlapping(hot, [overall])) if overall else len(hot)
    return GeneratorReport(samples=len(samples), max_cpu_pct=max(cpu) if cpu else None,
                           max_lag_ms=max(lag) if lag else None, saturated_at=hot, saturated_measured=measured,
                           workers_lost=lost,
                           behind=tuple(spawn_behind(records)),
                           summary=dict(summaries[-1].detail or {}) if summaries else {},
                           clock=dict(clocks[-1].detail or {}) if clocks else {})


def spawn_behind(records: Sequence[Record]) -> list[SpawnBehind]:
    """The first sample of each stage that held too few users once the stage's ramp time (plus grace) was over."""
    stages = _info(records, "users")
    samples = _info(records, "generator")
    found: list[SpawnBehind] = []
    held = 0  # users at the start of the stage, as last sampled
    for i, stage in enumerate(stages):
        detail = stage.detail or {}
        target, rate = int(detail.get("users", 0)), float(detail.get("spawn_rate") or 0.0)
        end = stages[i + 1].t if i + 1 < len(stages) else math.inf
        before = [s for s in samples if s.t <= stage.t]
        if before and before[-1].detail:
            held = int(before[-1].detail.get("users", held))
        if rate <= 0 or target <= held:
            continue  # a step down, or a stage without a rate (older rows): nothing to fall behind on
        ramp_s = (target - held) / rate
        due = stage.t + ramp_s + max(SPAWN_GRACE_S, SPAWN_GRACE_SHARE * ramp_s)
        for sample in samples:
            users = int((sample.detail or {}).get("users", 0))
            if due <= sample.t < end and users < BEHIND_SHARE * target:
                found.append(SpawnBehind(sample.t, users, target, round(due, 3)))
                break
    return found


def saturated_in(report: GeneratorReport, windows: Sequence[tuple[float, float]]) -> list[float]:
    """Times of saturated samples whose 2-second interval overlaps one of `windows`."""
    return _overlapping(report.saturated_at, windows)


def _overlapping(sample_times: Sequence[float], windows: Sequence[tuple[float, float]]) -> list[float]:
    """The samples (each covering the REPORT_INTERVAL_S before its time) that overlap one of `windows`."""
    return [t for t in sample_times if any(t - REPORT_INTERVAL_S < end and t >= start for start, end in windows)]


def untrusted_latency(report: GeneratorReport, windows: Sequence[tuple[float, float]] | None = None) -> str | None:
    """Why latency figures over `windows` (default: the whole run) measure the generator rather than the
    platform; None when they can be trusted. A ramp outside the windows (the ramp-up) does not count."""
    hot = list(report.saturated_at) if windows is None else saturated_in(report, windows)
    if not hot:
        return None
    return (f"the load generator was saturated in {len(hot)} of its {report.samples} health samples in the "
            f"measured window (worst CPU {report.max_cpu_pct}% of a core, worst event-loop lag {report.max_lag_ms} "
            f"ms; thresholds {SATURATED_CPU_PCT:.0f}% / {SATURATED_LAG_MS:.0f} ms), first at t={hot[0]:.1f} s: "
            f"latencies include its own queueing. Add workers (--workers) or lower the users, and run again")


def deviations(report: GeneratorReport) -> list[str]:
    """What makes a run deviate on the generator's side."""
    out = [f"load worker {w.get('worker')} was lost at t={float(w['t']):.1f} s ({w.get('why')}"
           + (f"; its last rows came at t={float(w['last_rows_t']):.1f} s" if w.get("last_rows_t") is not None else "")
           + f"); its {w.get('users')} users were spread over the {w.get('workers_live')} remaining worker(s)"
           for w in report.workers_lost]
    dropped = int(report.summary.get("dropped") or 0)
    if dropped:
        out.append(f"{dropped} request rows recorded by the load workers never reached the history "
                   f"({report.summary.get('recorded')} recorded of {report.summary.get('reported')} reported)")
    out += [b.describe() for b in report.behind]
    return out
