"""Platform events into the run's history while the run goes on, each once.

The target reports what the platform did (failovers, scale decisions, ready
replicas, cordons) with absolute monotonic times. The monitor polls every two
seconds and the run polls once more at the end; each poll appends only the
events not seen before, so the streamed history.partial.jsonl holds them as they
happen (a killed harness keeps them) and the final history holds each once.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from .alarm_stop import stop_reason
from .history import ALERT, CONTROLLER, INFO, PLATFORM, RECOVERY, SIGNAL, History, Record
from .targets.base import PlatformEvent


class EventFeed:
    def __init__(self, events_since: Callable[[float], list[PlatformEvent]], history: History,
                 on_stop: Callable[[str], None] | None = None) -> None:
        self.events_since = events_since
        self.history = history
        self.on_stop = on_stop  # an event that stops the run (a CloudWatch stop alarm: alarm_stop.py) aborts it
        self._seen: set[tuple[float, str, str, str]] = set()
        self._lock = threading.Lock()  # the monitor thread and the run's final poll

    def poll(self) -> int:
        """Append the events not yet in the history; returns how many. Raises what the target raised."""
        events = self.events_since(self.history.origin_monotonic)
        added = 0
        stops: list[str] = []
        with self._lock:
            for event in sorted(events, key=lambda e: e.monotonic):
                key = (event.monotonic, event.source, event.op, json.dumps(event.detail, sort_keys=True, default=str))
                if key in self._seen:
                    continue
                self._seen.add(key)
                self.history.append(as_record(event, self.history))
                added += 1
                stops += [reason] if (reason := stop_reason(event)) else []
        if stops and self.on_stop is not None:
            self.on_stop(stops[0])
        return added


def as_record(event: PlatformEvent, history: History) -> Record:
    """A platform event as a history record: controller/platform sources kept, others folded into platform."""
    if event.source == RECOVERY:  # a restore's steps (docs/recovery-records.md): their status, and `*_m` times on the run clock
        return recovery_record(event, history)
    known = event.source in (CONTROLLER, PLATFORM, ALERT, SIGNAL)
    detail: dict[str, Any] = dict(event.detail)
    return Record(history.at(event.monotonic), event.source if known else PLATFORM,
                  event.op if known else f"{event.source}:{event.op}", INFO, None, None, detail)


def recovery_record(event: PlatformEvent, history: History) -> Record:
    """A `recovery` event as its record: `status` out of the detail, each `<name>_m` (monotonic) as `<name>_t`."""
    detail: dict[str, Any] = dict(event.detail)
    status = str(detail.pop("status", INFO))
    for key in [k for k in detail if k.endswith("_m")]:
        value = detail.pop(key)
        detail[key[:-2] + "_t"] = None if value is None else round(history.at(float(value)), 6)
    return Record(history.at(event.monotonic), RECOVERY, event.op, status, None, None, detail)
