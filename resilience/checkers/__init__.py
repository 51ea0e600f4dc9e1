"""Checkers: pure measurement functions over a run's history.

`compute(records, targets=..., measures=[...])` is the one entry point the
harness, `resilience check` and the reports use. Every function here is a pure
function of (records, parameters): no I/O, no clock, so a stored history can be
re-checked offline and gives the same answer.

Each measurement carries its `definition` text, which every report prints.
"""

from __future__ import annotations

import dataclasses

from typing import Iterable, Sequence

from ..config import Targets
from ..errors import UserError
from ..history import RECOVERY, Record
from . import (autoscaling, availability, backend_calls, degradation, detection, durability, failover_phases,
               latency, primaries, recovery, restore)
from .autoscaling import AutoscalingResult, autoscaling_latency
from .availability import RequestCounts, count_requests
from .durability import DurabilityResult, data_loss
from .generator import GeneratorReport, generator_report, untrusted_latency
from .latency import LatencySummary, latency_summary, percentile
from .measurement import Measurement, judge, verdict
from .recovery import RecoveryResult, recovery_time
from .windows import (EFFECT_OP, cut_short, fault_time, from_effect, load_requests, loss_time, overall_window,
                      phase_windows, recovery_not_before, unjudgeable)

MEASURES = ("availability", "p99", "rto", "rpo", "autoscaling", "restore", "degradation", "primaries")

__all__ = [
    "MEASURES", "AutoscalingResult", "DurabilityResult", "LatencySummary", "Measurement", "RecoveryResult",
    "RequestCounts", "autoscaling_latency", "compute", "count_requests", "data_loss", "fault_time", "judge",
    "latency_summary", "overall_window", "percentile", "phase_windows", "recovery_time",
    "verdict",
]


def compute(records: Iterable[Record], *, fault_t: float | None = None, targets: Targets,
            measures: Sequence[str], step_t: float | None = None) -> list[Measurement]:
    """Measure what the experiment asks for and judge it against `targets`.

    `measures` is a subset of MEASURES. `fault_t` overrides the fault time found
    in the history (first fault/inject record, else the fault phase start);
    `step_t` overrides the load step found from load/users records.
    Measurements come back in a fixed order: availability, p99, rto, rpo, autoscaling, restore, degradation, primaries.
    `restore` (recovery from backup) measures its own rpo_s and lost_writes against the recovery
    target, so with it the failover `rpo` is not measured a second time; `rpo` on a history with
    `recovery` records (a restore was part of the run) is measured as `restore`: a point-in-time
    restore gives orders up by design, which the failover rule would count as lost.
    """
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise UserError(f"unknown measure(s) {', '.join(map(repr, unknown))} requested by the experiment; "
                        f"the checkers measure {', '.join(MEASURES)}. Fix the experiment's list of measures.")
    ordered = sorted(records, key=lambda r: r.t)
    requests = load_requests(ordered)
    timed_by_effect = any(r.source == "fault" and r.op == EFFECT_OP for r in ordered)
    not_judged = unjudgeable(ordered)
    fault_t_given = fault_t
    if fault_t is None:
        fault_t = fault_time(ordered)
    phases = phase_windows(ordered)
    overall = overall_window(ordered, phases)
    if timed_by_effect:
        phases = from_effect(phases, fault_t)

    generator = generator_report(ordered)
    result: list[Measurement] = []
    if "availability" in measures:
        result += availability.measurements(requests, overall=overall, phases=phases, target=targets.availability,
                                            fault_target=targets.availability_fault or None)
    if "p99" in measures:
        latencies = latency.measurements(requests, overall=overall, phases=phases, target_ms=targets.p99_ms,
                                         fault_target_ms=targets.p99_fault_ms or None)
        result += [untrusted_if_saturated(m, generator) for m in latencies]
    if "rto" in measures:
        rto = recovery_time(requests, fault_t=fault_t, hold_s=targets.rto_hold_s,
                            success_ratio=targets.rto_success_ratio, cut_short=cut_short(ordered),
                            not_before=recovery_not_before(ordered))
        result.append(recovery.measurement(rto, target_s=targets.rto_s, from_effect=timed_by_effect))
    if "rpo" in measures and any(r.source == RECOVERY for r in ordered):
        measures = [m for m in measures if m != "rpo"] + ([] if "restore" in measures else ["restore"])
    if "rpo" in measures and "restore" not in measures:
        loss = data_loss(ordered, fault_t=loss_time(ordered) if fault_t_given is None else fault_t_given)
        result += durability.measurements(loss, rpo_target_s=targets.rpo_s,
                                          lost_writes_target=targets.lost_writes)
    if "autoscaling" in measures:
        scaling = autoscaling_latency(ordered, step_t=step_t)
        result += autoscaling.measurements(scaling, target_s=targets.autoscale_s)
    if "restore" in measures:
        result += restore.measurements(ordered, rpo_target_s=targets.rpo_s, lost_writes_target=targets.lost_writes,
                                       disaster_t=fault_t_given)
    if "degradation" in measures:
        gray = degradation.measurements(ordered, overall=overall, phases=phases, fault_t=fault_t, p99_ms=targets.p99_ms,
                                        success_ratio=targets.rto_success_ratio,
                                        recovered_target_s=targets.recovered_s or None)
        result += [untrusted_if_saturated(m, generator) if m.unit == "ms" else m for m in gray]
    if "primaries" in measures:
        result += primaries.measurements(ordered, fault_t=fault_t)
    if detection.expected_alerts(ordered) is not None:  # the experiment named its alerts
        rto_for_alerts = recovery_time(requests, fault_t=fault_t, hold_s=targets.rto_hold_s,
                                       success_ratio=targets.rto_success_ratio, cut_short=cut_short(ordered),
                                       not_before=recovery_not_before(ordered))
        recovered = rto_for_alerts.recovered_t if rto_for_alerts.rto_s not in (None, float("inf")) else None
        result += detection.measurements(detection.detect(ordered, fault_t=fault_t, recovered_t=recovered),
                                         target_s=targets.detection_s or None,
                                         cleared_target_s=targets.alert_cleared_s or None)
    result += failover_phases.measurements(ordered)  # local runs with a failover: RTO taken apart (reported)
    result += backend_calls.measurements(ordered)  # local runs: retry amplification, pool waits, bypasses (reported)
    if not_judged:  # the fault did not (or not knowingly) run its course: nothing under it can be judged
        result = [m if m.phase == "steady" else m.untrusted(not_judged) for m in result]
    return with_clock_uncertainty(result, float(generator.clock.get("uncertainty_s") or 0.0))


def untrusted_if_saturated(m: Measurement, generator: GeneratorReport) -> Measurement:
    """A latency figure whose window saw the load generator saturated is kept but not judged."""
    windows = m.detail.get("windows") or ([m.detail["window"]] if m.detail.get("window") else None)
    reason = untrusted_latency(generator, [tuple(w) for w in windows] if windows else None)
    return m.untrusted(reason) if reason else m


def with_clock_uncertainty(measurements: list[Measurement], uncertainty_s: float) -> list[Measurement]:
    """Time figures of a run whose load came from other hosts say how well those clocks were reconciled."""
    if uncertainty_s <= 0:
        return measurements
    return [dataclasses.replace(m, detail={**m.detail, "clock_uncertainty_s": uncertainty_s}) if m.unit == "s" else m
            for m in measurements]
