"""One observation of the stack, judged: health, problems, the PostgreSQL leader, the Redis master."""

from __future__ import annotations

from typing import Any

from resilience.targets.local.monitor import Observation, ReplicaHealth, assess
from resilience.targets.local.topology import SENTINEL, ComponentId, Topology

TOPOLOGY = Topology(("zone-a", "zone-b", "zone-c"))


def c(name: str) -> ComponentId:
    return TOPOLOGY.named(name)


def whole_stack(**changes: Any) -> Observation:
    primary = {"state": "running", "role": "master", "timeline": 2,
               "replication": [{"application_name": "postgres-2", "state": "streaming"}]}
    fields: dict[str, Any] = dict(
        at=1.0, running={x: True for x in TOPOLOGY.services},
        patroni={c("postgres-1"): primary, c("postgres-2"): {"state": "running", "role": "replica", "timeline": 2}},
        cluster={"members": [{"name": "postgres-1", "role": "leader", "state": "running"},
                             {"name": "postgres-2", "role": "sync_standby", "state": "streaming"}]},
        cluster_from=c("postgres-1"),
        redis={c("redis-1"): {"role": "master"},
               c("redis-2"): {"role": "slave", "master_host": "10.0.0.1", "master_port": 6391,
                              "master_link_status": "up"}},
        sentinels={x: (True, "10.0.0.1:6391") for x in TOPOLOGY.members(SENTINEL)},
        etcd={x: True for x in TOPOLOGY.members("etcd")},
        addresses={c("redis-1"): "10.0.0.1:6391", c("redis-2"): "10.0.0.2:6392"},
        replicas=(ReplicaHealth("api-1", False, True),))
    fields.update(changes)
    return Observation(**fields)


def test_a_whole_stack_has_no_problems_and_names_its_leader_and_master() -> None:
    obs = whole_stack()
    health = assess(obs, synchronous=True)
    assert health.problems == {}
    assert all(health.healthy.values()) and health.roles["postgres-1"] == "primary"
    assert obs.pg_leader == "postgres-1" and obs.sync_standbys == {"postgres-2"}
    assert obs.redis_master == "redis-1" and obs.redis_master_id == c("redis-1")


def test_the_redis_master_is_what_a_majority_of_the_answering_sentinels_name() -> None:
    one_stale = {c("sentinel-1"): (True, "10.0.0.2:6392"), c("sentinel-2"): (True, "10.0.0.1:6391"),
                 c("sentinel-3"): (True, "10.0.0.1:6391")}
    assert whole_stack(sentinels=one_stale).redis_master == "redis-1"
    split = {c("sentinel-1"): (True, "10.0.0.2:6392"), c("sentinel-2"): (True, "10.0.0.1:6391"),
             c("sentinel-3"): (False, None)}  # did not answer: not counted
    assert whole_stack(sentinels=split).redis_master is None
    assert "names 10.0.0.2:6392" in assess(whole_stack(sentinels=one_stale), True).problems["sentinel-1"]


def test_a_frozen_member_and_a_lost_replica_are_problems() -> None:
    running = {x: x != c("postgres-2") for x in TOPOLOGY.services}
    obs = whole_stack(running=running, paused=frozenset({c("postgres-2")}),
                      patroni={c("postgres-1"): whole_stack().patroni[c("postgres-1")], c("postgres-2"): None},
                      replicas=(ReplicaHealth("api-1", True, False),))
    health = assess(obs, synchronous=True)
    assert health.problems["postgres-2"] == "frozen by a fault"
    assert health.problems["api-1"] == "lost with its zone"
    assert not health.healthy["postgres-2"] and not health.healthy["api-1"]


def test_the_sync_standby_counts_only_as_the_primary_reads_it() -> None:
    """When the primary's /cluster did not answer, another member's (perhaps stale) view does not make a heal."""
    obs = whole_stack(cluster_from=c("postgres-2"))
    assert obs.pg_leader == "postgres-1" and obs.sync_standbys == set()
    assert "not yet the synchronous standby" in assess(obs, synchronous=True).problems["postgres-2"]
    assert assess(obs, synchronous=False).problems == {}


def test_no_leader_in_the_cluster_view_means_no_leader() -> None:
    cluster = {"members": [{"name": "postgres-1", "role": "leader", "state": "stopped"}]}
    assert whole_stack(cluster=cluster).pg_leader is None
    assert whole_stack(cluster=None).pg_leader is None
