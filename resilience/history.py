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

While a run is live, `History.stream_to` appends each harness record (every
source but `load`, whose rows the Locust process streams to `load/rows.jsonl`)
to `history.partial.jsonl` in the same format, flushed as it is added, so a
harness killed with SIGKILL still leaves every record up to the kill. The run
removes that file once `history.jsonl` (a superset) is written; `resilience
rollback` turns a killed run's partial file and rows into `history.jsonl`.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

FORMAT_VERSION = 1
PARTIAL = "history.partial.jsonl"  # the streamed harness records of a live (or killed) run

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
FAULT = "fault"  # a fault step: op "inject"/"rollback" at its start, "inject-done"/"rollback-done" when it returned
CONTROLLER = "controller"  # replica controller / autoscaler decisions and readiness
PLATFORM = "platform"  # platform events: failovers, component up/down
PHASE = "phase"  # phase boundaries: op is the phase that starts ("steady", "fault", "recovery", "end")
CHECK = "check"  # post-run checks, e.g. op "readback" of one acknowledged order
RECOVERY = "recovery"  # a restore runbook's steps (issue 19): target, restore-start, ..., serving
ALERT = "alert"  # monitoring: op pending/rule-firing/firing/resolved (Alertmanager), watching, unreachable, expected
SIGNAL = "signal"  # the services' own failover signals: op sentinel / leader / lb_server (docs/alerts.md)


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
    _stream: Any = field(default=None, init=False, repr=False, compare=False)  # open text file, or None
    _stream_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

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
        self._emit([record])

    def add(self, source: str, op: str, status: str = INFO, *, t: float | None = None,
            latency: float | None = None, key: str | None = None,
            detail: dict[str, Any] | None = None) -> Record:
        """Append a record stamped now (or at `t`) and return it."""
        record = Record(self.now() if t is None else t, source, op, status, latency, key, detail)
        self.records.append(record)
        self._emit([record])
        return record

    def extend(self, records: Iterable[Record]) -> None:
        added = list(records)
        self.records.extend(added)
        self._emit(added)

    # -- streaming: what a killed run leaves behind --------------------------------
    def stream_to(self, path: Path, pid: int | None = None) -> None:
        """Append every record from now on (and those already held) to `path`, flushed as added.

        The header also names the harness process (`pid`), so `resilience rollback`
        can tell a killed run from one that is still running. Load records are
        not streamed: the load process streams them itself (load/rows.jsonl).
        """
        f = path.open("a", encoding="utf-8")
        header = {**self.header(), "partial": True, "pid": os.getpid() if pid is None else pid}
        with self._stream_lock:
            f.write(json.dumps(header) + "\n")
            self._stream = f
        self._emit(list(self.records))

    def close_stream(self) -> None:
        """Stop streaming (the final history.jsonl is about to replace the partial file)."""
        with self._stream_lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None

    def _emit(self, records: list[Record]) -> None:
        """Write harness records to the stream, one flush per call: after a SIGKILL they are on disk."""
        if self._stream is None:
            return
        lines = "".join(json.dumps(r.to_row(), separators=(",", ":")) + "\n" for r in records if r.source != LOAD)
        if not lines:
            return
        with self._stream_lock:
            if self._stream is not None:
                self._stream.write(lines)
                self._stream.flush()

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


def load_partial(path: Path) -> tuple["History", dict[str, Any]]:
    """A streamed history (header + rows) and its header; a last line cut by a kill is skipped.

    Raises ValueError naming the file when the header is missing or not a history header.
    """
    text = path.read_text(encoding="utf-8")
    complete = text[:text.rfind("\n") + 1]  # a line without its newline was being written at the kill
    lines = [line for line in complete.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty (the harness was killed before it wrote the header)")
    header = json.loads(lines[0])
    if not isinstance(header, dict) or header.get("kind") != "resilience-history":
        raise ValueError(f"{path}: not a resilience history (first line has no kind=resilience-history)")
    history = History(origin_monotonic=float(header["origin_monotonic"]), origin_wall=float(header["origin_wall"]))
    history.records = [Record.from_row(json.loads(line)) for line in lines[1:]]
    return history, header


def read_rows(path: Path) -> Iterator[Record]:
    """Records from a bare rows file (no header), e.g. one written by the load process."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield Record.from_row(json.loads(line))
