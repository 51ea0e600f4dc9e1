"""Work on a finished run directory, with no live run: re-check verdicts, replay rollbacks.

`recheck` is the proof that checkers are pure: the same history gives the
same measurements and verdict, offline, on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .checkers import compute, verdict
from .config import Settings, Targets
from .errors import UserError
from .history import History
from .run import _measurement_json
from .targets import make_target
from .targets.base import RollbackStep


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: is {path.parent} a run directory (reports/<time>-<experiment>/)?") from None
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); `resilience verify {path.parent}` shows if it was changed.") from None


def recheck(run_dir: Path) -> tuple[dict[str, Any], bool]:
    """Recompute measurements and verdict from history.jsonl; (new result, same as stored?)."""
    stored = _read_json(run_dir / "result.json")
    used = _read_json(run_dir / "settings.json")
    for key in ("targets", "measures"):
        if not isinstance(used, dict) or key not in used:
            raise UserError(f"{run_dir / 'settings.json'} has no '{key}', so the verdict cannot be recomputed; "
                            f"`resilience verify {run_dir}` shows whether the file was changed.")
    targets = Targets(**used["targets"])
    history_path = run_dir / "history.jsonl"
    if not history_path.exists():
        raise UserError(f"{history_path} does not exist; cannot re-check without the history.")
    history = History.load(history_path)
    measurements = compute(history.sorted(), targets=targets, measures=used["measures"])
    new_verdict = verdict(measurements, aborted=bool(stored.get("aborted_reason")),
                          deviated=bool(stored.get("deviations")))
    result = dict(stored)
    result["measurements"] = [_measurement_json(m) for m in measurements]
    result["verdict"] = new_verdict
    same = result["measurements"] == stored["measurements"] and new_verdict == stored["verdict"]
    return result, same


def replay_rollbacks(run_dir: Path, settings: Settings) -> list[str]:
    """Run every rollback step a crashed run left pending; mark each done in rollback.json."""
    path = run_dir / "rollback.json"
    data = _read_json(path)
    target = make_target(data.get("target", "local"), settings, context=data.get("context"))
    lines = []
    for entry in reversed(data.get("steps", [])):
        if entry.get("status") not in ("pending", "injecting", "failed"):
            continue
        raw = entry.get("step") or {"capability": "heal", "arguments": {},
                                    "description": "restore everything the fault may have touched"}
        step = RollbackStep(raw["capability"], raw.get("arguments", {}), raw.get("description", ""))
        if step.capability == "heal":
            getattr(target, "heal")()
        else:
            target.rollback(step)
        entry["status"] = "done"
        path.write_text(json.dumps(data, indent=1))
        lines.append(f"rolled back {entry.get('fault')}: {step.description or step.capability}")
    return lines or ["nothing to roll back: every fault of this run was already undone"]
