"""A restore's steps as the run's `recovery` history records (docs/recovery-records.md), kept until the event feed reads them.

A cloud restore runs inside the harness (the runbook as code), not in a supervisor that writes
events.jsonl, so the target keeps what it did here and hands it over through `events_since`, like
the observers' events. Times inside a detail that the schema puts on the run clock (`target_t`,
`backup_stop_t`) are kept as CLOCK_MONOTONIC seconds under `target_m`, `backup_stop_m`: the event
feed (event_feed.recovery_record) puts them on the run clock, and takes a record's status (ok / fail /
info) out of `detail["status"]`.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .base import PlatformEvent

RECOVERY = "recovery"  # the history source (resilience/history.py names it too)


class RecoveryLog:
    """What a restore did, step by step; thread-safe (the run notes, the monitor's feed reads)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._events: list[PlatformEvent] = []
        self._lock = threading.Lock()

    def note(self, op: str, status: str = "info", **detail: Any) -> None:
        """One record: `op` as docs/recovery-records.md names it (target, decide, restore-start, restore-done, ...)."""
        with self._lock:
            self._events.append(PlatformEvent(self.clock(), RECOVERY, op, {"status": status, **detail}))

    def ops(self) -> list[str]:
        with self._lock:
            return [e.op for e in self._events]

    def since(self, origin: float) -> list[PlatformEvent]:
        """The records at or after `origin` (CLOCK_MONOTONIC seconds)."""
        with self._lock:
            return [e for e in self._events if e.monotonic >= origin]
