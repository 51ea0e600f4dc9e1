"""A run stops when an alarm says so: an `alert/stop-condition` event (a target's CloudWatch stop alarm went to
ALARM: targets/aws/alarms.py) aborts the run, which then rolls back as for its own stop condition (abort.py).

The event feed (event_feed.py) calls `stop_reason` on each new platform event; the first reason aborts.
"""

from __future__ import annotations

from .targets.base import PlatformEvent

ALERT = "alert"
STOP_OP = "stop-condition"


def stop_reason(event: PlatformEvent) -> str | None:
    """The abort reason an event carries, else None."""
    if event.source != ALERT or event.op != STOP_OP:
        return None
    detail = event.detail or {}
    return (f"stop condition: CloudWatch alarm {detail.get('alarm')} went to {detail.get('state', 'ALARM')} "
            f"({detail.get('reason') or 'no reason given'})")
