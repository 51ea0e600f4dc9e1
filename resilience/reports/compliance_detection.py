"""The compliance report's detection evidence: which runs measured that the platform's alerts found the fault.

SOC 2 CC7.2 (anomalies are monitored for and detected), SOC 2 CC7.3 (detected events are evaluated: the
alert is the one the fault should raise, and it clears) and ISO/IEC 27001:2022 A.8.16 (monitoring
activities) ask for monitoring that works, not monitoring that exists. A run evidences it when it measured
`detection_s` (checkers/detection.py: from the client-observed impact to the first expected alert, judged
against the bound the monitoring configuration implies), with `missed_alerts`, `false_alerts` and
`alert_cleared_s` beside it. This module cites those runs per control and says plainly when no run measured
detection (the experiments named no `alerts:`, or the target read no alerts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from ..evidence import manifest_digest
from .compliance_dr import _result_json

DETECTION_CONTROLS: dict[str, str] = {
    "SOC 2 CC7.2": "the fault's impact is detected by the platform's own alerts, timed against the bound the "
                   "monitoring configuration implies (detection_s)",
    "SOC 2 CC7.3": "the alert raised is the one the fault should raise (missed_alerts), none fires without cause "
                   "(false_alerts), and it clears after recovery (alert_cleared_s)",
    "ISO/IEC 27001:2022 A.8.16": "monitoring activities: Prometheus/Alertmanager rules (or CloudWatch alarms) are "
                                 "exercised under a real fault and their timing recorded",
}
DETECTION_MEASURES = ("detection_s", "alert_cleared_s", "missed_alerts", "false_alerts")


def detection_citation(run_dir: Path, data: dict[str, Any]) -> dict[str, Any] | None:
    """What a run that measured detection evidences, or None when it did not measure it."""
    measured = {m.get("name"): m for m in data.get("measurements") or [] if isinstance(m, dict)}
    detection = measured.get("detection_s")
    if detection is None:
        return None
    detail = detection.get("detail") or {}

    def value(name: str) -> Any:
        return (measured.get(name) or {}).get("value")
    return {"experiment": data.get("experiment"), "run_dir": run_dir.name, "verdict": data.get("verdict"),
            "manifest_sha256": manifest_digest(run_dir), "status": detection.get("status"),
            "detection_s": detection.get("value"), "bound_s": detail.get("bound_s"), "alert": detail.get("alert"),
            "from_injection_s": detail.get("from_injection_s"), "expected": detail.get("expected") or [],
            "source": (detail.get("config") or {}).get("source") or "alertmanager-webhook",
            "reason": detection.get("reason"), "alert_cleared_s": value("alert_cleared_s"),
            "missed": (measured.get("missed_alerts") or {}).get("detail", {}).get("missed") or [],
            "false_alerts": value("false_alerts")}


def detection_evidence(run_dirs: Iterable[Path | None]) -> dict[str, Any]:
    """Runs that measured detection among the game-day's runs, cited per control, with a plain statement."""
    cited: list[dict[str, Any]] = []
    for run_dir in run_dirs:
        data = None if run_dir is None else _result_json(run_dir)
        if run_dir is not None and data is not None and (found := detection_citation(run_dir, data)) is not None:
            cited.append(found)
    met = [c for c in cited if c["status"] == "met" and not c["missed"] and not c["false_alerts"]]
    controls = {cid: {"why": why, "runs": [c["run_dir"] for c in cited]} for cid, why in DETECTION_CONTROLS.items()}
    return {"controls": controls, "runs": cited, "statement": _statement(cited, met)}


def _statement(cited: list[dict[str, Any]], met: list[dict[str, Any]]) -> str:
    controls = "SOC 2 CC7.2, CC7.3 and ISO/IEC 27001 A.8.16"
    if not cited:
        return (f"No run in this game-day measured detection (no experiment named the alerts its fault must "
                f"raise, or the target read no alerts): this report is no evidence that the platform's monitoring "
                f"detects incidents, for {controls}.")
    measured = [c for c in cited if c["detection_s"] is not None]
    inconclusive = [c for c in cited if c["status"] == "inconclusive"]
    parts = [f"{len(met)} of {len(cited)} run(s) detected the fault with the expected alert within its bound, "
             f"no alert missed and none false"]
    if measured:
        finite = [float(c["detection_s"]) for c in measured if c["detection_s"] != float("inf")]
        if finite:
            parts.append(f"detection took {min(finite):g}-{max(finite):g} s from the impact")
    if inconclusive:
        parts.append(f"{len(inconclusive)} run(s) inconclusive (the monitoring could not be read), not evidence")
    breached = [c for c in cited if c["status"] == "breached" or c["missed"] or c["false_alerts"]]
    if breached:
        parts.append(f"{len(breached)} run(s) show a detection gap (late, missed or false alerts): see their sections")
    return f"{controls}: " + "; ".join(parts) + "."


def render_detection(found: dict[str, Any] | None, sheet: Any) -> list[Any]:
    """The PDF section (compliance_render.py): the statement and one row per run that measured detection."""
    if not found:
        return []
    from .pdf import PAGE_WIDTH, para, table
    from reportlab.lib.units import cm
    story: list[Any] = [para("6b. Detection (SOC 2 CC7.2, CC7.3, ISO/IEC 27001 A.8.16)", sheet["Heading2"]),
                        para(found["statement"], sheet["Normal"])]
    if found["runs"]:
        rows = [[f"{c['experiment']} {c['run_dir']}", str(c["verdict"]).upper(),
                 "not measured" if c["detection_s"] is None else f"{c['detection_s']} s ({c['alert']})",
                 "—" if c["bound_s"] is None else f"{c['bound_s']} s",
                 ", ".join(c["missed"]) or "none", str(c["false_alerts"]),
                 "—" if c["alert_cleared_s"] is None else f"{c['alert_cleared_s']} s"] for c in found["runs"]]
        story.append(table([["run", "verdict", "detection", "bound", "missed", "false", "cleared"]] + rows,
                           [4.6 * cm, 1.7 * cm, 3.4 * cm, 1.6 * cm, 2.2 * cm, 1.2 * cm,
                            PAGE_WIDTH - 14.7 * cm], sheet))
    return story
