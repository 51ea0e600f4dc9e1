"""The ledger: `reports/ledger.jsonl`, one hash-chained line per run started and sealed.

Each line quotes the hash of the line before, so a line that is edited,
inserted or removed breaks the chain at the next one; a "sealed" line quotes
the run's manifest digest and verdict, so a run rewritten later (with a new
manifest) no longer matches the line written when it was sealed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..inputs import LEDGER_BYTES, parse_json, read_text
from .manifest import MANIFEST, manifest_digest
from .rundir import RUN_NAME, run_verdict

LEDGER = "ledger.jsonl"
GENESIS = "0" * 64  # the "previous hash" of the first ledger line
# concurrent runs take their start time before they take the ledger's lock, so lines may be a little out of order
CLOCK_SLACK = timedelta(minutes=5)

# ledger line kinds ("event"); lines written before the field existed are seals
STARTED = "started"  # the run directory was created
SEALED = "sealed"  # the run was sealed: the line quotes its manifest digest


def _line_hash(line: str) -> str:
    return hashlib.sha256(line.rstrip("\n").encode("utf-8")).hexdigest()


def ledger_entry(run_dir: Path, experiment: str, verdict: str | None, digest: str | None,
                 now: datetime | None = None, event: str = SEALED) -> dict[str, Any]:
    """The fields of one ledger line (append_ledger adds `prev`).

    `event` is "sealed" (the default: the line quotes the manifest digest) or
    "started"; older lines have no `event` and are read as seals.
    """
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    entry = {"run_dir": run_dir.name, "experiment": experiment, "verdict": verdict, "manifest_sha256": digest,
             "time": when.isoformat().replace("+00:00", "Z"), "event": event}
    if event == STARTED:
        del entry["verdict"], entry["manifest_sha256"]
    return entry


def append_ledger(reports_dir: Path, entry: dict[str, Any]) -> str:
    """Append one line to reports/ledger.jsonl chained to the previous line; return the new line's hash.

    The file is locked while appending, so concurrent runs cannot interleave lines.
    """
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / LEDGER
    with path.open("a+", encoding="utf-8") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            f.seek(0)
            lines = [line for line in f.read().splitlines() if line.strip()]
            prev = _line_hash(lines[-1]) if lines else GENESIS
            line = json.dumps({**{k: v for k, v in entry.items() if k != "prev"}, "prev": prev},
                              sort_keys=True, separators=(",", ":"))
            f.seek(0, os.SEEK_END)
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return _line_hash(line)


def record_start(run_dir: Path, experiment: str, now: datetime | None = None) -> str:
    """Add a "started" line for a new run directory, so a run that never finishes still shows in the ledger."""
    return append_ledger(run_dir.parent, ledger_entry(run_dir, experiment, None, None, now, event=STARTED))


@dataclass(frozen=True)
class LedgerLine:
    """One parsed ledger line: its number (1-based), its hash (what the next line's `prev` quotes) and fields."""

    number: int
    hash: str
    entry: dict[str, Any]

    @property
    def event(self) -> str:
        return str(self.entry.get("event") or SEALED)

    @property
    def run_dir(self) -> str | None:
        name = self.entry.get("run_dir")
        return None if name is None else str(name)


@dataclass
class LedgerChain:
    """The ledger's lines, where its chain breaks, and its head (the last line's hash)."""

    path: Path
    lines: list[LedgerLine]
    head: str
    problems: list[str]
    anchor_line: int | None = None  # the line whose hash is the recorded head (--ledger-head), if given and found


def read_ledger(path: Path, anchor: str | None = None) -> LedgerChain:
    """Parse the ledger and check that every line's `prev` is the hash of the line before.

    An edited, inserted or removed line breaks the chain at the next line, which
    is named. The last line has no successor, so its edits show only against the
    run (manifest digest, verdict) or against a head recorded earlier (`anchor`):
    the ledger must still contain the line with that hash.
    """
    problems: list[str] = []
    lines: list[LedgerLine] = []
    prev, latest = GENESIS, None
    try:
        ledger_text = read_text(path, "ledger", LEDGER_BYTES)
    except UserError as exc:
        return LedgerChain(path, [], GENESIS, [f"{exc} The ledger cannot be checked."])
    for number, text in enumerate(ledger_text.splitlines(), 1):
        if not text.strip():
            continue
        digest = _line_hash(text)
        try:
            entry = parse_json(text, "the line", ours=True)
        except UserError as exc:
            entry, why = None, f" ({str(exc)[:200]})"
        else:
            why = ""
        if not isinstance(entry, dict):
            problems.append(f"{path}:{number}: not a JSON object{why} (edited?)")
            prev = digest
            continue
        if entry.get("prev") != prev:
            problems.append(f"{path}:{number}: chain broken — 'prev' does not match the hash of the line before "
                            f"(a line was edited, inserted or removed above line {number})")
        name = entry.get("run_dir")
        if name is not None and not (isinstance(name, str) and RUN_NAME.fullmatch(name)):
            problems.append(f"{path}:{number}: the run name {name!r} is not one the harness gives (ASCII letters, "
                            f"digits, '.', '_' and '-'): a look-alike of another run's name?")
        when = _time(entry.get("time"))
        if when is None:
            problems.append(f"{path}:{number}: 'time' is not a UTC time the harness writes ({entry.get('time')!r})")
        elif latest is not None and when < latest - CLOCK_SLACK:
            problems.append(f"{path}:{number}: time {entry.get('time')} is earlier than a line above it: ledger "
                            f"times do not go backwards (a line was inserted or written later)")
        latest = max(latest, when) if latest is not None and when is not None else (when or latest)
        prev = digest
        lines.append(LedgerLine(number, digest, entry))
    anchor_line = None
    if anchor is not None:
        anchor_line = next((line.number for line in lines if line.hash == anchor.lower()), None)
        if anchor_line is None:
            problems.append(f"{path}: no line has the recorded head {anchor}: the ledger was rewritten up to or "
                            f"beyond the point where that head was recorded")
    return LedgerChain(path, lines, prev, problems, anchor_line)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.endswith("Z") or len(value) > 40:
        return None
    try:
        return datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        return None


@dataclass
class LedgerResult:
    """What verify_ledger found; `head` is the last line's hash (write it down somewhere else to anchor the chain)."""

    ok: bool
    entries: int
    head: str
    problems: list[str] = field(default_factory=list)
    never_sealed: list[str] = field(default_factory=list)  # runs that started but have no "sealed" line


def verify_ledger(reports_dir: Path, anchor: str | None = None) -> LedgerResult:
    """Check the hash chain, and that ledger and run directories agree.

    An edited or removed line breaks the chain at the next line. A removed last
    line, or a deleted run, shows as a run directory without a line or a line
    without its directory; a re-sealed run shows as a manifest digest mismatch.
    A run that started but never sealed is listed in `never_sealed`: a crash is a
    fact to report, not a break in the evidence.
    """
    path = reports_dir / LEDGER
    if not path.is_file():
        return LedgerResult(False, 0, GENESIS, [f"{path} does not exist"])
    chain = read_ledger(path, anchor)
    problems = list(chain.problems)
    sealed: dict[str, LedgerLine] = {}
    started: dict[str, LedgerLine] = {}
    for line in chain.lines:
        if line.run_dir is None or not RUN_NAME.fullmatch(line.run_dir):
            continue  # read_ledger named the problem; such a name is never looked up on disk
        book = sealed if line.event == SEALED else started
        book.setdefault(line.run_dir, line)
    for name in sorted(set(sealed) | set(started)):
        if not (reports_dir / name).is_dir():
            problems.append(f"{name}: listed in the ledger but the run directory is gone")
    for name, line in sealed.items():
        run_dir = reports_dir / name
        if not run_dir.is_dir():
            continue
        digest, current = line.entry.get("manifest_sha256"), manifest_digest(run_dir)
        if digest is not None and current != digest:
            problems.append(f"{name}: manifest digest {current} differs from the ledger's {digest} "
                            f"(line {line.number})")
        verdict_now, verdict_then = run_verdict(run_dir), line.entry.get("verdict")
        if verdict_now is not None and verdict_then is not None and verdict_now != verdict_then:
            problems.append(f"{name}: verdict {verdict_now!r} differs from the ledger's {verdict_then!r} "
                            f"(line {line.number})")
    for child in sorted(reports_dir.iterdir()):
        if child.is_dir() and (child / MANIFEST).is_file() and child.name not in sealed:
            problems.append(f"{child.name}: sealed run directory with no ledger line (line removed?)")
    never = sorted(name for name in started if name not in sealed)
    return LedgerResult(not problems, len(chain.lines), chain.head, problems, never)
