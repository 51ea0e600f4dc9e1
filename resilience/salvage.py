"""Sealing a run whose harness was killed: what `resilience rollback RUN_DIR` does after undoing its faults.

A harness killed with SIGKILL (or a second Ctrl-C) leaves a run directory with
experiment.yaml, settings.json, rollback.json, load/rows.jsonl (the Locust rows)
and history.partial.jsonl (the harness's own records, streamed as they
happened) — but no result.json and no seal, so a failing run that crashed would
look like one that never happened. `seal_killed_run` turns what was recorded
into a finished, sealed run with the verdict "aborted":

1. wait for the run's orphaned load generator to stop (it stops itself when its
   parent dies), so no file changes after the seal;
2. merge the streamed harness records and the load rows into one history, and
   add a `phase`/`abort` record (the checkers then treat measurements whose
   observation was cut short as inconclusive) and an `end` mark at the last
   observed moment, plus a `fault`/`rollback` record per step just replayed;
3. read back the acknowledged orders through the target's URL when the stack
   answers (the rollback restored it), else leave them unverified and say so;
4. write history.jsonl, result.json, the reports and the seal with
   `results.write_results`, the same code a finished run uses.

`unsealed_message` is what `check`, `report` and `verify` say about such a directory.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from .checkers.durability import acknowledged_writes
from .checkers.windows import ABORT_PHASE, END_PHASE, history_end
from .config import Settings, Targets
from .errors import UserError
from .evidence import MANIFEST, EvidenceStore
from .atomic import is_leftover_temp
from .history import FAIL, FAULT, INFO, LOAD, OK, PARTIAL, PHASE, History, Record, load_partial
from .load.process import read_new_rows
from .readback import read_back_orders
from .recheck import Replay, replay_rollbacks
from .results import RunFacts, RunResult, read_result, target_detail, write_results
from .rollbackfile import ROLLBACK, read_rollback_file
from .targets import make_target
from .targets.target import Target

WORKER_WAIT_S = 15.0  # the orphaned load generator notices its parent died within a second and flushes
SEALED_BY = "resilience rollback"
NO_JOURNAL = ("no Chaos Toolkit journal: the harness was killed before it could write one; this file stands in "
              "for it and was written by `resilience rollback`")


@dataclass
class Salvage:
    """What `resilience rollback` did to a run directory, for people and for the exit code."""

    lines: list[str]
    failed_rollbacks: int = 0
    result: RunResult | None = None


def unsealed_message(run_dir: Path) -> str | None:
    """A paragraph for a run directory that was never sealed (no MANIFEST.sha256), or None.

    Only directories that look like runs (settings.json, rollback.json or a
    streamed history) get one: anything else keeps its own error.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / MANIFEST).is_file():
        return None
    if not any((run_dir / name).is_file() for name in ("settings.json", ROLLBACK, PARTIAL, "result.json")):
        return None
    what = ("it has a result.json but no seal: its harness was killed while writing the reports"
            if (run_dir / "result.json").is_file() else
            "it has no result.json: its harness was killed (or is still running) before the run finished")
    return (f"{run_dir} was never sealed: {what}. Run `resilience rollback {run_dir}` to undo any fault it left "
            f"pending and seal what it recorded as an aborted run (result.json, reports, MANIFEST.sha256 and a "
            f"ledger line).")


