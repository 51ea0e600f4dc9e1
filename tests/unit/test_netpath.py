"""The cloud targets' path measurement (targets/netpath.py): what counts as a delay, a loss and a blackhole seen on
the API <-> database path, and a fault with no way to measure it is never seen (the run is inconclusive)."""

from __future__ import annotations

from typing import Any

import pytest

from resilience.fault_registry import fault_call
from resilience.targets.netpath import path_effect, probe_of, summarize, took_effect

BASELINE = {"samples": 12, "answered": 12, "rtt_p50_ms": 6.0, "rtt_max_ms": 9.0}


def during(times_ms: list[float], failed: int = 0) -> dict[str, Any]:
    results = [("ok", t / 1000) for t in times_ms] + [("timeout", 5.0)] * failed
    return summarize(results)


@pytest.mark.parametrize("fault, arguments, times, failed, seen", [
    ("delay_network", {"delay_ms": 100}, [110.0] * 12, 0, True),
    ("delay_network", {"delay_ms": 100}, [40.0] * 12, 0, False),  # less than half the delay: not taken effect
    ("delay_network", {"delay_ms": 100}, [110.0] * 5, 7, False),  # most probes unanswered: not a delay
    ("drop_packets", {"percent": 5}, [6.0] * 11 + [215.0], 0, True),  # one retransmission
    ("drop_packets", {"percent": 5}, [6.0] * 11, 1, True),  # one lost request
    ("drop_packets", {"percent": 5}, [8.0] * 12, 0, False),
    ("blackhole_network", {}, [], 12, True),
    ("blackhole_network", {}, [6.0], 11, False),
])
def test_what_shows_each_fault(fault: str, arguments: dict[str, Any], times: list[float], failed: int,
                               seen: bool) -> None:
    facts: dict[str, Any] = {}
    assert took_effect(fault_call(fault, arguments), BASELINE, during(times, failed), facts) is seen


def test_the_figures_judged_by_are_kept() -> None:
    facts: dict[str, Any] = {}
    took_effect(fault_call("delay_network", {"delay_ms": 100}), BASELINE, during([106.0] * 12), facts)
    assert facts["injected_rtt_ms"] == 100.0
    facts = {}
    took_effect(fault_call("drop_packets", {"percent": 10}), BASELINE, during([6.0] * 10 + [300.0], 1), facts)
    assert facts["slow_or_lost"] == 2 and facts["observed_hit_pct"] == pytest.approx(16.67)


def test_no_probe_is_never_seen() -> None:
    effect = path_effect(None, fault_call("delay_network", {"delay_ms": 100}), BASELINE, {})
    assert effect.look() is None and not effect.in_call
    assert probe_of(object()) is None
