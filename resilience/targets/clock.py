"""Wall-clock timestamps from cloud APIs on the run's monotonic clock, converted the same way every time.

The offset between the two clocks is read once, when this module loads: converting
the same API timestamp twice then gives the same monotonic reading, so an event
polled every two seconds is recognised as the one seen before (event_feed.py).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

WALL_MINUS_MONOTONIC = time.time() - time.monotonic()


def to_monotonic(moment: datetime | None) -> float | None:
    """An API timestamp (naive ones are UTC) as a CLOCK_MONOTONIC reading of this process."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp() - WALL_MINUS_MONOTONIC


def to_wall(monotonic: float) -> datetime:
    return datetime.fromtimestamp(monotonic + WALL_MINUS_MONOTONIC, tz=timezone.utc)
