"""`resilience sweep`: where does the platform break? One short run per fault size, under the same load.

A sweep (`SWEEPS`) is a catalogue experiment and the one fault argument that grows harsher:
- `delay-database`: slow-database with `delay_ms` from `--from` to `--to` (jitter 0, so each step is one size);
- `loss-database`: slow-database with its delay replaced by `drop_packets` on the same path, `percent` 0 -> 20;
- `starve-cpu`: cpu-starved-replicas with the share of CPU each replica keeps, `percent` 100 -> 10 (harsher
  as it falls).
Each step is a whole run (its own run directory, evidence and verdict) with short durations; the
sweep reads each run's P99 and availability during the fault and what its effect watch measured
(the latency added on the path, the loss observed). The breaking point is the mildest size at which
the fault-window P99 exceeds the platform's `p99_ms` target or its availability falls below the
`availability` target. The size at which the fault does nothing (0 ms, 0 %, 100 % CPU) runs no step:
its point is the first run's steady phase. The sweep writes sweep.json and sweep.png (P99 and
availability against the size, the limits and the breaking point).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .config import Settings, Targets, load_settings
from .errors import UserError
from .history import History

STEP_DURATIONS = {"steady_s": 5.0, "fault_s": 10.0, "recovery_s": 5.0}  # the "short steps"
MAX_STEPS = 20


@dataclass(frozen=True)
class SweepKind:
    name: str
    experiment: str  # the catalogue experiment each step runs
    fault: str  # its fault action (`func`) whose argument grows
    argument: str
    unit: str
    fixed: dict[str, Any] = field(default_factory=dict)  # arguments held still (e.g. no jitter)
    replaces: str | None = None  # the experiment's fault this one takes the place of (its arguments dropped)
    idle: float = 0.0  # the size at which the fault does nothing: no step of its own
    harsher: int = 1  # +1: a larger size is harsher (delay, loss); -1: a smaller one is (CPU kept)
    observed: str | None = None  # the effect watch's measurement shown per step (e.g. injected_rtt_ms)
    default_range: tuple[str, str] = ("0", "100")  # --from and --to when not given
    axis: str = ""  # what the size is, for the plot


SWEEPS = {k.name: k for k in (
    SweepKind("delay-database", "slow-database", "delay_network", "delay_ms", "ms", {"jitter_ms": 0.0},
              observed="injected_rtt_ms", default_range=("0ms", "500ms"), axis="delay added per round trip"),
    SweepKind("loss-database", "slow-database", "drop_packets", "percent", "%", {"path": "api-database"},
              replaces="delay_network", observed="observed_loss_pct", default_range=("0%", "20%"),
              axis="packets dropped each way"),
    SweepKind("starve-cpu", "cpu-starved-replicas", "starve_cpu", "percent", "%", idle=100.0, harsher=-1,
              default_range=("100%", "10%"), axis="CPU share each API replica keeps"),
)}


@dataclass
class Point:
    """One size: what the run measured during its fault (the steady phase for size 0)."""

    size: float
    p99_ms: float | None
    availability: float | None
    injected: float | None = None  # what the effect watch measured (delay: ms added per round trip; loss: %)
    verdict: str = ""
    run_dir: str = ""
    note: str = ""


def parse_size(text: str, unit: str) -> float:
    """"250ms", "0.5s" or "250" (in `unit` ms); "20%" or "20" (in `unit` %)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|%)?\s*", str(text))
    if not match or match.group(2) not in ((None, "ms", "s") if unit == "ms" else (None, "%")):
        example = "250ms or 0.5s" if unit == "ms" else "20% (or 20)"
        raise UserError(f"sweep: {text!r} is not a size; write e.g. {example}.")
    value = float(match.group(1))
    return value * 1000.0 if match.group(2) == "s" and unit == "ms" else value


def sizes(start: float, stop: float, steps: int, kind: SweepKind | None = None) -> list[float]:
    """From `start` to `stop` in `steps` equal steps; the fault must grow harsher along the way."""
    harsher = kind.harsher if kind is not None else 1
    if (stop - start) * harsher <= 0 or steps < 1 or steps > MAX_STEPS:
        direction = "above" if harsher > 0 else "below"
        raise UserError(f"sweep: --to must be {direction} --from (the fault grows harsher) and --steps between 1 "
                        f"and {MAX_STEPS} (got from {start:g}, to {stop:g}, steps {steps}).")
    if kind is not None and kind.unit == "%" and not all(0 <= v <= 100 for v in (start, stop)):
        raise UserError(f"sweep {kind.name}: --from and --to are percentages 0..100 (got {start:g} and {stop:g}).")
    return [round(start + (stop - start) * i / steps, 3) for i in range(steps + 1)]


