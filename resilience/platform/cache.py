"""Redis as a best-effort cache: it may speed requests up, it must never fail or stall one.

The master is found through Sentinel (or a plain URL). Every call is bounded by
a short time budget, and after a failure a circuit breaker skips Redis for a
moment, so that while Redis fails over or is down the app serves from
PostgreSQL at full speed instead of paying a socket timeout on every request.
Callers get `None`/`False` on any failure, never an exception.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .settings import PlatformSettings

log = logging.getLogger("resilience.platform")

MENU_KEY = "rsl:menu:v1"


class MappedSentinel(Sentinel):
    """Sentinel whose master address is dialled through a map (the address it names -> where to connect):
    the local stack puts its network proxy in the API <-> cache path this way, while Sentinel's own checks
    of Redis stay direct."""

    def __init__(self, address_map: dict[tuple[str, int], tuple[str, int]], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.address_map = address_map

    async def discover_master(self, service_name: str) -> Any:
        found = tuple(await super().discover_master(service_name))
        return self.address_map.get((str(found[0]), int(found[1])), found)


class CountingRetry(Retry):
    """redis-py's Retry, telling `on_retry` each time it repeats an attempt (retry amplification in /metrics).
    A plain function, not a bound method: redis-py deep-copies its Retry into every connection."""

    def __init__(self, *args: Any, on_retry: Callable[[], None] = lambda: None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_retry = on_retry

    async def call_with_retry(self, do: Callable[[], Awaitable[Any]], fail: Any, *args: Any, **kwargs: Any) -> Any:
        attempts = 0

        async def counted() -> Any:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                self.on_retry()
            return await do()
        return await super().call_with_retry(counted, fail, *args, **kwargs)


class CircuitBreaker:
    """Open (skip the dependency) for `open_for_s` after a failure; closed again after that."""

    def __init__(self, open_for_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._open_for_s = open_for_s
        self._clock = clock
        self._open_until = 0.0

    def allow(self) -> bool:
        return self._clock() >= self._open_until

    def record_failure(self) -> None:
        self._open_until = self._clock() + self._open_for_s


def make_redis_client(settings: PlatformSettings, on_retry: Callable[[], None] = lambda: None) -> Redis | None:
    """A client for the current master (via Sentinel), or for RSL_REDIS_URL, or None when neither is set;
    `on_retry` is told of each attempt redis-py repeats."""
    connection_options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        # One quick retry covers a stale pooled connection to a master that just failed over.
        "retry": CountingRetry(ExponentialBackoff(cap=0.05, base=0.01), retries=1, on_retry=on_retry),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 1,
        "max_connections": 50,
        "password": settings.redis_password,
    }
    if settings.redis_sentinels:
        # No retries towards a Sentinel: redis-py's default retries made one unreachable Sentinel
        # (a lost zone) cost ~7 s per discovery, longer than a call's budget, so discovery never
        # finished and never moved the dead Sentinel off the front of its list: Redis stayed
        # unusable for the whole outage. Without retries it costs one timeout, once.
        sentinel = MappedSentinel(dict(settings.redis_address_map), list(settings.redis_sentinels),
                            sentinel_kwargs={"socket_timeout": settings.redis_timeout_s, "password": settings.redis_password,
                                             "socket_connect_timeout": settings.redis_timeout_s,
                                             "retry": Retry(NoBackoff(), 0)},
                            **connection_options)
        client: Redis = sentinel.master_for(settings.redis_master)
        return client
    if settings.redis_url:
        if settings.redis_url.startswith("rediss://"):
            # Verify the chain and the host name whatever redis-py's defaults are (before 6.0 it did not
            # check the name); the URL may still add e.g. ssl_ca_certs=/path.
            connection_options.update(ssl_cert_reqs="required", ssl_check_hostname=True)
        return Redis.from_url(settings.redis_url, **connection_options)
    return None


class Cache:
    """Best-effort get/set/incr with a time budget and a circuit breaker."""

    def __init__(self, client: Redis | None, timeout_s: float, breaker: CircuitBreaker | None = None,
                 on_failure: Callable[[str, BaseException], None] | None = None) -> None:
        self._client = client
        # Budget for one call including redis-py's retry; the breaker covers the calls after it.
        self._budget_s = 2.5 * timeout_s
        self.breaker = breaker or CircuitBreaker(open_for_s=1.0)
        self._on_failure = on_failure
        self._background: set[asyncio.Task[Any]] = set()
        self.on_call: Callable[[str], None] = lambda operation: None  # each Redis call attempted (metrics.py)

    @property
    def usable(self) -> bool:
        """False when there is no Redis or the breaker says to skip it for now."""
        return self._client is not None and self.breaker.allow()

    async def _call(self, operation: str, call: Awaitable[Any]) -> tuple[bool, Any]:
        self.on_call(operation)
        try:
            async with asyncio.timeout(self._budget_s):
                return True, await call
        except Exception as exc:
            self.breaker.record_failure()
            if self._on_failure is not None:
                self._on_failure(operation, exc)
            return False, None

    async def get(self, key: str) -> tuple[bool, bytes | None]:
        """(reached, value): reached=False means Redis could not be asked (bypass)."""
        if self._client is None or not self.breaker.allow():
            return False, None
        ok, value = await self._call("get", self._client.get(key))
        return ok, value

    async def set(self, key: str, value: bytes, ttl_s: int) -> bool:
        if self._client is None or not self.breaker.allow():
            return False
        ok, _ = await self._call("set", self._client.set(key, value, ex=ttl_s))
        return ok

    def count_in_background(self, key: str, ttl_s: int) -> None:
        """INCR key (with an expiry) without making the caller wait; dropped when Redis is unhealthy."""
        if self._client is None or not self.breaker.allow() or len(self._background) >= 100:
            return
        client = self._client

        async def incr() -> None:
            async with client.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, ttl_s)
                await pipe.execute()

        task = asyncio.get_running_loop().create_task(self._call("incr", incr()))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._client is not None:
            try:
                await asyncio.wait_for(self._client.aclose(), timeout=1.0)
            except Exception as exc:  # shutting down: a Redis that is gone cannot be closed politely
                log.debug("closing the Redis client failed: %s: %s", type(exc).__name__, exc)
