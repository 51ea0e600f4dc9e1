"""How far apart two monotonic clocks are, from round trips: the offset and how sure we are of it.

Load generated on other hosts (Locust workers in a cluster) stamps its requests
on clocks the harness cannot read. One round trip gives the remote clock's
reading `remote` between our `sent` and `received`: the remote reading was
taken somewhere in that interval, so

    offset      = remote - (sent + received) / 2      (remote clock minus ours)
    uncertainty = (received - sent) / 2                (the true offset is within ± this)

assuming nothing about how the delay splits between the two directions (the
NTP estimate, RFC 5905 section 8, without its symmetric-delay assumption
narrowing the bound). Of several round trips the shortest one bounds the offset
best, so `estimate` keeps that one. Pure functions: no clocks are read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

SHARED = "shared CLOCK_MONOTONIC"  # method of a ClockSync between processes on one host


@dataclass(frozen=True)
class ClockSample:
    """One round trip: our clock at sending and receiving, and the remote clock's reading in between."""

    sent: float
    remote: float
    received: float

    @property
    def round_trip_s(self) -> float:
        return self.received - self.sent


@dataclass(frozen=True)
class ClockSync:
    """Remote clock minus ours (`offset_s`), known to within ± `uncertainty_s`."""

    offset_s: float
    uncertainty_s: float
    method: str  # how it was measured ("round trip via ...", or SHARED)
    samples: int = 0

    def to_remote(self, local_t: float) -> float:
        return local_t + self.offset_s

    def to_local(self, remote_t: float) -> float:
        return remote_t - self.offset_s

    def to_json(self) -> dict[str, Any]:
        return {"offset_s": round(self.offset_s, 6), "uncertainty_s": round(self.uncertainty_s, 6),
                "method": self.method, "samples": self.samples}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ClockSync":
        return cls(float(data["offset_s"]), float(data["uncertainty_s"]), str(data["method"]),
                   int(data.get("samples", 0)))


def shared() -> ClockSync:
    """Processes on one host read the same CLOCK_MONOTONIC: no offset, no uncertainty."""
    return ClockSync(0.0, 0.0, SHARED)


def estimate(samples: Sequence[ClockSample], method: str) -> ClockSync:
    """The offset from the round trip with the shortest delay; ValueError without a usable sample."""
    usable = [s for s in samples if s.received >= s.sent]
    if not usable:
        raise ValueError("no round trip to estimate a clock offset from (each needs received >= sent)")
    best = min(usable, key=lambda s: s.round_trip_s)
    return ClockSync(offset_s=best.remote - (best.sent + best.received) / 2, uncertainty_s=best.round_trip_s / 2,
                     method=method, samples=len(usable))


def combine(first: ClockSync, second: ClockSync) -> ClockSync:
    """A→C from A→B and B→C: offsets add, and so do the bounds (worker → master → harness)."""
    if first.method == SHARED and second.method == SHARED:
        return shared()
    return ClockSync(first.offset_s + second.offset_s, first.uncertainty_s + second.uncertainty_s,
                     f"{first.method}; {second.method}", first.samples + second.samples)
