"""Time windows of a history: phases, the fault time, and which records are load requests.

Every checker works on half-open windows `[start, end)` of history time and
places a load request in a window by its start time `t`, except the RTO
checker, which looks at when an outcome was observed (`t + latency`).
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ..history import FAIL, FAULT, LOAD, OK, PHASE, UNKNOWN, Record

PHASES = ("steady", "fault", "recovery")  # the phases measurements are reported for
END_PHASE = "end"  # marks the end of the last phase; not a window of its own
ABORT_PHASE = "abort"  # the run was stopped early (stop condition, Ctrl-C, error, a killed harness)
REQUEST_STATUSES = (OK, FAIL, UNKNOWN)
WRITE_OP = "POST /orders"  # the write path: an ok one with detail.order_id is an acknowledged write

Window = tuple[float, float]


def is_load_request(record: Record) -> bool:
    """A request made by the load generator (not a `load`/`users` info record)."""
    return record.source == LOAD and record.status in REQUEST_STATUSES


def load_requests(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if is_load_request(r)]


def completion_time(record: Record) -> float:
    """When the request's outcome was known: its start plus its latency (a timeout's latency is the timeout)."""
    return record.t + (record.latency or 0.0)


def history_end(records: Iterable[Record]) -> float | None:
    """The last moment anything in the history happened (request completions included)."""
    end: float | None = None
    for record in records:
        moment = completion_time(record)
        if end is None or moment > end:
            end = moment
    return end


def phase_windows(records: Sequence[Record]) -> dict[str, Window]:
    """Each phase's `[start, end)`: a phase record starts its phase and ends the previous one.

    The `end` phase record closes the last phase; without one the last phase
    runs to the end of the history. If a phase name occurs twice, its first
    occurrence is the one kept (experiments run each phase once).
    """
    marks = sorted((r for r in records if r.source == PHASE), key=lambda r: r.t)
    end = history_end(records)
    windows: dict[str, Window] = {}
    for index, mark in enumerate(marks):
        if mark.op == END_PHASE or mark.op in windows:
            continue
        stop = marks[index + 1].t if index + 1 < len(marks) else end
        windows[mark.op] = (mark.t, max(mark.t, stop if stop is not None else mark.t))
    return windows


def overall_window(records: Sequence[Record], phases: dict[str, Window] | None = None) -> Window | None:
    """From the first phase's start to the last phase's end; the whole history when there are no phases.

    Requests made before the first phase (warm-up) are not part of the run's figures.
    """
    phases = phase_windows(records) if phases is None else phases
    if phases:
        return min(start for start, _ in phases.values()), max(end for _, end in phases.values())
    starts = [r.t for r in records]
    end = history_end(records)
    if not starts or end is None:
        return None
    return min(starts), end + 1e-9  # + epsilon so the last record falls inside the half-open window


EFFECT_OP = "effect"  # fault op: the fault took effect (ok, at that moment) or was not seen to (fail)
CUT_SHORT_OP = "cut-short"  # fault op: the fault activity ended before its hold was over


def fault_time(records: Iterable[Record]) -> float | None:
    """When the fault took effect: the first ok `fault`/`effect` record (a history with any: None if none is ok);
    in older histories, without effect records, the first successful `fault`/`inject`, else the fault phase start.

    An injection that failed, or whose effect was never seen, changed nothing known to recover from: measuring
    RTO from it would report a recovery from a fault that never happened.
    """
    records = list(records)
    effects = [r for r in records if r.source == FAULT and r.op == EFFECT_OP]
    if effects:
        return min((r.t for r in effects if r.status == OK), default=None)
    injections = [r.t for r in records if r.source == FAULT and r.op == "inject" and r.status == OK]
    if injections:
        return min(injections)
    fault_phase = phase_windows(records).get("fault")
    return fault_phase[0] if fault_phase else None


def cut_short(records: Iterable[Record]) -> bool:
    """Whether the run's observation was cut short: the history has a `phase`/`abort` record.

    The harness writes one whenever a run ends early (the stop condition, Ctrl-C,
    a harness error) and `resilience rollback` writes one when it seals a run whose
    harness was killed, so a re-check finds the same answer in the history alone.
    """
    return any(r.source == PHASE and r.op == ABORT_PHASE for r in records)


def loss_time(records: Iterable[Record]) -> float | None:
    """When data could be lost: the last `fault`/`inject` (the failure itself), else the fault phase start."""
    records = list(records)
    injections = [r.t for r in records if r.source == FAULT and r.op == "inject" and r.status == "ok"]
    return max(injections) if injections else fault_time(records)


def in_window(records: Iterable[Record], window: Window) -> list[Record]:
    start, end = window
    return [r for r in records if start <= r.t < end]


def unjudgeable(records: Iterable[Record]) -> str | None:
    """Why the fault cannot be judged: an effect not seen by its deadline, or a fault activity cut short."""
    for r in records:
        if r.source == FAULT and r.status == FAIL and r.op in (EFFECT_OP, CUT_SHORT_OP):
            return str((r.detail or {}).get("reason") or f"fault/{r.op} failed")
    return None


def recovery_not_before(records: Iterable[Record]) -> float | None:
    """No recovery before this: the last moment the signal of a fault that acts after its call, timed from its
    request for want of a start time from the platform (an ElastiCache TestFailover), was seen, if any."""
    seen = [float((r.detail or {}).get("seen_t", r.t)) for r in records
            if r.source == FAULT and r.op == EFFECT_OP and r.status == OK and (r.detail or {}).get("recovers_after")]
    return max(seen, default=None)


def from_effect(phases: dict[str, Window], effect_t: float | None) -> dict[str, Window]:
    """The judged fault and recovery windows start no earlier than the fault took effect."""
    if effect_t is None:
        return phases
    moved = dict(phases)
    for name in ("fault", "recovery"):
        if name in moved:
            start, end = moved[name]
            moved[name] = (max(start, effect_t), max(end, start, effect_t))
    return moved
