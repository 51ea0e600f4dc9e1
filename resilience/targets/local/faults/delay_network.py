"""delay_network on the local stack: every round trip on the path pays delay_ms +- jitter_ms (uniform), added by
the network proxy in the path (API <-> database or API <-> cache: netproxy.py; no sch_netem on this kernel). Seen when the
measured round trip through the path grew by at least half of delay_ms over the baseline measured just before."""

from __future__ import annotations

from typing import Any

from ....fault_registry import FaultCall
from ..netfaults import NetworkFault
from . import FAULTS

SEEN_SHARE = 0.5  # of delay_ms: less added latency than this and the fault did not take effect


@FAULTS.register
class DelayNetwork(NetworkFault):
    fault = "delay_network"
    steps = ("clear_network_delay",)
    what = "add delay_ms +- jitter_ms to every round trip"

    def signal(self, call: FaultCall) -> str:
        return (f"round trips on {call.get('path')} {call.get('delay_ms'):g} ms slower "
                f"(at least {SEEN_SHARE * call.get('delay_ms'):g} ms, measured)")

    def toxics(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"delay_ms": request["delay_ms"], "jitter_ms": request.get("jitter_ms", 0)}

    def took_effect(self, call: FaultCall, baseline: dict[str, Any], during: dict[str, Any],
                    facts: dict[str, Any]) -> bool:
        if "rtt_p50_ms" not in during or during["answered"] * 2 < during["samples"]:
            return False
        injected = during["rtt_p50_ms"] - float(baseline.get("rtt_p50_ms", 0.0))
        facts["injected_rtt_ms"] = round(injected, 2)
        return injected >= SEEN_SHARE * float(call.get("delay_ms"))
