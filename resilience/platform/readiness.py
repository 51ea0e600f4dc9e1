"""Readiness: "this replica reaches the current PostgreSQL primary", kept fresh in the background.

HAProxy asks /health/ready every 250-500 ms, so answering must cost nothing:
a background task checks the primary every `interval` and stamps the time of
the last good check; /health/ready only compares that stamp with the clock.
The same task finishes database start-up when PostgreSQL was not there at
boot, so a replica never crash-loops on a brief outage; it is just not ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from .db import Database, DatabaseUnavailable, PrimaryProbe

log = logging.getLogger("resilience.platform")


class Readiness:
    """Ready while the last good check is younger than `max_age_s`."""

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age_s = max_age_s
        self._clock = clock
        self._last_ok: float | None = None

    def mark_ok(self) -> None:
        self._last_ok = self._clock()

    def mark_down(self) -> None:
        self._last_ok = None

    def is_ready(self) -> bool:
        return self._last_ok is not None and self._clock() - self._last_ok < self._max_age_s


class PrimaryWatch:
    """The background loop: start the database if needed, then check the primary, forever."""

    def __init__(self, database: Database, probe: PrimaryProbe, readiness: Readiness, interval_s: float) -> None:
        self._database = database
        self._probe = probe
        self._readiness = readiness
        self._interval_s = interval_s
        self._last_state: bool | None = None
        self._last_start_error = ""

    async def tick(self) -> bool:
        """One round; returns whether the primary was reached (and the schema is in place)."""
        if not self._database.started:
            try:
                await self._database.start()
            except DatabaseUnavailable as exc:
                if str(exc) != self._last_start_error:  # log changes, not every 0.5 s
                    log.warning("database start-up not done yet: %s", exc)
                    self._last_start_error = str(exc)
        ok = self._database.started and await self._probe.check()
        if ok:
            self._readiness.mark_ok()
        if ok != self._last_state:
            self._last_state = ok
            log.warning("ready" if ok else "not ready: the PostgreSQL primary is not reachable")
        return ok

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.tick()
            except Exception:  # the loop must survive anything; readiness then goes stale
                log.exception("readiness check failed unexpectedly")
            await asyncio.sleep(max(0.0, self._interval_s - (loop.time() - started)))
