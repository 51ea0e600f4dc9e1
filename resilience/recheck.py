"""Work on a finished run directory, with no live run: re-check verdicts, replay rollbacks.

`recheck` is the proof that checkers are pure: the same history gives the
same measurements and verdict, offline, on any machine.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkers import compute, verdict
from .checkers.windows import ABORT_PHASE
from .config import Targets, override_targets
from .errors import UserError
from .history import FAIL, FAULT, PHASE, History, Record
from .inputs import HISTORY_BYTES, RUN_FILE_BYTES, check_path, check_regular, load_json
from .results import RunResult, measurement_json, run_deviations
from .rollbackfile import ROLLBACK, UNDONE, read_rollback_file, write_rollback_file
from .targets.base import RollbackStep
from .targets.target import Target


def _read_object(path: Path) -> dict[str, Any]:
    """A JSON object from a run directory, or a UserError naming the file (missing, not a regular file, too big,
    not UTF-8, not JSON, too deep, not an object)."""
    if not path.exists() and not path.is_symlink():
        raise UserError(f"{path} does not exist: is {path.parent} a run directory (reports/<time>-<experiment>/)?")
    try:
        data = load_json(path, "run file", RUN_FILE_BYTES, ours=True)
    except UserError as exc:
        raise UserError(f"{exc} `resilience verify {path.parent}` shows whether it was changed.") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(data).__name__}; `resilience verify "
                        f"{path.parent}` shows whether the file was changed.")
    return data


def recheck(run_dir: Path) -> tuple[RunResult, bool]:
    """Recompute measurements and verdict from history.jsonl; (new result, same as stored?).

    Any damage in the run directory is a UserError naming the file (and line), never a traceback.
    """
    check_path(run_dir, "run directory")
    stored = _read_object(run_dir / "result.json")
    used = _read_object(run_dir / "settings.json")
    for key in ("targets", "measures"):
        if key not in used:
            raise UserError(f"{run_dir / 'settings.json'} has no '{key}', so the verdict cannot be recomputed; "
                            f"`resilience verify {run_dir}` shows whether the file was changed.")
    if not isinstance(used["targets"], dict) or not isinstance(used["measures"], list):
        raise UserError(f"{run_dir / 'settings.json'}: 'targets' must be an object and 'measures' a list; "
                        f"`resilience verify {run_dir}` shows whether the file was changed.")
    targets = override_targets(Targets(), used["targets"], str(run_dir / "settings.json"))
    if not isinstance(stored.get("measurements"), list) or not isinstance(stored.get("verdict"), str):
        raise UserError(f"{run_dir / 'result.json'} has no 'measurements' list or 'verdict'; "
                        f"`resilience verify {run_dir}` shows whether the file was changed.")
    result = RunResult.from_json(stored, str(run_dir / "result.json"))
    history_path = run_dir / "history.jsonl"
    if not history_path.exists() and not history_path.is_symlink():
        raise UserError(f"{history_path} does not exist; cannot re-check without the history.")
    check_regular(history_path, "history", HISTORY_BYTES)  # a FIFO would hang the reader, /dev/zero fill memory
    try:
        history = History.load(history_path)
    except RecursionError:
        raise UserError(f"{history_path}: a record is nested too deeply to be one the harness wrote; the history is "
                        f"damaged. `resilience verify {run_dir}` shows whether it was changed.") from None
    except ValueError as exc:
        raise UserError(f"{exc}. The history is damaged; `resilience verify {run_dir}` shows whether it was "
                        f"changed.") from None
    try:
        measurements = compute(history.sorted(), targets=targets, measures=used["measures"])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise UserError(f"{history_path}: its records cannot be measured ({type(exc).__name__}: {exc}); the "
                        f"history or settings.json is damaged. `resilience verify {run_dir}` shows what changed.") from None
    records = history.sorted()
    reason, deviations = _judgement(run_dir, records)
    new = dataclasses.replace(result, measurements=tuple(measurements), aborted_reason=reason,
                              deviations=tuple(deviations),
                              verdict=verdict(measurements, aborted=bool(reason), deviated=bool(deviations)))
    same = ([measurement_json(m) for m in measurements] == stored["measurements"] and new.verdict == result.verdict
            and reason == result.aborted_reason and sorted(deviations) == sorted(result.deviations))
    return new, same


def _judgement(run_dir: Path, records: list[Record]) -> tuple[str | None, list[str]]:
    """The abort and the deviations as the history (and journal.json) give them, never as result.json says.

    The abort is the history's first abort mark; a rollback failed when its last
    attempt (the run's, or a `resilience rollback` replay) failed.
    """
    abort = next((r for r in records if r.source == PHASE and r.op == ABORT_PHASE), None)
    reason = (abort.detail or {}).get("reason") if abort is not None else None
    last: dict[str, str] = {}
    for r in records:
        if r.source == FAULT and r.op == "rollback":
            detail = r.detail or {}
            key = json.dumps([detail.get("capability"), detail.get("arguments")], sort_keys=True, default=str)
            last[key] = r.status
    failed = sum(1 for status in last.values() if status == FAIL)
    journal_path = run_dir / "journal.json"
    journal = _read_object(journal_path) if journal_path.exists() or journal_path.is_symlink() else {}
    return (None if reason is None else str(reason)), run_deviations(journal, failed, records)


@dataclass
class Replay:
    """What `replay_rollbacks` did: a line per step for people, and each step's outcome for the history."""

    lines: list[str] = field(default_factory=list)
    steps: list[tuple[float, str, RollbackStep, str | None]] = field(default_factory=list)  # (monotonic, fault, step, error)
    failed: int = 0  # steps whose replay failed now
    still_failed: int = 0  # steps rollback.json marks failed after the replay (failed earlier or now)


def replay_rollbacks(run_dir: Path, target: Target) -> Replay:
    """Run every rollback step a crashed run left undone, newest first; mark each in rollback.json (atomically).

    rollback.json is checked first (a damaged file: UserError naming the field, nothing touched). A step
    that fails is marked failed and the others still run: one stuck fault must not hide the rest.
    """
    path = run_dir / ROLLBACK
    data = read_rollback_file(path)
    replay = Replay()
    for entry in reversed(data["steps"]):
        if entry["status"] not in UNDONE:
            continue
        raw = entry.get("step") or {"capability": "heal", "arguments": {},
                                    "description": "restore everything the fault may have touched"}
        step = RollbackStep.from_json(raw)
        at = time.monotonic()
        error: str | None = None
        try:
            target.rollback(step)  # a "heal" step (a crash mid-inject) heals through every nemesis
            entry["status"] = "done"
            replay.lines.append(f"rolled back {entry['fault']}: {step.description or step.capability}")
        except Exception as exc:  # noqa: BLE001 - any failure is reported with the step; the rest still run
            error = f"{type(exc).__name__}: {exc}"
            entry["status"] = "failed"
            replay.failed += 1
            replay.lines.append(f"ROLLBACK FAILED for {entry['fault']}: {step.description or step.capability}: {error}")
        write_rollback_file(path, data)
        replay.steps.append((at, str(entry["fault"]), step, error))
    replay.still_failed = sum(1 for entry in data["steps"] if entry["status"] == "failed")
    if not replay.lines:
        replay.lines.append("nothing to roll back: every fault of this run was already undone")
    return replay
