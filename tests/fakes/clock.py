"""The fakes' clock: controller time that runs faster than the wall clock, or only when a test says so.

Real controllers work on scales tests cannot afford (a 30 s termination grace
period, a 15 s HPA sync period, a 300 s scale-down stabilization window, an RDS
failover of up to 35 s). The fakes count *fake seconds* and map them to real
time in one of two ways:

- scaled (the default): fake time runs `1 / time_scale` times faster than the
  wall clock. With `time_scale=0.01` a 30 s grace period takes 0.3 s and the
  HPA syncs every 0.15 s. A background thread fires the timers.
- manual (`manual=True`): fake time stands still until a test calls
  `advance(seconds)`, which fires every timer that falls due, in order, in the
  calling thread. Deterministic: use it to test algorithms that depend on
  windows and periods.

Wall-clock timestamps the fakes write into objects (creationTimestamp,
lastTransitionTime, event times) are always the real wall clock, so a harness
converting them to its own monotonic clock sees the real order and spacing.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class Timer:
    due: float
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Fake seconds since the clock was made; timers fire when fake time reaches them."""

    def __init__(self, time_scale: float = 0.01, manual: bool = False) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0 (real seconds per fake second)")
        self.time_scale = time_scale
        self.manual = manual
        self._origin = time.monotonic()
        self._manual_now = 0.0
        self._timers: list[Timer] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = False

    # -- reading time
    def now(self) -> float:
        if self.manual:
            return self._manual_now
        return (time.monotonic() - self._origin) / self.time_scale

    def real_seconds(self, fake_seconds: float) -> float:
        """How long `fake_seconds` takes on the wall clock (nominal in manual mode)."""
        return fake_seconds if self.manual else fake_seconds * self.time_scale

    def wall_after(self, fake_seconds: float) -> float:
        """The wall-clock time (epoch seconds) at which `fake_seconds` from now will have passed."""
        return time.time() + self.real_seconds(fake_seconds)

    # -- timers
    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        return self.call_at(self.now() + max(0.0, delay), fn)

    def call_at(self, when: float, fn: Callable[[], None]) -> Timer:
        timer = Timer(when, next(self._seq), fn)
        with self._cond:
            heapq.heappush(self._timers, timer)
            self._cond.notify_all()
        return timer

    def pending(self) -> int:
        with self._cond:
            return sum(1 for t in self._timers if not t.cancelled)

    def advance(self, seconds: float) -> None:
        """Manual clock only: move fake time forward, firing due timers in order (and timers they add)."""
        if not self.manual:
            raise RuntimeError("advance() is for a manual clock: FakeClock(manual=True)")
        if seconds < 0:
            raise ValueError("time does not run backwards")
        target = self._manual_now + seconds
        while True:
            with self._cond:
                while self._timers and self._timers[0].cancelled:
                    heapq.heappop(self._timers)
                if not self._timers or self._timers[0].due > target:
                    break
                timer = heapq.heappop(self._timers)
                self._manual_now = max(self._manual_now, timer.due)
            timer.fn()
        self._manual_now = target

    # -- the background thread (scaled clock)
    def start(self) -> None:
        if self.manual or self._thread is not None:
            return
        self._running = True
        self._thread = threading.Thread(target=self._run, name="fake-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._timers.clear()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._running:
                    return
                while self._timers and self._timers[0].cancelled:
                    heapq.heappop(self._timers)
                if not self._timers:
                    self._cond.wait(0.5)
                    continue
                wait = (self._timers[0].due - self.now()) * self.time_scale
                if wait > 0:
                    self._cond.wait(min(wait, 0.5))
                    continue
                timer = heapq.heappop(self._timers)
            try:
                timer.fn()
            except Exception:  # a broken controller step must not stop the clock; tests see the state
                import traceback
                traceback.print_exc()
