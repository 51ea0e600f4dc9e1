"""The platform app in-process with no PostgreSQL and no Redis: it must serve, degrade and say so.

The DSN points at a loopback port where nothing listens, so every connection
is refused at once; the app must still start, answer live, report not ready,
validate input (422) and answer database work with 503, never 500.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from resilience.platform.app import create_app
from resilience.platform.settings import PlatformSettings

NOBODY_LISTENS = 18010  # inside this module's port range; nothing is started on it


@pytest.fixture()
def client() -> Iterator[TestClient]:
    settings = PlatformSettings(pg_dsn=f"postgresql://app@127.0.0.1:{NOBODY_LISTENS}/meals", replica="api-7",
                                zone="zone-c", startup_wait_s=0.0, pg_connect_timeout_s=0.5)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_live_but_not_ready_without_postgres(client: TestClient) -> None:
    live = client.get("/health/live")
    assert live.status_code == 200 and live.headers["x-replica"] == "api-7"
    assert client.get("/health/ready").status_code == 503


def test_database_work_answers_503_not_500(client: TestClient) -> None:
    order = client.post("/orders", json={"idempotency_key": "k1", "student_id": "s1",
                                         "items": [{"item_id": 1, "qty": 1}]})
    assert order.status_code == 503 and order.headers["retry-after"] == "1"
    menu = client.get("/menu")
    assert menu.status_code == 503
    assert client.get("/orders/by-key/k1").status_code == 503
    assert client.post("/orders/lookup", json={"keys": ["k1"]}).status_code == 503
    payment = client.post("/payments", json={"order_id": str(uuid.uuid4()), "amount": 40, "method": "upi"})
    assert payment.status_code == 503


@pytest.mark.parametrize("body", [
    {"idempotency_key": "k", "student_id": "s", "items": []},
    {"idempotency_key": "k", "student_id": "s", "items": [{"item_id": 1, "qty": 0}]},
    {"idempotency_key": "k", "student_id": "", "items": [{"item_id": 1, "qty": 1}]},
    {"idempotency_key": "", "student_id": "s", "items": [{"item_id": 1, "qty": 1}]},
    {"student_id": "s", "items": [{"item_id": 1, "qty": 1}]},
])
def test_invalid_orders_are_422_even_without_a_database(client: TestClient, body: dict[str, object]) -> None:
    assert client.post("/orders", json=body).status_code == 422


def test_header_and_body_keys_must_agree(client: TestClient) -> None:
    response = client.post("/orders", headers={"Idempotency-Key": "other"},
                           json={"idempotency_key": "k", "student_id": "s", "items": [{"item_id": 1, "qty": 1}]})
    assert response.status_code == 422 and "differ" in response.json()["detail"]


def test_lookup_is_capped_at_5000_keys(client: TestClient) -> None:
    assert client.post("/orders/lookup", json={"keys": ["k"] * 5001}).status_code == 422
    assert client.post("/orders/lookup", json={"keys": []}).json() == {"found": {}, "missing": []}


def test_metrics_carry_replica_zone_route_and_failures(client: TestClient) -> None:
    client.post("/orders", json={"idempotency_key": "k1", "student_id": "s1", "items": [{"item_id": 1, "qty": 1}]})
    client.get("/orders/by-key/k1")
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'rsl_ready{replica="api-7",zone="zone-c"} 0.0' in text
    assert ('rsl_http_requests_total{method="POST",replica="api-7",route="/orders",status="503",zone="zone-c"} 1.0'
            in text)
    assert 'route="/orders/by-key/{idempotency_key}"' in text
    assert 'route="unmatched"' in text
    assert 'rsl_db_failures_total{operation="/orders",replica="api-7",zone="zone-c"} 1.0' in text
    assert "rsl_http_request_duration_seconds_bucket" in text
