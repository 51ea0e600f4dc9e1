"""The fake app's database and cache are FakeAws' RDS cluster and ElastiCache group: requests fail during a
failover and until the pods have reconnected, as the platform's do (503 from PostgreSQL; the menu from
PostgreSQL while Redis fails over)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from tests.fakes.app_backends import FakeBackends, cache_primary, rds_writer  # noqa: E402
from tests.fakes.aws_platform import MOTO_ACCOUNT, provision  # noqa: E402
from tests.fakes.aws_services import FakeAws, use_fake_credentials  # noqa: E402

REGION = "ap-south-1"
ZONES = ("ap-south-1a", "ap-south-1b", "ap-south-1c")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAws]:
    use_fake_credentials(monkeypatch, REGION)
    with FakeAws(manual_clock=True) as server:
        yield server


def test_a_database_failover_fails_requests_until_the_pods_reconnect(fake: FakeAws) -> None:
    made = provision(fake.url, REGION, ZONES, "appdb", cache_zones=[ZONES[1], ZONES[2]])
    backends = FakeBackends(rds_writer(MOTO_ACCOUNT, REGION, made.cluster, lambda: fake.database_available(made.cluster)),
                            cache_primary(MOTO_ACCOUNT, REGION, made.group, lambda: fake.cache_available(made.group)),
                            fake.clock.now, reconnect_s=5)
    assert backends.refusal("POST", "/orders") is None and backends.refusal("GET", "/menu") is None
    made.rds.failover_db_cluster(DBClusterIdentifier=made.cluster)  # the API returns at once ...
    assert backends.refusal("POST", "/orders") is None  # ... and the writer still answers: the outage comes later
    fake.advance(fake.rds_outage_after_s)
    assert backends.refusal("POST", "/orders") == (503, {"detail": "database unavailable, retry later"})
    assert backends.refusal("GET", "/menu") is None  # ... the menu comes from the cache
    assert backends.refusal("GET", "/orders/by-key/k") is not None and backends.refusal("GET", "/health/live") is None
    fake.advance(fake.rds_failover_s - fake.rds_outage_after_s)  # the new writer: connections to the old one died
    assert backends.refusal("POST", "/payments") is not None
    fake.advance(5)
    assert backends.refusal("POST", "/orders") is None
    assert backends.database.failures == 3


def test_a_cache_failover_falls_back_to_the_database(fake: FakeAws) -> None:
    made = provision(fake.url, REGION, ZONES, "appcache", cache_zones=[ZONES[1], ZONES[2]])
    backends = FakeBackends(rds_writer(MOTO_ACCOUNT, REGION, made.cluster, lambda: fake.database_available(made.cluster)),
                            cache_primary(MOTO_ACCOUNT, REGION, made.group, lambda: fake.cache_available(made.group)),
                            fake.clock.now, reconnect_s=5)
    assert backends.cache.up()
    made.session.client("elasticache", endpoint_url=fake.url).test_failover(ReplicationGroupId=made.group,
                                                                            NodeGroupId="0001")
    assert backends.cache.up()  # the call returned; the outage comes later
    made.rds.failover_db_cluster(DBClusterIdentifier=made.cluster)
    fake.advance(max(fake.cache_outage_after_s, fake.rds_outage_after_s))
    assert not backends.cache.up()
    assert backends.refusal("GET", "/menu") is not None  # neither answers
    fake.advance(fake.cache_promote_s - max(fake.cache_outage_after_s, fake.rds_outage_after_s))  # promoted
    assert not backends.cache.up()
    fake.advance(5)
    assert backends.cache.up()
