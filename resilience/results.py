"""What a run concluded: `write_results`, which writes result.json (`RunResult`, result_file.py), the
reports and the seal.

`write_results` is the one way a run directory gets its result.json, reports
and seal, for a finished run (`Run.finish`) and a salvaged one
(`resilience rollback`) alike. `RunResult`, `read_result`, `measurement_json`
and `RESULT_SCHEMA_VERSION` are re-exported from result_file.py.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from . import __version__
from .checkers import compute, verdict
from .checkers.generator import GeneratorReport, deviations as generator_deviations, generator_report
from .checkers.measurement import Measurement
from .config import Targets
from .atomic import write_json_atomic
from .experiments import PROJECT_ROOT
from .history import FAIL, FAULT, LOAD, PARTIAL, PHASE, PLATFORM, History, Record
from .result_file import RESULT_SCHEMA_VERSION, RunResult, measurement_json, read_result

__all__ = ["RESULT_SCHEMA_VERSION", "RunFacts", "RunResult", "Sealer", "harness_info", "measurement_json",
           "phase_spans", "read_result", "recomputed", "run_deviations", "target_detail", "write_results"]


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
