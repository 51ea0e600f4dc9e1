"""The `backup-verify` step of a game-day: `resilience backup verify` as one of a suite's steps.

A suite names it like an experiment (experiments/suites.yaml), but it is no experiment file:
it injects no fault. It restores the local stack's latest backup into a scratch instance and
checks it (resilience/backup_verify.py), and seals the result as a run directory whose
result.json has the same shape as an experiment's — verdict, measurements with definitions —
so the compliance report shows its evidence like any other run's.

Honesty rules: on a target that keeps no backups the harness can verify (kubernetes and aws
today) the step is skipped with that reason, never passed; on the local stack, a verification
that cannot be made (the stack would not start, no backup appeared, no primary) is
inconclusive with the reason.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .checkers.measurement import Measurement, judge, verdict
from .config import Settings
from .errors import HarnessError, UserError

BACKUP_VERIFY = "backup-verify"
STEPS = (BACKUP_VERIFY,)  # game-day steps that are not experiment files
CHECKS = ("pgbackrest verify", "restore", "orders integrity")  # what backup_verify checks, in order
FIRST_BACKUP_WAIT_S = 300.0  # a stack started by this step: how long its first backup may take
STARTED_NOTE = ("the stack was not running, so this step started one: its backup holds only what that stack wrote "
                "(run the game-day with --keep-up to verify the backup of the stack the experiments loaded)")
TITLE = "Backup verification (game-day step)"
HYPOTHESIS = ("The latest backup in the in-region repository passes `pgbackrest verify`, restores into a scratch "
              "instance, and holds every order acknowledged before it started, identical to the live primary's.")


NO_STEP_RUNNER = "no runner for built-in steps was given to this game-day (the CLI gives one); not run"


def step_runner(settings: Settings, reports_dir: Path, keep_up: bool = False) -> Callable[[str], Path]:
    """What `resilience gameday` runs a built-in step with: the backup verification, sealed in `reports_dir`."""
    def run(name: str) -> Path:
        if name != BACKUP_VERIFY:
            raise UserError(f"unknown game-day step {name!r}; known: {', '.join(STEPS)}")
        return run_verify_step(settings, reports_dir, datetime.now(timezone.utc), keep_up=keep_up)
    return run


def is_step(name: str) -> bool:
    return name in STEPS


def step_refusal(name: str, target: str, settings: Settings) -> str | None:
    """Why `target` cannot run the step `name` (the game-day then reports it skipped), or None."""
    if name == BACKUP_VERIFY and target != "local":
        return (f"the {target} target keeps no backups this harness can verify yet (only the local stack's "
                f"pgBackRest repositories are restored and checked); no backup was verified, so this game-day "
                f"evidences nothing about backups")
    if name == BACKUP_VERIFY and not settings.stack.backup.enabled:
        return "backups are off ('stack.backup.enabled: false'): there is no backup to verify"
    return None


def step_plan(name: str, target: str, settings: Settings) -> str:
    """What `gameday --dry-run` prints for a step."""
    refusal = step_refusal(name, target, settings)
    if refusal:
        return f"step {name}: skipped on target '{target}': {refusal}"
    return (f"step {name}: restore the latest backup of repo1 into a scratch instance (own port and folder), "
            f"pgbackrest verify, orders checked against the live primary; a stack that is not running is "
            f"started for it (and stopped again), waiting up to {FIRST_BACKUP_WAIT_S:.0f} s for its first backup")


def measurements_of(result: dict[str, Any] | None, reason: str | None, age_s: float | None,
                    stack_started: bool = False) -> list[Measurement]:
    """The step's figures from a Verification's JSON (None: it could not run, `reason` says why)."""
    checks = (result or {}).get("checks") or []
    passed = sum(1 for c in checks if c["ok"]) if result is not None else None
    failed = "; ".join(f"{c['name']}: {c['detail']}" for c in checks if not c["ok"])
    definition = ("checks of the latest backup that passed: " + ", ".join(CHECKS) +
                  " (count and md5 of the orders created before the backup started, restored vs live primary)")
    integrity = next((c["detail"] for c in checks if c["name"] == "orders integrity"), "")
    compared = re.search(r"restored (\d+)", integrity)
    return [
        judge("backup_checks_passed", passed, "count", len(CHECKS), ">=", definition=definition,
              detail={"checks": checks}, reason=reason or (failed[:600] or None)),
        judge("orders_compared", int(compared.group(1)) if compared else None, "count", None,
              definition="orders created before the backup started, compared restored vs live primary",
              reason=STARTED_NOTE if stack_started else None),
        judge("backup_age_s", age_s, "s", None, definition="age of the verified backup when it was verified "
              "(now minus its stop time)"),
    ]


def run_verify_step(settings: Settings, reports_dir: Path, started: datetime, *, keep_up: bool = False,
                    verify: Callable[[Settings], dict[str, Any]] | None = None) -> Path:
    """Verify the local stack's latest backup (starting the stack if it is not running) and seal the result.

    `verify` returns a Verification's JSON or raises UserError/HarnessError when no verification
    could be made; the default runs backup_verify against the running stack.
    """
    t = time.monotonic()
    result: dict[str, Any] | None = None
    reason: str | None = None
    try:
        result = (verify or _verify_running_stack(keep_up))(settings)
    except (UserError, HarnessError) as exc:
        reason = f"backup verification could not be made: {exc}"
    backup = (result or {}).get("backup") or {}
    age = round(time.time() - backup["stop"], 1) if backup.get("stop") else None
    found = measurements_of(result, reason, age, bool((result or {}).get("stack_started")))
    data = {"schema_version": 1, "experiment": BACKUP_VERIFY, "title": TITLE, "hypothesis": HYPOTHESIS,
            "target": "local", "verdict": verdict(found),
            "aborted_reason": None, "deviations": [], "measurements": [m.to_json() for m in found],
            "phases": {}, "fault": None, "started_at": started.isoformat(),
            "ended_at": datetime.now(timezone.utc).isoformat(), "duration_s": round(time.monotonic() - t, 3),
            "repo": 1, "backup": backup or None, "checks": (result or {}).get("checks", [])}
    if reason:
        data["error"] = reason
    return _seal(data, reports_dir, started, settings)


def _verify_running_stack(keep_up: bool) -> Callable[[Settings], dict[str, Any]]:
    def run(settings: Settings) -> dict[str, Any]:
        from .backup_verify import stack_sources, verify_backup
        from .targets.local import LocalPlatform
        platform = LocalPlatform(settings)
        started_stack = False
        if not platform.status().running:
            platform.up()
            started_stack = True
        try:
            if started_stack:
                _wait_first_backup(settings)
            return {**verify_backup(stack_sources(settings), repo=1).to_json(), "stack_started": started_stack}
        finally:
            if started_stack and not keep_up:
                platform.down()
    return run


def _wait_first_backup(settings: Settings, timeout: float = FIRST_BACKUP_WAIT_S) -> None:
    from .targets.local.backups import read_posture
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        posture = read_posture(settings.stack) or {}
        if any(r.get("repo") == 1 and r.get("last_full") for r in posture.get("repos", [])):
            return
        time.sleep(2.0)
    raise HarnessError(f"the stack took no backup into repo1 within {timeout:.0f} s of `up` "
                       f"(see {settings.stack.state_path / 'logs'} for backup.log)")


def _seal(data: dict[str, Any], reports_dir: Path, started: datetime, settings: Settings) -> Path:
    """A sealed run directory with result.json, in the reports directory's ledger (as backup_verify writes one)."""
    from .evidence import EvidenceStore
    key = settings.evidence.signing_key
    store = EvidenceStore(Path(reports_dir), Path(key) if key else None)
    run_dir = store.open_run(BACKUP_VERIFY, started)
    (run_dir / "result.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    store.seal(run_dir, BACKUP_VERIFY, str(data["verdict"]))
    return run_dir
