"""Lay out the compliance report (the data built by compliance.py) as HTML and PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.units import cm
from reportlab.platypus import Flowable, KeepTogether, Paragraph, Spacer

from .compliance_detection import render_detection
from .html import environment
from .pdf import PAGE_WIDTH, banner, build, para, status_cell_styles, styles, table
from .run import STATUS_COLOURS, VERDICT_COLOURS, VERDICT_WORDS

LIGHT_VERDICT_COLOURS = {"pass": "#dafbe1", "fail": "#ffebe9", "inconclusive": "#fff8c5", "aborted": "#eaeef2"}


def _word(verdict: str) -> str:
    return VERDICT_WORDS.get(verdict, verdict.upper())


def render_compliance_html(model: dict[str, Any]) -> str:
    return environment().get_template("compliance.html.j2").render(
        m=model, overall_word=_word(model["overall_verdict"]),
        overall_colour=VERDICT_COLOURS.get(model["overall_verdict"], "#57606a"), colours=VERDICT_COLOURS,
        status_colours=STATUS_COLOURS, light=LIGHT_VERDICT_COLOURS, scope=model["scope"]["frameworks"])


def write_compliance_html(model: dict[str, Any], path: Path) -> Path:
    path.write_text(render_compliance_html(model), encoding="utf-8")
    return path


def _verdict_cells(verdicts: list[str], column: int) -> list[tuple[Any, ...]]:
    return [("BACKGROUND", (column, i), (column, i), colors.HexColor(VERDICT_COLOURS.get(v, "#57606a")))
            for i, v in enumerate(verdicts, 1)] + \
           [("TEXTCOLOR", (column, i), (column, i), colors.white) for i in range(1, len(verdicts) + 1)]


def compliance_story(m: dict[str, Any]) -> list[Flowable]:
    sheet = styles()
    h2, h3, body, small = sheet["Heading2"], sheet["Heading3"], sheet["Normal"], sheet["Small"]
    meta = m["metadata"]
    scope = m["scope"]["frameworks"]
    story: list[Flowable] = [
        banner(_word(m["overall_verdict"]),
               f"Resilience game-day compliance report · suite {m['suite']} · {len(m['experiments'])} experiments · "
               f"target {', '.join(meta['targets'])} · report {m['report_id']}",
               VERDICT_COLOURS.get(m["overall_verdict"], "#57606a"), sheet),
        para("1. Report metadata", h2),
        table([["Report id", m["report_id"]],
               ["Overall result", f"{_word(m['overall_verdict'])} (PASS only when every experiment passed)"],
               ["Generated at", f"{meta['generated_at_utc']} (UTC) · {meta['generated_at_ist']}"],
               ["Harness", f"resilience {meta['harness_version']}, git commit {meta['harness_git_commit'] or 'unknown'}"],
               ["Tool versions", ", ".join(f"{k} {v}" for k, v in sorted(meta["tool_versions"].items())) or "—"],
               ["Target", ", ".join(meta["targets"])]] + _ledger_rows(m.get("ledger")) + [
               ["Environment", " · ".join(f"{k}: {v}" for k, v in sorted(meta["environment"].items()))]],
              [3.5 * cm, PAGE_WIDTH - 3.5 * cm], sheet, header=False),
        para("2. Scope", h2),
        para(f"Experiments in suite {m['suite']}: {', '.join(m['scope']['experiments'])}.", body),
        table([["framework", "status in this report"]] + [[f, s] for f, s in scope.items()],
              [6 * cm, PAGE_WIDTH - 6 * cm], sheet),
        para(m["scope"]["statement"], small),
        para("3. Objectives and success criteria", h2),
        table([["objective", "measure", "success criterion"]] +
              [[o["objective"], o["measure"], o["target"]] for o in m["objectives"]],
              [5.5 * cm, 3.5 * cm, PAGE_WIDTH - 9 * cm], sheet, mono_columns=(1,)),
        para(f"{m['objectives_note']} {m['measurement_statement']}", small),
        para("4. Results per experiment", h2),
        table([["experiment", "verdict", "RTO", "RPO", "manifest sha256"]] +
              [[e["experiment"], e["verdict_word"], e["rto"] or "—", e["rpo"] or "—",
                e["manifest_sha256"] or "never sealed"] for e in m["experiments"]],
              [2.8 * cm, 2.8 * cm, 2.7 * cm, 2.3 * cm, PAGE_WIDTH - 10.6 * cm], sheet, mono_columns=(4,),
              extra=_verdict_cells([e["verdict"] for e in m["experiments"]], 1)),
    ]
    for n, e in enumerate(m["experiments"], 1):
        head = [para(f"4.{n} {e['experiment']} — {e['verdict_word']}", h3),
                table([["Title", e["title"] or "—"], ["Hypothesis", e["hypothesis"] or "—"], ["Method", e["method"]],
                       ["Target", e["target"] or "—"],
                       ["Run", f"{e['started_at'] or '—'} → {e['ended_at'] or '—'} · {e['run_dir'] or 'none'}"],
                       ["Evidence integrity", f"manifest sha256 {e['manifest_sha256'] or '— (never sealed)'}"
                                              f"{' · signed' if e['signed'] else ''}"],
                       ["Measured RTO / RPO", f"{e['rto'] or '—'} / {e['rpo'] or '—'}"]] +
                      ([["Aborted", e["aborted_reason"]]] if e["aborted_reason"] else []) +
                      [["Deviation", d] for d in e["deviations"]],
                      [3.5 * cm, PAGE_WIDTH - 3.5 * cm], sheet, header=False)]
        story.append(KeepTogether(head))
        if e["timeline"]:
            story += [Spacer(1, 3), table([["event", "t (s)", "UTC"]] + [
                [ev["event"], f"{ev['t_start']:.1f}" + (f" – {ev['t_end']:.1f}" if ev["t_end"] is not None else ""),
                 (ev["utc_start"] or "—") + (f" – {ev['utc_end']}" if ev["utc_end"] else "")] for ev in e["timeline"]],
                [6 * cm, 2.5 * cm, PAGE_WIDTH - 8.5 * cm], sheet)]
        if e["measurements"]:
            rows = [["measurement", "expected", "observed", "status", "definition"]] + \
                   [[x["name"], x["expected"], x["observed"] + (f" ({x['reason']})" if x["reason"] else ""),
                     x["label"], x["definition"]] for x in e["measurements"]]
            story += [Spacer(1, 3), table(rows, [3.2 * cm, 2.4 * cm, 3.2 * cm, 2 * cm, PAGE_WIDTH - 10.8 * cm], sheet,
                                          mono_columns=(0,),
                                          extra=status_cell_styles([x["label"] for x in e["measurements"]], 3))]
        else:
            story.append(para("No measurements were made.", small))
    story.append(para("5. Deviations", h2))
    story += [para(f"{d['experiment']}: {d['deviation']}", body) for d in m["deviations"]] or \
        [para("No experiment deviated from its plan.", body)]
    story.append(para("6. Findings and remediation", h2))
    if m["findings"]:
        story.append(table([["id", "severity", "experiment", "finding", "remediation hint"]] +
                           [[f["id"], f["severity"], f["experiment"], f["finding"], f["remediation"]]
                            for f in m["findings"]],
                           [1.2 * cm, 1.7 * cm, 2.4 * cm, 5.2 * cm, PAGE_WIDTH - 10.5 * cm], sheet))
    else:
        story.append(para("No findings: every measurement met its target.", body))
    story += _backup_and_dr(m.get("backup_and_dr"), sheet)
    story += render_detection(m.get("detection"), sheet)  # compliance_detection.py
    story += _matrix(m, sheet, scope)
    story += [KeepTogether([para("8. Sign-off", h2),
              table([["role", "name", "date", "signature"]] + [[s["role"], "", "", ""] for s in m["sign_off"]],
                    [3 * cm, 5 * cm, 3 * cm, PAGE_WIDTH - 11 * cm], sheet,
                    extra=[("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white]),
                           ("TOPPADDING", (0, 1), (-1, -1), 14), ("BOTTOMPADDING", (0, 1), (-1, -1), 14)]),
              Spacer(1, 4),
              para("This report's directory carries its own MANIFEST.sha256; each run it cites is identified above "
                   "by the SHA-256 of that run's manifest. Check any of them with `resilience verify DIR`.", small)])]
    return story


def _backup_and_dr(dr: dict[str, Any] | None, sheet: Any) -> list[Flowable]:
    """Which runs restored from backup or verified a backup (compliance_dr.py), and the plain statement."""
    if not dr:
        return []
    story: list[Flowable] = [para("6a. Backup and disaster recovery (SOC 2 A1.3, ISO/IEC 27001 A.8.13, "
                                  "GDPR Art. 32(1)(c)-(d))", sheet["Heading2"]), para(dr["statement"], sheet["Normal"])]
    if dr["restore_runs"]:
        story.append(table([["run restored from backup", "verdict", "backup set", "ack / restored / lost / given up",
                             "RPO (s)"]] +
                           [[f"{r['experiment']} {r['run_dir']}" + (f" ({r['reason']})" if r["reason"] else ""),
                             str(r["verdict"]).upper(), f"{r['backup_label'] or '—'} repo{r['repo']}",
                             f"{r['acknowledged']} / {r['kept']} / {r['lost']} / {r['given_up']}",
                             "not measured" if r["rpo_s"] is None else str(r["rpo_s"])] for r in dr["restore_runs"]],
                           [5 * cm, 1.8 * cm, 4 * cm, 3.6 * cm, PAGE_WIDTH - 14.4 * cm], sheet))
    if dr["verify_runs"]:
        story.append(table([["backup verification", "verdict", "backup set", "checks"]] +
                           [[v["run_dir"], str(v["verdict"]).upper(), v["backup_label"] or "—", "; ".join(v["checks"])]
                            for v in dr["verify_runs"]], [5 * cm, 1.8 * cm, 3.5 * cm, PAGE_WIDTH - 10.3 * cm], sheet))
    return story


def _ledger_rows(ledger: dict[str, Any] | None) -> list[list[str]]:
    """The ledger head and never-sealed runs for the metadata table (nothing for a report without a ledger)."""
    if not ledger:
        return []
    state = "chain and runs agree" if ledger["ok"] else "PROBLEMS: see the findings"
    return [["Ledger head", f"{ledger['head']} ({ledger['entries']} lines, {state}): keep this value outside the run "
                            f"host and pass it to `resilience verify --ledger-head` later"],
            ["Runs never sealed", ", ".join(ledger["never_sealed"]) or "none"]]


def _matrix(m: dict[str, Any], sheet: Any, scope: dict[str, str]) -> list[Flowable]:
    """The coverage matrix (✓ per experiment and control) and the per-control table with rationales."""
    controls = m["coverage"]["controls"]
    rows = m["coverage"]["rows"]
    # transposed for a portrait page: one row per control, one column per experiment
    header = ["control"] + [f"{r['experiment']} ({r['verdict'].upper()})" for r in rows]
    data = [header] + [[f"{c['id']}" + ("" if scope.get(c["framework"]) == "in scope" else " (readiness)")] +
                       ["✓" if c["id"] in r["controls"] else "" for r in rows] for c in controls]
    first = 5.6 * cm
    width = (PAGE_WIDTH - first) / max(1, len(rows))
    extra = [("BACKGROUND", (j, i), (j, i), colors.HexColor(LIGHT_VERDICT_COLOURS.get(r["verdict"], "#eeeeee")))
             for i, c in enumerate(controls, 1) for j, r in enumerate(rows, 1) if c["id"] in r["controls"]]
    extra.append(("ALIGN", (1, 1), (-1, -1), "CENTER"))
    matrix = table(data, [first] + [width] * len(rows), sheet, extra=extra)
    per_control = [["control", "scope", "state", "evidence (experiment: rationale)"]] + [
        [f"{c['id']} — {c['title']}", scope.get(c["framework"], ""), m["coverage"]["summary"][c["id"]]["state"],
         Paragraph("<br/>".join(escape(f"{r['experiment']} ({r['verdict'].upper()}): {r['controls'][c['id']]}")
                                for r in rows if c["id"] in r["controls"]) or "—", sheet["Cell"])]
        for c in controls]
    sheet_small = sheet["Small"]
    return [KeepTogether([para("7. Control coverage matrix", sheet["Heading2"]),
            para("✓ = the experiment is evidence for the control; the cell is coloured by the experiment's verdict "
                 "(green pass, red fail, yellow inconclusive, grey aborted). '(readiness)' marks frameworks not in "
                 "the audit scope.", sheet_small),
            matrix]), Spacer(1, 6),
            table(per_control, [4.5 * cm, 2.2 * cm, 3.2 * cm, PAGE_WIDTH - 9.9 * cm], sheet)]


def write_compliance_pdf(model: dict[str, Any], path: Path) -> Path:
    return build(path, compliance_story(model), f"Resilience compliance report {model['report_id']}",
                 f"resilience compliance report · {model['report_id']} · suite {model['suite']} · overall "
                 f"{_word(model['overall_verdict'])} · target {', '.join(model['metadata']['targets'])}")
