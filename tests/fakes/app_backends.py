"""The fake app's PostgreSQL and Redis: FakeAws' RDS cluster and ElastiCache group, as the app's pods reach them.

The platform's API (resilience/platform/app.py) answers 503 "database unavailable, retry later"
when PostgreSQL fails, and serves the menu from PostgreSQL when Redis fails (after the Redis
timeout). So the fake app consults these before answering:

- the database is unreachable while FakeAws says its writer does not answer (`database_available`:
  from the outage that follows FailoverDBCluster's return until the new writer is in place), and,
  once a new writer is in place, for `reconnect_s` more fake seconds: the pods' connections to the
  old writer are dead and the pool reconnects through the cluster endpoint, whose DNS record moves
  to the new writer
  (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/multi-az-db-clusters-concepts-failover.html:
  "clean up and re-establish any existing connections");
- the cache is unreachable while FakeAws says its primary does not answer (`cache_available`: from
  the outage that follows TestFailover's return until a replica is promoted), then `reconnect_s` more.
  The order is the services': the call returns, then the outage, then the new leader.

State is read from moto's backends in this process (no API call per request).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

DB_ROUTES = ("/orders", "/payments", "/health/ready")  # what needs PostgreSQL (prefixes)


def rds_writer(account: str, region: str, cluster_id: str, answering: Callable[[], bool]) -> Callable[[], str | None]:
    """The cluster's writer, or None while it does not answer (`answering`: FakeAws.database_available) or is gone."""
    def probe() -> str | None:
        from moto.rds.models import rds_backends
        cluster = rds_backends[account][region].clusters.get(cluster_id)
        if cluster is None or not answering():
            return None
        return next((m.db_instance_identifier for m in cluster.members if m.is_cluster_writer), None)
    return probe


def cache_primary(account: str, region: str, group_id: str, answering: Callable[[], bool]) -> Callable[[], str | None]:
    """The first node group's primary, or None while it does not answer (`answering`: FakeAws.cache_available)."""
    def probe() -> str | None:
        from moto.elasticache.models import elasticache_backends
        group = elasticache_backends[account][region].replication_groups.get(group_id)
        if group is None or not answering():
            return None
        return next((m["cache_cluster_id"] for m in group.node_groups[0]["node_group_members"]
                     if m.get("current_role") == "primary"), None)
    return probe


class Backend:
    """One backend as the pods see it: down while its probe says so, and `reconnect_s` after its leader changed."""

    def __init__(self, name: str, probe: Callable[[], str | None], now: Callable[[], float], reconnect_s: float) -> None:
        self.name, self.probe, self.now, self.reconnect_s = name, probe, now, reconnect_s
        self.leader: str | None = None
        self.back_at = 0.0
        self.failures = 0  # requests it failed
        self._lock = threading.Lock()

    def up(self) -> bool:
        leader = self.probe()
        with self._lock:
            if leader is not None and self.leader is not None and leader != self.leader:
                self.back_at = self.now() + self.reconnect_s  # connections to the old leader are dead
            if leader is not None:
                self.leader = leader
            ok = leader is not None and self.now() >= self.back_at
            if not ok:
                self.failures += 1
            return ok


class FakeBackends:
    """The database and the cache of the fake app (tests/fakes/app_service.py)."""

    def __init__(self, database: Callable[[], str | None], cache: Callable[[], str | None],
                 now: Callable[[], float], reconnect_s: float = 5.0) -> None:
        self.database = Backend("database", database, now, reconnect_s)
        self.cache = Backend("cache", cache, now, reconnect_s)

    def refusal(self, method: str, path: str) -> tuple[int, Any] | None:
        """The app's answer when a backend it needs is down, or None (the request goes on)."""
        if path == "/menu":
            if self.cache.up() or self.database.up():  # a cache failure falls back to PostgreSQL
                return None
        elif not path.startswith(DB_ROUTES) or self.database.up():
            return None
        return 503, {"detail": "database unavailable, retry later"}
