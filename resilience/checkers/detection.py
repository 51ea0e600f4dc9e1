"""Detection: did the expected alerts fire, how fast, did they clear, and did any fire that should not.

Read from `alert` records (targets/local/alert_receiver.py, targets/alert_feed.py write them; the run adds
`alert/expected` with the experiment's `alerts:` list):
- watching (detail: scrape_s, evaluation_s, group_wait_s, for_s per alert) | unreachable;
- pending (at Prometheus's activeAt) -> rule-firing (first seen firing) -> firing (Alertmanager's
  notification reached the harness) -> resolved (the resolved notification).

Measurements (only when the history holds `alert/expected`):
- detection_s: impact onset (first failed/unknown load request completing after the fault) to the
  first firing notification of an expected alert, judged against the bound the configuration implies
  for that alert: scrape interval + evaluation interval + `for` + group_wait. The same from the
  injection is in the detail (`from_injection_s`), with the stages pending/firing/notified;
- alert_cleared_s: recovery (the RTO's recovery moment, else the recovery phase start) to that alert's
  resolved notification; still firing at the end: unbounded (inf), a breach;
- missed_alerts: expected alerts with no firing notification after the fault (a breach if > 0);
- false_alerts: alerts notified before the fault (steady phase), already firing when the run began,
  or any alert at all when the experiment expects none (a breach if > 0).
Monitoring unreachable during the run (or when it began): all four inconclusive, never a pass. A
target that reads no alerts (no `watching`/`unreachable` record at all: Kubernetes and AWS without
kubernetes.monitoring / aws.alarms) gets none of these measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..history import ALERT, OK, PHASE, Record
from .measurement import Measurement, judge
from .windows import completion_time, is_load_request

DEFINITION_DETECTION = (
    "Detection = time from the client-observed impact onset (first failed or unknown load request completing "
    "after the fault) to the first Alertmanager notification of an expected alert; judged against the bound the "
    "monitoring configuration implies for that alert: scrape interval + evaluation interval + its `for:` + "
    "group_wait. Stages: pending (Prometheus activeAt), firing, notified; the same from the injection in the "
    "detail. No impact seen: measured from the injection. Monitoring unreachable: inconclusive."
)
DEFINITION_CLEARED = (
    "Alert cleared = time from recovery (the RTO's recovery moment, else the recovery phase start) to the resolved "
    "notification of the first expected alert that fired (negative: it cleared before the clients saw the recovery); "
    "still firing at the end of the run: unbounded (a breach)."
)
DEFINITION_MISSED = "Missed alerts = expected alerts (the experiment's `alerts:`) never notified as firing after the fault."
DEFINITION_FALSE = ("False alerts = alerts notified firing before the fault (steady phase) or already firing when the run "
                    "began, and any alert at all when the experiment expects none (the platform absorbs the fault).")


@dataclass(frozen=True)
class AlertTimeline:
    """One alert's first pass through the stages after a given time (history times; None = not seen)."""

    alert: str
    pending_t: float | None = None
    rule_firing_t: float | None = None
    notified_t: float | None = None
    resolved_t: float | None = None


@dataclass(frozen=True)
class DetectionResult:
    expected: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    unreachable: str | None = None  # why the monitoring could not be trusted
    fault_t: float | None = None
    onset_t: float | None = None
    recovered_t: float | None = None
    first: AlertTimeline | None = None  # the first expected alert notified after the fault
    timelines: dict[str, AlertTimeline] = field(default_factory=dict)
    missed: tuple[str, ...] = ()
    false: tuple[dict[str, Any], ...] = ()

    def bound_s(self, alert: str) -> float | None:
        c = self.config
        if not c or alert not in (c.get("for_s") or {}):
            return None
        return float(c["scrape_s"]) + float(c["evaluation_s"]) + float(c["for_s"][alert]) + float(c["group_wait_s"])


def expected_alerts(records: Sequence[Record]) -> tuple[str, ...] | None:
    found = [r for r in records if r.source == ALERT and r.op == "expected"]
    return tuple((found[-1].detail or {}).get("alerts") or ()) if found else None


