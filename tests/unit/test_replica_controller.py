"""The replica controller's decisions, on hand-built replica snapshots (no processes, no HAProxy)."""

from __future__ import annotations

import pytest

from resilience.errors import HarnessError
from resilience.targets.local.controller import (Rebalance, free_slot, mean_utilization, pick_zone, rebalance,
                                                 scale_in, shortfall, to_replace, zone_counts)
from resilience.targets.local.faults.kill_replicas import choose_victims
from resilience.targets.local.replicas import ReplicaView

ZONES = ("zone-a", "zone-b", "zone-c")


def spread(*zones: str, **flags: bool) -> list[ReplicaView]:
    """One replica per zone given, in slots 1, 2, 3, ..."""
    return [ReplicaView(slot, zone, **flags) for slot, zone in enumerate(zones, start=1)]


# -- slots and zones for a new replica ---------------------------------------------------------------
def test_a_new_replica_takes_the_lowest_free_slot() -> None:
    assert free_slot([], 9) == 1
    assert free_slot([1, 2, 4], 9) == 3
    with pytest.raises(HarnessError, match="max_replicas"):
        free_slot([1, 2, 3], 3)


def test_a_new_replica_goes_to_the_zone_with_the_fewest_first_in_zone_order_on_a_tie() -> None:
    assert pick_zone(ZONES, set(), []) == "zone-a"
    assert pick_zone(ZONES, set(), spread("zone-a")) == "zone-b"
    assert pick_zone(ZONES, set(), spread("zone-a", "zone-b", "zone-c", "zone-a", "zone-c")) == "zone-b"


def test_a_lost_zone_gets_no_new_replica_and_its_lost_replicas_do_not_count() -> None:
    replicas = spread("zone-a", "zone-b", "zone-c")
    assert pick_zone(ZONES, {"zone-a"}, replicas) == "zone-b"
    lost = [ReplicaView(1, "zone-a", lost=True), ReplicaView(2, "zone-b"), ReplicaView(3, "zone-b")]
    assert pick_zone(ZONES, set(), lost) == "zone-a"  # the zone came back; its lost replica is gone


def test_a_replica_being_stopped_still_counts_for_its_zone() -> None:
    """As today: only lost replicas are discounted when placing (a stopping one holds its zone until gone)."""
    replicas = [ReplicaView(1, "zone-a", stopping=True), ReplicaView(2, "zone-b")]
    assert pick_zone(ZONES, set(), replicas) == "zone-c"


def test_with_every_zone_lost_a_new_replica_waits_in_any_zone() -> None:
    assert pick_zone(ZONES, set(ZONES), []) == "zone-a"


# -- replacing and filling up ---------------------------------------------------------------------
def test_only_replicas_that_died_on_their_own_are_replaced() -> None:
    replicas = [ReplicaView(1, "zone-a", alive=False), ReplicaView(2, "zone-b", alive=False, lost=True),
                ReplicaView(3, "zone-c", alive=False, stopping=True), ReplicaView(4, "zone-a")]
    assert [r.slot for r in to_replace(replicas)] == [1]


def test_the_shortfall_counts_live_replicas_only() -> None:
    replicas = [ReplicaView(1, "zone-a", lost=True), ReplicaView(2, "zone-b"), ReplicaView(3, "zone-c", stopping=True)]
    assert shortfall(3, replicas) == 2
    assert shortfall(1, replicas) == 0


# -- scaling in -------------------------------------------------------------------------------------
def test_scaling_in_stops_the_newest_slots_first() -> None:
    replicas = spread("zone-a", "zone-b", "zone-c", "zone-a", "zone-b")
    assert scale_in(3, replicas) == [5, 4]
    assert scale_in(5, replicas) == []
    assert scale_in(9, replicas) == []


def test_scaling_in_ignores_lost_and_stopping_replicas() -> None:
    replicas = spread("zone-a", "zone-b", "zone-c") + [ReplicaView(4, "zone-a", lost=True),
                                                        ReplicaView(5, "zone-b", stopping=True)]
    assert scale_in(2, replicas) == [3]


# -- rebalancing ---------------------------------------------------------------------------------------
def test_after_a_zone_returns_a_replica_is_started_there_first() -> None:
    """Zone a came back: b and c hold two each. Surge: start one in a before stopping any."""
    replicas = spread("zone-b", "zone-c", "zone-b", "zone-c")
    step = rebalance(ZONES, set(), replicas, desired=4)
    assert step == Rebalance({"zone-a": 0, "zone-b": 2, "zone-c": 2}, start_in="zone-a")


def test_once_the_surge_is_in_the_load_balancer_the_newest_in_the_fullest_zone_stops() -> None:
    replicas = spread("zone-b", "zone-c", "zone-b", "zone-c", "zone-a")
    step = rebalance(ZONES, set(), replicas, desired=4)
    assert step is not None and step.stop == 3 and step.start_in is None


def test_no_rebalancing_while_a_zone_is_lost_or_a_replica_is_not_yet_in_the_load_balancer() -> None:
    uneven = spread("zone-b", "zone-b", "zone-b")
    assert rebalance(ZONES, {"zone-a"}, uneven, desired=3) is None
    waiting = uneven + [ReplicaView(4, "zone-a", enabled=False)]
    assert rebalance(ZONES, set(), waiting, desired=3) is None


def test_a_spread_within_one_replica_per_zone_is_left_alone() -> None:
    assert rebalance(ZONES, set(), spread("zone-a", "zone-b", "zone-c", "zone-a"), desired=4) is None
    assert rebalance(ZONES, set(), spread("zone-a", "zone-b"), desired=2) is None


def test_zone_counts_skip_lost_and_stopping_replicas() -> None:
    replicas = spread("zone-a", "zone-b") + [ReplicaView(3, "zone-a", lost=True), ReplicaView(4, "zone-c", stopping=True)]
    assert zone_counts(ZONES, replicas) == {"zone-a": 1, "zone-b": 1, "zone-c": 0}


# -- metrics ------------------------------------------------------------------------------------------
def test_utilization_is_the_mean_percentage_of_the_cpu_limit() -> None:
    assert mean_utilization([], 0.5) is None
    # 0.25 CPU-s in 1 s at a 0.5 CPU limit is 50 %; 0.5 CPU-s in 1 s is 100 %
    assert mean_utilization([(0.25, 1.0), (0.5, 1.0)], 0.5) == pytest.approx(75.0)


# -- which replicas a kill takes -------------------------------------------------------------------------
def test_a_kill_takes_count_or_percent_of_the_live_replicas_reproducibly() -> None:
    live = ["api-1", "api-2", "api-3", "api-4"]
    assert len(choose_victims(live, 1, None, 7)) == 1
    assert len(choose_victims(live, None, 50, 7)) == 2
    assert len(choose_victims(live, None, 1, 7)) == 1  # a percent always takes at least one
    assert len(choose_victims(live, 10, None, 7)) == 4 and choose_victims(live, -1, None, 7) == []
    assert choose_victims(live, None, 50, 7) == choose_victims(live, None, 50, 7)
    assert choose_victims([], None, 50, 7) == []
