"""Game-days: run a suite of experiments and write one compliance report over all of them.

Every experiment of the suite is reported — passed, failed, inconclusive or
aborted, and even one whose run crashed the harness: a compliance report that
silently dropped the runs that went wrong would be worse than none.

A suite may also name a built-in step that is not an experiment file: `backup-verify`
(gameday_verify.py) restores the latest backup into a scratch instance and checks it; it
is recorded as a sealed run like the others, and skipped with the reason on a target
that keeps no backups the harness can verify.

A suite runs on one target, and asks it before each experiment (`SuiteGuard`): an
experiment the target refuses (e.g. redis-outage on aws: ElastiCache has no full
outage) is skipped with the target's reason, which the compliance report shows —
a skip is not a failure; and on a target with managed services the next
experiment waits until they are available again, after a cool-down, and is
skipped when a quota would refuse its fault (aws: targets/aws/pacing.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from .config import Settings
from .fault_registry import FaultCall
from .errors import UserError
from .gameday_verify import NO_STEP_RUNNER, is_step, step_refusal
from .evidence import append_ledger, ledger_entry, new_run_dir, sign_manifest, write_manifest
from .reports.compliance import GamedayEntry, build_compliance, write_compliance
from .reports.alert_coverage import write_coverage

DEFAULT_SUITES_FILE = Path("experiments") / "suites.yaml"


def load_suites(path: Path = DEFAULT_SUITES_FILE) -> dict[str, list[str]]:
    """Suite name -> experiment names, from a YAML file `suites: {name: [experiment, ...]}`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"suites file {path} does not exist. Create it with 'suites: {{default: [pod-kill, ...]}}' "
                        f"or pass the right path.")
    from .inputs import load_yaml
    data = load_yaml(path, "suites file")
    suites = data.get("suites") if isinstance(data, dict) else None
    if not isinstance(suites, dict) or not suites:
        raise UserError(f"{path}: expected a top-level 'suites' mapping of suite name to a list of experiment "
                        f"names, e.g. 'suites: {{quick: [pod-kill, db-failover]}}'.")
    result: dict[str, list[str]] = {}
    for name, experiments in suites.items():
        if not isinstance(experiments, list) or not experiments or \
                not all(isinstance(e, str) and e.strip() for e in experiments):
            raise UserError(f"{path}: suite '{name}' must be a non-empty list of experiment names (strings), "
                            f"got {experiments!r}.")
        result[str(name)] = [e.strip() for e in experiments]
    return result


def suites_file() -> Path:
    """experiments/suites.yaml beside the catalogue the experiments come from."""
    from .experiments import experiments_dir
    return experiments_dir() / "suites.yaml"


def is_suites_file(path: Path) -> bool:
    """A YAML file whose top level is `suites:` (and not an experiment), so `validate` can check it as one."""
    from .inputs import load_yaml
    try:
        data = load_yaml(path, "suites file")
    except UserError:
        return False
    return isinstance(data, dict) and "suites" in data and "method" not in data


def validate_suites(path: Path) -> str:
    """Check a suites file: its shape, and that every experiment it names is in the catalogue (or a file)."""
    from .experiments import resolve
    suites = load_suites(path)
    for name, members in suites.items():
        for experiment in members:
            if is_step(experiment):
                continue
            try:
                resolve(experiment)
            except UserError as exc:
                raise UserError(f"{path}: suite '{name}' names {experiment!r}: {exc}") from None
    return ", ".join(f"{name} ({len(members)})" for name, members in suites.items())


def suite_experiments(suite: str, path: Path = DEFAULT_SUITES_FILE) -> list[str]:
    suites = load_suites(path)
    if suite not in suites:
        raise UserError(f"unknown suite '{suite}' in {path}. Known suites: {', '.join(sorted(suites))}. "
                        f"Pass one of them with --suite, or add '{suite}' to {path}.")
    return suites[suite]


@dataclass(frozen=True)
class SuiteGuard:
    """What a game-day asks its target before each experiment; each answers a reason to skip it, or None."""

    refusal: Callable[[str], str | None] = lambda experiment: None  # the target would refuse its fault
    before: Callable[[str], str | None] = lambda experiment: None  # waits until it may start (or says why not)


