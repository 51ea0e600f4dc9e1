"""Our nftables rules count the packets they see; the faults read them back to prove the fault took effect.

Every rule of ours that counts carries a comment naming what it counts ("seen", "dropped", "etcd",
"peers", ...): the packets are summed per comment from `nft -j list table ...`. One place for the three
tables that do it (netfaults.py: loss on a proxy path; partition.py; zonepath.py).
"""

from __future__ import annotations

import json
from typing import Iterable


def rule_counters(nft_json: str, comments: Iterable[str]) -> dict[str, int]:
    """Packets counted per rule comment (each of `comments`, 0 when no rule has it) in `nft -j` output."""
    counts = {c: 0 for c in comments}
    for item in json.loads(nft_json or "{}").get("nftables", []):
        rule = item.get("rule")
        if rule and rule.get("comment") in counts:
            for expr in rule.get("expr", []):
                if "counter" in expr:
                    counts[rule["comment"]] += int(expr["counter"].get("packets", 0))
    return counts
