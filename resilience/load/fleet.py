"""The master's book of its Locust workers: what each sent, what each says it made, who is gone.

Distributed load (`--workers N`) is Locust's own master and workers. Each worker
records its requests as history rows (recorder.py) and sends them to the master
in numbered batches over Locust's worker→master messages; the master writes them
to the one rows file. This ledger is the master's bookkeeping, kept pure (no
Locust, no I/O) so it can be tested on hand-made messages:

- a batch carries the worker's own running count of requests; rows received
  must equal it, and batch numbers must run without a gap, so a lost or repeated
  batch shows up as `dropped` instead of vanishing;
- a worker that stops sending heartbeats (Locust marks it missing after 3 s) or
  leaves without its final batch is `lost`, once, with the time it was noticed;
- live figures combine the workers' own 5-second windows (rps adds up; the
  fleet's P99 is the worst worker's P99, an upper bound, for progress only: the
  judged P99 is computed from every row afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .clock_sync import ClockSync
from .health import saturated

# Message types between master and workers (Locust custom messages).
HELLO = "resilience_hello"  # worker → master: {"worker", "clock"} once its clock is measured
ROWS = "resilience_rows"  # worker → master: a batch (see FleetLedger.receive)
PING = "resilience_clock_ping"  # worker → master: {"sent": worker's monotonic}
PONG = "resilience_clock_pong"  # master → worker: {"sent", "remote": master's monotonic, "origin"}
FINISH = "resilience_finish"  # master → worker: stop the users, send the last batch with final=True


@dataclass
class WorkerBook:
    """What the master knows of one worker."""

    worker: str  # the worker's own id (w1, w2, or a pod name)
    client_id: str  # Locust's id for it
    clock: ClockSync
    next_seq: int = 0
    rows: int = 0  # request rows received
    reported: int = 0  # requests the worker says it recorded, as of its latest batch
    missing_batches: int = 0
    repeated_batches: int = 0
    final: bool = False
    lost_t: float | None = None
    lost_why: str = ""
    last_t: float | None = None  # history time of its latest batch
    users: int = 0
    health: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        """Requests the worker recorded that never reached the master (0 when all is well)."""
        return max(0, self.reported - self.rows)

    def to_json(self) -> dict[str, Any]:
        state = "lost" if self.lost_t is not None else ("finished" if self.final else "running")
        return {"id": self.worker, "state": state, "requests": self.rows, "reported": self.reported,
                "dropped": self.dropped, "users": self.users, "cpu_pct": self.health.get("cpu_pct"),
                "lag_ms": self.health.get("lag_ms"), "clock": self.clock.to_json(),
                "last_t": self.last_t,
                **({"lost_t": self.lost_t, "lost_why": self.lost_why} if self.lost_t is not None else {})}


class FleetLedger:
    """The master's view of its workers, fed by their messages."""

    def __init__(self, expected: int):
        self.expected = expected
        self.books: dict[str, WorkerBook] = {}  # by client id

    def hello(self, client_id: str, data: dict[str, Any]) -> WorkerBook:
        book = WorkerBook(worker=str(data["worker"]), client_id=client_id, clock=ClockSync.from_json(data["clock"]))
        self.books[client_id] = book
        return book

    def receive(self, client_id: str, data: dict[str, Any], t: float | None = None) -> str:
        """A batch {"seq", "rows" (JSON lines), "count", "requests", "final", "users", "health", "window",
        "clock"}: the rows text to append to the rows file ("" for a repeated batch or an unknown worker)."""
        book = self.books.get(client_id)
        if book is None:
            return ""
        seq = int(data["seq"])
        if seq < book.next_seq:
            book.repeated_batches += 1
            return ""
        book.last_t = t if t is not None else book.last_t
        book.missing_batches += seq - book.next_seq
        book.next_seq = seq + 1
        book.rows += int(data["count"])
        book.reported = int(data["requests"])
        book.final = book.final or bool(data.get("final"))
        book.users = int(data.get("users", book.users))
        book.health = dict(data.get("health") or book.health)
        book.window = dict(data.get("window") or book.window)
        if data.get("clock"):
            book.clock = ClockSync.from_json(data["clock"])
        return str(data["rows"])

    def lose(self, client_id: str, t: float, why: str) -> WorkerBook | None:
        """Mark a worker lost at history time `t`; the book the first time, None if already lost or finished."""
        book = self.books.get(client_id)
        if book is None or book.lost_t is not None or book.final:
            return None
        book.lost_t, book.lost_why = t, why
        return book

    @property
    def ready(self) -> int:
        return sum(1 for b in self.books.values() if b.lost_t is None)

    def live(self) -> list[WorkerBook]:
        return [b for b in self.books.values() if b.lost_t is None]

    def all_final(self) -> bool:
        return all(b.final for b in self.live())

    def requests(self) -> int:
        return sum(b.rows for b in self.books.values())

    def dropped(self) -> int:
        return sum(b.dropped for b in self.books.values())

    def clock_uncertainty_s(self) -> float:
        return max((b.clock.uncertainty_s for b in self.books.values()), default=0.0)

    def window(self) -> dict[str, float | None]:
        """Fleet rps (sum), error % (weighted by rps) and P99 (the worst worker's) over the workers' windows."""
        windows = [b.window for b in self.live() if b.window]
        rps = sum(float(w.get("rps") or 0.0) for w in windows)
        errors = sum(float(w.get("rps") or 0.0) * float(w.get("error_pct") or 0.0) for w in windows)
        p99s = [float(w["p99_ms"]) for w in windows if w.get("p99_ms") is not None]
        return {"rps": round(rps, 2), "error_pct": round(errors / rps, 3) if rps else 0.0,
                "p99_ms": max(p99s) if p99s else None}

    def health(self, master: dict[str, Any]) -> dict[str, Any]:
        """The `generator` row of the fleet: the worst worker's CPU and lag, the master's own, each worker's."""
        live = [b for b in self.live() if b.health]
        worst_cpu = max((float(b.health.get("cpu_pct") or 0.0) for b in live), default=0.0)
        worst_lag = max((float(b.health.get("lag_ms") or 0.0) for b in live), default=0.0)
        detail: dict[str, Any] = {"cpu_pct": worst_cpu, "lag_ms": worst_lag, "master_cpu_pct": master.get("cpu_pct"),
                                  "master_lag_ms": master.get("lag_ms"), "workers_live": len(self.live()),
                                  "workers": {b.worker: {"cpu_pct": b.health.get("cpu_pct"),
                                                         "lag_ms": b.health.get("lag_ms"), "users": b.users}
                                              for b in live}}
        detail["saturated"] = saturated(detail) or saturated({"cpu_pct": master.get("cpu_pct"),
                                                              "lag_ms": master.get("lag_ms")})
        return detail

    def to_json(self) -> dict[str, Any]:
        """The fleet part of status.json."""
        return {"workers_expected": self.expected, "workers_live": len(self.live()),
                "workers_lost": [b.worker for b in self.books.values() if b.lost_t is not None],
                "workers": [b.to_json() for b in self.books.values()], "dropped": self.dropped(),
                "reported": sum(b.reported for b in self.books.values()),
                "clock_uncertainty_s": round(self.clock_uncertainty_s(), 6)}
