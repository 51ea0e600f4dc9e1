"""The supervisor's events (`events.jsonl`) and what its loops do when a step fails.

Every decision and observation is one JSON line stamped with CLOCK_MONOTONIC
(the run's clock: the harness imports these lines into its history). A step of
a loop that raises is not allowed to end the loop silently or only print a
traceback: `LoopGuard` records it as a `platform`/`loop_error` event (loop name,
exception type and message, the traceback's tail), which the run report shows,
and the loop carries on.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

LOOP_ERROR = "loop_error"
TRACEBACK_LINES = 8  # the tail kept in the event (the full traceback goes to the supervisor's log)
REPEAT_AFTER_S = 30.0  # the same error again within this is counted, not written again


class EventLog:
    """Appends events; safe from every thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.path.write_text("")

    def __call__(self, source: str, op: str, /, **detail: Any) -> None:
        line = json.dumps({"m": time.monotonic(), "wall": time.time(), "source": source, "op": op,
                           "detail": detail}, default=str)
        with self._lock, self.path.open("a") as f:
            f.write(line + "\n")


class LoopGuard:
    """Runs loop steps; turns an exception into a `loop_error` event, at most one per error per 30 s."""

    def __init__(self, events: Callable[..., None], repeat_after_s: float = REPEAT_AFTER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.events = events
        self.repeat_after_s = repeat_after_s
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str, str], tuple[float, int]] = {}  # error -> (last written, repeats since)

    def run(self, loop: str, step: Callable[[], Any], **context: Any) -> bool:
        """Run one step; False (and an event) if it raised."""
        try:
            step()
            return True
        except Exception as exc:
            self.report(loop, exc, **context)
            return False

    def report(self, loop: str, exc: BaseException, **context: Any) -> None:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        print(f"supervisor: {loop} loop: {text}", file=sys.stderr, flush=True)
        key = (loop, type(exc).__name__, str(exc))
        now = self.clock()
        with self._lock:
            last, repeats = self._last.get(key, (None, 0))
            if last is not None and now - last < self.repeat_after_s:
                self._last[key] = (last, repeats + 1)
                return
            self._last[key] = (now, 0)
        tail = "\n".join(text.rstrip().splitlines()[-TRACEBACK_LINES:])
        self.events("platform", LOOP_ERROR, loop=loop, error=type(exc).__name__, message=str(exc)[:500],
                    traceback=tail, repeats_since_last=repeats, **context)
