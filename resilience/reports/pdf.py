"""The PDF report for auditors (reportlab, no LaTeX): the HTML report's content, plots as PNG.

Text uses DejaVu Sans from matplotlib's own font directory, so "≤", "→" and
"∞" print everywhere without depending on system fonts. `invariant=1` keeps
the file free of creation dates and random ids: same run, same bytes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence
from xml.sax.saxutils import escape

import matplotlib
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, StyleSheet1, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (Flowable, Image, KeepTogether, PageBreak, Paragraph, Preformatted, SimpleDocTemplate,
                                Spacer, Table, TableStyle)

from .. import __version__
from . import content
from .plots import figure_png, timeline_plots
from .recovery import recovery_plot, recovery_section
from .run import STATUS_COLOURS, VERDICT_COLOURS, RunView, manifest_note

FONT = "DejaVuSans"
FONT_BOLD = "DejaVuSans-Bold"
FONT_MONO = "DejaVuSansMono"
PAGE_WIDTH = A4[0] - 3.6 * cm


def _register_fonts() -> None:
    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    pdfmetrics.registerFont(TTFont(FONT, str(fonts / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(FONT_BOLD, str(fonts / "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFont(TTFont(FONT_MONO, str(fonts / "DejaVuSansMono.ttf")))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD)


def styles() -> StyleSheet1:
    _register_fonts()
    sheet = getSampleStyleSheet()
    for name in ("Normal", "BodyText", "Title", "Heading1", "Heading2", "Heading3", "Code"):
        sheet[name].fontName = FONT_MONO if name == "Code" else (FONT_BOLD if name.startswith(("Title", "Head"))
                                                                   else FONT)
    sheet["Normal"].fontSize = 9
    sheet["Normal"].leading = 12
    sheet.add(ParagraphStyle("Cell", parent=sheet["Normal"], fontSize=7.5, leading=9.5, alignment=TA_LEFT))
    sheet.add(ParagraphStyle("CellMono", parent=sheet["Cell"], fontName=FONT_MONO, fontSize=6.5, leading=8))
    sheet.add(ParagraphStyle("Small", parent=sheet["Normal"], fontSize=7.5, leading=9.5,
                             textColor=colors.HexColor("#57606a")))
    sheet.add(ParagraphStyle("Verdict", parent=sheet["Title"], fontSize=30, leading=36, textColor=colors.white,
                             alignment=TA_LEFT))
    return sheet


def para(text: Any, style: ParagraphStyle) -> Paragraph:
    """A paragraph of data: escaped, so a '<' in a run's text is never read as markup."""
    return Paragraph(escape(str(text)), style)


def table(rows: Sequence[Sequence[Any]], widths: Sequence[float], sheet: StyleSheet1, *, header: bool = True,
          mono_columns: Sequence[int] = (), extra: Sequence[tuple[Any, ...]] = ()) -> Table:
    """A wrapped-text table; every cell becomes an escaped Paragraph."""
    cells = [[c if isinstance(c, Flowable) else
              para(c, sheet["CellMono"] if i in mono_columns and (r or not header) else sheet["Cell"])
              for i, c in enumerate(row)] for r, row in enumerate(rows)]
    t = Table(cells, colWidths=list(widths), repeatRows=1 if header else 0)
    commands: list[tuple[Any, ...]] = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#d0d7de")),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f6f8fa")))
    t.setStyle(TableStyle(commands + list(extra)))
    return t


def png(data: bytes, width: float = PAGE_WIDTH) -> Image:
    image = Image(io.BytesIO(data))
    scale = width / image.imageWidth
    image.drawWidth, image.drawHeight = width, image.imageHeight * scale
    return image


def banner(word: str, subtitle: str, colour: str, sheet: StyleSheet1) -> Table:
    """The big coloured verdict box at the top of the first page."""
    cell = [Paragraph(escape(word), sheet["Verdict"]),
            Paragraph(escape(subtitle), ParagraphStyle("BannerSub", parent=sheet["Normal"], textColor=colors.white,
                                                       fontSize=10, leading=13))]
    t = Table([[cell]], colWidths=[PAGE_WIDTH])
    t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(colour)),
                           ("LEFTPADDING", (0, 0), (-1, -1), 14), ("TOPPADDING", (0, 0), (-1, -1), 10),
                           ("BOTTOMPADDING", (0, 0), (-1, -1), 12)]))
    return t


def build(path: Path, story: list[Flowable], title: str, footer: str) -> Path:
    """Lay the story out on A4 with a footer and page numbers on every page."""
    def on_page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7)
        canvas.setFillColor(colors.HexColor("#57606a"))
        canvas.drawString(1.8 * cm, 1.0 * cm, footer[:150])
        canvas.drawRightString(A4[0] - 1.8 * cm, 1.0 * cm, f"page {doc.page}")
        canvas.restoreState()

    doc = SimpleDocTemplate(str(path), pagesize=A4, leftMargin=1.8 * cm, rightMargin=1.8 * cm, topMargin=1.6 * cm,
                            bottomMargin=1.8 * cm, title=title, author=f"resilience {__version__}",
                            creator=f"resilience {__version__}", invariant=1)
    doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return path


