"""What a run concluded: `RunResult` (result.json, typed) and `write_results`, which writes it and seals the run.

`write_results` is the one way a run directory gets its result.json, reports
and seal, for a finished run (`Run.finish`) and a salvaged one
(`resilience rollback`) alike. Everything that reads result.json back — the
CLI, `resilience check`, the reports, the game-day report, salvage — reads it
through `RunResult.from_json`, whose `to_json` writes exactly the same keys
and values again. `RESULT_SCHEMA_VERSION` is the one place its version lives.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from . import __version__
from .checkers import compute, verdict
from .checkers.generator import GeneratorReport, deviations as generator_deviations, generator_report
from .checkers.measurement import Measurement
from .config import Targets
from .atomic import write_json_atomic
from .errors import UserError
from .experiments import PROJECT_ROOT
from .history import FAIL, FAULT, LOAD, PARTIAL, PHASE, PLATFORM, History, Record

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


@dataclass
class RunFacts:
    """What result.json states about a run besides its measurements.

    A live `Run` knows these; `resilience rollback` reads them back from a killed
    run's directory (settings.json, experiment.yaml, the history). Both hand them
    to `write_results`, so a salvaged run is written exactly like a finished one.
    """

    experiment: str
    title: str
    hypothesis: str
    description: str
    target: str
    target_detail: dict[str, Any]
    measures: list[str]
    targets: Targets
    fault: dict[str, Any]
    started_at: datetime
    load: dict[str, Any]
    profile: str
    aborted_reason: str | None
    failed_rollbacks: int = 0
    error: str | None = None


class Sealer(Protocol):
    """Seals a finished run directory (manifest, signature, ledger line): `resilience.evidence.EvidenceStore`."""

    def seal(self, run_dir: Path, experiment: str, verdict: str) -> str: ...


def write_results(run_dir: Path, history: History, facts: RunFacts, journal: dict[str, Any], *,
                  sealer: Sealer, warn: Callable[[str], None]) -> RunResult:
    """history.jsonl, events, journal, result.json, every report, then the seal (manifest, signature, ledger line).

    The measurements come from the history exactly as stored, so `resilience
    check` recomputes the same figures. The streamed history.partial.jsonl is
    removed just before the seal: history.jsonl holds all of it (and the load
    rows), and a second copy in the manifest would only be a second truth.
    """
    history.dump(run_dir / "history.jsonl")
    records = History.load(run_dir / "history.jsonl").sorted()
    measurements = compute(records, targets=facts.targets, measures=facts.measures)
    generator = generator_report(records)
    deviations = run_deviations(journal, facts.failed_rollbacks, records, generator)
    result_verdict = verdict(measurements, aborted=bool(facts.aborted_reason), deviated=bool(deviations))
    ended = datetime.now(timezone.utc)
    with (run_dir / "events.jsonl").open("w") as f:
        for r in records:
            if r.source != LOAD:
                f.write(json.dumps(r.to_row(), separators=(",", ":")) + "\n")
    write_json_atomic(run_dir / "journal.json", json.loads(json.dumps(journal, default=str)))
    result = RunResult(
        experiment=facts.experiment, title=facts.title, hypothesis=facts.hypothesis, description=facts.description,
        target=facts.target, target_detail=facts.target_detail, run_dir=str(run_dir), verdict=result_verdict,
        aborted_reason=facts.aborted_reason, deviations=tuple(deviations), measurements=tuple(measurements),
        phases=phase_spans(records), fault=facts.fault, started_at=_iso(facts.started_at), ended_at=_iso(ended),
        duration_s=round((ended - facts.started_at).total_seconds(), 3), load=facts.load, profile=facts.profile,
        error=facts.error, harness=harness_info(), tool_versions=_tool_versions(), generator=generator.to_json())
    write_json_atomic(run_dir / "result.json", result.to_json())
    try:
        from .reports import render_all
        render_all(run_dir)
    except Exception as exc:  # reports are re-renderable: `resilience report RUN_DIR`
        warn(f"warning: rendering reports failed ({exc}); re-run `resilience report {run_dir}`")
    history.close_stream()
    (run_dir / PARTIAL).unlink(missing_ok=True)
    sealer.seal(run_dir, facts.experiment, result_verdict)
    return result


def recomputed(stored: RunResult, measurements: list[Measurement]) -> RunResult:
    """`stored` with these measurements and the verdict they give (its abort and deviations as they were)."""
    new_verdict = verdict(measurements, aborted=bool(stored.aborted_reason), deviated=bool(stored.deviations))
    return dataclasses.replace(stored, measurements=tuple(measurements), verdict=new_verdict)


def target_detail(name: str, records: list[Record], context: str | None) -> dict[str, Any]:
    """The target as the run saw it: its URL, zone mode and size, from the history's platform/stack record."""
    detail: dict[str, Any] = {"name": name}
    for r in records:
        if r.source == PLATFORM and r.op == "stack" and r.detail:
            detail.update({"url": r.detail.get("url"), "zone_mode": r.detail.get("zone_mode"),
                           "components": len(r.detail.get("components", []))})
    if context:
        detail["context"] = context
    return detail


def run_deviations(journal: dict[str, Any], failed_rollbacks: int, records: list[Record],
                   generator: GeneratorReport | None = None) -> list[str]:
    """Why a run did not go as planned: each reason makes the verdict at best a deviation, never a pass."""
    deviations = []
    if journal.get("deviated"):
        deviations.append("the steady-state hypothesis did not hold after the fault (Chaos Toolkit: deviated)")
    if journal.get("status") == "failed":
        deviations.append("an activity failed (see journal.json)")
    if failed_rollbacks:
        deviations.append(f"{failed_rollbacks} rollback(s) failed")
    for r in records:
        if r.source == FAULT and r.op == "inject" and r.status == FAIL:
            detail = r.detail or {}
            deviations.append(f"the fault {detail.get('capability')} could not be injected: {detail.get('error')}")
        if r.source == PLATFORM and r.op == "heal_failed":
            pending = ", ".join(f"{n}: {why}" for n, why in (r.detail or {}).get("components", {}).items())
            deviations.append(f"the stack did not heal after the fault ({pending}); see the event log")
    return deviations + generator_deviations(generator or generator_report(records))


def phase_spans(records: list[Record]) -> dict[str, list[float]]:
    """result.json's `phases`: each phase mark to the next one ({name: [start, end]}; the `end` mark closes)."""
    marks = [(r.t, r.op) for r in records if r.source == PHASE and r.op != "abort"]
    spans: dict[str, list[float]] = {}
    for (t, op), nxt in zip(marks, marks[1:] + [(None, None)]):
        if op == "end":
            continue
        spans[op] = [round(t, 6), round(nxt[0], 6) if nxt[0] is not None else round(t, 6)]
    return spans


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def harness_info() -> dict[str, str | None]:
    """This harness: its version and the git commit it was run from (None outside a checkout)."""
    return {"version": __version__, "git_commit": _git_commit()}


def _git_commit() -> str | None:
    head = PROJECT_ROOT / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            path = PROJECT_ROOT / ".git" / ref[5:]
            if path.exists():
                return path.read_text().strip()
            packed = (PROJECT_ROOT / ".git" / "packed-refs").read_text().splitlines()
            return next((line.split()[0] for line in packed if line.endswith(ref[5:])), None)
        return ref
    except OSError:
        return None


def _tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": sys.version.split()[0]}
    for pkg in ("chaostoolkit-lib", "chaostoolkit", "locust", "fastapi", "asyncpg", "redis"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
