"""Helpers for the local-stack tests: settings, waiting on conditions, continuous order traffic."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from resilience.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = "/var/lib/resilience-test"


def stack_settings(**stack_overrides: Any) -> Settings:
    base = load_settings(None)
    stack = dataclasses.replace(base.stack, **{"state_dir": STATE_DIR, **stack_overrides})
    return dataclasses.replace(base, stack=stack)

def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> float:
    """Seconds it took; fails the test with `what` after `timeout`, naming the last exception the condition raised.

    An exception counts as "not yet" (mid-fault, a status request may fail), but a
    condition that always raises is a bug in the test: the failure message shows it.
    """
    t0 = time.monotonic()
    last: BaseException | None = None
    while time.monotonic() - t0 < timeout:
        try:
            if condition():
                return time.monotonic() - t0
        except Exception as exc:
            last = exc
        time.sleep(interval)
    seen = f"; the condition last raised {type(last).__name__}: {last}" if last is not None else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{seen}")


def whole(target: Any) -> bool:
    """Every component rejoined (see healing.py) and as many API replicas ready as desired."""
    status = target.status()
    return bool(status.healthy and status.detail["ready_replicas"] >= status.detail["desired_replicas"])


def make_whole(target: Any, grace_s: float = 60.0) -> str:
    """Bring a stack test's precondition about: a whole stack. Returns what it took.

    "whole": it already was (or became so within `grace_s`); "started": it was down;
    "healed": `heal` repaired what the previous test left; "rebuilt": down and up.
    """
    if not target.running():
        target.up()
        return "started"
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            if whole(target):
                return "whole"
        except Exception:
            pass
        time.sleep(0.2)
    try:
        target.heal()
        if whole(target):
            return "healed"
    except Exception:
        pass
    target.down()
    target.up()
    return "rebuilt"


def place_order(client: httpx.Client, key: str) -> httpx.Response:
    return client.post("/orders", json={"idempotency_key": key, "student_id": "s-test",
                                        "items": [{"item_id": 1, "qty": 1}]})


@dataclass
class Traffic:
    """Orders placed continuously through the platform URL from a thread; every outcome kept."""

    url: str
    interval: float = 0.02
    outcomes: list[tuple[float, str, int]] = field(default_factory=list)  # (t, key, status code or 0)
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "Traffic":
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        prefix = uuid.uuid4().hex[:6]
        n = 0
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while not self._stop.is_set():
                n += 1
                key = f"t-{prefix}-{n}"
                try:
                    resp = place_order(client, key)
                    code = resp.status_code
                    if code == 201:
                        self.acked[key] = resp.json()
                except Exception:  # a timeout, a reset, a broken answer: not acknowledged
                    code = 0
                self.outcomes.append((time.monotonic(), key, code))
                self._stop.wait(self.interval)

    def failures_since(self, t: float) -> int:
        return sum(1 for (tt, _, code) in list(self.outcomes) if tt >= t and code != 201)

    def successes_since(self, t: float) -> int:
        return sum(1 for (tt, _, code) in list(self.outcomes) if tt >= t and code == 201)




def assert_path_fault_showed(fault: str, baseline: dict[str, Any], during: dict[str, Any],
                             after: dict[str, Any]) -> None:
    """What each network fault looks like on a path measured with pings (netfaults.measure), and the path
    clean again after its undo: the same for every path (api-database, api-cache)."""
    if fault == "delay_network":
        assert 60 <= during["rtt_p50_ms"] - baseline["rtt_p50_ms"] <= 160, during
    elif fault == "drop_packets":
        assert during["nft"]["dropped"] > 0, during
    elif fault == "blackhole_network":
        assert during["answered"] == 0 and during["timeout"] == during["samples"], during
    else:  # reject_network: refused at once, nothing waits
        assert during["answered"] == 0 and during["timeout"] == 0, during
    assert after["answered"] == after["samples"] and after.get("rtt_p50_ms", 1e9) < 20, after
