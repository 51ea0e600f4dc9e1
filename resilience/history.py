"""The history: one append-only record of everything that happened in a run.

Every load request, probe, fault step, controller decision and platform event
becomes a `Record`. Checkers are pure functions of (experiment, history), so a
stored history can be re-checked offline (`resilience check RUN_DIR`).

Times: `t` is seconds since the run's origin on the harness's monotonic clock
(CLOCK_MONOTONIC is system-wide on Linux, so the Locust process and the stack
supervisor can stamp records with the same clock). The wall-clock UTC time of
any record is `origin_wall + t`; it is stored once, in the header.

On disk (`history.jsonl`): a header line (a JSON object) then one compact JSON
array per record: `[t, source, op, status, latency, key, detail]`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

FORMAT_VERSION = 1

# Record.status values. "unknown" means the outcome is not known (a timeout):
# it is never counted as ok. "info" is for events that have no outcome.
OK = "ok"
FAIL = "fail"
UNKNOWN = "unknown"
INFO = "info"
Status = Literal["ok", "fail", "unknown", "info"]
STATUSES = (OK, FAIL, UNKNOWN, INFO)

# Record.source values.
LOAD = "load"  # a request made by the load generator
PROBE = "probe"  # a request made by the harness to check something
FAULT = "fault"  # a fault step: op is "inject" or "rollback"
CONTROLLER = "controller"  # replica controller / autoscaler decisions and readiness
PLATFORM = "platform"  # platform events: failovers, component up/down
PHASE = "phase"  # phase boundaries: op is the phase that starts ("steady", "fault", "recovery", "end")
CHECK = "check"  # post-run checks, e.g. op "readback" of one acknowledged order


@dataclass(frozen=True, slots=True)
class Record:
    """One thing that happened, at `t` seconds after the run origin."""

    t: float
    source: str
    op: str
    status: str
    latency: float | None = None  # seconds; requests only
    key: str | None = None  # e.g. the order's idempotency key
    detail: dict[str, Any] | None = None

    def to_row(self) -> list[Any]:
        return [round(self.t, 6), self.source, self.op, self.status,
                None if self.latency is None else round(self.latency, 6), self.key, self.detail]

    @classmethod
    def from_row(cls, row: list[Any]) -> "Record":
        t, source, op, status, latency, key, detail = row
        return cls(float(t), source, op, status, None if latency is None else float(latency), key, detail)


@dataclass
class History:
    """Records plus the clock origin they are relative to."""

    origin_monotonic: float = field(default_factory=time.monotonic)
    origin_wall: float = field(default_factory=time.time)
    records: list[Record] = field(default_factory=list)

    def now(self) -> float:
        """Seconds since the origin, on the shared monotonic clock."""
        return time.monotonic() - self.origin_monotonic

    def at(self, monotonic: float) -> float:
        """Convert an absolute monotonic time to history time."""
        return monotonic - self.origin_monotonic

    def wall(self, t: float) -> datetime:
        """The UTC wall-clock time of history time `t`."""
        return datetime.fromtimestamp(self.origin_wall + t, tz=timezone.utc)

    def append(self, record: Record) -> None:
        self.records.append(record)

    def add(self, source: str, op: str, status: str = INFO, *, t: float | None = None,
            latency: float | None = None, key: str | None = None,
            detail: dict[str, Any] | None = None) -> Record:
        """Append a record stamped now (or at `t`) and return it."""
        record = Record(self.now() if t is None else t, source, op, status, latency, key, detail)
        self.records.append(record)
        return record

    def extend(self, records: Iterable[Record]) -> None:
        self.records.extend(records)

    def sorted(self) -> list[Record]:
        return sorted(self.records, key=lambda r: r.t)

    def select(self, source: str | None = None, op: str | None = None) -> list[Record]:
        return [r for r in self.records
                if (source is None or r.source == source) and (op is None or r.op == op)]

    def header(self) -> dict[str, Any]:
        return {
            "kind": "resilience-history",
            "version": FORMAT_VERSION,
            "origin_monotonic": self.origin_monotonic,
            "origin_wall": self.origin_wall,
            "origin_utc": self.wall(0.0).isoformat().replace("+00:00", "Z"),
        }

    def dump(self, path: Path) -> None:
        """Write header + records sorted by time; atomically (a fresh temporary file, then rename)."""
        from .atomic import atomic_open
        with atomic_open(path) as f:
            f.write(json.dumps(self.header()) + "\n")
            for record in self.sorted():
                f.write(json.dumps(record.to_row(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path) -> "History":
        """Read history.jsonl; a damaged file raises ValueError naming the file and the line (never a traceback
        of some other type: `check` and `report` turn it into one paragraph and exit 2)."""
        try:
            with path.open(encoding="utf-8") as f:
                header = _parse_line(path, 1, f.readline())
                if not isinstance(header, dict) or header.get("kind") != "resilience-history":
                    raise ValueError(f"{path}: line 1: not a resilience history (the first line must be a JSON "
                                     f"object with kind=resilience-history)")
                origin_monotonic: Any = header.get("origin_monotonic")
                origin_wall: Any = header.get("origin_wall")
                if not (_finite(origin_monotonic) and _finite(origin_wall)):
                    raise ValueError(f"{path}: line 1: the header has no numeric origin_monotonic and origin_wall")
                history = cls(origin_monotonic=float(origin_monotonic), origin_wall=float(origin_wall))
                history.records = [_record(path, n, line) for n, line in enumerate(f, start=2) if line.strip()]
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        return history


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_line(path: Path, number: int, line: str) -> Any:
    if not line.strip():
        raise ValueError(f"{path}: line {number}: empty (the history is truncated or empty)")
    try:
        return json.loads(line)
    except ValueError as exc:
        raise ValueError(f"{path}: line {number}: not valid JSON ({exc}); the line may be truncated") from None


def _record(path: Path, number: int, line: str) -> Record:
    """One history row, checked field by field so a damaged row names its line."""
    row = _parse_line(path, number, line)
    if not isinstance(row, list) or len(row) != 7:
        raise ValueError(f"{path}: line {number}: expected a row [t, source, op, status, latency, key, detail]")
    t, source, op, status, latency, key, detail = row
    numbers_ok = _finite(t) and (latency is None or _finite(latency))
    if not numbers_ok or not all(isinstance(v, str) for v in (source, op, status)) or \
            not (key is None or isinstance(key, str)) or not (detail is None or isinstance(detail, dict)):
        raise ValueError(f"{path}: line {number}: a field has the wrong type (t and latency are numbers, "
                         f"source, op, status and key are text, detail is an object)")
    return Record.from_row(row)


def read_rows(path: Path) -> Iterator[Record]:
    """Records from a bare rows file (no header), e.g. one written by the load process."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield Record.from_row(json.loads(line))
