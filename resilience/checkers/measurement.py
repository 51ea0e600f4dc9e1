"""A measurement compared with its target, and the run verdict.

A measurement that could not be made has `value=None` and status
"inconclusive"; an inconclusive measurement never makes a run pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

MET = "met"
BREACHED = "breached"
INCONCLUSIVE = "inconclusive"
MeasurementStatus = Literal["met", "breached", "inconclusive"]

PASS = "pass"
FAIL = "fail"
ABORTED = "aborted"
Verdict = Literal["pass", "fail", "inconclusive", "aborted"]


@dataclass(frozen=True)
class Measurement:
    """One measured figure and whether it met its target.

    `comparison` is how value relates to target when met: "<=" (RTO, P99, RPO)
    or ">=" (availability). `target=None` means reported only, not judged.
    """

    name: str  # rto_s, rpo_s, lost_writes, availability, p99_ms, autoscale_s, ...
    value: float | None
    unit: str
    target: float | None
    comparison: str = "<="
    status: str = INCONCLUSIVE
    phase: str | None = None  # steady | fault | recovery | overall | None
    definition: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def untrusted(self, reason: str) -> "Measurement":
        """This figure, kept but not judged: what it measured is in doubt (e.g. a saturated load generator)."""
        if self.target is None:  # reported only: say why it is in doubt, nothing to un-judge
            return replace(self, detail={**self.detail, "untrusted": reason})
        return replace(self, status=INCONCLUSIVE, detail={**self.detail, "untrusted": reason, "reason": reason})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Measurement":
        return cls(**data)


def judge(name: str, value: float | None, unit: str, target: float | None, comparison: str = "<=", *,
          phase: str | None = None, definition: str = "", detail: dict[str, Any] | None = None,
          reason: str | None = None) -> Measurement:
    """Build a Measurement with its status decided from value, target and comparison.

    `value=None` (could not be measured) is inconclusive; `reason` says why.
    `value=float("inf")` (e.g. never recovered) is a breach of any "<=" target.
    """
    detail = dict(detail or {})
    if reason:
        detail["reason"] = reason
    if value is None:
        status = INCONCLUSIVE
    elif target is None:
        status = MET
    elif comparison == "<=":
        status = MET if value <= target else BREACHED
    elif comparison == ">=":
        status = MET if value >= target else BREACHED
    else:
        raise ValueError(f"unknown comparison {comparison!r}: use '<=' or '>='")
    return Measurement(name, value, unit, target, comparison, status, phase, definition, detail)


def verdict(measurements: list[Measurement], *, aborted: bool = False, deviated: bool = False) -> str:
    """pass only when every judged measurement is met and the run neither aborted nor deviated."""
    if aborted:
        return ABORTED
    if deviated or any(m.status == BREACHED for m in measurements):
        return FAIL
    if not measurements or any(m.status == INCONCLUSIVE for m in measurements):
        return INCONCLUSIVE
    return PASS


EXIT_CODES = {PASS: 0, FAIL: 1, INCONCLUSIVE: 1, ABORTED: 1}

REPORTED = "reported"  # a label for people, never a stored status: see status_label


def status_label(status: str, target: float | None) -> str:
    """What reports show: "reported" for a figure measured for context but judged against no target.

    The stored status of such a figure stays "met" (the documented JSON values,
    and what `resilience check` recomputes for older runs); shown as a green
    "met" it would read as an objective that was achieved, which it never was.
    """
    return REPORTED if target is None and status == MET else status