def suite_guard(target: str, settings: Settings, *, profile: str = "full", context: str | None = None) -> SuiteGuard:
    """The guard of `target`: its nemeses' refusals (as `run --dry-run` checks them), and on a target with
    AWS services, the pacer (cool-down, wait until available, the TestFailover quota)."""
    from . import experiments as catalogue
    from .fault_registry import FAULTS
    from .policy import Policy
    from .targets import make_target
    planned = make_target(target, settings, context=context, dry_run=True)

    def faults(experiment: str) -> list[FaultCall]:
        return list(catalogue.load(experiment, profile, policy=Policy.from_settings(settings)).faults)

    def refusal(experiment: str) -> str | None:
        if is_step(experiment):
            return step_refusal(experiment, target, settings)
        for call in faults(experiment):
            if FAULTS[call.fault].touches_target:
                try:
                    planned.nemeses_for(call)
                except UserError as exc:
                    return str(exc)
        return None
    if "aws" not in planned.composition.services:
        return SuiteGuard(refusal)
    from .targets.aws.pacing import AwsPacer
    from .targets.aws.services import AwsServices
    pacer = AwsPacer(AwsServices(settings))
    return SuiteGuard(refusal, lambda experiment: None if is_step(experiment) else
                      pacer.before(experiment, faults(experiment)))


def run_gameday(suite: str, run_one: Callable[[str], Path], reports_dir: Path, settings: Settings,
                suites_file: Path = DEFAULT_SUITES_FILE, now: Callable[[], datetime] | None = None,
                guard: SuiteGuard = SuiteGuard(), run_step: Callable[[str], Path] | None = None) -> Path:
    """Run each experiment of `suite` via run_one(name) -> run directory; write the compliance report.

    A built-in step (`backup-verify`) runs via run_step(name) -> run directory instead (the CLI passes
    gameday_verify.step_runner); without a run_step it is skipped, saying so: a library caller never
    starts a stack by surprise.
    An experiment `guard` gives a reason for is skipped (the reason in the report). A run_one
    that raises is recorded as an aborted experiment (with the error) and the game-day goes on.
    On Ctrl-C the report is still written, with the experiments not yet run marked as such,
    and the interrupt is re-raised.
    Returns `reports/<ts>-gameday-<suite>/` with compliance.{html,pdf,json} and its own manifest.
    """
    clock = now or (lambda: datetime.now(timezone.utc))
    experiments = suite_experiments(suite, suites_file)
    entries: list[GamedayEntry] = []
    interrupted: BaseException | None = None
    for index, experiment in enumerate(experiments):
        try:
            skip = guard.refusal(experiment) or guard.before(experiment) or \
                (NO_STEP_RUNNER if is_step(experiment) and run_step is None else None)
            if skip:
                entries.append(GamedayEntry(experiment, None, skipped=skip))
                continue
            runner = run_step if run_step is not None and is_step(experiment) else run_one
            entries.append(GamedayEntry(experiment, Path(runner(experiment))))
        except KeyboardInterrupt as exc:
            interrupted = exc
            entries += [GamedayEntry(e, None, "game-day interrupted (Ctrl-C) before this experiment finished")
                        for e in experiments[index:]]
            break
        except Exception as exc:  # noqa: BLE001 — a crashed run is a finding, not a reason to lose the others
            entries.append(GamedayEntry(experiment, None, f"{type(exc).__name__}: {exc}"))
    report_dir = write_gameday_report(suite, entries, reports_dir, settings, clock())
    if interrupted is not None:
        raise interrupted
    return report_dir


def write_gameday_report(suite: str, entries: list[GamedayEntry], reports_dir: Path, settings: Settings,
                         now: datetime) -> Path:
    """The compliance report directory, sealed like a run (manifest, optional signature, ledger line)."""
    report_dir = new_run_dir(Path(reports_dir), f"gameday-{suite}", now)
    model = build_compliance(entries, settings, suite, report_dir.name, now, Path(reports_dir))
    write_compliance(report_dir, model)
    write_coverage(report_dir, [(e.experiment, e.run_dir) for e in entries])  # which alert caught which fault
    digest = write_manifest(report_dir)
    if settings.evidence.signing_key:
        sign_manifest(report_dir, Path(settings.evidence.signing_key))
    # the ledger line says when it was written (ledger times never go backwards), not the game-day's clock
    append_ledger(Path(reports_dir), ledger_entry(report_dir, f"gameday-{suite}", model["overall_verdict"], digest))
    return report_dir


def gameday_verdict(report_dir: Path) -> str:
    """The overall verdict of a written game-day (pass only if every experiment passed), for the exit code."""
    path = Path(report_dir) / "compliance.json"
    return str(json.loads(path.read_text(encoding="utf-8"))["overall_verdict"])
