"""The API <-> database path measured from outside a cluster, and whether a network fault shows on it.

The cloud targets (AWS FIS on EKS, Chaos Mesh on Kubernetes) inject their network faults inside the
API pods, where the harness cannot time a packet. What it can time is a request that makes the API
do exactly one database round trip and nothing else: `GET /orders/by-key/<a key no order has>`
(one indexed SELECT, no cache; the API answers 404 "no order with this idempotency key" once the
database has answered). The difference between the medians before and during the fault is the
latency added on the path; requests held past TCP's minimum retransmission timeout (200 ms on
Linux) show lost packets; requests the database never answers (an error, or the probe's timeout)
show a blackhole. A fault whose measurement does not show it leaves the run inconclusive
(effect_watch.py), as on the local target (local/netfaults.py).
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any, Callable, Protocol

from ..fault_registry import FaultCall
from .effect import Effect

PROBE_PATH = "/orders/by-key/"
ANSWERED = (200, 404)  # the database answered (404: no such key, the expected answer)
SAMPLES = 12
TIMEOUT_S = 5.0
RETRANSMIT_MS = 200.0  # Linux TCP_RTO_MIN: a lost segment costs a request at least this much
SEEN_SHARE = 0.5  # of delay_ms: less added latency than this and the delay did not take effect
BLACKHOLE_SAMPLES = 3  # each unanswered probe waits its whole timeout
EFFECT_DEADLINE_S = 120.0  # FIS pulls its pod's image and adds an ephemeral container; Chaos Mesh's daemon acts in seconds


class PathProbe(Protocol):
    """Times the path now: {samples, answered, timeout, error, rtt_p50_ms, ...} (`summarize`)."""

    def measure(self, samples: int = SAMPLES) -> dict[str, Any]: ...


def summarize(results: list[tuple[str, float]]) -> dict[str, Any]:
    """Request times in ms (of the answered ones) and how each ended (ok | error | timeout | closed)."""
    times = sorted(s * 1000 for outcome, s in results if outcome == "ok")
    out: dict[str, Any] = {"samples": len(results), "answered": len(times),
                           **{o: sum(1 for r, _ in results if r == o) for o in ("error", "timeout", "closed")}}
    if times:
        out.update(rtt_p50_ms=round(statistics.median(times), 2), rtt_max_ms=round(times[-1], 2),
                   rtt_all_ms=[round(t, 2) for t in times])
    return out


class HttpPathProbe:
    """The path timed through the API's public URL (`url()` is asked each time: it may move)."""

    def __init__(self, url: Callable[[], str], timeout_s: float = TIMEOUT_S) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def once(self, base: str) -> tuple[str, float]:
        import httpx
        t0 = time.perf_counter()
        try:
            answer = httpx.get(f"{base.rstrip('/')}{PROBE_PATH}rsl-probe-{uuid.uuid4().hex}", timeout=self.timeout_s)
            outcome = "ok" if answer.status_code in ANSWERED else "error"
        except httpx.TimeoutException:
            outcome = "timeout"
        except httpx.HTTPError:
            outcome = "closed"
        return outcome, time.perf_counter() - t0

    def measure(self, samples: int = SAMPLES) -> dict[str, Any]:
        base = self.url()
        return {"to": f"{base.rstrip('/')}{PROBE_PATH}<key>", **summarize([self.once(base) for _ in range(samples)])}


def probe_of(platform: Any) -> PathProbe | None:
    """How the path is timed: the platform's own probe (tests), else through the API's URL, else not at all."""
    found = getattr(platform, "path_probe", None)
    if found is not None:
        return found  # type: ignore[no-any-return]
    url = getattr(platform, "url", None)
    if callable(url):
        return HttpPathProbe(url)
    return None


CLOUD_PATHS = ("api-database",)  # what the probe above can time from outside the cluster


def path_refusal(call: FaultCall, zone_mechanism: str = "") -> str | None:
    """Why a cloud target refuses the call's path (None: it can do it): the API <-> cache path has no request
    that times exactly one cache round trip from outside (the menu is served from PostgreSQL when Redis is slow),
    so a fault there could not be verified; the local target injects it (docs/gray-failures.md). The path between
    two zones is not built here: `zone_mechanism` names the target's documented way, for the reason."""
    path = call.get("path")
    if path is None or path in CLOUD_PATHS:
        return None
    if path == "zone-zone":
        return (f"{call.fault} on the path zone-zone is not built on this target (its probe times the API <-> "
                f"database path from outside, not the traffic between two zones){'; ' if zone_mechanism else ''}"
                f"{zone_mechanism}; the local target has it (docs/gray-failures.md)")
    return (f"{call.fault} on the path {path!r}: this target injects network faults on {', '.join(CLOUD_PATHS)} "
            f"only (no request times one API <-> cache round trip from outside, so the fault could not be "
            f"verified); the local target has it (docs/gray-failures.md)")


def signal(call: FaultCall) -> str:
    """What the effect waits for, in words."""
    path = call.get("path")
    if call.fault == "delay_network":
        return (f"requests over {path} {call.get('delay_ms'):g} ms slower (at least "
                f"{SEEN_SHARE * call.get('delay_ms'):g} ms, measured through the API)")
    if call.fault == "drop_packets":
        return f"requests over {path} held by retransmissions (> {RETRANSMIT_MS:g} ms) or lost ({call.get('percent'):g}% asked)"
    return f"no request over {path} answered by the database"


def took_effect(call: FaultCall, baseline: dict[str, Any], during: dict[str, Any], facts: dict[str, Any]) -> bool:
    """Whether `during` shows the fault against `baseline`; adds the figures it judged by to `facts`."""
    samples = int(during.get("samples") or 0)
    answered = int(during.get("answered") or 0)
    if not samples:
        return False
    if call.fault == "delay_network":
        if "rtt_p50_ms" not in during or answered * 2 < samples:
            return False
        injected = float(during["rtt_p50_ms"]) - float(baseline.get("rtt_p50_ms", 0.0))
        facts["injected_rtt_ms"] = round(injected, 2)
        return injected >= SEEN_SHARE * float(call.get("delay_ms"))
    if call.fault == "drop_packets":
        slow_after = float(baseline.get("rtt_max_ms", baseline.get("rtt_p50_ms", 0.0))) + RETRANSMIT_MS
        slow = sum(1 for t in during.get("rtt_all_ms", []) if t >= slow_after)
        hit = slow + samples - answered
        facts.update(slow_or_lost=hit, observed_hit_pct=round(100.0 * hit / samples, 2), slow_after_ms=slow_after)
        return hit > 0
    return answered == 0  # blackhole: the database answered nothing


def path_effect(probe: PathProbe | None, call: FaultCall, baseline: dict[str, Any], facts: dict[str, Any],
                samples: int | None = None) -> Effect:
    """The fault's effect, measured on the path; no probe (no URL to reach the API): never seen, so the run is
    inconclusive rather than judged on a fault nobody saw."""
    count = samples or (BLACKHOLE_SAMPLES if call.fault == "blackhole_network" else SAMPLES)

    def look() -> dict[str, Any] | None:
        if probe is None:
            return None
        during = probe.measure(count)
        found = {**facts, "path": call.get("path"), "baseline": baseline, "during": during}
        return found if took_effect(call, baseline, during, found) else None
    return Effect(signal(call), EFFECT_DEADLINE_S, look, in_call=False)  # injected after the request returns
