"""Issue 21's path between two zones on the real local stack (`path: zone-zone`): drop, blackhole and reject between
the PostgreSQL primary's zone and the next zone show on that path (the table's counters, TCP connects from the
first zone to the second's etcd), the third zone still reaches both meanwhile, and the table is gone after the
undo, and after a heal."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from resilience.targets.local.target import LocalTarget
from resilience.targets.local.zonepath import NFT_TABLE, ZONE_PATH

pytestmark = pytest.mark.stack


def _fault(stack: LocalTarget, fault: str, phase: str, **args: Any) -> dict[str, Any]:
    return stack.local.request("fault", timeout=60, fault=fault, phase=phase, path=ZONE_PATH, **args)


def _tables(stack: LocalTarget) -> list[str]:
    """The zones whose namespace holds our table now."""
    zones = stack.local.zone_names()
    return [z for z in zones if subprocess.run(["ip", "netns", "exec", f"rsl-{z}", "nft", "list", "table", "inet",
                                                NFT_TABLE], capture_output=True).returncode == 0]


@pytest.mark.parametrize("fault,args", [("drop_packets", {"percent": 30}), ("blackhole_network", {}),
                                        ("reject_network", {})])
def test_each_fault_between_two_zones_shows_on_that_path_only_and_is_gone_after_its_undo(
        stack: LocalTarget, fault: str, args: dict[str, Any]) -> None:
    primary_zone = stack.local.primary_zone()
    injected = _fault(stack, fault, "inject", **args)
    try:
        during = _fault(stack, fault, "measure")
    finally:
        undone = _fault(stack, fault, "undo")
    after = _fault(stack, fault, "measure")
    first, second = injected["from_zone"], injected["to_zone"]
    third = next(z for z in stack.local.zone_names() if z not in (first, second))
    print(f"\n{fault} between {first} and {second}: {injected['where']}; baseline {injected['baseline']}; "
          f"during {during}; undo {undone}; after {after}")
    assert first == primary_zone and second != first
    assert injected["baseline"]["answered"] == injected["baseline"]["samples"]
    if fault == "drop_packets":
        assert 0 < during["nft"]["dropped"] < during["nft"]["seen"], during
    elif fault == "blackhole_network":
        assert during["answered"] == 0 and during["timeout"] == during["samples"], during
    else:
        assert during["answered"] == 0 and during["timeout"] == 0 and during["nft"]["rejected"] > 0, during
    for zone in (first, second):  # the third zone still reaches both
        seen = during[f"from_{third}"][zone]
        assert seen["answered"] == seen["samples"], (zone, seen)
    assert undone["counters"]["removed_from"] == [f"rsl-{first}"]
    assert after["answered"] == after["samples"] and after["nft"] == {}, after
    assert _tables(stack) == []


def test_a_heal_deletes_the_zone_paths_table(stack: LocalTarget) -> None:
    injected = _fault(stack, "reject_network", "inject")
    assert _tables(stack) == [injected["from_zone"]]
    stack.heal()
    assert _tables(stack) == []
    after = _fault(stack, "reject_network", "measure")
    assert after["answered"] == after["samples"], after