def label(size: float, kind: SweepKind) -> str:
    """A step's name part: 300ms, 20pct (experiment names and file names take no '%')."""
    return f"{size:g}{'pct' if kind.unit == '%' else kind.unit}"


def step_experiment(raw: dict[str, Any], kind: SweepKind, size: float) -> dict[str, Any]:
    """The catalogue experiment with its fault at `size`, short durations and its own name."""
    out = copy.deepcopy(raw)
    calls = kind.replaces or kind.fault
    actions = [a for a in out.get("method", []) if (a.get("provider") or {}).get("func") == calls]
    if len(actions) != 1:
        raise UserError(f"sweep {kind.name}: {kind.experiment} must call {calls} exactly once")
    provider = actions[0]["provider"]
    kept = {} if kind.replaces else provider.get("arguments", {})
    provider["func"] = kind.fault
    provider["arguments"] = {**kept, **kind.fixed, kind.argument: size}
    ext = next(e for e in out["extensions"] if e.get("name") == "resilience")
    ext["experiment"] = f"{kind.name}-{label(size, kind)}"
    ext["durations"] = dict(STEP_DURATIONS)
    short = (ext.get("profiles") or {}).get("short") or {}
    if "load" in short:
        ext["load"] = {**ext.get("load", {}), **short["load"]}
    ext.pop("profiles", None)
    return out


def point_of(summary: dict[str, Any], size: float, phase: str = "fault", observed: str | None = None) -> Point:
    values = {m["name"]: m["value"] for m in summary.get("measurements", [])}
    injected = None
    if phase == "fault" and observed and summary.get("run_dir"):
        history = Path(summary["run_dir"]) / "history.jsonl"
        if history.is_file():
            seen = [r.detail.get("observed", {}) for r in History.load(history).records
                    if r.source == "fault" and r.op == "effect" and r.status == "ok" and isinstance(r.detail, dict)]
            injected = next((o.get(observed) for o in seen if observed in o), None)
    return Point(size, values.get(f"p99_ms_{phase}"), values.get(f"availability_{phase}"), injected,
                 summary.get("verdict", "") if phase == "fault" else "", summary.get("run_dir", ""),
                 "" if phase == "fault" else "the first run's steady phase (no fault)")


def breaking_point(points: list[Point], targets: Targets, harsher: int = 1) -> Point | None:
    """The mildest size whose P99 exceeds the target or whose availability falls below it."""
    for p in sorted(points, key=lambda p: p.size * harsher):
        if (p.p99_ms is not None and p.p99_ms > targets.p99_ms) or \
                (p.availability is not None and p.availability < targets.availability):
            return p
    return None


def plot(points: list[Point], kind: SweepKind, targets: Targets, broke: Point | None, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = sorted((p for p in points if p.p99_ms is not None), key=lambda p: p.size)
    fig, ax = plt.subplots(figsize=(7, 4.6))
    ax.plot([p.size for p in shown], [float(p.p99_ms or 0.0) for p in shown], "o-", color="tab:red", label="P99 during the fault")
    ax.axhline(targets.p99_ms, color="tab:red", linestyle=":", label=f"P99 target {targets.p99_ms:g} ms")
    ax.set_xlabel(f"{kind.axis or kind.argument} ({kind.unit})" + (", harsher to the right" if kind.harsher < 0 else ""))
    if kind.harsher < 0:
        ax.invert_xaxis()
    ax.set_ylabel("P99 (ms)")
    right = ax.twinx()
    right.plot([p.size for p in shown], [100 * (p.availability or 0) for p in shown], "s--", color="tab:blue",
               label="availability during the fault")
    right.axhline(100 * targets.availability, color="tab:blue", linestyle=":")
    right.set_ylim(min([90.0] + [100 * (p.availability or 0) - 1 for p in shown]), 100.5)
    right.set_ylabel("availability (%)")
    if broke is not None:
        ax.axvline(broke.size, color="black", linestyle="--", label=f"breaking point {broke.size:g} {kind.unit}")
    lines = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False)
    ax.set_title(f"sweep {kind.name}: {kind.experiment} under load")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_sweep(kind: SweepKind, steps: list[float], run_one: Callable[[Path], dict[str, Any]], out_dir: Path,
              targets: Targets, raw: dict[str, Any]) -> dict[str, Any]:
    """Run every step (a file each, kept in `out_dir`), then judge and plot; returns what sweep.json holds."""
    from .experiments import parse
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[float, Path] = {}
    for size in steps:  # every step written and checked before the first runs: a bad size stops nothing midway
        if size == kind.idle:
            continue  # the fault would do nothing: the first run's steady phase stands for it
        path = out_dir / f"step-{label(size, kind)}.yaml"
        step = step_experiment(raw, kind, size)
        parse(copy.deepcopy(step), path, "full")
        path.write_text(yaml.safe_dump(step, sort_keys=False))
        files[size] = path
    points: list[Point] = []
    for size, path in files.items():
        summary = run_one(path)
        if not points and kind.idle in steps:
            points.append(point_of(summary, kind.idle, phase="steady"))
        points.append(point_of(summary, size, observed=kind.observed))
    broke = breaking_point(points, targets, kind.harsher)
    plot(points, kind, targets, broke, out_dir / "sweep.png")
    result = {"schema_version": 1, "sweep": kind.name, "experiment": kind.experiment, "argument": kind.argument,
              "unit": kind.unit, "limits": {"p99_ms": targets.p99_ms, "availability": targets.availability},
              "points": [asdict(p) for p in points],
              "breaking_point": broke.size if broke else None, "plot": str(out_dir / "sweep.png")}
    (out_dir / "sweep.json").write_text(json.dumps(result, indent=1))
    return result


