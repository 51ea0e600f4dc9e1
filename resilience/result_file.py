"""result.json, typed: `RunResult`, `read_result` and `RESULT_SCHEMA_VERSION` (the one place it lives).

Everything that reads result.json back — the CLI, `resilience check`, the reports, the game-day
report, salvage — reads it through `RunResult.from_json`, whose `to_json` writes exactly the same
keys and values again. `results.write_results` writes it; the reports read it from here, so the
reports and the code that renders them after a run do not import each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkers.measurement import Measurement
from .errors import UserError

RESULT_SCHEMA_VERSION = 1  # result.json, report.json and `resilience run/check --json`

_NONE = type(None)
# result.json's keys in the order they are written, with the JSON types each may have
_TYPES: dict[str, tuple[type, ...]] = {
    "schema_version": (int,), "experiment": (str,), "title": (str,), "hypothesis": (str,), "description": (str,),
    "target": (str,), "target_detail": (dict,), "run_dir": (str,), "verdict": (str,),
    "aborted_reason": (str, _NONE), "deviations": (list,), "measurements": (list,), "phases": (dict,),
    "fault": (dict, _NONE), "started_at": (str, _NONE), "ended_at": (str, _NONE),
    "duration_s": (int, float, _NONE), "load": (dict,), "profile": (str, _NONE), "error": (str, _NONE),
    "harness": (dict,), "tool_versions": (dict,), "generator": (dict,),
}
_TYPE_NAMES = {str: "a string", dict: "an object", list: "a list", int: "a number", float: "a number", _NONE: "null"}


@dataclass(frozen=True)
class RunResult:
    """result.json of one run (fields in the order they are written; see docs/reports.md for each).

    `from_json` reads files of every harness version with this schema version: a
    key an older harness did not write is left at its default and named in
    `absent`, keys this harness does not know are kept in `extra`, so
    `RunResult.from_json(d).to_json() == d` for every result.json (an unbounded
    measurement, written as the string "inf", is the float infinity in between).
    """

    schema_version: int = RESULT_SCHEMA_VERSION
    experiment: str = ""
    title: str = ""
    hypothesis: str = ""
    description: str = ""
    target: str = ""
    target_detail: dict[str, Any] = field(default_factory=dict)
    run_dir: str = ""
    verdict: str = "inconclusive"
    aborted_reason: str | None = None
    deviations: tuple[str, ...] = ()
    measurements: tuple[Measurement, ...] = ()
    phases: dict[str, list[float]] = field(default_factory=dict)  # {phase: [start_t, end_t]}
    fault: dict[str, Any] | None = field(default_factory=dict)  # {capability, arguments, injected_t, rolled_back_t}
    started_at: str | None = None  # UTC, ISO 8601
    ended_at: str | None = None
    duration_s: float | None = None
    load: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    error: str | None = None  # a harness error that stopped the run
    harness: dict[str, Any] = field(default_factory=dict)
    tool_versions: dict[str, str] = field(default_factory=dict)
    generator: dict[str, Any] = field(default_factory=dict)  # the load generator's health (checkers/generator.py)
    absent: frozenset[str] = frozenset()  # keys the file did not have: to_json leaves them out again
    extra: dict[str, Any] = field(default_factory=dict)  # keys this harness does not know, kept as they were

    def to_json(self) -> dict[str, Any]:
        """result.json's content: strict JSON (an unbounded value is the string "inf")."""
        data: dict[str, Any] = {}
        for key in _TYPES:
            if key in self.absent:
                continue
            value = getattr(self, key)
            if key == "measurements":
                value = [measurement_json(m) for m in value]
            elif key == "deviations":
                value = list(value)
            data[key] = value
        data.update(self.extra)
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "result.json") -> "RunResult":
        """Read result.json's content; UserError naming `where` and the key for anything of the wrong type."""
        if not isinstance(data, dict):
            raise UserError(f"{where}: expected a JSON object (see docs/reports.md for the schema).")
        values: dict[str, Any] = {}
        for key, types in _TYPES.items():
            if key not in data:
                continue
            value = data[key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                wanted = " or ".join(dict.fromkeys(_TYPE_NAMES[t] for t in types))
                raise UserError(f"{where}: '{key}' must be {wanted}, not {json.dumps(value)[:40]} (see "
                                f"docs/reports.md for the schema).")
            values[key] = value
        version = values.get("schema_version", RESULT_SCHEMA_VERSION)
        if version != RESULT_SCHEMA_VERSION:
            raise UserError(f"{where}: schema_version {version} is not supported (this harness reads "
                            f"{RESULT_SCHEMA_VERSION}). Render it with the harness version that wrote it.")
        if not all(isinstance(d, str) for d in values.get("deviations", [])):
            raise UserError(f"{where}: 'deviations' must be a list of strings.")
        values["deviations"] = tuple(values.get("deviations", ()))
        values["measurements"] = tuple(_measurement(m, where) for m in values.get("measurements", []))
        return cls(**values, absent=frozenset(k for k in _TYPES if k not in data),
                   extra={k: v for k, v in data.items() if k not in _TYPES})

    def measurement(self, name: str) -> Measurement | None:
        return next((m for m in self.measurements if m.name == name), None)


def read_result(run_dir: Path) -> RunResult:
    """A run directory's result.json; UserError naming the file when it is missing, unreadable or damaged."""
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        raise UserError(f"{path} does not exist: {path.parent} is not a finished run directory. Pass a directory "
                        f"written by `resilience run` (reports/<timestamp>-<experiment>/).")
    from .inputs import RUN_FILE_BYTES, load_json
    data = load_json(path, "result", RUN_FILE_BYTES, ours=True)  # regular file, size, depth; names the file
    return RunResult.from_json(data, str(path))


def _measurement(data: Any, where: str) -> Measurement:
    if not isinstance(data, dict):
        raise UserError(f"{where}: a measurement must be an object, not {json.dumps(data)[:40]}.")
    value = data.get("value")
    if value in ("inf", "-inf"):  # strict JSON has no Infinity: measurement_json wrote it as a string
        data = {**data, "value": float(value)}
    try:
        return Measurement.from_json(data)
    except TypeError as exc:
        raise UserError(f"{where}: a measurement has unexpected fields ({exc}).") from None


def measurement_json(m: Measurement) -> dict[str, Any]:
    data = m.to_json()
    if isinstance(data.get("value"), float) and data["value"] in (float("inf"), float("-inf")):
        data["value"] = "inf" if data["value"] > 0 else "-inf"  # strict JSON has no Infinity
    return data
