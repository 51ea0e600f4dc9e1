"""Error logging that stays cheap during an outage: one line per cause per interval.

During a failover every request can fail the same way; logging each would cost
the CPU the replica needs to recover. The first failure of a kind is logged at
once, later ones are counted and reported with the next line for that kind.
"""

from __future__ import annotations

import logging
import time
from typing import Callable


class ThrottledLog:
    def __init__(self, logger: logging.Logger, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> bool:
        """Log `message` unless `kind` was logged less than the interval ago; returns whether it logged."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        suffix = f" (and {suppressed} more like it since the last report)" if suppressed else ""
        self._logger.warning("%s: %s%s", kind, message, suffix)
        return True
