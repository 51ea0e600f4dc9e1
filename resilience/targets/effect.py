"""What shows that a fault took effect (`Effect`), and how long its documentation says that takes (`Documented`).

Its own module, beside the protocols (base.py) and the fault modules' base (fault_module.py), which both name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Effect:
    """What shows that a fault took effect, and how long after its request to wait for it.

    A fault is timed from when it takes effect, not from when it was asked for: a cloud
    failover (RDS FailoverDBCluster, ElastiCache TestFailover) returns at once and the outage
    comes later. The run looks (`look`) until the signal shows or `deadline_s` passes; not
    seen in time, the run is inconclusive, never a recovery from a fault that did not happen.

    `look()` returns None while the signal is not there, else what it saw (JSON-able); a
    `began_monotonic` in it is when the platform says the outage began (e.g. the time of
    RDS-EVENT-0073 "Started failover"). `in_call`: the fault acts within its call (a
    SIGKILL, a freeze), so it took effect when the call started and the signal only
    confirms it. A fault that acts later (`in_call=False`) is in effect from when the
    platform says its outage began; without that, from its request, and then no recovery
    can be declared before its signal was seen (else a healthy hold window before the
    outage even began would read as RTO 0).
    """

    signal: str  # in words: "the Patroni leader changed"
    deadline_s: float
    look: Callable[[], dict[str, Any] | None]
    in_call: bool = True

    @staticmethod
    def all_of(effects: "list[Effect]") -> "Effect | None":
        """One effect seen once every one of `effects` is (e.g. a zone loss that fails over RDS and ElastiCache)."""
        if len(effects) <= 1:
            return effects[0] if effects else None
        seen: dict[int, dict[str, Any]] = {}

        def look() -> dict[str, Any] | None:
            for index, effect in enumerate(effects):
                if index not in seen:
                    facts = effect.look()
                    if facts is None:
                        return None
                    seen[index] = facts
            began = [f["began_monotonic"] for f in seen.values() if "began_monotonic" in f]
            merged: dict[str, Any] = {"parts": [{k: v for k, v in f.items() if k != "began_monotonic"}
                                                for _, f in sorted(seen.items())]}
            return {**merged, "began_monotonic": min(began)} if began else merged
        return Effect(" and ".join(e.signal for e in effects), max(e.deadline_s for e in effects), look,
                      in_call=all(e.in_call for e in effects))


@dataclass(frozen=True)
class Documented:
    """How long the platform's documentation says a fault takes to take effect, and where it says so."""

    seconds: float
    source: str  # "RDS Multi-AZ DB cluster failover: typically under 35 s (RDS User Guide)"
