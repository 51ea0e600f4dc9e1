"""The stack's components come from one description: members, zones, names, restart order."""

from __future__ import annotations

import pytest

from resilience.errors import HarnessError
from resilience.targets.local.topology import MEMBERS, POSTGRES, SENTINEL, ComponentId, Topology

ZONES = ("zone-a", "zone-b", "zone-c")
TOPOLOGY = Topology(ZONES)


def c(name: str) -> ComponentId:
    return TOPOLOGY.named(name)


def test_the_topology_comes_from_one_description() -> None:
    assert [x.name for x in TOPOLOGY.members(POSTGRES)] == ["postgres-1", "postgres-2"]
    assert len(TOPOLOGY.services) == sum(MEMBERS.values()) + 2  # + HAProxy and the network proxy
    assert c("sentinel-3") == ComponentId(SENTINEL, 3, "zone-c")
    assert c("haproxy").zone is None and c("haproxy").name == "haproxy"
    assert [x.name for x in TOPOLOGY.in_zone("zone-c")] == ["etcd-3", "sentinel-3"]
    assert TOPOLOGY.api(4, "zone-b").name == "api-4"
    assert TOPOLOGY.find("postgres-9") is None
    with pytest.raises(HarnessError, match="no component named"):
        TOPOLOGY.named("postgres-9")
    order = sorted([c("postgres-1"), c("sentinel-2"), c("etcd-3"), c("redis-1")], key=Topology.restart_order)
    assert [x.name for x in order] == ["etcd-3", "redis-1", "sentinel-2", "postgres-1"]
