"""Waiting on a condition with a deadline (tests never sleep a fixed time)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout_s: float = 5.0, interval_s: float = 0.01, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout_s` (no fixed sleeps in tests)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last value {value!r})")
        time.sleep(interval_s)
