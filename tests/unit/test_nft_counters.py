"""Packets counted by our nftables rules, summed per rule comment from `nft -j list table` output."""

from __future__ import annotations

import json

from resilience.targets.local.nft_counters import rule_counters


def test_counters_are_summed_per_comment_and_other_rules_are_ignored() -> None:
    listing = {"nftables": [
        {"metainfo": {"json_schema_version": 1}},
        {"table": {"family": "inet", "name": "rsl-zonefault"}},
        {"rule": {"comment": "seen", "expr": [{"match": {}}, {"counter": {"packets": 7, "bytes": 700}}]}},
        {"rule": {"comment": "seen", "expr": [{"counter": {"packets": 3, "bytes": 300}}]}},
        {"rule": {"comment": "dropped", "expr": [{"counter": {"packets": 2, "bytes": 200}}, {"drop": None}]}},
        {"rule": {"comment": "other", "expr": [{"counter": {"packets": 99, "bytes": 1}}]}},
        {"rule": {"expr": [{"counter": {"packets": 50, "bytes": 1}}]}},
    ]}
    assert rule_counters(json.dumps(listing), ("seen", "dropped", "rejected")) == {"seen": 10, "dropped": 2,
                                                                                   "rejected": 0}
    assert rule_counters("", ("seen",)) == {"seen": 0}
