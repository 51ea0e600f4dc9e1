"""The platform app's small pure pieces: DSN splitting, totals, breaker, readiness, log throttle."""

from __future__ import annotations

import logging

import pytest

from resilience.platform.app import resolve_idempotency_key
from resilience.platform.cache import CircuitBreaker
from resilience.platform.db import MENU_SEED, PrimaryConnector, host_dsns, order_total_paise
from resilience.platform.readiness import Readiness
from resilience.platform.throttled_log import ThrottledLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_host_dsns_splits_hosts_and_keeps_the_rest() -> None:
    dsn = "postgresql://app:s%40cret@10.0.0.1:5441,10.0.0.2:5442/meals?target_session_attrs=read-write"
    assert host_dsns(dsn) == [
        "postgresql://app:s%40cret@10.0.0.1:5441/meals?target_session_attrs=read-write",
        "postgresql://app:s%40cret@10.0.0.2:5442/meals?target_session_attrs=read-write",
    ]


@pytest.mark.parametrize("dsn", ["postgresql://h:5432/db", "postgresql://u@h", "postgres://u@h?x=1"])
def test_host_dsns_leaves_single_host_urls_alone(dsn: str) -> None:
    assert host_dsns(dsn) == [dsn]


def test_connector_tries_the_last_good_host_first() -> None:
    connector = PrimaryConnector("postgresql://u@a:1,b:2,c:3/db", 1.0, 2.0)
    assert connector.host_order() == [0, 1, 2]
    connector._preferred = 2  # what a successful connect to host c records
    assert connector.host_order() == [2, 0, 1]


def test_order_total_uses_menu_prices() -> None:
    prices = {item_id: paise for item_id, _, _, paise, _ in MENU_SEED}
    assert order_total_paise([(1, 2), (11, 1)], prices) == 2 * 4500 + 2500
    with pytest.raises(KeyError):
        order_total_paise([(999, 1)], prices)


def test_menu_seed_is_a_dozen_distinct_items() -> None:
    assert len(MENU_SEED) == 12 and len({row[0] for row in MENU_SEED}) == 12
    assert all(row[3] > 0 for row in MENU_SEED)


def test_idempotency_key_from_body_or_header() -> None:
    assert resolve_idempotency_key("a", None) == "a"
    assert resolve_idempotency_key(None, " b ") == "b"
    assert resolve_idempotency_key("a", "a") == "a"
    assert resolve_idempotency_key(None, None) is None
    with pytest.raises(ValueError, match="differ"):
        resolve_idempotency_key("a", "b")
    with pytest.raises(ValueError, match="128"):
        resolve_idempotency_key(None, "x" * 129)


def test_circuit_breaker_opens_after_a_failure_then_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(open_for_s=1.0, clock=clock)
    assert breaker.allow()
    breaker.record_failure()
    assert not breaker.allow()
    clock.now += 0.99
    assert not breaker.allow()
    clock.now += 0.02
    assert breaker.allow()


def test_readiness_goes_stale() -> None:
    clock = FakeClock()
    readiness = Readiness(max_age_s=1.5, clock=clock)
    assert not readiness.is_ready()  # never checked
    readiness.mark_ok()
    clock.now += 1.4
    assert readiness.is_ready()
    clock.now += 0.2
    assert not readiness.is_ready()
    readiness.mark_ok()
    readiness.mark_down()
    assert not readiness.is_ready()


def test_throttled_log_reports_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    throttled = ThrottledLog(logging.getLogger("test.throttled"), interval_s=1.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.throttled"):
        assert throttled.warning("db", "down")
        assert not throttled.warning("db", "down")
        assert not throttled.warning("db", "down")
        assert throttled.warning("cache", "down")  # another kind is not throttled by the first
        clock.now += 1.0
        assert throttled.warning("db", "still down")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["db: down", "cache: down", "db: still down (and 2 more like it since the last report)"]
