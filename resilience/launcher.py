"""Starting one experiment run from the command line, and printing what it found.

Options become a `Run` (runbuild.build_run), which Chaos Toolkit drives with our
control; a Ctrl-C, SIGTERM or SIGHUP anywhere still ends in a sealed, aborted run (exit 1).
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .abort import signals_as_ctrl_c

from .config import Settings
from .errors import HarnessError, UserError
from .policy import Policy

if TYPE_CHECKING:
    from .config import Targets
    from .experiments import ExperimentSpec
    from .results import RunResult
    from .run import Run


def parse_target_overrides(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--set-target {pair!r}: use NAME=VALUE, e.g. --set-target rto_s=60.")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--set-target {pair!r}: the value must be a number.") from None
    return out


def run_targets(spec: "ExperimentSpec", settings: Settings, pairs: list[str] | None) -> "Targets":
    """The targets a run judges: settings, then the experiment's, then --set-target (each blamed on its source)."""
    from .config import override_targets
    targets = spec.targets(settings.targets)
    overrides = parse_target_overrides(pairs or [])
    return override_targets(targets, overrides, "--set-target") if overrides else targets


# the flag each load override comes from, so that a mistake is blamed on the flag, not on the experiment file
LOAD_FLAGS = {"users": "--users", "spawn_rate": "--spawn-rate", "stages": "--stages", "workers": "--workers",
              "user_class": "--user-class", "wait_min_s": "--think-time", "wait_max_s": "--think-time"}


def load_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The load flags as load settings, each checked on its own (a bad value names its flag)."""
    from .load.shape import LoadSettings
    out: dict[str, Any] = {}
    if args.users is not None:
        out["users"] = args.users
    if args.spawn_rate is not None:
        out["spawn_rate"] = args.spawn_rate
    if args.stages:
        out["stages"] = args.stages
    if getattr(args, "workers", None) is not None:
        out["workers"] = args.workers
    if getattr(args, "user_class", None):
        out["user_class"] = args.user_class
    if getattr(args, "think_time", None):
        out["wait_min_s"], out["wait_max_s"] = parse_think_time(args.think_time)
    for key, value in out.items():
        if key == "wait_max_s":
            continue
        one = {key: value, "wait_max_s": out["wait_max_s"]} if key == "wait_min_s" else {key: value}
        LoadSettings.from_mapping(one, LOAD_FLAGS[key])
    return out


def parse_think_time(text: str) -> tuple[float | None, float | None]:
    """'10-50' → (10.0, 50.0); 'class' → (None, None): the user class's own think time."""
    if text.strip().lower() == "class":
        return None, None
    low, sep, high = text.partition("-")
    try:
        if not sep:
            raise ValueError
        return float(low), float(high)
    except ValueError:
        raise UserError(f"--think-time {text!r}: write MIN-MAX in seconds, e.g. --think-time 10-50, or "
                        f"--think-time class for the user class's own.") from None


def run_experiment(name: str, args: argparse.Namespace, settings: Settings) -> "RunResult":
    """Run one experiment through Chaos Toolkit with our control; returns its result (result.json)."""
    import logging

    from chaoslib.experiment import run_experiment as chaos_run

    from . import active, experiments
    from .runbuild import build_run
    from .rundeps import RunOptions
    spec = experiments.load(name, args.profile, load_overrides=load_overrides(args), policy=Policy.from_settings(settings))
    experiments.validate_with_chaostoolkit(spec)
    options = RunOptions(target=args.target, context=args.context,
                         target_overrides=parse_target_overrides(args.set_target),
                         reports_dir=Path(args.reports_dir) if args.reports_dir else None,
                         keep_up=args.keep_up, seed=args.seed, progress=not args.quiet)
    run_targets(spec, settings, args.set_target)  # impossible targets: exit 2 before anything runs
    from .allowlists import check_allowlists
    check_allowlists(settings, args.target, args.context, spec.fault_names())  # every missing allowance at once
    run = build_run(spec, settings, options)
    run.target.check(list(spec.faults))  # a fault this target would refuse: exit 2 before anything runs
    from .effect_watch import too_short
    for line in too_short(spec, run.targets.rto_hold_s, {c.fault: run.target.documented(c) for c in spec.faults}):
        run.progress.say(line)
    active.activate(run)
    logging.getLogger("chaostoolkit").setLevel(logging.ERROR)  # our progress says what happens; the journal has the rest
    with signals_as_ctrl_c(run.aborts), _chaoslib_signals_as_ctrl_c(run):
        return _run_to_result(run, spec, chaos_run)