def rollback_and_seal(run_dir: Path, settings: Settings, *,
                      target_factory: Callable[..., Target] = make_target,
                      say: Callable[[str], None] = print) -> Salvage:
    """`resilience rollback RUN_DIR`: replay the pending rollbacks, then seal the run if it never was."""
    run_dir = Path(run_dir)
    data = read_rollback_file(run_dir / ROLLBACK)  # a damaged file stops here, before anything is touched
    target = target_factory(data["target"], settings, context=data.get("context"))
    replay = replay_rollbacks(run_dir, target)
    for line in replay.lines:
        say(line)
    salvage = Salvage(list(replay.lines), replay.failed)
    if (run_dir / MANIFEST).is_file():
        say(f"{run_dir} is already sealed; nothing else to do.")
        return salvage
    alive = _harness_alive(run_dir)
    if alive is not None:
        say(f"the harness (pid {alive}) is still running this experiment: it seals the run itself when it ends; "
            f"not sealing it here.")
        return salvage
    key = settings.evidence.signing_key
    signing_key = Path(key) if key else None
    if (run_dir / "result.json").is_file():
        salvage.result = _seal_finished(run_dir, signing_key, say)
    else:
        salvage.result = seal_killed_run(run_dir, target, replay, signing_key=signing_key, say=say)
    return salvage


def seal_killed_run(run_dir: Path, target: Target, replay: Replay | None = None, *,
                    signing_key: Path | None = None, now: datetime | None = None,
                    say: Callable[[str], None] = print) -> RunResult:
    """Turn a killed run's streamed records into a sealed, aborted run (see the module docstring)."""
    run_dir = Path(run_dir)
    settings = _read_settings(run_dir)
    _wait_for_load_worker(run_dir, say)
    _remove_leftover_temps(run_dir, say)
    history, complete = _recorded_history(run_dir)
    records = history.sorted()
    end_t = history_end(records) or 0.0
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    reason = killed_reason(records, when)
    history_now = _history_clock(history, end_t)
    history.add(PHASE, ABORT_PHASE, INFO, t=end_t, detail={"reason": reason, "sealed_by": SEALED_BY})
    if not any(r.source == PHASE and r.op == END_PHASE for r in records):
        history.add(PHASE, END_PHASE, INFO, t=end_t)
    comparable = _clock_comparable(history)
    for at, fault, step, error in (replay.steps if replay else []):
        detail: dict[str, Any] = {**step.to_json(), "fault": fault, "replayed_by": SEALED_BY}
        if error is not None:
            detail["error"] = error
        history.add(FAULT, "rollback", OK if error is None else FAIL,
                    t=max(end_t, history.at(at)) if comparable else end_t, detail=detail)
    measures = list(settings["measures"])
    if "rpo" in measures and acknowledged_writes(history.records):
        _read_back(history, target, history_now, say)
    failed = replay.still_failed if replay else _failed_in_rollback_file(run_dir)
    facts = _facts(run_dir, settings, history, reason, failed)
    journal = {"status": "interrupted", "deviated": False, "resilience": NO_JOURNAL}
    if not complete:
        say("note: no streamed history (history.partial.jsonl) was found; the history holds the load rows only")
    result = write_results(run_dir, history, facts, journal, sealer=EvidenceStore(run_dir.parent, signing_key),
                           warn=say)
    say(f"sealed {run_dir} as {result.verdict.upper()}: {reason}")
    say(f"  evidence: {run_dir} (result.json, report.html, report.pdf, junit.xml, MANIFEST.sha256); "
        f"ledger {run_dir.parent / 'ledger.jsonl'}")
    return result


def killed_reason(records: list[Record], when: datetime) -> str:
    """'the harness was killed during PHASE; sealed by `resilience rollback` at TIME' (+ an earlier abort)."""
    phases = [r for r in records if r.source == PHASE]
    marks = [r.op for r in phases if r.op != ABORT_PHASE]
    if not marks:
        phase = "start-up (deploy and load ramp-up)"
    elif marks[-1] == END_PHASE:
        phase = "the end of the run (read-back, results and reports)"
    else:
        phase = marks[-1]
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    reason = f"the harness was killed during {phase}; sealed by `{SEALED_BY}` at {stamp}"
    earlier = next((str((r.detail or {}).get("reason")) for r in phases
                    if r.op == ABORT_PHASE and (r.detail or {}).get("reason")), None)
    return f"{reason} (it had already been aborted: {earlier})" if earlier else reason


