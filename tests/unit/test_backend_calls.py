"""Retry amplification, pool waits and cache bypasses (issue 21): the platform's counters, the harness' scrape at
phase boundaries, and the pure checker over hand-built histories."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from prometheus_client import generate_latest
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from resilience import backend_scrape
from resilience.checkers import compute
from resilience.checkers.backend_calls import difference, measurements, per_phase
from resilience.config import Targets
from resilience.history import History, Record
from resilience.platform.cache import CountingRetry
from resilience.platform.db import Database
from resilience.platform.metrics import Metrics
from resilience.platform.settings import PlatformSettings
from resilience.targets.base import Component, StackStatus


def counters(requests: float, db: float, cache: float = 0.0, retries: float = 0.0, **more: float) -> dict[str, float]:
    return {"requests": requests, "database_calls": db, "cache_calls": cache, "cache_retries": retries, **more}


def scrape(t: float, phase: str, **replicas: dict[str, float]) -> Record:
    return Record(t, "metrics", "scrape", "info", detail={"phase": phase, "replicas": replicas, "unreachable": {}})


def test_the_replicas_metrics_are_parsed_into_the_counters_the_checker_needs() -> None:
    m = Metrics("api-1", "zone-a")
    m.observe("/menu", "GET", 200, 0.01)
    m.observe("/orders", "POST", 201, 0.02)
    m.observe("/health/ready", "GET", 200, 0.001)  # not a client request
    m.backend_call("database", "transaction")
    m.backend_call("cache", "get")
    m.backend_call("cache", "retry")
    m.pool_acquired(0.0005, False, False)
    m.pool_acquired(0.25, True, False)
    m.pool_acquired(1.2, True, True)
    m.cache_result("bypass")
    m.cache_result("hit")
    parsed = backend_scrape.parse(generate_latest(m.registry).decode())
    assert parsed["requests"] == 2 and parsed["database_calls"] == 1
    assert parsed["cache_calls"] == 1 and parsed["cache_retries"] == 1
    assert parsed["pool_waits"] == 3 and parsed["pool_wait_s"] == pytest.approx(1.4505)
    assert parsed["pool_waits_le_0.01"] == 1 and parsed["pool_waits_le_0.1"] == 1
    assert parsed["pool_exhausted"] == 2 and parsed["pool_acquire_timeouts"] == 1
    assert parsed["cache_bypass"] == 1 and parsed["cache_hit"] == 1 and parsed["cache_miss"] == 0


def test_difference_takes_a_restarted_replica_from_zero_and_names_a_missing_one() -> None:
    before = {"replicas": {"api-1": counters(100, 100), "api-2": counters(50, 60), "api-3": counters(10, 10)}}
    after = {"replicas": {"api-1": counters(150, 170), "api-2": counters(5, 7), "api-4": counters(3, 3)}}
    totals, restarted, missing = difference(before, after)
    assert totals["requests"] == 50 + 5 + 3 and totals["database_calls"] == 70 + 7 + 3
    assert restarted == ["api-2", "api-4"] and missing == ["api-3"]


def _history() -> list[Record]:
    return [scrape(10.0, "steady", **{"api-1": counters(0, 0)}),
            scrape(20.0, "fault", **{"api-1": counters(100, 110, 40, 0, pool_waits=110, pool_wait_s=0.11,
                                                     **{"pool_waits_le_0.01": 110, "pool_waits_le_0.1": 110},
                                                     cache_hit=38, cache_miss=2)}),
            scrape(35.0, "recovery", **{"api-1": counters(200, 260, 90, 30, pool_waits=260, pool_wait_s=3.11,
                                                        **{"pool_waits_le_0.01": 200, "pool_waits_le_0.1": 240},
                                                        pool_exhausted=12, cache_hit=60, cache_miss=4,
                                                        cache_bypass=26, cache_failures=30)}),
            scrape(45.0, "end", **{"api-1": counters(300, 370, 130, 30, pool_waits=370, pool_wait_s=3.22,
                                                   **{"pool_waits_le_0.01": 310, "pool_waits_le_0.1": 350},
                                                   pool_exhausted=12, cache_hit=98, cache_miss=6, cache_bypass=26,
                                                   cache_failures=30)})]


def test_backend_calls_per_request_pool_waits_and_bypasses_per_phase() -> None:
    found = {(m.name.rsplit("_", 1)[0], m.phase): m for m in measurements(_history())}
    assert found[("backend_calls_per_request", "steady")].value == 1.5  # (110 + 40) / 100
    fault = found[("backend_calls_per_request", "fault")]
    assert fault.value == 2.3 and fault.detail["cache_retries"] == 30 and fault.detail["database_per_request"] == 1.5
    assert fault.target is None and fault.status == "met"  # reported, not judged
    pool = found[("pool_wait_ms", "fault")]
    assert pool.value == 20.0 and pool.detail["over_10ms"] == 60 and pool.detail["over_100ms"] == 20
    assert pool.detail["exhausted"] == 12
    bypass = found[("cache_bypass", "fault")]
    assert bypass.value == 26 and bypass.detail["bypass_share"] == pytest.approx(26 / 50, abs=1e-3)
    assert found[("cache_bypass", "recovery")].value == 0
    assert per_phase(_history())["fault"]["window"] == [20.0, 35.0]


def test_a_phase_whose_end_was_not_scraped_is_not_measured() -> None:
    gap = [r for r in _history() if (r.detail or {}).get("phase") != "fault"]  # steady ... recovery: no fault scrape
    assert sorted({m.phase for m in measurements(gap)}) == ["recovery"]


def test_no_scrapes_no_figures_and_an_idle_phase_is_not_measured() -> None:
    assert measurements([]) == []
    idle = [scrape(1.0, "fault", **{"api-1": counters(5, 5)}), scrape(2.0, "recovery", **{"api-1": counters(5, 5)})]
    [calls, pool, _] = measurements(idle)
    assert calls.value is None and "no client request" in calls.detail["reason"] and pool.value is None


def test_compute_reports_them_beside_the_judged_figures() -> None:
    records = _history() + [Record(10.0, "phase", "steady", "info"), Record(20.0, "phase", "fault", "info"),
                            Record(35.0, "phase", "recovery", "info"), Record(45.0, "phase", "end", "info")]
    records += [Record(10.0 + i * 0.1, "load", "GET /menu", "ok", 0.01) for i in range(340)]
    names = {(m.name.removesuffix(f"_{m.phase}"), m.phase) for m in compute(records, targets=Targets(), measures=["availability"])}
    assert ("backend_calls_per_request", "fault") in names and ("pool_wait_ms", "recovery") in names
    assert any(name.startswith("availability") for name, _ in names)


def test_redis_retries_are_counted_and_survive_redis_pys_deep_copy() -> None:
    seen: list[int] = []

    def on_retry() -> None:
        seen.append(1)
    retry = copy.deepcopy(CountingRetry(NoBackoff(), 1, on_retry=on_retry))
    attempts = {"n": 0}

    async def flaky() -> str:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise RedisConnectionError("lost")
        return "PONG"

    async def fail(_error: Exception) -> None:
        return None
    assert asyncio.run(retry.call_with_retry(flaky, fail)) == "PONG"
    assert seen == [1]


class FakePool:
    def __init__(self, idle: int, size: int, maximum: int, hang: bool = False) -> None:
        self.idle, self.size, self.maximum, self.hang = idle, size, maximum, hang

    def get_idle_size(self) -> int:
        return self.idle

    def get_size(self) -> int:
        return self.size

    def get_max_size(self) -> int:
        return self.maximum

    async def acquire(self) -> str:
        if self.hang:
            await asyncio.sleep(10)
        return "connection"


def test_pool_waits_say_when_the_pool_was_exhausted_and_when_the_budget_ran_out() -> None:
    database = Database(PlatformSettings())
    waits: list[tuple[float, bool, bool]] = []
    database.on_pool_wait = lambda waited, exhausted, timed_out: waits.append((waited, exhausted, timed_out))
    assert asyncio.run(database._acquire(FakePool(idle=1, size=5, maximum=5))) == "connection"  # type: ignore[arg-type]

    async def cut() -> None:
        async with asyncio.timeout(0.05):
            await database._acquire(FakePool(idle=0, size=5, maximum=5, hang=True))  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        asyncio.run(cut())
    assert [(e, t) for _, e, t in waits] == [(False, False), (True, True)] and waits[1][0] >= 0.04


class ScrapedTarget:
    name = "local"

    def status(self) -> StackStatus:
        return StackStatus("local", True, None, "netns",
                           [Component("api-1", "api", "replica", "zone-a", 42, "10.0.0.1:8101", True),
                            Component("api-2", "api", "lost", "zone-b", None, "10.0.0.2:8102", False),
                            Component("redis-1", "redis", "master", "zone-a", 43, "10.0.0.1:6391", True)])


def test_each_phase_boundary_records_a_scrape_of_the_running_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[tuple[str, str]]] = []

    def fake(replicas: list[tuple[str, str]], timeout_s: float = 1.0) -> dict[str, Any]:
        asked.append(replicas)
        return {"replicas": {name: counters(1, 1) for name, _ in replicas}, "unreachable": {}}
    monkeypatch.setattr(backend_scrape, "scrape", fake)
    history = History()
    for phase in ("steady", "fault", "end"):
        backend_scrape.record_scrape(history, ScrapedTarget(), phase)  # "end" waits for the background ones
    found = [r for r in history.records if r.source == "metrics"]
    assert sorted(r.detail["phase"] for r in found) == ["end", "fault", "steady"]  # type: ignore[index]
    assert asked[0] == [("api-1", "10.0.0.1:8101")]
    other = ScrapedTarget()
    other.name = "kubernetes"
    backend_scrape.record_scrape(history, other, "end")
    assert len([r for r in history.records if r.source == "metrics"]) == 3


def test_a_boundary_the_supervisor_could_not_answer_is_recorded_unscraped() -> None:
    class Gone(ScrapedTarget):
        def status(self) -> StackStatus:
            raise RuntimeError("the supervisor did not answer")
    history = History()
    backend_scrape.record_scrape(history, Gone(), "end")
    [record] = history.records
    assert record.op == "unscraped" and "did not answer" in record.detail["error"]  # type: ignore[index]
    assert measurements(history.records) == []
