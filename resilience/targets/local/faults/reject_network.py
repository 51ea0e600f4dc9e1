"""reject_network on the local stack: every connection on the path is reset (TCP RST), and each new one too,
by the network proxy (netproxy.py): what a REJECT with tcp-reset looks like to a client, which fails fast
instead of waiting. Seen when no round trip through the path is answered and none timed out."""

from __future__ import annotations

from typing import Any

from ....fault_registry import FaultCall
from ..netfaults import NetworkFault
from . import FAULTS


@FAULTS.register
class RejectNetwork(NetworkFault):
    fault = "reject_network"
    steps = ("clear_reject",)
    what = "reset every connection (TCP RST)"
    samples = 4

    def signal(self, call: FaultCall) -> str:
        return f"every connection on {call.get('path')} reset"

    def toxics(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"mode": "reset"}

    def took_effect(self, call: FaultCall, baseline: dict[str, Any], during: dict[str, Any],
                    facts: dict[str, Any]) -> bool:
        return during.get("answered") == 0 and during.get("timeout") == 0 and during.get("samples", 0) > 0
