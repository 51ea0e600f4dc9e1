"""Alert coverage of a game-day: which alert caught which fault, how fast; blind spots; rules never exercised.

Read from each run's history (the `alert` records, `checkers/detection.py`'s sources): a fault is
caught by an alert notified firing after its injection. A fault no alert caught is a blind spot
(whether or not its experiment expected one); a rule that fired in no run was never exercised.
Written next to the compliance report as alert-coverage.json and alert-coverage.md, and printed
at the end of `resilience gameday`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..checkers.detection import expected_alerts
from ..history import ALERT, FAULT, History, Record

JSON_FILE = "alert-coverage.json"
MARKDOWN_FILE = "alert-coverage.md"


def rule_names() -> list[str]:
    from ..targets.local.alert_rules import load, windows
    return list(windows(load()))


def run_coverage(experiment: str, records: Sequence[Record]) -> dict[str, Any]:
    """One run: its fault, the alerts notified after the injection (seconds from it), what it expected."""
    ordered = sorted(records, key=lambda r: r.t)
    inject = next((r for r in ordered if r.source == FAULT and r.op == "inject"), None)
    watched = any(r.source == ALERT and r.op == "watching" for r in ordered)
    unreachable = any(r.source == ALERT and r.op == "unreachable" for r in ordered)
    caught: dict[str, float] = {}
    if inject is not None:
        for r in ordered:
            name = (r.detail or {}).get("alert")
            if r.source == ALERT and r.op == "firing" and r.t >= inject.t and name and name not in caught:
                caught[str(name)] = round(r.t - inject.t, 3)
    expected = expected_alerts(ordered)
    return {"experiment": experiment, "fault": (inject.detail or {}).get("capability") if inject else None,
            "monitored": watched and not unreachable, "expected": None if expected is None else list(expected),
            "caught": caught, "missed": [a for a in expected or () if a not in caught]}


def coverage(runs: Sequence[tuple[str, Path | None]], rules: Sequence[str] | None = None) -> dict[str, Any]:
    """The matrix over the runs of a game-day (a run without a directory or history is left out, named)."""
    rules = list(rules if rules is not None else rule_names())
    rows, left_out = [], []
    for experiment, run_dir in runs:
        try:
            history = History.load(Path(run_dir) / "history.jsonl") if run_dir else None
        except (OSError, ValueError):
            history = None
        if history is None:
            left_out.append(experiment)
            continue
        rows.append(run_coverage(experiment, history.records))
    faulted = [r for r in rows if r["fault"] and r["monitored"]]
    fired = {a for r in faulted for a in r["caught"]}
    return {"rules": rules, "runs": rows, "left_out": left_out,
            "blind_spots": [{"experiment": r["experiment"], "fault": r["fault"]} for r in faulted if not r["caught"]],
            "unmonitored": [r["experiment"] for r in rows if r["fault"] and not r["monitored"]],
            "never_exercised": [a for a in rules if a not in fired]}


def render_markdown(cov: dict[str, Any]) -> str:
    rules = cov["rules"]
    lines = ["# Alert coverage", "", "Seconds from the injection to each alert's first notification "
             "(`*`: expected; `missed`: expected, never fired; `-`: did not fire).", "",
             "| experiment | fault | " + " | ".join(rules) + " |", "|" + "---|" * (len(rules) + 2)]
    for r in cov["runs"]:
        cells = []
        for a in rules:
            star = "*" if a in (r["expected"] or []) else ""
            cells.append(f"{r['caught'][a]:.1f}{star}" if a in r["caught"] else "missed" if star else "-")
        note = "" if r["monitored"] else " (not monitored)"
        lines.append(f"| {r['experiment']}{note} | {r['fault'] or '-'} | " + " | ".join(cells) + " |")
    lines += ["", "Blind spots (faults no alert caught): " + (", ".join(
        f"{b['experiment']} ({b['fault']})" for b in cov["blind_spots"]) or "none"),
              "Rules no experiment exercised: " + (", ".join(cov["never_exercised"]) or "none")]
    if cov["unmonitored"]:
        lines.append("Runs without working monitoring (not counted): " + ", ".join(cov["unmonitored"]))
    if cov["left_out"]:
        lines.append("Experiments without a run to read: " + ", ".join(cov["left_out"]))
    return "\n".join(lines) + "\n"


def write_coverage(report_dir: Path, runs: Sequence[tuple[str, Path | None]]) -> dict[str, Any]:
    cov = coverage(runs)
    (report_dir / JSON_FILE).write_text(json.dumps(cov, indent=1))
    (report_dir / MARKDOWN_FILE).write_text(render_markdown(cov))
    return cov
