"""A short Markdown summary, sized for a pull-request comment."""

from __future__ import annotations

from pathlib import Path

from .content import measurement_rows, summary_counts
from .recovery import markdown_lines, recovery_section
from .run import RunView

ICONS = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️", "aborted": "⛔"}
STATUS_ICONS = {"met": "✅ met", "breached": "❌ breached", "inconclusive": "⚠️ inconclusive",
                "reported": "ℹ️ reported"}  # reported: measured for context, judged against no target


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(run: RunView) -> str:
    counts = summary_counts(run)
    lines = [
        f"### {ICONS.get(run.verdict, '')} {run.verdict_word}: `{run.experiment}` on target `{run.target}`",
        "",
        f"**Hypothesis:** {_cell(run.result.hypothesis or '(none recorded)')}",
        "",
    ]
    if run.result.aborted_reason:
        lines += [f"**Aborted:** {_cell(run.result.aborted_reason)}", ""]
    for deviation in run.result.deviations:
        lines.append(f"- **Deviation:** {_cell(str(deviation))}")
    if run.result.deviations:
        lines.append("")
    rows = measurement_rows(run)
    if rows:
        lines += ["| measurement | target | measured | status |", "|---|---|---|---|"]
        lines += [f"| `{r.name}` | {_cell(r.target)} | {_cell(r.measured)} | {STATUS_ICONS.get(r.status, r.status)} |"
                  for r in rows]
        lines.append("")
    else:
        lines += ["No measurements were made.", ""]
    recovery = recovery_section(run)
    if recovery is not None:
        lines += [_cell(line) if line.startswith("- ") else line for line in markdown_lines(recovery)]
    lines.append(f"{counts['met']} met · {counts['breached']} breached · {counts['inconclusive']} inconclusive · "
                 f"{counts['reported']} reported only · run `{run.run_dir.name}` · "
                 f"started {run.result.started_at or '—'} · full report: "
                 f"`report.html` / `report.pdf` in the run directory.")
    return "\n".join(lines) + "\n"


def write_markdown(run: RunView, path: Path) -> Path:
    path.write_text(render_markdown(run), encoding="utf-8")
    return path
