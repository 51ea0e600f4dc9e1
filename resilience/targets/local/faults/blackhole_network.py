"""blackhole_network on the local stack: the path forwards nothing either way; connections stay open and new
ones are accepted and held (a silent drop: a client waits for its own timeout), by the network proxy
(netproxy.py). Undone, the held bytes flow again. Seen when no round trip through the path is answered
and every one timed out."""

from __future__ import annotations

from typing import Any

from ....fault_registry import FaultCall
from ..netfaults import NetworkFault
from . import FAULTS


@FAULTS.register
class BlackholeNetwork(NetworkFault):
    fault = "blackhole_network"
    steps = ("clear_blackhole",)
    what = "forward nothing (hold every connection, answer nothing)"
    samples = 3

    def signal(self, call: FaultCall) -> str:
        return f"no answer on {call.get('path')}: every round trip timed out"

    def toxics(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"mode": "blackhole"}

    def took_effect(self, call: FaultCall, baseline: dict[str, Any], during: dict[str, Any],
                    facts: dict[str, Any]) -> bool:
        return during.get("answered") == 0 and during.get("timeout") == during.get("samples")
