"""drop_packets on the local stack: percent of the packets on the path are dropped, each way, by our own
nftables table (`numgen random mod 100 < percent`, counted; netfaults.py). Seen when its counters show
packets dropped; the loss observed (dropped / seen) is in the evidence."""

from __future__ import annotations

from typing import Any

from ....fault_registry import FaultCall
from ..netfaults import NetworkFault
from . import FAULTS


@FAULTS.register
class DropPackets(NetworkFault):
    fault = "drop_packets"
    steps = ("clear_packet_loss",)
    what = "drop percent of the packets each way"
    mechanism = "nft"

    def signal(self, call: FaultCall) -> str:
        return f"packets dropped on {call.get('path')} (nft counters; {call.get('percent'):g}% asked)"

    def took_effect(self, call: FaultCall, baseline: dict[str, Any], during: dict[str, Any],
                    facts: dict[str, Any]) -> bool:
        counters = during.get("nft") or {}
        seen, dropped = int(counters.get("seen", 0)), int(counters.get("dropped", 0))
        if seen:
            facts["observed_loss_pct"] = round(100.0 * dropped / seen, 2)
        return dropped > 0