def status_cell_styles(statuses: Sequence[str], column: int) -> list[tuple[Any, ...]]:
    """Colour the status column: one command per row (row 0 is the header)."""
    return [("BACKGROUND", (column, i), (column, i), colors.HexColor(STATUS_COLOURS.get(s, "#ffffff")))
            for i, s in enumerate(statuses, 1) if s in STATUS_COLOURS] + \
           [("TEXTCOLOR", (column, i), (column, i), colors.white) for i, s in enumerate(statuses, 1)
            if s in STATUS_COLOURS]


def run_story(run: RunView) -> list[Flowable]:
    """The report's content, in the HTML report's order."""
    sheet = styles()
    h2, body, small = sheet["Heading2"], sheet["Normal"], sheet["Small"]
    counts = content.summary_counts(run)
    story: list[Flowable] = [
        banner(run.verdict_word, f"{run.result.title or run.experiment} — experiment {run.experiment} on "
                                 f"target {run.target}; {counts['met']} met, {counts['breached']} breached, "
                                 f"{counts['inconclusive']} inconclusive, {counts['reported']} reported only",
               VERDICT_COLOURS.get(run.verdict, "#57606a"),
               sheet),
        Spacer(1, 8),
    ]
    if run.result.aborted_reason:
        story.append(para(f"Aborted: {run.result.aborted_reason}", body))
    for deviation in run.result.deviations:
        story.append(para(f"Deviation: {deviation}", body))
    story += [para("Hypothesis", h2), para(run.result.hypothesis or "(no hypothesis recorded)", body)]
    if run.result.description:
        story.append(para(run.result.description, body))
    story.append(para(f"Target: {run.target}", body))

    story.append(para("Targets and measurements", h2))
    rows = content.measurement_rows(run)
    if rows:
        data = [["measurement", "target", "measured", "unit", "status"]] + \
               [[r.name, r.target, r.measured + (f" ({r.reason})" if r.reason else ""), r.unit, r.status]
                for r in rows]
        story.append(table(data, [4 * cm, 3.2 * cm, 5.6 * cm, 1.4 * cm, 2.2 * cm], sheet, mono_columns=(0,),
                           extra=status_cell_styles([r.status for r in rows], 4)))
    else:
        story.append(para("No measurements were made. A run without measurements is never a pass.", body))

    story.append(para("Timeline", h2))
    plots = timeline_plots(run)
    if not plots:
        story.append(para("No history.jsonl in this run directory: nothing to plot.", body))
    for p in plots:
        story.append(KeepTogether([png(figure_png(p.figure)), para(f"{p.title}. {p.caption}", small), Spacer(1, 6)]))

    story += _recovery_story(run, sheet)
    story += [PageBreak(), para("How each measurement is defined", h2)]
    for r in rows:
        story.append(para(f"{r.name}: {r.definition}", body))

    story.append(para("Run metadata", h2))
    story.append(table(content.metadata_rows(run), [4 * cm, PAGE_WIDTH - 4 * cm], sheet, header=False))
    story += [Spacer(1, 4), para(manifest_note(run), small)]

    events, notes = content.event_rows(run)
    story.append(para("Event log", h2))
    if events:
        data = [["UTC", "t (s)", "source", "op", "status", "detail"]] + \
               [[e.utc[11:], e.t, e.source, e.op, e.status, (e.key + " " if e.key else "") + e.detail] for e in events]
        story.append(table(data, [2.6 * cm, 1.4 * cm, 1.8 * cm, 2.2 * cm, 1.4 * cm, PAGE_WIDTH - 9.4 * cm], sheet,
                           mono_columns=(0, 5)))
    else:
        story.append(para("No events recorded.", body))
    for note in notes:
        story.append(para(note, small))
    settings = [para("Resolved settings (settings.json)", h2), Preformatted(content.settings_text(run), sheet["CellMono"])]
    story += [KeepTogether(settings)] if content.settings_text(run).count("\n") < 80 else settings
    return story


def _recovery_story(run: RunView, sheet: StyleSheet1) -> list[Flowable]:
    """The recovery-from-backup section (reports/recovery.py); nothing for a run without a restore."""
    section = recovery_section(run)
    if section is None:
        return []
    story: list[Flowable] = [para("Recovery from backup", sheet["Heading2"]),
                             table(section.facts, [4.5 * cm, PAGE_WIDTH - 4.5 * cm], sheet, header=False)]
    if section.phases:
        story += [Spacer(1, 3), table([["phase", "from t (s)", "to t (s)", "seconds", "started (UTC)"]] +
                                      [[p["name"], p["start"], p["end"], p["seconds"], p["utc"]] for p in section.phases],
                                      [2.6 * cm, 2.2 * cm, 2.2 * cm, 2 * cm, PAGE_WIDTH - 9 * cm], sheet)]
    if section.counts:
        story += [Spacer(1, 3), table([["acknowledged orders after recovery", "count"]] +
                                      [[label, str(count)] for label, count in section.counts],
                                      [8 * cm, 3 * cm], sheet)]
    plot = recovery_plot(run, section)
    return story + [KeepTogether([png(figure_png(plot.figure)), para(f"{plot.title}. {plot.caption}", sheet["Small"]),
                                  Spacer(1, 6)])]


def write_pdf(run: RunView, path: Path) -> Path:
    return build(path, run_story(run), f"{run.verdict_word} — {run.experiment} on {run.target}",
                 f"resilience report · {run.experiment} · target {run.target} · {run.run_dir.name} · "
                 f"verdict {run.verdict_word}")