def impact_onset(records: Sequence[Record], fault_t: float) -> float | None:
    """The first failed or unknown load request completing at or after the fault."""
    bad = [completion_time(r) for r in records if is_load_request(r) and r.status != OK and completion_time(r) >= fault_t]
    return min(bad) if bad else None


def timeline(records: Sequence[Record], alert: str, after: float) -> AlertTimeline:
    """The alert's stages from `after` on: the first notification, the pending and rule-firing just before it."""
    mine = [r for r in records if r.source == ALERT and (r.detail or {}).get("alert") == alert]
    first = next((r for r in mine if r.op == "firing" and r.t >= after), None)
    notified = first.t if first is not None else None
    limit = notified if notified is not None else float("inf")
    pending = [r.t for r in mine if r.op == "pending" and after - 1e-9 <= r.t <= limit]
    # Prometheus's own firing time is in the notification (startsAt); the rules watch sees it up to a poll late
    fired_before = (first.detail or {}).get("fired_s_before") if first is not None else None
    firing = [notified - float(fired_before)] if notified is not None and fired_before is not None else \
        [r.t for r in mine if r.op == "rule-firing" and r.t >= after][:1]
    resolved = next((r.t for r in mine if r.op == "resolved" and notified is not None and r.t > notified), None)
    return AlertTimeline(alert, pending[-1] if pending else None, firing[0] if firing else None, notified, resolved)


def detect(records: Sequence[Record], *, fault_t: float | None, recovered_t: float | None) -> DetectionResult | None:
    """The detection figures of a run whose experiment named its alerts; None when it named none."""
    ordered = sorted(records, key=lambda r: r.t)
    expected = expected_alerts(ordered)
    if expected is None:
        return None
    alerts = [r for r in ordered if r.source == ALERT]
    watching = next((r for r in alerts if r.op == "watching"), None)
    unreachable = next((r for r in alerts if r.op == "unreachable"), None)
    if watching is None and unreachable is None:  # a target that reads no alerts (yet): nothing to judge
        return None
    why = (f"the monitoring was unreachable at t={unreachable.t:.1f} s ({(unreachable.detail or {}).get('error')})"
           if unreachable else None)
    config = dict(watching.detail or {}) if watching else {}
    if recovered_t is None:
        recovered_t = next((r.t for r in ordered if r.source == PHASE and r.op == "recovery"), None)
    steady_end = fault_t if fault_t is not None else float("inf")
    false = [{"alert": (r.detail or {}).get("alert"), "t": round(r.t, 3),
              "why": "already firing when the run began" if r.op == "pending" else "fired before the fault"}
             for r in alerts if (r.op == "firing" and r.t < steady_end)
             or (r.op == "pending" and (r.detail or {}).get("before_start"))]
    if not expected:  # the platform absorbs this fault: any alert is a false one
        false += [{"alert": (r.detail or {}).get("alert"), "t": round(r.t, 3), "why": "no alert was expected"}
                  for r in alerts if r.op == "firing" and r.t >= steady_end]
    if fault_t is None:
        return DetectionResult(expected, config, why or "no fault time in the history", None, None, recovered_t,
                               false=tuple(false))
    lines = {a: timeline(ordered, a, fault_t) for a in expected}
    notified = sorted((line for line in lines.values() if line.notified_t is not None), key=lambda x: x.notified_t or 0)
    missed = tuple(a for a, line in lines.items() if line.notified_t is None)
    return DetectionResult(expected, config, why, fault_t, impact_onset(ordered, fault_t), recovered_t,
                           notified[0] if notified else None, lines, missed, tuple(false))


