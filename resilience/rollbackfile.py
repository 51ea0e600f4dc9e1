"""rollback.json: how to undo each fault of a run, written before the fault is injected.

Format (one JSON object):

    {"target": "local", "context": null, "config": "defaults",
     "steps": [{"fault": "lose_zone", "arguments": {"zone": "primary"}, "status": "pending",
                "step": {"capability": "restore_zone", "arguments": {...}, "description": "..."}}]}

`status` is injecting (the fault call had started: undo with a full heal), pending
(injected, not undone), done or failed; `step` is null until the fault returned
its rollback step. The file is read back by `resilience rollback` after a crash,
so a damaged file must stop it with a message naming the file and the field,
never a traceback: it is the one thing that says what is still broken.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .inputs import RUN_FILE_BYTES, load_json
from .fault_registry import FAULTS
from .atomic import write_json_atomic
from .targets.base import RollbackStep

ROLLBACK = "rollback.json"
STATUSES = ("injecting", "pending", "done", "failed", "not-injected")  # failed: its rollback failed
UNDONE = ("injecting", "pending", "failed")  # what `resilience rollback` replays
_TOP: dict[str, Any] = {"target": str, "context": (str, type(None)), "config": (str, type(None)), "steps": list}
_ENTRY: dict[str, Any] = {"fault": str, "arguments": dict, "status": str, "step": (dict, type(None))}
_STEP: dict[str, Any] = {"capability": str, "arguments": dict, "description": str, "nemesis": str}
_REQUIRED_STEP = ("capability",)


@dataclass
class RollbackEntry:
    """One step of a live run's rollback.json: a fault, and how to undo it once it returned."""

    fault: str
    arguments: dict[str, Any]
    step: RollbackStep | None
    status: str  # one of STATUSES

    def to_json(self) -> dict[str, Any]:
        return {"fault": self.fault, "arguments": self.arguments, "status": self.status,
                "step": self.step.to_json() if self.step else None}


def write_rollback_file(path: Path, data: dict[str, Any]) -> None:
    """Rewrite rollback.json atomically: a kill mid-write leaves the previous version, never half a file."""
    write_json_atomic(path, data)


def read_rollback_file(path: Path) -> dict[str, Any]:
    """rollback.json, checked field by field; UserError (one paragraph: the file, what is wrong, the fix)."""
    if not path.exists() and not path.is_symlink():
        raise UserError(f"{path} does not exist: is {path.parent} a run directory (reports/<time>-<experiment>/)? "
                        f"`resilience run` writes it before the first fault.")
    try:  # a regular file (no link, FIFO or device), size and depth caps, strict JSON without duplicate keys
        data = load_json(path, "rollback file", RUN_FILE_BYTES, ours=True)
    except UserError as exc:
        raise _damaged(path, f"it cannot be read as the harness wrote it ({exc})") from None
    problem = rollback_problem(data)
    if problem:
        raise _damaged(path, problem)
    return data  # type: ignore[no-any-return]


def rollback_problem(data: Any) -> str | None:
    """What is wrong with a parsed rollback.json (the first problem found), or None when it is well formed."""
    if not isinstance(data, dict):
        return f"it must be a JSON object with {', '.join(_TOP)}, not a {type(data).__name__}"
    unknown = sorted(set(data) - set(_TOP))
    if unknown:
        return f"unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(_TOP)})"
    for key in ("target", "steps"):
        if key not in data:
            return f"the field '{key}' is missing"
    for key, kind in _TOP.items():
        if key in data and not isinstance(data[key], kind):
            return f"'{key}' must be {_kind_name(kind)}, not {type(data[key]).__name__}"
    for index, entry in enumerate(data["steps"]):
        where = f"steps[{index}]"
        problem = _fields_problem(entry, _ENTRY, tuple(_ENTRY), where)
        if problem:
            return problem
        if entry["status"] not in STATUSES:
            return f"{where}.status is {entry['status']!r}; it must be one of {', '.join(STATUSES)}"
        if entry["fault"] not in FAULTS:
            return f"{where}.fault is {entry['fault']!r}, which is not a registered fault ({', '.join(FAULTS)})"
        if entry["step"] is not None:
            problem = _fields_problem(entry["step"], _STEP, _REQUIRED_STEP, f"{where}.step")
            if problem:
                return problem
    return None


def _fields_problem(obj: Any, fields: dict[str, Any], required: tuple[str, ...], where: str) -> str | None:
    if not isinstance(obj, dict):
        return f"{where} must be a JSON object, not {type(obj).__name__}"
    unknown = sorted(set(obj) - set(fields))
    if unknown:
        return f"{where} has unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(fields)})"
    for key in required:
        if key not in obj:
            return f"{where} has no '{key}'"
    for key, kind in fields.items():
        if key in obj and not isinstance(obj[key], kind):
            return f"{where}.{key} must be {_kind_name(kind)}, not {type(obj[key]).__name__}"
    return None


def _kind_name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", dict: "an object", list: "a list", type(None): "null"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _damaged(path: Path, problem: str) -> UserError:
    return UserError(f"{path} is damaged: {problem}. Nothing was rolled back. The file is written by `resilience run` "
                     f"before each fault (format in docs/reports.md); fix it or restore it from a copy, then run "
                     f"`resilience rollback {path.parent}` again — or undo the fault by hand (`resilience status` "
                     f"shows what is down; `resilience down` and `resilience up` rebuild the local stack).")
