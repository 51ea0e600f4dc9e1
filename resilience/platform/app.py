"""The school-meal ordering API: menu, orders, payments, health and metrics.

The rules that make it robust on failover:
- an order is acknowledged (201) only after PostgreSQL committed it, and a
  replayed idempotency key returns the same order (200), never a duplicate;
- any PostgreSQL failure or timeout answers 503 quickly (the client may retry),
  never a 500 with a trace and never a hung request;
- Redis is best effort: when it is down the menu comes from PostgreSQL
  (`X-Cache: bypass`) and orders succeed as before;
- /health/ready is a clock comparison, fed by a background primary check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any, AsyncIterator

from fastapi import FastAPI, Header, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from .cache import MENU_KEY, Cache, make_redis_client
from .db import Database, DatabaseUnavailable, PrimaryProbe, order_total_paise
from .metrics import Metrics, MetricsMiddleware, route_template
from .readiness import PrimaryWatch, Readiness
from .settings import PlatformSettings, settings_from_env
from .throttled_log import ThrottledLog

log = logging.getLogger("resilience.platform")

MAX_LOOKUP_KEYS = 5000
STUDENT_COUNTER_TTL_S = 86_400


class OrderItem(BaseModel):
    item_id: int = Field(gt=0)
    qty: int = Field(ge=1, le=20)


class OrderRequest(BaseModel):
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)
    student_id: str = Field(min_length=1, max_length=64)
    items: list[OrderItem] = Field(min_length=1, max_length=20)


class LookupRequest(BaseModel):
    keys: list[str] = Field(max_length=MAX_LOOKUP_KEYS)


class PaymentRequest(BaseModel):
    order_id: uuid.UUID
    amount: float = Field(gt=0, le=100_000)
    method: str = Field(min_length=1, max_length=32)


def _json(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data, separators=(",", ":")).encode(), status_code=status_code,
                    media_type="application/json", headers=headers)


def _unprocessable(message: str) -> Response:
    return _json({"detail": message}, status_code=422)


def resolve_idempotency_key(body_key: str | None, header_key: str | None) -> str | None:
    """The order's idempotency key from the body or the Idempotency-Key header.

    Returns None when neither gives one; raises ValueError when they disagree.
    """
    header_key = header_key.strip() if header_key else None
    if body_key and header_key and body_key != header_key:
        raise ValueError("idempotency_key in the body and the Idempotency-Key header differ")
    key = body_key or header_key
    if key is not None and not 1 <= len(key) <= 128:
        raise ValueError("idempotency key must be 1..128 characters")
    return key


def create_app(settings: PlatformSettings | None = None) -> FastAPI:
    """A ready-to-serve app; PostgreSQL and Redis are connected in its lifespan."""
    settings = settings or settings_from_env()
    metrics = Metrics(settings.replica, settings.zone)
    errors = ThrottledLog(log)
    database = Database(settings)
    probe = PrimaryProbe(database.connector, timeout_s=max(0.1, settings.ready_interval_s))
    readiness = Readiness(settings.ready_max_age_s)
    watch = PrimaryWatch(database, probe, readiness, settings.ready_interval_s)

    def on_cache_failure(operation: str, exc: BaseException) -> None:
        metrics.cache_failure(operation)
        errors.warning(f"redis {operation} failed", f"{type(exc).__name__}: {exc}")

    def count_cache_retry() -> None:  # a plain function: redis-py deep-copies its Retry (and this) per connection
        metrics.backend_call("cache", "retry")

    cache = Cache(make_redis_client(settings, on_retry=count_cache_retry), settings.redis_timeout_s,
                  on_failure=on_cache_failure)
    cache.on_call = lambda operation: metrics.backend_call("cache", operation)
    database.on_call = lambda: metrics.backend_call("database", "transaction")
    database.on_pool_wait = metrics.pool_acquired

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.startup_wait_s
        # Wait for the primary for a while so the first requests succeed, but never crash:
        # when PostgreSQL is not there, serve anyway and report not ready.
        while not await watch.tick():
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("PostgreSQL primary not reachable within %.1f s of start; serving, not ready",
                            settings.startup_wait_s)
                break
            await asyncio.sleep(min(settings.ready_interval_s, remaining))
        task = loop.create_task(watch.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            probe.close()
            await cache.close()
            await database.close()

    app = FastAPI(title="School meals API", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(MetricsMiddleware, metrics=metrics, replica=settings.replica)

    @app.exception_handler(DatabaseUnavailable)
    async def database_unavailable(request: Request, exc: DatabaseUnavailable) -> Response:
        route = route_template(request.scope)
        metrics.db_failure(route)
        metrics.error(route, "database")
        errors.warning(f"database failure on {request.method} {route}", str(exc))
        return _json({"detail": "database unavailable, retry later"}, status_code=503,
                     headers={"Retry-After": "1"})

    # -- menu ------------------------------------------------------------------
    @app.get("/menu")
    async def menu() -> Response:
        """A JSON list of items: item_id, name, description, price (INR), currency, vegetarian."""
        reached, cached = await cache.get(MENU_KEY)
        if cached is not None:
            metrics.cache_result("hit")
            return Response(cached, media_type="application/json", headers={"X-Cache": "hit"})
        body = json.dumps(await database.menu(), separators=(",", ":")).encode()
        result = "miss" if reached else "bypass"
        if reached:
            await cache.set(MENU_KEY, body, settings.menu_ttl_s)
        metrics.cache_result(result)
        return Response(body, media_type="application/json", headers={"X-Cache": result})

    # -- orders ----------------------------------------------------------------
    @app.post("/orders")
    async def place_order(order: OrderRequest, idempotency_key: str | None = Header(default=None)) -> Response:
        try:
            key = resolve_idempotency_key(order.idempotency_key, idempotency_key)
        except ValueError as exc:
            return _unprocessable(str(exc))
        if key is None:
            return _unprocessable("an idempotency_key (body) or Idempotency-Key header is required")
        if not database.started:
            raise DatabaseUnavailable("not connected to PostgreSQL yet")
        unknown = sorted({item.item_id for item in order.items} - database.prices.keys())
        if unknown:
            return _unprocessable(f"unknown item_id(s): {unknown}; see GET /menu")
        pairs = [(item.item_id, item.qty) for item in order.items]
        placed, created = await database.place_order(
            key, order.student_id, [{"item_id": i, "qty": q} for i, q in pairs],
            order_total_paise(pairs, database.prices))
        metrics.order("created" if created else "replayed")
        if created:
            cache.count_in_background(f"rsl:student:{order.student_id}:orders", STUDENT_COUNTER_TTL_S)
        return _json(placed.to_json(), status_code=201 if created else 200)

    @app.get("/orders/by-key/{idempotency_key}")
    async def order_by_key(idempotency_key: str) -> Response:
        found = await database.order_by_key(idempotency_key)
        if found is None:
            return _json({"detail": "no order with this idempotency key"}, status_code=404)
        return _json(found.to_json())

    @app.get("/orders/{order_id}")
    async def order_by_id(order_id: str) -> Response:
        try:
            parsed = uuid.UUID(order_id)
        except ValueError:
            parsed = None
        found = None if parsed is None else await database.order_by_id(parsed)
        if found is None:
            return _json({"detail": "no such order"}, status_code=404)
        return _json(found.to_json())

    @app.post("/orders/lookup")
    async def lookup(request: LookupRequest) -> Response:
        keys = list(dict.fromkeys(request.keys))
        found = await database.lookup(keys) if keys else {}
        return _json({"found": found, "missing": [k for k in keys if k not in found]})

    # -- payments --------------------------------------------------------------
    @app.post("/payments")
    async def record_payment(payment: PaymentRequest) -> Response:
        if not database.started:
            raise DatabaseUnavailable("not connected to PostgreSQL yet")
        result = await database.record_payment(payment.order_id, round(payment.amount * 100), payment.method)
        if result is None:
            return _json({"detail": "no such order"}, status_code=404)
        recorded, created = result
        return _json(recorded.to_json(), status_code=201 if created else 200)

    # -- operations ------------------------------------------------------------
    @app.get("/health/live")
    async def live() -> Response:
        return _json({"status": "live", "replica": settings.replica})

    @app.get("/health/ready")
    async def ready() -> Response:
        if readiness.is_ready():
            return _json({"status": "ready", "replica": settings.replica})
        return _json({"status": "not ready", "replica": settings.replica}, status_code=503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        metrics.set_ready(readiness.is_ready())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
