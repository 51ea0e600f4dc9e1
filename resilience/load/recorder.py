"""Request events to history rows: the part of the Locust process that records, without Locust.

Every request becomes one history row (`resilience.history.Record.to_row()`):
`[t, "load", op, status, latency_s, key, detail]`, `t` = the request's start in
seconds since the run's origin on CLOCK_MONOTONIC (system-wide, so the harness
on the same host can read it; workers on other hosts shift their clock by the
offset they measured to the master, see clock_sync.py).

Outcome of a request: 2xx → "ok"; no answer within the client timeout →
"unknown" (the server may or may not have done it); an HTTP error, a refused or
reset connection, or a connect timeout (the request was never sent) → "fail".

No Locust or gevent here, so it can be imported and tested anywhere.
"""

from __future__ import annotations

import collections
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from ..history import FAIL, INFO, LOAD, OK, UNKNOWN

FLUSH_INTERVAL_S = 0.25  # rows reach the file at least this often
STATUS_INTERVAL_S = 1.0
WINDOW_S = 5.0  # status.json figures are over the last WINDOW_S seconds
EXIT_BAD_INPUT = 2

# Exception class names (anywhere in the exception's class hierarchy) by meaning.
# Names, not classes: importing requests here, before Locust, would break gevent.
_CONNECT_FAILURES = {"ConnectTimeout", "ConnectTimeoutError", "NewConnectionError", "ConnectionRefusedError"}
_TIMEOUTS = {"ReadTimeout", "ReadTimeoutError", "Timeout", "TimeoutError", "timeout"}


def op_name(request_type: str, name: str | None) -> str:
    """The history op: the request name if it already says the method ("GET /menu"), else "METHOD name"."""
    if name and " " in name:
        return name
    return f"{request_type} {name or ''}".strip()


def request_outcome(exception: BaseException | None, status_code: int) -> tuple[str, dict[str, Any] | None]:
    """(status, detail) of one finished request, from what Locust reports about it."""
    if exception is None:
        return OK, None
    class_names = {cls.__name__ for cls in type(exception).__mro__}
    if class_names & _CONNECT_FAILURES:
        return FAIL, {"error": _short(exception)}
    if class_names & _TIMEOUTS or "timed out" in str(exception).lower():
        return UNKNOWN, {"error": "timeout"}
    if status_code > 0:
        return FAIL, {"code": status_code}
    return FAIL, {"error": _short(exception)}


def _short(exception: BaseException) -> str:
    text = f"{type(exception).__name__}: {exception}"
    return text if len(text) <= 120 else text[:117] + "..."


class RowSink(Protocol):
    """Where flushed rows go: the rows file, or (in a distributed worker) the master."""

    def write(self, text: str) -> Any: ...
    def flush(self) -> None: ...


class Recorder:
    """Request events → buffered history rows, plus the recent window for the status file.

    Runs on Locust's request event, so it stays cheap: one json.dumps and a few
    appends per request; the file is written by `flush()`, not per request.
    """

    def __init__(self, out: "RowSink", origin_monotonic: float, clock: Callable[[], float] = time.monotonic):
        self.out = out
        self.origin = origin_monotonic
        self.clock = clock
        self.requests = 0
        self._pending: list[str] = []
        # (end time, latency, is_error) of recent requests, oldest first
        self._recent: collections.deque[tuple[float, float, bool]] = collections.deque()

    def on_request(self, request_type: str, name: str | None, response_time: float, response: Any = None,
                   context: dict[str, Any] | None = None, exception: BaseException | None = None,
                   **_: Any) -> None:
        """Locust's `request` event listener."""
        end = self.clock()
        latency = response_time / 1000.0
        op = op_name(request_type, name)
        status_code = getattr(response, "status_code", 0) or 0
        status, detail = request_outcome(exception, status_code)
        if status == OK and op == "POST /orders":
            status, detail = _acknowledged_order(response, status_code)
        key = (context or {}).get("key")
        self.add_row([round(end - latency - self.origin, 6), LOAD, op, status, round(latency, 6), key, detail])
        self.requests += 1
        self._recent.append((end, latency, status != OK))

    def add_row(self, row: list[Any]) -> None:
        self._pending.append(json.dumps(row, separators=(",", ":")) + "\n")

    def users_changed(self, users: int, spawn_rate: float | None = None) -> None:
        """The `users` info row: the load shape changed to `users` users (ramped at `spawn_rate` per second)."""
        detail: dict[str, Any] = {"users": users}
        if spawn_rate is not None:
            detail["spawn_rate"] = spawn_rate
        self.add_row([round(self.clock() - self.origin, 6), LOAD, "users", INFO, None, None, detail])

    def info(self, op: str, detail: dict[str, Any]) -> None:
        """An info row of the load generator itself (its health, a lost worker)."""
        self.add_row([round(self.clock() - self.origin, 6), LOAD, op, INFO, None, None, detail])

    def flush(self) -> None:
        if self._pending:
            rows, self._pending = self._pending, []
            self.out.write("".join(rows))
            self.out.flush()

    def window(self, window_s: float = WINDOW_S) -> dict[str, float | None]:
        """rps, error % and P99 (ms) of the requests that ended in the last `window_s` seconds."""
        horizon = self.clock() - window_s
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        count = len(self._recent)
        if count == 0:
            return {"rps": 0.0, "error_pct": 0.0, "p99_ms": None}
        errors = sum(1 for _, _, is_error in self._recent if is_error)
        latencies = sorted(latency for _, latency, _ in self._recent)
        p99 = latencies[max(0, math.ceil(0.99 * count) - 1)]
        return {"rps": round(count / window_s, 2), "error_pct": round(100.0 * errors / count, 3),
                "p99_ms": round(p99 * 1000.0, 3)}


def _acknowledged_order(response: Any, status_code: int) -> tuple[str, dict[str, Any]]:
    """An ok POST /orders is an acknowledged write only if the answer names the order.

    What was acknowledged (items, total in paise) is kept too when the answer has it, so the read-back
    after a restore can check the order came back as it was, not only that it exists.
    """
    try:
        body = response.json()
        detail = {"order_id": body["order_id"], "seq": body["seq"]}
    except (ValueError, LookupError, TypeError):  # not JSON, no such field, not an object: the same failure
        return FAIL, {"code": status_code, "error": "2xx without order_id and seq"}
    if isinstance(body.get("items"), list):
        detail["items"] = body["items"]
    if isinstance(body.get("total"), (int, float)) and not isinstance(body["total"], bool):
        detail["total_paise"] = round(body["total"] * 100)  # the platform answers rupees with 2 decimals
    return OK, detail


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Atomically: readers never see a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status), encoding="utf-8")
    tmp.replace(path)
