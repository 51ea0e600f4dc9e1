"""Prometheus metrics for one replica, and the ASGI middleware that records requests.

Each app gets its own registry (tests build several apps in one process). Every
series carries `replica` and `zone` labels so a scrape of many replicas can be
told apart. The middleware is plain ASGI (cheaper than Starlette's
BaseHTTPMiddleware) and also stamps the `X-Replica` header on every response.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, MutableMapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0)
POOL_WAIT_BUCKETS = (0.0001, 0.001, 0.01, 0.1, 0.5, 1.0, 3.0)


class Metrics:
    """The replica's counters, histogram and gauges, already bound to its replica/zone labels."""

    def __init__(self, replica: str, zone: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._where = {"replica": replica, "zone": zone}
        self.requests = Counter("rsl_http_requests_total", "HTTP requests by route, method and status",
                                ["replica", "zone", "route", "method", "status"], registry=self.registry)
        self.latency = Histogram("rsl_http_request_duration_seconds", "HTTP request latency",
                                 ["replica", "zone", "route", "method"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.errors = Counter("rsl_http_errors_total", "Requests answered 5xx, by route and cause",
                              ["replica", "zone", "route", "cause"], registry=self.registry)
        self.db_failures = Counter("rsl_db_failures_total", "PostgreSQL operations that failed",
                                   ["replica", "zone", "operation"], registry=self.registry)
        self.cache_failures = Counter("rsl_cache_failures_total", "Redis operations that failed (best effort)",
                                      ["replica", "zone", "operation"], registry=self.registry)
        self.cache_results = Counter("rsl_cache_results_total", "Menu cache outcomes: hit, miss, bypass",
                                     ["replica", "zone", "result"], registry=self.registry)
        self.ready = Gauge("rsl_ready", "1 while this replica reaches the current PostgreSQL primary",
                           ["replica", "zone"], registry=self.registry)
        self.orders = Counter("rsl_orders_total", "Orders by outcome: created, replayed",
                              ["replica", "zone", "outcome"], registry=self.registry)
        # retry amplification: every attempt at a backend, retries included (database: one unit of work on a
        # pooled connection; cache: one Redis call, `retry` for each one redis-py repeats)
        self.backend_calls = Counter("rsl_backend_calls_total", "Backend calls attempted, retries included",
                                     ["replica", "zone", "backend", "operation"], registry=self.registry)
        self.pool_wait = Histogram("rsl_db_pool_wait_seconds", "Time waiting for a pooled PostgreSQL connection",
                                   ["replica", "zone"], buckets=POOL_WAIT_BUCKETS, registry=self.registry)
        self.pool_exhausted = Counter("rsl_db_pool_exhausted_total",
                                      "Pool acquisitions that found every connection busy at the pool's maximum",
                                      ["replica", "zone"], registry=self.registry)
        self.pool_timeouts = Counter("rsl_db_pool_acquire_timeouts_total",
                                     "Requests whose time budget ran out while waiting for a pooled connection",
                                     ["replica", "zone"], registry=self.registry)
        # process_start_time_seconds (crash-looping) and process_resident_memory_bytes (high memory) alerts
        ProcessCollector(registry=self.registry)
        Gauge("rsl_memory_limit_bytes", "The memory this replica may use: its cgroup's limit, else the host's",
              ["replica", "zone"], registry=self.registry).labels(**self._where).set(memory_limit_bytes())

    def db_failure(self, operation: str) -> None:
        self.db_failures.labels(operation=operation, **self._where).inc()

    def cache_failure(self, operation: str) -> None:
        self.cache_failures.labels(operation=operation, **self._where).inc()

    def cache_result(self, result: str) -> None:
        self.cache_results.labels(result=result, **self._where).inc()

    def backend_call(self, backend: str, operation: str) -> None:
        self.backend_calls.labels(backend=backend, operation=operation, **self._where).inc()

    def pool_acquired(self, waited_s: float, exhausted: bool, timed_out: bool) -> None:
        self.pool_wait.labels(**self._where).observe(waited_s)
        if exhausted:
            self.pool_exhausted.labels(**self._where).inc()
        if timed_out:
            self.pool_timeouts.labels(**self._where).inc()

    def error(self, route: str, cause: str) -> None:
        self.errors.labels(route=route, cause=cause, **self._where).inc()

    def order(self, outcome: str) -> None:
        self.orders.labels(outcome=outcome, **self._where).inc()

    def set_ready(self, ready: bool) -> None:
        self.ready.labels(**self._where).set(1 if ready else 0)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status), **self._where).inc()
        self.latency.labels(route=route, method=method, **self._where).observe(seconds)


def memory_limit_bytes() -> float:
    """The cgroup's memory limit (v2, then v1) when set below the host's memory, else the host's memory."""
    try:
        with open("/proc/meminfo") as f:
            host = float(f.readline().split()[1]) * 1024  # MemTotal: ... kB
    except (OSError, IndexError, ValueError):
        host = float("nan")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                limit = float(f.read().strip())
        except (OSError, ValueError):  # absent, or "max"
            continue
        if limit < host:
            return limit
    return host


def route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label values); 'unmatched' for 404s on no route."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class MetricsMiddleware:
    """Counts and times every HTTP request and adds `X-Replica` to every response."""

    def __init__(self, app: ASGIApp, metrics: Metrics, replica: str) -> None:
        self.app = app
        self.metrics = metrics
        self.replica_header = (b"x-replica", replica.encode("latin-1"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = list(message.get("headers", [])) + [self.replica_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            self.metrics.observe(route_template(scope), scope.get("method", ""), status,
                                 time.perf_counter() - started)
