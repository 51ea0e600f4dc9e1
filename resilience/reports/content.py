"""What every run report says, as plain rows: HTML, PDF and Markdown only lay it out.

Keeping the content in one place means the auditor's PDF and the engineer's
HTML can never disagree about a number.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..checkers.measurement import status_label
from ..history import CHECK, CONTROLLER, Record
from .run import RunView, detail_text, fmt_number, fmt_target, fmt_utc, measurement_label

EVENT_ROW_LIMIT = 400


@dataclass(frozen=True)
class MeasurementRow:
    name: str
    target: str
    measured: str
    unit: str
    status: str
    definition: str
    reason: str


def measurement_rows(run: RunView) -> list[MeasurementRow]:
    rows = []
    for m in run.measurements:
        reason = str(m.detail.get("reason", "")) if m.detail else ""
        rows.append(MeasurementRow(measurement_label(m), fmt_target(m), fmt_number(m.value, m.unit), m.unit,
                                   status_label(m.status, m.target), m.definition or "(no definition recorded)",
                                   reason))
    return rows


@dataclass(frozen=True)
class EventRow:
    utc: str
    t: str
    source: str
    op: str
    status: str
    key: str
    detail: str


def event_rows(run: RunView, limit: int = EVENT_ROW_LIMIT) -> tuple[list[EventRow], list[str]]:
    """The event log for people, and notes on what was summarised rather than listed.

    Readbacks (one per acknowledged order) are counted, not listed, and replica
    readings are listed only when they change; the full record is in history.jsonl.
    """
    rows: list[EventRow] = []
    notes: list[str] = []
    readbacks: Counter[str] = Counter()
    unacked: Counter[str] = Counter()
    last_replicas: tuple[Any, Any] | None = None
    skipped_replicas = 0
    events = run.events()
    for r in events:
        if r.source == CHECK and r.op == "readback":
            readbacks[r.status] += 1
            continue
        if r.source == CHECK and r.op == "readback-sent":  # orders sent without an acknowledgement, looked up
            unacked[r.status] += 1
            continue
        if r.source == CONTROLLER and r.op == "replicas":
            reading = ((r.detail or {}).get("ready"), (r.detail or {}).get("desired"))
            if reading == last_replicas:
                skipped_replicas += 1
                continue
            last_replicas = reading
        rows.append(_event_row(run, r))
    if readbacks:
        notes.append("read-back checks of acknowledged orders: " +
                     ", ".join(f"{count} {status}" for status, count in sorted(readbacks.items())) +
                     " (ok = found, fail = missing, unknown = could not read); each is in history.jsonl")
    if unacked:
        notes.append("look-ups of orders sent without an acknowledgement: " +
                     ", ".join(f"{count} {status}" for status, count in sorted(unacked.items())) +
                     " (ok = present although never acknowledged, fail = absent); each is in history.jsonl")
    if skipped_replicas:
        notes.append(f"{skipped_replicas} replica readings equal to the previous one are not listed")
    if len(rows) > limit:
        notes.append(f"only the first {limit} of {len(rows)} events are listed; all are in events.jsonl and "
                     f"history.jsonl")
        rows = rows[:limit]
    return rows, notes


def _event_row(run: RunView, r: Record) -> EventRow:
    return EventRow(fmt_utc(run.wall(r.t)), f"{r.t:.3f}", r.source, r.op, r.status, r.key or "",
                    detail_text(r.detail))


def summary_counts(run: RunView) -> dict[str, int]:
    """Counts by shown label: a reported-only figure is counted as "reported", not as a met target."""
    statuses = Counter(status_label(m.status, m.target) for m in run.measurements)
    return {"met": statuses.get("met", 0), "breached": statuses.get("breached", 0),
            "inconclusive": statuses.get("inconclusive", 0), "reported": statuses.get("reported", 0),
            "total": len(run.measurements)}


def metadata_rows(run: RunView) -> list[tuple[str, str]]:
    """Run metadata as (label, value): target first, because every report must say where it ran."""
    r = run.result
    fault = run.fault
    load = r.load
    harness = r.harness
    rows = [
        ("Target", run.target),
        ("Target detail", detail_text(r.target_detail, 400) or "—"),
        ("Experiment", f"{run.experiment} — {r.title}".rstrip(" —")),
        ("Run directory", run.run_dir.name),
        ("Started (UTC)", r.started_at or "—"),
        ("Ended (UTC)", r.ended_at or "—"),
        ("Duration", fmt_number(r.duration_s, "s")),
    ]
    for name, span in run.phases.items():
        rows.append((f"Phase {name}", f"t = {span[0]:.1f} s … {span[1]:.1f} s ({span[1] - span[0]:.1f} s)"))
    if fault:
        args = json.dumps(fault.get("arguments") or {}, default=str)
        rows.append(("Fault", f"{fault.get('capability', '—')} {args}"))
        rows.append(("Fault injected at", _t(fault.get("injected_t"), run)))
        rows.append(("Fault rolled back at", _t(fault.get("rolled_back_t"), run)))
    else:
        rows.append(("Fault", "not injected"))
    if load:
        rows.append(("Load", f"{load.get('users', '—')} users, class {load.get('user_class', '—')}, "
                             f"stages {json.dumps(load.get('stages'), default=str)}"))
    if r.generator:
        rows.append(("Load generator", generator_text(r.generator, load.get("workers") if load else None)))
    rows.append(("Harness", f"resilience {harness.get('version', '—')} (git {harness.get('git_commit') or '—'})"))
    tools = r.tool_versions
    if tools:
        rows.append(("Tool versions", ", ".join(f"{k} {v}" for k, v in sorted(tools.items()))))
    return rows


def generator_text(generator: dict[str, Any], workers: Any) -> str:
    """The load generator's health in one line: so a slow generator is not read as a slow platform."""
    parts = [f"{workers} Locust worker process(es)" if workers else "Locust"]
    if generator.get("samples"):
        measured = generator.get("saturated_in_measured_phases")
        if not generator.get("saturated"):
            verdict = "not saturated"
        elif measured == 0:  # only in the ramp-up, which no figure covers
            verdict = f"saturated in {generator.get('saturated_samples')} sample(s) of the ramp-up only"
        else:
            verdict = "SATURATED in the measured phases: latency figures there not trusted"
        parts.append(f"CPU max {fmt_number(generator.get('max_cpu_pct'), '%')} of a core, event-loop lag max "
                     f"{fmt_number(generator.get('max_lag_ms'), 'ms')} ({verdict})")
    rows = generator.get("rows") or {}
    if rows.get("recorded") is not None:
        parts.append(f"{rows['recorded']} requests recorded, {rows.get('reported', '—')} counted by the workers, "
                     f"{rows.get('dropped', '—')} dropped")
    for lost in generator.get("workers_lost") or []:
        parts.append(f"worker {lost.get('worker')} lost at t = {float(lost.get('t', 0.0)):.1f} s")
    for behind in generator.get("spawn_behind") or []:
        parts.append(f"behind its target: {behind.get('users')} of {behind.get('target_users')} users at "
                     f"t = {float(behind.get('t', 0.0)):.1f} s")
    clock = generator.get("clock") or {}
    if clock:
        parts.append(f"clocks: {clock.get('method')}" + (f", offset {clock.get('offset_s')} s ± "
                                                         f"{clock.get('uncertainty_s')} s"
                                                         if clock.get("uncertainty_s") else ""))
    return "; ".join(parts)


def _t(value: Any, run: RunView) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    return f"t = {value:.3f} s ({fmt_utc(run.wall(float(value)))})"


def settings_text(run: RunView) -> str:
    return json.dumps(run.settings, indent=2, sort_keys=True, default=str) if run.settings else "(no settings.json)"
