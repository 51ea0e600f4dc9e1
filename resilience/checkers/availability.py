"""Availability: the share of load requests that succeeded in a window.

"unknown" (a timeout: the outcome is not known) counts against availability,
exactly like "fail": a request nobody saw succeed is not a success.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..history import FAIL, LOAD, OK, UNKNOWN, Record
from .measurement import Measurement, judge
from .windows import PHASES, Window

DEFINITION = (
    "Availability = ok / (ok + fail + unknown) over the load generator's requests whose start time "
    "falls in the window; a timeout ('unknown') counts as not ok. A window without requests is "
    "inconclusive. The judged 'availability' covers normal operation: the steady and recovery phases "
    "(the platform's objective is for normal operation; what a fault costs is bounded by the RTO target "
    "and shown as availability_fault, judged only when the experiment sets targets.availability_fault). "
    "'availability_overall' runs from the first phase's start to the end of the last phase."
)


@dataclass(frozen=True)
class RequestCounts:
    """How the load requests of one window ended."""

    ok: int = 0
    fail: int = 0
    unknown: int = 0

    @property
    def total(self) -> int:
        return self.ok + self.fail + self.unknown

    @property
    def availability(self) -> float | None:
        """ok / total; None (could not be measured) when there were no requests."""
        return self.ok / self.total if self.total else None

    def to_json(self) -> dict[str, int]:
        return {"requests": self.total, "ok": self.ok, "fail": self.fail, "unknown": self.unknown}


def count_requests(records: Iterable[Record], window: Window | None = None) -> RequestCounts:
    """Count the load requests started in `window` (all of them when window is None) by outcome."""
    start, end = window if window is not None else (-math.inf, math.inf)
    statuses = [r.status for r in records if start <= r.t < end and r.source == LOAD]
    return RequestCounts(ok=statuses.count(OK), fail=statuses.count(FAIL), unknown=statuses.count(UNKNOWN))


def availability(records: Iterable[Record], window: Window | None = None) -> float | None:
    """ok / (ok + fail + unknown) of the load requests in `window`; None when there were none."""
    return count_requests(records, window).availability


def measurements(records: Sequence[Record], *, overall: Window | None, phases: dict[str, Window],
                 target: float | None, fault_target: float | None = None) -> list[Measurement]:
    """`availability` outside the fault window, judged; overall and per phase, reported.

    The fault phase is judged only with an explicit `fault_target` (e.g. pod-kill:
    only requests in flight may fail). A phase absent from the history gets no measurement.
    """
    normal = [phases[p] for p in ("steady", "recovery") if p in phases]
    if not normal and overall is not None:
        normal = [overall]
    counts = RequestCounts()
    for window in normal:
        c = count_requests(records, window)
        counts = RequestCounts(ok=counts.ok + c.ok, fail=counts.fail + c.fail, unknown=counts.unknown + c.unknown)
    reason = None if counts.total else "no load requests in the steady or recovery phase"
    result = [judge("availability", counts.availability, "ratio", target, ">=", phase="steady+recovery",
                    definition=DEFINITION, detail={**counts.to_json(), "windows": [list(w) for w in normal]},
                    reason=reason)]
    counts = count_requests(records, overall) if overall is not None else RequestCounts()
    result.append(judge("availability_overall", counts.availability, "ratio", None, ">=", phase="overall",
                        definition=DEFINITION, detail={**counts.to_json(), "window": _as_list(overall)},
                        reason=None if counts.total else "no load requests in the run"))
    for phase in PHASES:
        if phase not in phases:
            continue
        counts = count_requests(records, phases[phase])
        judged = fault_target if phase == "fault" and fault_target else None
        result.append(judge(f"availability_{phase}", counts.availability, "ratio", judged, ">=", phase=phase,
                            definition=DEFINITION, detail={**counts.to_json(), "window": list(phases[phase])},
                            reason=None if counts.total else f"no load requests in the {phase} phase"))
    return result


def _as_list(window: Window | None) -> list[float] | None:
    return None if window is None else list(window)