def fault_info(records: list[Record]) -> dict[str, Any]:
    """result.json's `fault`, from the history: the first injection and the first rollback after it."""
    inject = next((r for r in records if r.source == FAULT and r.op == "inject" and r.status == OK), None)
    if inject is None:
        return {}
    detail = inject.detail or {}
    info: dict[str, Any] = {"capability": detail.get("capability"), "arguments": detail.get("arguments") or {},
                            "injected_t": inject.t}
    rolled = next((r.t for r in records if r.source == FAULT and r.op == "rollback" and r.t >= inject.t), None)
    if rolled is not None:
        info["rolled_back_t"] = rolled
    return info


# -- reading what the killed run left -------------------------------------------------------

def _read_settings(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "settings.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist, so the run's measures and targets are unknown and it cannot be "
                        f"sealed; is {run_dir} a run directory (reports/<time>-<experiment>/)?") from None
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); the run cannot be sealed without it.") from None
    missing = [k for k in ("experiment", "measures", "targets") if not isinstance(data, dict) or k not in data]
    if missing:
        raise UserError(f"{path} has no {', '.join(map(repr, missing))}; the run cannot be sealed without them. "
                        f"`resilience run` writes this file when the run starts: restore it from a copy.")
    return data  # type: ignore[no-any-return]


def _recorded_history(run_dir: Path) -> tuple[History, bool]:
    """The streamed harness records plus the load rows; (history, whether the harness's records were there)."""
    partial = run_dir / PARTIAL
    if partial.is_file():
        try:
            history, _ = load_partial(partial)
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{partial} cannot be read ({exc}); the run cannot be sealed from it.") from None
        history.records = [r for r in history.records if r.source != LOAD]  # the load rows come from rows.jsonl
        complete = True
    elif (run_dir / "history.jsonl").is_file():  # killed after writing the final history, before the seal
        return History.load(run_dir / "history.jsonl"), True
    else:
        settings_written = (run_dir / "settings.json").stat().st_mtime
        history, complete = History(origin_monotonic=0.0, origin_wall=settings_written), False
    rows, _ = read_new_rows(run_dir / "load" / "rows.jsonl", 0)  # a line cut by the kill is left out
    history.extend(rows)
    return history, complete


def _harness_alive(run_dir: Path) -> int | None:
    """The pid of the harness still running this run (named in the streamed history's header), else None."""
    try:
        _, header = load_partial(run_dir / PARTIAL)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    pid = header.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return None
    cmdline = _cmdline(pid)
    return pid if cmdline and ("resilience" in cmdline or "chaos" in cmdline) else None