def text(result: dict[str, Any]) -> str:
    unit = result["unit"]
    lines = [f"sweep {result['sweep']} ({result['experiment']}, {result['argument']}): P99 limit "
             f"{result['limits']['p99_ms']:g} ms, availability limit {100 * result['limits']['availability']:g}%"]
    for p in result["points"]:
        injected = ""
        if p["injected"] is not None:
            injected = f", measured on the path {'+' if unit == 'ms' else ''}{p['injected']:g}" + \
                (" ms" if unit == "ms" else "% lost")
        lines.append(f"  {p['size']:>7g} {unit}: P99 {p['p99_ms']} ms, availability {p['availability']}"
                     f"{injected}{' (' + p['note'] + ')' if p['note'] else ''}")
    broke = result["breaking_point"]
    lines.append(f"breaking point: {broke:g} {unit}" if broke is not None else
                 "breaking point: none in this range (every step within the limits)")
    lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .experiments import resolve
    from .inputs import load_yaml
    from .launcher import json_summary, run_experiment
    settings: Settings = load_settings(getattr(args, "config", None))
    kind = SWEEPS.get(args.sweep)
    if kind is None:
        raise UserError(f"no sweep {args.sweep!r}; there are: {', '.join(SWEEPS)}")
    from .consent import confirm
    confirm(args.target, args.context, f"the sweep {kind.name}", args.yes)
    start, stop = (given if given is not None else default
                   for given, default in zip((args.start, args.stop), kind.default_range))
    steps = sizes(parse_size(start, kind.unit), parse_size(stop, kind.unit), args.steps, kind)
    reports = Path(args.reports_dir or settings.evidence.reports_dir)
    out_dir = reports / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-sweep-{kind.name}"
    args.profile = "full"  # each step file holds its own short durations

    def run_one(path: Path) -> dict[str, Any]:
        return json_summary(run_experiment(str(path), args, settings))
    result = run_sweep(kind, steps, run_one, out_dir, settings.targets, load_yaml(resolve(kind.experiment), "experiment"))
    print(json.dumps(result, indent=2) if args.json else text(result))
    return 0


def add_parser(add: Callable[..., argparse.ArgumentParser], run_options: Callable[[argparse.ArgumentParser], None]) -> None:
    p = add("sweep", cmd_sweep, "short runs at growing fault sizes under load: the size at which P99 or "
                                "availability crosses its target (the breaking point), with a plot")
    p.add_argument("sweep", choices=list(SWEEPS),
                   help="delay-database: slow-database at growing delay_ms (default 0ms..500ms); loss-database: "
                        "packet loss on the API-database path (0%%..20%%); starve-cpu: the CPU share each API replica "
                        "keeps (100%%..10%%)")
    p.add_argument("--from", dest="start", default=None, help="the first (mildest) size, e.g. 0ms, 0%% or 100%%")
    p.add_argument("--to", dest="stop", default=None, help="the last (harshest) size, e.g. 500ms, 20%% or 10%%")
    p.add_argument("--steps", type=int, default=5, help="steps between --from and --to (default 5: 0, 100, ... 500 ms)")
    run_options(p)
