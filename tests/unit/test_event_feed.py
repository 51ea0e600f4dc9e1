"""Platform events reach the history once each, whether polled during the run or at its end."""

from __future__ import annotations

from resilience.event_feed import EventFeed
from resilience.history import History
from resilience.targets.base import PlatformEvent


def test_each_event_is_appended_once_across_polls() -> None:
    history = History()
    origin = history.origin_monotonic
    seen: list[PlatformEvent] = [PlatformEvent(origin + 1.0, "platform", "failover", {"component": "postgres"})]
    feed = EventFeed(lambda since: [e for e in seen if e.monotonic >= since], history)
    assert feed.poll() == 1
    seen.append(PlatformEvent(origin + 2.5, "controller", "replicas", {"ready": 4, "desired": 6}))
    seen.append(PlatformEvent(origin + 3.0, "supervisor", "reap", {}))
    assert feed.poll() == 2
    assert feed.poll() == 0
    ops = [(r.source, r.op, round(r.t, 6)) for r in history.records]
    assert ops == [("platform", "failover", 1.0), ("controller", "replicas", 2.5), ("platform", "supervisor:reap", 3.0)]