def _wait_for_load_worker(run_dir: Path, say: Callable[[str], None]) -> None:
    """Let the killed run's load generator finish writing (or stop it), so nothing changes after the seal."""
    try:
        status = json.loads((run_dir / "load" / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    pid = status.get("pid") if isinstance(status, dict) else None
    rows = str(run_dir.resolve() / "load" / "rows.jsonl")
    if not isinstance(pid, int) or rows not in _cmdline(pid):  # gone, or the pid now belongs to someone else
        return
    deadline = time.monotonic() + WORKER_WAIT_S
    while time.monotonic() < deadline and rows in _cmdline(pid):
        time.sleep(0.2)
    if rows in _cmdline(pid):
        say(f"the run's load generator (pid {pid}) is still running; stopping it")
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and rows in _cmdline(pid):
            time.sleep(0.2)


def _cmdline(pid: int) -> str:
    """A process's command line ('' when it does not exist), to recognise our own processes by what they run."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _remove_leftover_temps(run_dir: Path, say: Callable[[str], None]) -> None:
    """Temporary files of atomic writes the kill interrupted: half-written copies, not evidence."""
    for path in sorted(run_dir.rglob("*")):
        if path.is_file() and is_leftover_temp(path):
            path.unlink()
            say(f"removed {path.relative_to(run_dir)} (a temporary file the kill left half-written)")


def _clock_comparable(history: History) -> bool:
    """Whether this process's monotonic clock is the run's (same boot): then replay times go into the history."""
    since = time.monotonic() - history.origin_monotonic
    return since >= 0 and abs(history.origin_wall + since - time.time()) < 5.0


def _history_clock(history: History, end_t: float) -> Callable[[], float]:
    """History time now, or the observation end when the clocks cannot be compared (e.g. after a reboot)."""
    if _clock_comparable(history):
        return lambda: max(end_t, history.now())
    return lambda: end_t


def _read_back(history: History, target: Target, now: Callable[[], float], say: Callable[[str], None]) -> None:
    try:
        url = target.url()
    except Exception as exc:  # noqa: BLE001 - no URL, no read-back: the orders stay unverified, and we say so
        say(f"acknowledged orders stay unverified: the target gives no URL ({exc})")
        return
    read_back_orders(history, url, now, say)


def _failed_in_rollback_file(run_dir: Path) -> int:
    try:
        data = json.loads((run_dir / ROLLBACK).read_text(encoding="utf-8"))
        return sum(1 for entry in data["steps"] if entry["status"] == "failed")
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _experiment_text(run_dir: Path, name: str) -> tuple[str, str, str]:
    """(title, hypothesis, description) from the run's copy of its experiment; the name when unreadable."""
    try:
        raw = yaml.safe_load((run_dir / "experiment.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return name, "", ""
    if not isinstance(raw, dict):
        return name, "", ""
    ext = next((e for e in raw.get("extensions") or [] if isinstance(e, dict) and e.get("name") == "resilience"), {})
    return (str(raw.get("title") or name), str(ext.get("hypothesis") or "").strip(),
            str(raw.get("description") or ""))


def _facts(run_dir: Path, settings: dict[str, Any], history: History, reason: str, failed: int) -> RunFacts:
    name = str(settings["experiment"])
    title, hypothesis, description = _experiment_text(run_dir, name)
    raw_load = settings.get("load")
    load: dict[str, Any] = raw_load if isinstance(raw_load, dict) else {}
    target = str(settings.get("target") or "local")
    try:
        targets = Targets(**settings["targets"])
    except TypeError as exc:
        raise UserError(f"{run_dir / 'settings.json'}: 'targets' does not match this harness ({exc}); seal it "
                        f"with the harness version that ran it.") from None
    records = history.sorted()
    return RunFacts(
        experiment=name, title=title, hypothesis=hypothesis, description=description, target=target,
        target_detail=target_detail(target, records, settings.get("context")),
        measures=list(settings["measures"]), targets=targets, fault=fault_info(records),
        started_at=history.wall(0.0), profile=str(settings.get("profile") or "full"),
        load={"users": load.get("users"), "stages": load.get("stages") or [], "user_class": load.get("user_class")},
        aborted_reason=reason, failed_rollbacks=failed)


def _seal_finished(run_dir: Path, signing_key: Path | None, say: Callable[[str], None]) -> RunResult:
    """A run killed after result.json but before its seal: re-render the reports and seal it as it stands."""
    result = read_result(run_dir)
    _remove_leftover_temps(run_dir, say)
    try:
        from .reports import render_all
        render_all(run_dir)
    except Exception as exc:  # noqa: BLE001 - reports can be rendered again; the seal matters more
        say(f"warning: rendering reports failed ({exc}); re-run `resilience report {run_dir}` before sealing again")
    if (run_dir / "history.jsonl").is_file():
        (run_dir / PARTIAL).unlink(missing_ok=True)
    EvidenceStore(run_dir.parent, signing_key).seal(run_dir, result.experiment, result.verdict)
    say(f"sealed {run_dir} with its stored verdict {result.verdict.upper()} (the harness was killed "
        f"after writing result.json, before its seal)")
    return result
