"""The run monitor: once a second while a run is under load, the progress line and the stop condition.

`StopWatch` is the stop condition itself, pure (fed the load's figures and a
clock), so when it fires can be tested without a run; `Monitor` is the thread
that feeds it and redraws the progress line.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable

from .experiments import StopCondition
from .progress import Progress

if TYPE_CHECKING:
    from .load.process import LoadStats


class StopWatch:
    """Fires when the load's availability stays under the floor for `for_s` seconds in a row."""

    def __init__(self, condition: StopCondition) -> None:
        self.condition = condition
        self._below_since: float | None = None

    def observe(self, now: float, stats: "LoadStats | None") -> str | None:
        """The abort reason when the condition holds at monotonic time `now`, else None.

        A report without requests (no figures, or 0 req/s) neither starts nor ends a stretch under the floor.
        """
        if stats is None or stats.rps <= 0:
            return None
        availability = 1.0 - stats.error_pct / 100.0
        floor = self.condition.availability_floor
        if availability >= floor:
            self._below_since = None
            return None
        self._below_since = self._below_since or now
        if now - self._below_since < self.condition.for_s:
            return None
        return (f"stop condition: availability {availability:.1%} stayed under the floor {floor:.0%} for "
                f"{self.condition.for_s:.0f} s")


class Monitor:
    """A daemon thread: redraws `progress` every second and calls `on_abort(reason)` when the stop condition fires."""

    def __init__(self, condition: StopCondition, progress: Progress, *, stats: Callable[[], "LoadStats | None"],
                 ready_replicas: Callable[[], int], elapsed: Callable[[], float],
                 on_abort: Callable[[str], None], every_2s: Callable[[], None] = lambda: None) -> None:
        self.watch = StopWatch(condition)
        self.progress = progress
        self.stats = stats
        self.ready_replicas = ready_replicas  # asked every 2 s: it may be a call to the target
        self.elapsed = elapsed
        self.on_abort = on_abort
        self.every_2s = every_2s  # e.g. taking the platform's events into the history as they happen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures_said: set[str] = set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop at the next tick (safe before start and twice)."""
        self._stop.set()

    def _note_failure(self, what: str, exc: Exception) -> None:
        """Say a failing poll once per kind of error (it is retried every 2 s), not on every tick."""
        key = f"{what}: {type(exc).__name__}"
        if key not in self._failures_said:
            self._failures_said.add(key)
            self.progress.say(f"{what} failed ({type(exc).__name__}: {exc}); retrying every 2 s")

    def _loop(self) -> None:
        ready: int | None = None
        next_ready = 0.0
        lost_seen: list[str] = []
        while not self._stop.wait(1.0):
            stats = self.stats()
            now = time.monotonic()
            if now >= next_ready:
                try:
                    ready = self.ready_replicas()
                except Exception as exc:  # mid-fault the target may not answer: "unknown" this time
                    ready = None
                    self._note_failure("reading the ready replicas", exc)
                try:
                    self.every_2s()
                except Exception as exc:  # the run's final poll reports what is unavailable; retried in 2 s
                    self._note_failure("taking in the platform's events", exc)
                next_ready = now + 2.0
            self.progress.update(self.elapsed(), stats, ready)
            for worker in (stats.workers_lost if stats is not None else ())[len(lost_seen):]:
                lost_seen.append(worker)
                self.progress.say(f"load worker {worker} lost: its users are spread over the other workers; "
                                  f"the run will report it as a deviation")
            reason = self.watch.observe(now, stats)
            if reason is not None:
                self.on_abort(reason)
