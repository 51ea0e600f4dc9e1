"""The heal checks on hand-built answers: what Patroni, Redis and Sentinel report when a member
has or has not rejoined (shapes taken from Patroni 3.0.2's /patroni and Redis 7's INFO replication)."""

from __future__ import annotations

from typing import Any

from resilience.targets.local.healing import (HealProgress, agreed_master, heal_action, postgres_problems,
                                              redis_problems)


def primary(timeline: int = 2, streams: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"state": "running", "role": "master", "timeline": timeline,
            "replication": streams if streams is not None else
            [{"application_name": "postgres-1", "state": "streaming", "sync_state": "sync"}]}


def replica(timeline: int = 2, state: str = "running") -> dict[str, Any]:
    return {"state": state, "role": "replica", "timeline": timeline}


def test_a_streaming_synchronous_standby_named_in_the_sync_key_is_whole() -> None:
    statuses = {"postgres-1": replica(), "postgres-2": primary()}
    assert postgres_problems(statuses, True, {"postgres-1"}) == {}


def test_a_former_primary_waiting_for_wal_on_a_forked_timeline_is_not_whole() -> None:
    """What the issue saw: Patroni says running, PostgreSQL waits forever on the old timeline."""
    statuses = {"postgres-1": replica(timeline=1), "postgres-2": primary(timeline=2, streams=[])}
    problems = postgres_problems(statuses, True, set())
    assert "timeline 1" in problems["postgres-1"] and "postgres-2" not in problems


def test_running_but_not_streaming_is_not_whole() -> None:
    statuses = {"postgres-1": replica(), "postgres-2": primary(streams=[])}
    assert "not streaming" in postgres_problems(statuses, False, set())["postgres-1"]


def test_streaming_synchronously_before_patroni_records_it_is_not_whole() -> None:
    """Patroni promotes only members its /sync key names; until then a primary loss has no candidate."""
    statuses = {"postgres-1": replica(), "postgres-2": primary()}
    problem = postgres_problems(statuses, True, set())["postgres-1"]
    assert "/sync" in problem
    assert postgres_problems(statuses, False, set()) == {}  # asynchronous replication needs no sync key


def test_no_primary_or_two_primaries_is_a_problem_for_every_member() -> None:
    assert set(postgres_problems({"postgres-1": replica(), "postgres-2": None}, True, set())) == \
        {"postgres-1", "postgres-2"}
    two = postgres_problems({"postgres-1": primary(), "postgres-2": primary()}, True, set())
    assert all("2 primaries" in why for why in two.values())


def test_a_silent_or_starting_member_is_named() -> None:
    assert postgres_problems({"postgres-1": None, "postgres-2": primary()}, False, set()) == \
        {"postgres-1": "Patroni does not answer"}
    problems = postgres_problems({"postgres-1": replica(state="starting"), "postgres-2": primary()}, False, set())
    assert problems["postgres-1"] == "PostgreSQL is starting"


A, B = "10.0.0.1:6381", "10.0.0.2:6382"


def test_sentinel_majority_and_disagreement() -> None:
    assert agreed_master({"s1": A, "s2": A, "s3": B}) == A
    assert agreed_master({"s1": A, "s2": None, "s3": B}) is None
    assert agreed_master({"s1": None, "s2": None, "s3": None}) is None


def test_redis_whole_when_master_agreed_and_replica_linked() -> None:
    infos = {"redis-1": {"role": "master"},
             "redis-2": {"role": "slave", "master_host": "10.0.0.1", "master_port": 6381, "master_link_status": "up"}}
    problems = redis_problems(infos, {"redis-1": A, "redis-2": B}, {"sentinel-1": A, "sentinel-2": A, "sentinel-3": A})
    assert problems == {}


def test_redis_replica_with_its_link_down_or_a_stale_master_is_not_whole() -> None:
    addresses = {"redis-1": A, "redis-2": B}
    sentinels = {"sentinel-1": A, "sentinel-2": A, "sentinel-3": B}
    infos = {"redis-1": {"role": "master"},
             "redis-2": {"role": "slave", "master_host": "10.0.0.1", "master_port": 6381,
                         "master_link_status": "down"}}
    problems = redis_problems(infos, addresses, sentinels)
    assert "link" in problems["redis-2"] and "majority" in problems["sentinel-3"]
    # a former master that came back as master while the Sentinels name the other one
    infos = {"redis-1": {"role": "master"}, "redis-2": {"role": "master"}}
    problems = redis_problems(infos, addresses, {"sentinel-1": B, "sentinel-2": B, "sentinel-3": B})
    assert "expected a replica" in problems["redis-1"] and "redis-2" not in problems


def test_heal_action_from_patroni_log() -> None:
    assert heal_action("INFO: running pg_rewind from postgres-2\nINFO: pg_rewind exit code=0", False) == "rewind"
    assert heal_action("INFO: reinitializing due to diverged timelines", False) == "reinit"
    assert heal_action("INFO: no action. I am (postgres-1), a secondary", True) == "reinit"
    assert heal_action("INFO: no action. I am (postgres-1), a secondary", False) == "rejoin"


def test_heal_progress_counts_a_component_healed_from_when_it_stayed_whole() -> None:
    p = HealProgress(["postgres-1", "redis-1"], started=100.0)
    p.observe(101.0, {"postgres-1": "not streaming", "redis-1": "does not answer"})
    p.observe(102.0, {"postgres-1": "not streaming"})
    p.observe(103.0, {})  # postgres whole, but...
    p.observe(104.0, {"postgres-1": "not streaming"})  # ...not for long
    assert not p.done and p.pending() == {"postgres-1": "not streaming"}
    p.observe(106.0, {})
    assert p.done and p.seconds("postgres-1") == 6.0 and p.seconds("redis-1") == 2.0


def test_reinitialize_is_asked_after_the_grace_and_not_repeated_at_once() -> None:
    p = HealProgress(["postgres-1"], started=0.0)
    assert not p.may_reinitialize("postgres-1", 5.0, 20.0)
    assert p.may_reinitialize("postgres-1", 21.0, 20.0)
    assert not p.may_reinitialize("postgres-1", 22.0, 20.0)  # refused? ask again only after another grace
    assert p.may_reinitialize("postgres-1", 41.5, 20.0)
    p.reinitialized.add("postgres-1")
    assert not p.may_reinitialize("postgres-1", 90.0, 20.0)
