"""The HTML report: one self-contained file (inline CSS, inline SVG plots, no network)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2

from .. import __version__
from . import content
from .plots import figure_svg, timeline_plots
from .recovery import recovery_plot, recovery_section
from .run import STATUS_COLOURS, VERDICT_COLOURS, RunView, detail_text, manifest_note

TEMPLATES = Path(__file__).with_name("templates")


def environment() -> jinja2.Environment:
    """Jinja with autoescaping on: every string from a run is data, never markup."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              keep_trailing_newline=True)


def render_html(run: RunView) -> str:
    plots = [{"title": p.title, "caption": p.caption, "svg": figure_svg(p.figure)} for p in timeline_plots(run)]
    events, notes = content.event_rows(run)
    recovery = recovery_section(run)
    context: dict[str, Any] = {
        "run": run,
        "verdict_word": run.verdict_word,
        "verdict_colour": VERDICT_COLOURS.get(run.verdict, "#57606a"),
        "status_colours": STATUS_COLOURS,
        "counts": content.summary_counts(run),
        "rows": content.measurement_rows(run),
        "plots": plots,
        "recovery": recovery,
        "recovery_svg": figure_svg(recovery_plot(run, recovery).figure) if recovery else None,
        "events": events,
        "event_notes": notes,
        "metadata": content.metadata_rows(run),
        "target_detail": detail_text(run.result.target_detail, 400),
        "settings": content.settings_text(run),
        "manifest_note": manifest_note(run),
        "version": __version__,
    }
    page = environment().get_template("report.html.j2").render(**context)
    return _NOT_TEXT.sub(lambda m: f"\\x{ord(m.group()):02x}", page)


# control characters and lone surrogates from a run's strings: shown as \\xNN, never sent to the browser or encoder
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def write_html(run: RunView, path: Path) -> Path:
    path.write_text(render_html(run), encoding="utf-8")
    return path
