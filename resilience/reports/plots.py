"""Timeline plots: per-second series from the history, fault window shaded, events marked.

`per_second_series` is a small pure function (tested on its own); the figure
functions only draw. matplotlib runs headless (Agg) and writes SVG with a fixed
hash salt and no date, so rendering the same run twice gives the same bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..checkers.latency import percentile  # the checkers' nearest rank: plots and verdicts agree
from ..history import ALERT, CONTROLLER, LOAD, PLATFORM, Record  # noqa: E402
from .run import RunView  # noqa: E402

REQUEST_STATUSES = ("ok", "fail", "unknown")
PHASE_COLOURS = {"steady": None, "fault": "#cf222e", "recovery": "#d4a72c"}


@dataclass(frozen=True)
class SecondStats:
    """Load requests that started in second [second, second + 1) of the run."""

    second: int
    ok: int = 0
    fail: int = 0
    unknown: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def requests(self) -> int:
        return self.ok + self.fail + self.unknown

    @property
    def availability(self) -> float | None:
        """ok / (ok + fail + unknown); None in a second without requests."""
        return self.ok / self.requests if self.requests else None


def per_second_series(records: Iterable[Record]) -> list[SecondStats]:
    """One SecondStats per second from the first to the last load request (empty seconds included).

    Latency percentiles are over every load request that has a latency (ok,
    fail, and timeouts, whose latency is the timeout): a plot that hid slow
    failures would flatter the service.
    """
    counts: dict[int, list[int]] = {}
    latencies: dict[int, list[float]] = {}
    for r in records:
        if r.source != LOAD or r.status not in REQUEST_STATUSES:
            continue
        second = math.floor(r.t)
        row = counts.setdefault(second, [0, 0, 0])
        row[REQUEST_STATUSES.index(r.status)] += 1
        if r.latency is not None:
            latencies.setdefault(second, []).append(r.latency * 1000.0)
    if not counts:
        return []
    series = []
    for second in range(min(counts), max(counts) + 1):
        ok, fail, unknown = counts.get(second, [0, 0, 0])
        values = sorted(latencies.get(second, []))
        series.append(SecondStats(second, ok, fail, unknown,
                                  percentile(values, 50),
                                  percentile(values, 99)))
    return series


def replica_series(records: Iterable[Record]) -> list[tuple[float, int, int | None]]:
    """(t, ready, desired) from controller/replicas records, in time order."""
    points = []
    for r in records:
        if r.source == CONTROLLER and r.op == "replicas" and r.detail and "ready" in r.detail:
            desired = r.detail.get("desired")
            points.append((r.t, int(r.detail["ready"]), None if desired is None else int(desired)))
    return sorted(points)


@dataclass(frozen=True)
class Marker:
    t: float
    label: str
    colour: str
    style: str


def markers(run: RunView) -> list[Marker]:
    """Vertical lines: fault start, recovery (fault + RTO, when finite), failovers, heals, alert notifications,
    supervisor errors."""
    found: list[Marker] = []
    injected = run.fault.get("injected_t")
    if isinstance(injected, (int, float)):
        found.append(Marker(float(injected), "fault injected", "#cf222e", "--"))
        rto = run.rto_s()
        if rto is not None:
            found.append(Marker(float(injected) + rto, f"recovered (RTO {rto:.1f} s)", "#1a7f37", "--"))
    for r in run.events():
        if r.source == PLATFORM and r.op == "failover":
            detail = r.detail or {}
            what = detail.get("component", "failover")
            new = detail.get("new") or detail.get("new_primary")
            found.append(Marker(r.t, f"failover: {what}" + (f" → {new}" if new else ""), "#8250df", ":"))
        elif r.source == PLATFORM and r.op in ("heal", "heal_failed"):
            found.append(Marker(r.t, _heal_label(r.op, r.detail or {}), "#0969da" if r.op == "heal" else "#cf222e", ":"))
        elif r.source == ALERT and r.op in ("firing", "resolved"):  # Alertmanager's notifications (docs/alerts.md)
            name = (r.detail or {}).get("alert", "?")
            found.append(Marker(r.t, f"alert {name} {r.op}", "#bc4c00" if r.op == "firing" else "#57606a", "-."))
        elif r.source == PLATFORM and r.op == "loop_error":  # a step of the stack supervisor's loops raised
            detail = r.detail or {}
            found.append(Marker(r.t, f"supervisor error ({detail.get('loop', '?')}): {detail.get('error', '?')}",
                                "#9a6700", "-."))
    return found


def _heal_label(op: str, detail: dict[str, Any]) -> str:
    """e.g. "healed: postgres-1 rewind 3.1 s" or "heal FAILED: postgres-1"."""
    components = detail.get("components") or {}
    if op == "heal_failed":
        return "heal FAILED: " + ", ".join(sorted(components))
    parts = [f"{name} {info.get('action', '')} {info.get('seconds', '?')} s".replace("  ", " ")
             for name, info in sorted(components.items())
             if isinstance(info, dict) and name != "api-replicas"]
    return "healed: " + ("; ".join(parts) if parts else f"{detail.get('seconds', '?')} s")


@dataclass(frozen=True)
class Plot:
    """One timeline figure, with the caption that says how it was computed."""

    key: str
    title: str
    caption: str
    figure: Figure


def _axes(run: RunView, title: str, ylabel: str) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(10, 2.6), dpi=100)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_xlabel("seconds since run start", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    for name, (start, end) in run.phases.items():
        colour = PHASE_COLOURS.get(name)
        if colour:
            ax.axvspan(start, end, color=colour, alpha=0.14 if name == "fault" else 0.12, lw=0,
                       label=f"{name} phase")
    for m in markers(run):
        ax.axvline(m.t, color=m.colour, linestyle=m.style, linewidth=1.3, label=m.label)
    return fig, ax


def _finish(fig: Figure, ax: plt.Axes) -> Figure:
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0, frameon=False)
    # fixed margins (not tight_layout) so every plot's x axis lines up with the others
    fig.subplots_adjust(left=0.07, right=0.76, top=0.88, bottom=0.2)
    return fig


def timeline_plots(run: RunView) -> list[Plot]:
    """The standard timeline figures; empty when the run has no history."""
    if run.history is None:
        return []
    records = run.history.sorted()
    series = per_second_series(records)
    xs = [s.second + 0.5 for s in series]
    plots: list[Plot] = []

    fig, ax = _axes(run, "Latency per second", "ms")
    ax.plot(xs, [s.p50_ms if s.p50_ms is not None else math.nan for s in series], color="#0969da", lw=1.2,
            label="p50")
    ax.plot(xs, [s.p99_ms if s.p99_ms is not None else math.nan for s in series], color="#bc4c00", lw=1.2,
            label="p99")
    target = run.measurement("p99_ms")
    if target is not None and target.target is not None:
        ax.axhline(target.target, color="#bc4c00", lw=0.8, linestyle="-.", label=f"p99 target {target.target:g} ms")
    ax.set_ylim(bottom=0)
    plots.append(Plot("latency", "Latency p50 and p99 per second",
                      "Nearest-rank percentiles of the latency of every load request that started in that second "
                      "(ok, failed and timed out).", _finish(fig, ax)))

    fig, ax = _axes(run, "Availability per second", "ok / all")
    ax.plot(xs, [s.availability if s.availability is not None else math.nan for s in series], color="#1a7f37",
            lw=1.2, label="availability")
    avail = run.measurement("availability")
    if avail is not None and avail.target is not None:
        ax.axhline(avail.target, color="#1a7f37", lw=0.8, linestyle="-.", label=f"target {avail.target:g}")
    ax.set_ylim(-0.02, 1.05)
    plots.append(Plot("availability", "Availability per second",
                      "ok / (ok + fail + unknown) of the load requests that started in that second; a timeout "
                      "(unknown) never counts as ok.", _finish(fig, ax)))

    fig, ax = _axes(run, "Requests per second", "requests/s")
    ax.plot(xs, [s.requests for s in series], color="#0969da", lw=1.2, label="all")
    ax.plot(xs, [s.fail + s.unknown for s in series], color="#cf222e", lw=1.2, label="failed or unknown")
    ax.set_ylim(bottom=0)
    plots.append(Plot("requests", "Requests per second",
                      "Load requests started per second, and those among them that failed or timed out.",
                      _finish(fig, ax)))

    replicas = replica_series(records)
    fig, ax = _axes(run, "Ready replicas", "replicas")
    if replicas:
        ax.step([p[0] for p in replicas], [p[1] for p in replicas], where="post", color="#0969da", lw=1.4,
                label="ready")
        if any(p[2] is not None for p in replicas):
            ax.step([p[0] for p in replicas], [p[2] if p[2] is not None else math.nan for p in replicas],
                    where="post", color="#57606a", lw=1.0, linestyle="--", label="desired")
        ax.set_ylim(bottom=0, top=max(max(p[1], p[2] or 0) for p in replicas) + 1)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "no controller/replicas records in this history", ha="center", va="center",
                transform=ax.transAxes, fontsize=9, color="#57606a")
    if series:
        ax.set_xlim(min(xs[0] - 0.5, ax.get_xlim()[0]), max(xs[-1] + 0.5, ax.get_xlim()[1]))
    plots.append(Plot("replicas", "Ready replicas",
                      "Ready and desired API replicas as the replica controller reported them "
                      "(controller/replicas records).", _finish(fig, ax)))
    extra = [failover_phases_plot(run), backend_plot(run)]
    return plots + [p for p in extra if p is not None]


def backend_plot(run: RunView) -> Plot | None:
    """Retry amplification on the timeline (checkers/backend_calls.py): backend calls per client request in
    each phase, with the pool waits and cache bypasses of that phase written on it."""
    spans = [(phase, run.phases[phase]) for phase in ("steady", "fault", "recovery") if phase in run.phases]
    found = [(phase, span, m) for phase, span in spans
             if (m := run.measurement(f"backend_calls_per_request_{phase}")) is not None
             and isinstance(m.value, (int, float))]
    if not found:
        return None
    fig, ax = _axes(run, "Backend calls per client request", "calls/request")
    for phase, (start, end), m in found:
        value = float(m.value)  # type: ignore[arg-type]
        ax.hlines(value, start, end, color="#8250df", lw=2.0, label="backend calls per request")
        notes = [f"{value:.2f}"]
        wait = run.measurement(f"pool_wait_ms_{phase}")
        if wait is not None and isinstance(wait.value, (int, float)):
            notes.append(f"pool wait {float(wait.value):.2f} ms")
        bypass = run.measurement(f"cache_bypass_{phase}")
        if bypass is not None and isinstance(bypass.value, (int, float)) and bypass.value:
            notes.append(f"{float(bypass.value):g} cache bypasses")
        ax.text((start + end) / 2, value, "\n".join(notes), ha="center", va="bottom", fontsize=7, color="#24292f")
    top = max(float(m.value) for _, _, m in found)  # type: ignore[arg-type]
    ax.set_ylim(0, top * 1.6 + 0.1)
    return Plot("backend-calls", "Backend calls per client request",
                "Database units of work and Redis calls (redis-py's retries included) per load request, per phase, "
                "from the API replicas' own counters scraped at each phase boundary; the mean wait for a pooled "
                "database connection and the menu requests that bypassed the cache are written on each phase. "
                "A fault that multiplies the calls per request is a retry storm. Reported, not judged.",
                _finish(fig, ax))


# not PHASE_COLOURS: that name (the run phases' shading, above) was once reused here and every plot lost it
FAILOVER_COLOURS = {"detect": "#cf222e", "promote": "#8250df", "route": "#0969da", "reconnect": "#1a7f37"}


def failover_phases_plot(run: RunView) -> Plot | None:
    """The RTO taken apart (checkers/failover_phases.py): one bar per phase and component, its bound a tick."""
    m = run.measurement("failover_s")
    injected = run.fault.get("injected_t")
    if m is None or not isinstance(injected, (int, float)):
        return None
    fig, ax = _axes(run, "Failover phases (RTO taken apart)", "")
    rows: list[str] = []
    for component in ("postgres", "redis"):
        found = m.detail.get(component)
        for phase in (found.get("phases") or []) if isinstance(found, dict) else []:
            seconds, name = phase.get("s"), str(phase.get("phase"))
            if not isinstance(seconds, (int, float)):
                continue
            start = float(injected) + float(phase.get("start_s") or 0.0)
            y = len(rows)
            rows.append(f"{component} {name}")
            ax.broken_barh([(start, float(seconds))], (y - 0.35, 0.7), color=FAILOVER_COLOURS.get(name, "#57606a"),
                           alpha=0.8, label=f"{name} ({component}) {float(seconds):.1f} s")
            # the row's name beside its bar (y tick labels would not fit the plots' shared left margin)
            ax.text(start + float(seconds) + 0.5, y, f"{component} {name} {float(seconds):.1f} s", va="center",
                    fontsize=7, color="#24292f")
            bound = phase.get("bound_s")
            if bound is None and name == "promote":
                bound = found.get("promote_lower_bound_s") if isinstance(found, dict) else None
            if isinstance(bound, (int, float)):
                ax.plot([start + float(bound)], [y], marker="|", markersize=16, color="#24292f",
                        label="bound its configuration implies")
    if not rows:
        plt.close(fig)
        return None
    ax.set_yticks([])
    ax.set_ylim(-0.8, len(rows) - 0.2)
    return Plot("failover-phases", "Failover phases",
                "From the services' own signals (Patroni's leader key, Sentinel's events, HAProxy's server states; "
                "the supervisor's 1 s looks where a signal is missing): detect (the injection to the dead leader "
                "noticed), promote (to the new leader), route (the load balancer taking the replicas back), "
                "reconnect (the first acknowledged write); a black tick is the bound the configuration implies "
                "(Patroni ttl, loop_wait + retry_timeout; Sentinel down-after, failover-timeout; HAProxy rise x "
                "inter). Reported, not judged.", _finish(fig, ax))


def figure_svg(fig: Figure) -> str:
    """Inline SVG (text kept as text, fixed ids, no date) and close the figure."""
    buffer = io.StringIO()
    with plt.rc_context({"svg.hashsalt": "resilience", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE so it can sit inside HTML


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
