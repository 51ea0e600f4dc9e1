"""A run directory read back for reporting: result, history, settings, events.

Every report is rendered from the run directory alone, so a report can be
re-rendered offline, years later, from the evidence itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..checkers.measurement import Measurement
from ..errors import UserError
from ..evidence import MANIFEST, SIGNATURE, manifest_digest
from ..history import LOAD, History, Record
from ..result_file import RunResult, read_result

VERDICT_WORDS = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "aborted": "ABORTED"}
VERDICT_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#9a6700", "aborted": "#57606a"}
# "reported" (measured for context, judged against no target) is neutral grey: neither achieved nor missed
STATUS_COLOURS = {"met": "#1a7f37", "breached": "#cf222e", "inconclusive": "#9a6700", "reported": "#6e7781"}


@dataclass
class RunView:
    """What a report needs from one run directory."""

    run_dir: Path
    result: RunResult
    history: History | None
    settings: dict[str, Any] = field(default_factory=dict)
    manifest_sha256: str | None = None
    signed: bool = False

    @property
    def measurements(self) -> list[Measurement]:
        return list(self.result.measurements)

    @property
    def experiment(self) -> str:
        return self.result.experiment or self.run_dir.name

    @property
    def verdict(self) -> str:
        return self.result.verdict or "inconclusive"

    @property
    def verdict_word(self) -> str:
        return VERDICT_WORDS.get(self.verdict, self.verdict.upper())

    @property
    def target(self) -> str:
        return str(self.result.target or self.settings.get("target") or "unknown")

    @property
    def fault(self) -> dict[str, Any]:
        return dict(self.result.fault or {})

    @property
    def phases(self) -> dict[str, list[float]]:
        return {str(k): list(v) for k, v in self.result.phases.items() if v and len(v) == 2}

    def wall(self, t: float) -> datetime | None:
        """UTC wall-clock time of history time t (None without a history)."""
        if self.history is None:
            return None
        return datetime.fromtimestamp(self.history.origin_wall, tz=timezone.utc) + timedelta(seconds=t)

    def measurement(self, name: str) -> Measurement | None:
        return self.result.measurement(name)

    def rto_s(self) -> float | None:
        """The measured RTO when finite (for the recovery marker on plots)."""
        m = self.measurement("rto_s")
        if m is None or not isinstance(m.value, (int, float)) or not math.isfinite(m.value):
            return None
        return float(m.value)

    def events(self) -> list[Record]:
        """Non-load records, in time order."""
        if self.history is None:
            return []
        return [r for r in self.history.sorted() if r.source != LOAD]


def load_run(run_dir: Path) -> RunView:
    """Read a run directory; UserError naming the file when result.json is missing or damaged."""
    run_dir = Path(run_dir)
    result = read_result(run_dir)
    history = None
    history_path = run_dir / "history.jsonl"
    if history_path.exists() or history_path.is_symlink():
        from ..inputs import HISTORY_BYTES, check_regular
        check_regular(history_path, "history", HISTORY_BYTES)  # no FIFO, device or link is read
        try:
            history = History.load(history_path)
        except (ValueError, RecursionError) as exc:  # History.load names the file and line; too deep to be ours
            raise UserError(f"{exc}. The history is damaged; "
                            f"`resilience verify {run_dir}` shows whether it was changed.") from None
    settings_path = run_dir / "settings.json"
    settings = _read_json(settings_path) if settings_path.is_file() else {}
    return RunView(run_dir, result, history, settings if isinstance(settings, dict) else {},
                   manifest_digest(run_dir), (run_dir / SIGNATURE).is_file())


def _read_json(path: Path) -> Any:
    from ..inputs import RUN_FILE_BYTES, load_json
    return load_json(path, "run file", RUN_FILE_BYTES, ours=True)  # regular file, size, depth; names the file


# -- formatting shared by every report ---------------------------------------------

def fmt_number(value: Any, unit: str = "") -> str:
    """A measured number as people read it; None is 'not measured', infinity 'never (unbounded)'."""
    if value is None:
        return "not measured"
    if isinstance(value, str):  # e.g. "Infinity" written by a non-Python tool
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isinf(value):
        return "unbounded (never recovered)" if value > 0 else "-unbounded"
    if unit in ("ratio", "fraction") and isinstance(value, (int, float)):
        return f"{value * 100:.3f} %"
    if isinstance(value, float):
        text = f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.1f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".strip() if unit not in ("count", "") else text


def fmt_target(m: Measurement) -> str:
    if m.target is None:
        return "reported only"
    return f"{m.comparison} {fmt_number(m.target, m.unit)}"


def measurement_label(m: Measurement) -> str:
    """The name with its window; a figure judged over the run minus a phase says so (p99_ms is not 'overall')."""
    excludes = (m.detail or {}).get("excludes")
    if excludes:
        return f"{m.name} [all but the {excludes}]"
    return f"{m.name} [{m.phase}]" if m.phase else m.name


def fmt_utc(when: datetime | None) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z" if when else "—"


def detail_text(detail: dict[str, Any] | None, limit: int = 240) -> str:
    if not detail:
        return ""
    text = json.dumps(detail, separators=(", ", ": "), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def manifest_note(run: RunView) -> str:
    """How a reader checks the run directory. Independent of whether the run is sealed yet, so
    re-rendering a sealed run gives the same bytes and its manifest still verifies."""
    return (f"This report is sealed together with its run directory: {MANIFEST}, written after rendering, lists the "
            f"SHA-256 of every file in {run.run_dir.name}, this report included (and {SIGNATURE} signs it when a "
            f"signing key is configured). Check it with `resilience verify {run.run_dir.name}`, or with "
            f"`sha256sum -c {MANIFEST}` inside the directory.")