def _run_to_result(run: "Run", spec: "ExperimentSpec", chaos_run: Any) -> "RunResult":
    """Chaos Toolkit runs the experiment; a Ctrl-C (or SIGTERM, SIGHUP) anywhere still ends in a sealed run."""
    from . import active
    try:
        try:
            journal = chaos_run(spec.raw, settings={"runtime": {"rollbacks": {"strategy": "always"}}},
                                event_handlers=[_interrupt_noter(run)])
        except KeyboardInterrupt:
            # Ctrl-C where neither Chaos Toolkit nor Run.finish catches it (e.g. while Chaos Toolkit wraps up):
            # finish the run here, as aborted; a second Ctrl-C (or one that escaped finish) stops at once
            if run.run_dir is None or run.result is not None or not run.note_interrupt(run.phase):
                raise
            journal = {"status": "interrupted", "deviated": False}
        if run.result is None:
            if run.run_dir is None and run.error is not None:
                raise run.error
            if run.run_dir is not None:
                run.finish(journal)
        if run.result is None:
            raise HarnessError(f"the run produced no result: {run.error or 'see the journal'}")
        return run.result
    finally:
        try:
            try:
                run.close()
            except KeyboardInterrupt:  # a signal during the last-resort cleanup: it is tried once more
                run.close()
        finally:
            active.activate(None)


@contextmanager
def _chaoslib_signals_as_ctrl_c(run: "Run") -> Iterator[None]:
    """chaoslib sets its own SIGTERM handler for each run (an InterruptExecution raised inside whatever activity
    runs, which its activity runner may report as a failed activity and carry on): ours goes back on top."""
    import chaoslib.run as chaoslib_run
    original = chaoslib_run.exit_signals

    @contextmanager
    def exit_signals() -> Iterator[None]:
        with original(), signals_as_ctrl_c(run.aborts):
            yield

    chaoslib_run.exit_signals = exit_signals
    try:
        yield
    finally:
        chaoslib_run.exit_signals = original


def _interrupt_noter(run: "Run") -> Any:
    """A Chaos Toolkit event handler that notes a Ctrl-C in the phase it happened.

    Chaos Toolkit swallows the Ctrl-C and rolls back (which moves the run to the
    recovery phase); without this the run would only learn of it in finish() and
    name the wrong phase in its aborted reason.
    """
    from chaoslib.run import RunEventHandler

    class InterruptNoter(RunEventHandler):
        def signal_exit(self) -> None:
            if run.run_dir is not None and not run.abort_reason:
                run.note_interrupt(run.phase)

    return InterruptNoter()


def print_result(result: "RunResult") -> None:
    from .checkers.measurement import status_label
    print(f"\n{result.experiment} on target {result.target}: verdict {result.verdict.upper()}")
    if result.aborted_reason:
        print(f"  aborted: {result.aborted_reason}")
    for d in result.deviations:
        print(f"  deviation: {d}")
    width = max([22] + [len(m.name) for m in result.measurements])  # long names (backend_calls_...) stay in line
    print(f"  {'measurement':<{width}} {'measured':>12} {'target':>12}  status")
    for m in result.measurements:
        shown = "-" if m.value is None else (m.value if isinstance(m.value, str) else f"{m.value:.4g}")
        target = "-" if m.target is None else f"{m.comparison} {m.target:g}"
        print(f"  {m.name:<{width}} {str(shown) + ' ' + m.unit:>12} {target:>12}  {status_label(m.status, m.target)}")
    print(f"  evidence: {result.run_dir}  (report.html, report.pdf, junit.xml, MANIFEST.sha256)")


def json_summary(result: "RunResult") -> dict[str, Any]:
    from .results import RESULT_SCHEMA_VERSION, measurement_json
    return {"schema_version": RESULT_SCHEMA_VERSION, "experiment": result.experiment, "target": result.target,
            "run_dir": result.run_dir, "verdict": result.verdict,
            "measurements": [{k: measurement_json(m)[k] for k in ("name", "value", "unit", "target", "status")}
                             for m in result.measurements]}