def measurements(result: DetectionResult | None, *, target_s: float | None = None,
                 cleared_target_s: float | None = None) -> list[Measurement]:
    """detection_s, alert_cleared_s, missed_alerts, false_alerts (nothing when the experiment named no alerts).

    `target_s` / `cleared_target_s`: the experiment's targets (targets.detection_s, alert_cleared_s); when set,
    detection_s and alert_cleared_s are judged against them, the configuration's bound still in the detail."""
    if result is None:
        return []
    # The experiment states its targets for production alert windows; a stack that scales its windows down
    # (the local one: / 30, in its `watching` record) is judged against the targets scaled the same way.
    scale = float(result.config.get("scale") or 1.0)
    if target_s is not None:
        target_s = round(target_s / scale, 3)
    if cleared_target_s is not None:
        cleared_target_s = round(cleared_target_s / scale, 3)
    scaled = {"target_scale": scale} if scale != 1.0 else {}
    why = result.unreachable
    first = result.first
    stages = _stages(result) if first else {}
    detail = {"expected": list(result.expected), "config": result.config, "stages": stages,
              "alerts": {a: vars(t) for a, t in result.timelines.items()}}
    if why or result.fault_t is None:
        detection = judge("detection_s", None, "s", None, phase="fault", definition=DEFINITION_DETECTION,
                          detail=detail, reason=why)
    elif first is None or first.notified_t is None:
        reason = "no alert was expected" if not result.expected else None
        detection = judge("detection_s", None if reason else float("inf"), "s", None if reason else 0.0,
                          phase="fault", definition=DEFINITION_DETECTION, detail=detail, reason=reason)
    else:
        start = result.onset_t if result.onset_t is not None else result.fault_t
        bound = result.bound_s(first.alert)
        value = round(first.notified_t - start, 3)
        detection = judge("detection_s", value, "s", target_s if target_s is not None else bound, phase="fault",
                          definition=DEFINITION_DETECTION,
                          detail={**detail, "alert": first.alert, "from": "impact" if result.onset_t is not None
                                  else "injection (no impact seen)",
                                  "from_injection_s": round(first.notified_t - result.fault_t, 3), "bound_s": bound,
                                  "within_bound": None if bound is None else value <= bound,
                                  "judged_against": ("the experiment's target (targets.detection_s" +
                                                     (f", / {scale:g} like the alert windows)" if scaled else ")"))
                                  if target_s is not None else "the bound the configuration implies", **scaled})
    if why or first is None or first.notified_t is None:
        cleared = judge("alert_cleared_s", None, "s", None, phase="recovery", definition=DEFINITION_CLEARED,
                        detail=detail, reason=why or "no expected alert fired")
    else:
        start = result.recovered_t if result.recovered_t is not None else first.notified_t
        # negative: the alert cleared before the clients saw the service recover
        value = float("inf") if first.resolved_t is None else round(first.resolved_t - start, 3)
        target = cleared_target_s if cleared_target_s is not None else None if value != float("inf") else 0.0
        cleared = judge("alert_cleared_s", value, "s", target,
                        phase="recovery", definition=DEFINITION_CLEARED,
                        detail={**detail, "alert": first.alert, "recovered_t": result.recovered_t,
                                "resolved_t": first.resolved_t,
                                "judged_against": ("the experiment's target (targets.alert_cleared_s" +
                                                   (f", / {scale:g} like the alert windows)" if scaled else ")"))
                                if cleared_target_s is not None else "it must clear before the run ends", **scaled})
    missed = judge("missed_alerts", None if why else float(len(result.missed)), "alerts", 0.0, phase="fault",
                   definition=DEFINITION_MISSED, detail={"missed": list(result.missed)}, reason=why)
    false = judge("false_alerts", None if why else float(len(result.false)), "alerts", 0.0, phase="overall",
                  definition=DEFINITION_FALSE, detail={"false": list(result.false)}, reason=why)
    return [detection, cleared, missed, false]


def _stages(result: DetectionResult) -> dict[str, Any]:
    """Impact -> pending -> firing -> notified, each as the seconds since the previous stage (None: not seen)."""
    first = result.first
    assert first is not None
    points = [("impact", result.onset_t), ("pending", first.pending_t), ("firing", first.rule_firing_t),
              ("notified", first.notified_t)]
    out: dict[str, Any] = {"injection_t": result.fault_t}
    previous = result.fault_t
    for name, t in points:
        out[f"{name}_t"] = None if t is None else round(t, 3)
        out[f"{name}_after_s"] = None if t is None or previous is None else round(t - previous, 3)
        previous = t if t is not None else previous
    return out
