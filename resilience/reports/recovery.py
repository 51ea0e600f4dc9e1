"""The recovery section of a run report: what a restore from backup did, step by step, and what it gave back.

Shown only for runs whose history has `recovery` records (the restore runbook's):
the phases (detect -> decide -> restore -> replay -> re-form -> serving), the
backup set used and its age, the recovery target, and every acknowledged order
counted as restored, lost, given up or unverified, with the RPO window shaded on
a plot of the acknowledged orders. Computed from the history with the restore
checker's own functions, so the section and the measurements cannot disagree.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..checkers.restore import RestoreResult, RestoreRun, corruption_repaired, restore_outcome, restore_rpo_s, restore_run
from ..history import RECOVERY
from .plots import Plot  # before pyplot: it selects matplotlib's headless backend
from .run import RunView, fmt_number, fmt_utc

import matplotlib.pyplot as plt  # noqa: E402  (after .plots)

PHASE_COLOURS = {"detect": "#cf222e", "decide": "#bc4c00", "restore": "#0969da", "replay": "#8250df",
                 "re-form": "#1a7f37", "serving": "#57606a"}
RPO_COLOUR = "#d4a72c"


@dataclass(frozen=True)
class RecoverySection:
    """What the report shows about a restore; `problem` says why it cannot be judged, when so."""

    restore: RestoreRun
    outcome: RestoreResult | None
    rpo_window: tuple[float, float] | None  # [earliest data given up or lost, disaster)
    facts: list[tuple[str, str]] = field(default_factory=list)
    phases: list[dict[str, str]] = field(default_factory=list)
    counts: list[tuple[str, int]] = field(default_factory=list)

    @property
    def problem(self) -> str | None:
        return self.restore.problem


def recovery_section(run: RunView) -> RecoverySection | None:
    """The section, or None when the run has no history or no `recovery` record (a failover run)."""
    if run.history is None:
        return None
    records = run.history.sorted()
    if not any(r.source == RECOVERY for r in records):
        return None
    restore = restore_run(records)
    outcome = None if restore.problem else restore_outcome(records, restore)  # not judged: no counts shown
    rpo = None if outcome is None else restore_rpo_s(outcome, restore)
    window = (restore.disaster_t - rpo, restore.disaster_t) if rpo and restore.disaster_t is not None else None
    return RecoverySection(restore, outcome, window, _facts(run, restore, outcome), _phase_rows(run, restore),
                           _counts(outcome))


def _when(run: RunView, t: float | None) -> str:
    return "—" if t is None else f"t = {t:.1f} s ({fmt_utc(run.wall(t))})"


def _facts(run: RunView, restore: RestoreRun, outcome: RestoreResult | None) -> list[tuple[str, str]]:
    target = {"time": "a point in time", "latest": "the latest archived WAL"}.get(str(restore.target_kind),
                                                                                 "not recorded")
    rows = [("Disaster (fault took effect)", _when(run, restore.disaster_t)),
            ("Backup set used", f"{restore.backup_label or '—'} ({restore.backup_type or '?'}) from repo"
                                f"{restore.repo if restore.repo is not None else '?'}"),
            ("Backup age at the disaster", fmt_number(restore.backup_age_s, "s")),
            ("Recovery target", target + (f", {_when(run, restore.target_t)}" if restore.target_t is not None else "")),
            ("Restored", f"{fmt_number(restore.restore_bytes, 'bytes')} in {fmt_number(restore.restore_seconds, 's')}"
                         f" ({fmt_number(restore.throughput_mb_s, 'MB/s')})"),
            ("WAL replayed", f"{fmt_number(restore.wal_bytes, 'bytes')}, {fmt_number(restore.wal_segments)} segment(s), "
                             f"outcome {restore.replay_outcome or '—'}"),
            ("API serving again", _when(run, restore.serving_t))]
    if restore.problem:
        rows.append(("Not judged", restore.problem))
    if outcome is not None:
        repaired = corruption_repaired(outcome, restore)
        if repaired:
            rows.append(("Corrupted orders", f"{repaired['touched']} touched ({repaired['mode']}); "
                                             f"{repaired['still_wrong']} still missing or wrong after recovery"))
    return rows


def _phase_rows(run: RunView, restore: RestoreRun) -> list[dict[str, str]]:
    return [{"name": p.name, "start": f"{p.start:.1f}", "end": f"{p.end:.1f}", "seconds": f"{p.seconds:.1f}",
             "utc": fmt_utc(run.wall(p.start))} for p in restore.phases]


def _counts(outcome: RestoreResult | None) -> list[tuple[str, int]]:
    if outcome is None:
        return []
    return [("acknowledged", outcome.acknowledged), ("restored as acknowledged", outcome.kept),
            ("lost", len(outcome.lost)), ("given up (after the recovery target)", len(outcome.given_up)),
            ("not read back", len(outcome.unverified)), ("unexpected (never acknowledged)", len(outcome.unexpected)),
            ("indeterminate (sent, timed out or 5xx)", outcome.indeterminate)]


def recovery_plot(run: RunView, section: RecoverySection) -> Plot:
    """Acknowledged orders per second, the RPO window shaded, lost and given-up orders marked, phases as bars."""
    restore, outcome = section.restore, section.outcome
    acks: Counter[int] = Counter()
    if run.history is not None:
        for r in run.history.records:
            if r.source == "load" and r.op == "POST /orders" and r.status == "ok" and (r.detail or {}).get("order_id"):
                acks[math.floor(r.t + (r.latency or 0.0))] += 1
    fig, ax = plt.subplots(figsize=(10, 2.8), dpi=100)
    ax.set_title("Recovery from backup", fontsize=10, loc="left")
    ax.set_xlabel("seconds since run start", fontsize=9)
    ax.set_ylabel("acknowledged orders/s", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    if acks:
        xs = list(range(min(acks), max(acks) + 1))
        ax.plot([x + 0.5 for x in xs], [acks.get(x, 0) for x in xs], color="#0969da", lw=1.1, label="acknowledged")
    top = max(acks.values(), default=1) * 1.1 + 0.5
    if section.rpo_window is not None:
        ax.axvspan(*section.rpo_window, color=RPO_COLOUR, alpha=0.25, lw=0, label="RPO window")
    if restore.disaster_t is not None:
        ax.axvline(restore.disaster_t, color="#cf222e", linestyle="--", lw=1.3, label="disaster")
    if restore.target_t is not None:
        ax.axvline(restore.target_t, color=RPO_COLOUR, linestyle=":", lw=1.3, label="recovery target")
    if outcome is not None:
        _mark(ax, [o.ack_t for o, _ in outcome.lost], "x", "#cf222e", "lost")
        _mark(ax, [o.ack_t for o in outcome.given_up], "o", RPO_COLOUR, "given up")
    for p in restore.phases:
        ax.broken_barh([(p.start, max(p.seconds, 0.2))], (top, top * 0.12), facecolors=PHASE_COLOURS.get(p.name, "grey"),
                       label=f"{p.name} {p.seconds:.1f} s")
    ax.set_ylim(0, top * 1.15)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              frameon=False)
    fig.subplots_adjust(left=0.07, right=0.76, top=0.88, bottom=0.2)
    caption = ("Acknowledged orders per second (at acknowledgement); bars on top: the runbook's phases "
               "(detect → decide → restore → replay → re-form → serving). Shaded: the RPO window, from the recovery "
               "target or the earliest lost order to the disaster; crosses: lost orders, circles: orders given up "
               "by the point-in-time restore.")
    return Plot("recovery", "Recovery from backup", caption, fig)


def _mark(ax: Any, times: list[float], marker: str, colour: str, label: str) -> None:
    if times:
        ax.scatter(times, [0.2] * len(times), marker=marker, color=colour, s=18, label=f"{label} ({len(times)})",
                   zorder=3)


def markdown_lines(section: RecoverySection) -> list[str]:
    """The section in a few Markdown lines, for a pull-request comment."""
    phases = " → ".join(f"{p['name']} {p['seconds']} s" for p in section.phases) or "no phase recorded"
    lines = ["**Recovery from backup**", ""]
    lines += [f"- {label}: {value}" for label, value in section.facts]
    lines.append(f"- Phases: {phases}")
    if section.counts:
        lines.append("- Orders: " + " · ".join(f"{count} {label}" for label, count in section.counts))
    if section.rpo_window is not None:
        start, end = section.rpo_window
        lines.append(f"- RPO window: t = {start:.1f} s … {end:.1f} s ({end - start:.1f} s)")
    return lines + [""]
