"""The `resilience` command.

Exit codes: 0 every target met (or the command succeeded) · 1 a target missed
or the run deviated · 2 invalid input or harness error · 3 (`check` only) the
stored result differs from the one recomputed from the run's history.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .config import Settings, load_settings
from .errors import HarnessError, UserError
from .consent import confirm
from .dryrun import dry_run
from .launcher import json_summary, print_result, run_experiment
from .rundir_checks import refuse_reports_folder, refuse_unsealed

EPILOG = """\
examples:
  resilience up                      start the platform on this machine (real PostgreSQL, Redis, HAProxy, API)
  resilience status                  every component, its zone, role and health
  resilience run zone-failure        the release gate: lose a zone under load, measure RTO/RPO/P99/availability
  resilience list                    the experiment catalogue
  resilience faults                  every fault, its arguments, and which targets can inject it
  resilience check reports/<run>     recompute verdicts from a stored history, offline
  resilience backup verify           restore the latest backup into a scratch instance and check it
  resilience down                    stop everything and remove namespaces

exit codes: 0 targets met · 1 a target missed or the run deviated (verify: not intact) · 2 invalid input or
harness error · 3 check: the stored result differs from the one recomputed from history.jsonl
"""


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def _policy(settings: Settings) -> Any:
    """What experiments may run (settings' allow-lists); checked before anything is imported or started."""
    from .policy import Policy
    return Policy.from_settings(settings)


def _allowlists(args: argparse.Namespace) -> Settings:
    """On a cloud target, every missing allow-list named at once (before any question or call)."""
    from .allowlists import check_allowlists
    settings = _settings(args)
    check_allowlists(settings, args.target, getattr(args, "context", None), ())
    return settings


def _target(args: argparse.Namespace) -> Any:
    from .targets import make_target
    return make_target(args.target, _allowlists(args), context=getattr(args, "context", None))


def cmd_up(args: argparse.Namespace) -> int:
    _allowlists(args)
    confirm(args.target, args.context, "deploying the platform", args.yes)
    target = _target(args)
    already = target.status() if target.composition.on_this_machine and target.status().running else None
    status = target.up()
    if already:
        print(f"the {args.target} stack is already running at {status.url} (not starting a second one).")
    _print_status(status.to_json())
    return 0 if status.healthy else 1


def cmd_down(args: argparse.Namespace) -> int:
    _allowlists(args)
    confirm(args.target, args.context, "removing what `up` created", args.yes)
    target = _target(args)
    target.down()
    print(f"the {args.target} stack is down; nothing it started is left running.")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    target = _target(args)
    status = target.status()
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        _print_status(status.to_json())
    return 0 if status.healthy else 1


def _print_status(data: dict[str, Any]) -> None:
    if not data["running"]:
        print(f"target {data['target']}: not running. Start it with `resilience up`.")
        return
    print(f"target {data['target']}: {'healthy' if data['healthy'] else 'DEGRADED'}   "
          f"url {data['url']}   zones as {data['zone_mode']}")
    print(f"{'component':<19} {'kind':<12} {'role':<13} {'zone':<8} {'pid':>7}  {'address':<21} healthy")
    detail = data.get("detail", {})
    problems = detail.get("problems") or {}
    for c in data["components"]:
        why = f" ({problems[c['name']]})" if c["name"] in problems else ""
        print(f"{c['name']:<19} {c['kind']:<12} {c['role']:<13} {c['zone'] or '-':<8} {c['pid'] or '-':>7}  "
              f"{c['address']:<21} {'yes' if c['healthy'] else 'NO' + why}")
    if "ready_replicas" in detail:
        print(f"replicas ready {detail['ready_replicas']}/{detail['desired_replicas']}; "
              f"PostgreSQL primary {detail.get('pg_leader')} (zone {detail.get('primary_zone')}); "
              f"Redis master {detail.get('redis_master')}; state in {detail.get('state_dir')}")
    if detail.get("backup"):
        from .targets.local.backup_config import posture_lines
        print("\n".join(posture_lines(detail["backup"])))


def cmd_backup(args: argparse.Namespace) -> int:
    from .backup_verify import run_verify_command
    return run_verify_command(_settings(args), args.repo, args.reports_dir, args.json)


def cmd_config(args: argparse.Namespace) -> int:
    """The settings as a file `--config` reads back: every default explained, or the resolved values."""
    import yaml

    from .settings_doc import commented_defaults
    if args.defaults:
        print(commented_defaults(), end="")
        return 0
    settings = _settings(args)
    data = settings.to_json()
    data.pop("source")
    print(f"# resolved settings (from {settings.source}); every key: resilience config --defaults")
    print(yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .checkers.measurement import EXIT_CODES
    settings = _settings(args)
    if args.dry_run:
        return dry_run(args, settings)
    confirm(args.target, args.context, f"injecting the faults of {args.experiment}", args.yes)
    result = run_experiment(args.experiment, args, settings)
    if args.json:
        print(json.dumps(json_summary(result), indent=2))
    else:
        print_result(result)
    if result.error:
        print(f"resilience: error: the run could not be completed: {result.error}", file=sys.stderr)
        return 2
    return EXIT_CODES[result.verdict]


def cmd_faults(args: argparse.Namespace) -> int:
    from .fault_table import faults_json, faults_text
    settings = _settings(args)  # what these settings allow (e.g. kubernetes.database decides a database failover)
    print(json.dumps(faults_json(settings), indent=2) if args.json else faults_text(settings))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from . import experiments
    policy = _policy(_settings(args))
    print(experiments.LIST_HEADER)
    for path in experiments.catalogue():
        print(experiments.summary_line(path, policy))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from . import experiments
    from .gameday import is_suites_file, validate_suites
    policy = _policy(_settings(args))
    bad = 0
    for name in args.files:
        try:
            if Path(name).suffix in (".yaml", ".yml") and Path(name).is_file() and is_suites_file(Path(name)):
                print(f"{name}: valid suites file (suites: {validate_suites(Path(name))})")
                continue
            spec = experiments.load(name, policy=policy)
            if "short" in experiments.profiles_of(spec):
                experiments.load(name, "short", policy=policy)
            experiments.validate_with_chaostoolkit(spec)  # may import modules: only allowed ones are left
            print(f"{name}: valid ({', '.join(spec.fault_names())}; measures {', '.join(spec.measures)})")
        except UserError as exc:
            print(f"{name}: INVALID: {exc}", file=sys.stderr)
            bad += 1
    return 2 if bad else 0


EXIT_DIFFERS = 3  # `check`: the stored result is not what its own history gives (whatever the verdict)


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 same and pass · 1 same, and the verdict is not pass · 3 DIFFERENT from result.json · 2 bad input."""
    import dataclasses

    from .checkers.measurement import EXIT_CODES
    from .recheck import recheck
    run_dir = Path(args.run_dir)
    refuse_unsealed(run_dir)
    result, same = recheck(run_dir)
    recorded = result.run_dir
    result = dataclasses.replace(result, run_dir=str(run_dir))  # where it is now: a copied run is checked here
    if args.json:
        print(json.dumps({**json_summary(result), "recorded_run_dir": recorded, "same_as_stored": same}, indent=2))
    else:
        print_result(result)
        if recorded and Path(recorded).resolve() != run_dir.resolve():
            print(f"  (the run was written to {recorded}; checked here)")
        print("  recomputed offline from history.jsonl: " +
              ("same measurements and verdict as stored" if same else "DIFFERENT from result.json (see above)"))
        print(f"  (the inputs — settings.json, result.json, history.jsonl — are trusted only as far as "
              f"`resilience verify {args.run_dir}` shows them unchanged)")
    if not same:  # the stored verdict is not what its own history gives: the evidence does not hold
        print(f"resilience: the stored result in {run_dir / 'result.json'} is DIFFERENT from the one "
              f"recomputed from history.jsonl (exit {EXIT_DIFFERS})", file=sys.stderr)
        return EXIT_DIFFERS
    return EXIT_CODES[result.verdict]


def cmd_report(args: argparse.Namespace) -> int:
    from .reports import render, render_all
    run_dir = Path(args.run_dir)
    refuse_unsealed(run_dir)
    paths = render_all(run_dir) if args.format == "all" else [render(run_dir, args.format)]
    for p in paths:
        print(p)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 only when the files, the signature (by a trusted key, when any is configured) and the ledger agree."""
    from .evidence import LEDGER, NO_MANIFEST, verify
    import re
    settings = _settings(args)
    run_dir = Path(args.run_dir)
    if args.ledger_head is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", args.ledger_head.strip()):
        raise UserError(f"--ledger-head {args.ledger_head!r} is not a ledger head: that is the SHA-256 of a ledger "
                        f"line, 64 hex digits, as the compliance report and the CI job summary record it. Copy it "
                        f"again from there (nothing was verified).")
    refuse_reports_folder(run_dir)
    ledger = Path(args.ledger) if args.ledger else run_dir.absolute().parent / LEDGER  # beside it, as given
    result = verify(run_dir, Path(args.public_key) if args.public_key else None,
                    trusted_keys=[Path(p) for p in settings.evidence.trusted_public_keys], ledger=ledger,
                    ledger_anchor=args.ledger_head)
    print(result.summary())
    from .salvage import unsealed_message
    message = unsealed_message(run_dir) if result.status == NO_MANIFEST else None
    if message:
        print(f"  {message}")
    return 0 if result.ok else 1


def cmd_keygen(args: argparse.Namespace) -> int:
    from .evidence import keygen
    public = keygen(Path(args.path))
    print(f"private key {args.path} (mode 600), public key {public}. "
          f"Set evidence.signing_key: {args.path} in resilience.yaml to sign every run.")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Undo what a crashed run left pending, then seal the run (as aborted) if it was never sealed."""
    from .rollbackfile import ROLLBACK, read_rollback_file
    from .salvage import rollback_and_seal
    recorded = read_rollback_file(Path(args.run_dir) / ROLLBACK)
    confirm(str(recorded["target"]), recorded.get("context"), "undoing the faults a crashed run left", args.yes)
    salvage = rollback_and_seal(Path(args.run_dir), _settings(args))
    if salvage.failed_rollbacks:
        print(f"resilience: error: {salvage.failed_rollbacks} rollback step(s) failed (see above; rollback.json marks "
              f"them failed): the stack may still be faulted. `resilience status` shows what is down; run "
              f"`resilience rollback {args.run_dir}` again once the cause is fixed.", file=sys.stderr)
        return 2
    return 0


def cmd_gameday(args: argparse.Namespace) -> int:
    from .gameday import gameday_verdict, run_gameday, suite_experiments, suite_guard, suites_file
    from .gameday_verify import is_step, step_plan, step_runner
    settings = _settings(args)
    if args.dry_run:  # each experiment's plan, in order; the first one the run would refuse: exit 2
        for name in suite_experiments(args.suite, suites_file()):
            print(f"== {name}")
            if is_step(name):  # a built-in step (backup-verify), not an experiment file
                print(step_plan(name, args.target, settings))
                continue
            dry_run(args, settings, name)
        return 0
    confirm(args.target, args.context, f"the game-day suite {args.suite}", args.yes)
    reports_dir = Path(args.reports_dir or settings.evidence.reports_dir)

    def run_one(name: str) -> Path:
        return Path(run_experiment(name, args, settings).run_dir)

    guard = suite_guard(args.target, settings, profile=args.profile, context=args.context)  # skips, waits
    report_dir = run_gameday(args.suite, run_one, reports_dir, settings, suites_file=suites_file(), guard=guard,
                             run_step=step_runner(settings, reports_dir, keep_up=args.keep_up))  # backup-verify
    final = gameday_verdict(report_dir)
    if args.json:
        print(json.dumps({"schema_version": 1, "suite": args.suite, "verdict": final,
                          "report_dir": str(report_dir)}, indent=2))
    else:
        print((report_dir / "alert-coverage.md").read_text() if (report_dir / "alert-coverage.md").exists() else "")
        print(f"game-day {args.suite}: {final.upper()}; compliance report: {report_dir}/compliance.html "
              f"(and compliance.pdf, compliance.json)")
    return 0 if final == "pass" else 1


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="full", choices=["full", "short"],
                   help="durations and load: full (default) or short (CI, ~1 min per experiment)")
    p.add_argument("--users", type=int, help="Locust users (overrides the experiment)")
    p.add_argument("--spawn-rate", type=float, help="users started per second")
    p.add_argument("--stages", help="load shape as DURATION:USERS[@RATE|@ramp],... e.g. 20s:20,60s:100,20s:20 "
                                    "or 2m:10000@ramp,5m:10000 (ramp: spread the change over the stage)")
    p.add_argument("--user-class", metavar="NAME",
                   help="the locustfile's user class, e.g. LunchBreakStudent (a student's real pace, 10-50 s between "
                        "tasks: --users 10000 means 10,000 students online)")
    p.add_argument("--think-time", metavar="MIN-MAX",
                   help="seconds between a user's tasks, e.g. 10-50, or 'class' for the user class's own")
    p.add_argument("--workers", type=int, metavar="N",
                   help="Locust worker processes making the load (a master collects every request they make). "
                        "Default: one per core the stack does not need (local: cores - 2), at least 1")
    p.add_argument("--set-target", action="append", metavar="NAME=VALUE",
                   help="override a target for this run, e.g. --set-target rto_s=60 (repeatable); names: rto_s, "
                        "rpo_s, lost_writes, availability, availability_fault, p99_ms, autoscale_s, rto_hold_s, "
                        "rto_success_ratio, p99_fault_ms, recovered_s, detection_s, alert_cleared_s")
    p.add_argument("--reports-dir", help="where run directories go (default: reports/)")
    p.add_argument("--keep-up", action="store_true", help="leave a stack this run started running afterwards")
    p.add_argument("--seed", type=int, help="random seed for fault choices (e.g. which replicas die)")
    p.add_argument("--quiet", action="store_true", help="no live progress on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON object (schema: docs/commands.md)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resilience", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Chaos and resilience testing for the school-meal ordering platform: deploy it, drive "
                    "Locust load, inject faults, and measure RTO, RPO, autoscaling, P99 and availability "
                    "against the platform's stated targets.")
    parser.add_argument("--version", action="version", version=f"resilience {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, target: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", metavar="FILE", help="settings file (YAML); default: resilience.yaml if present")
        if target:
            p.add_argument("--target", default="local",
                           help="local (default), kubernetes, or aws (EKS + RDS + ElastiCache); see `resilience faults`")
            p.add_argument("--context", help="kubeconfig context (kubernetes/aws targets; must be allow-listed; "
                                             "'in-cluster' inside a pod)")
            p.add_argument("--yes", action="store_true",
                           help="kubernetes/aws: go ahead without asking (needed when no terminal can confirm)")
        p.set_defaults(func=func)
        return p

    add("up", cmd_up, "deploy the platform and wait until it is healthy (reports an existing stack instead)")
    add("down", cmd_down, "stop everything the target started and remove its namespaces and state")
    p = add("status", cmd_status, "show every component: name, kind, role, zone, pid, address, health")
    p.add_argument("--json", action="store_true", help="print JSON (schema: docs/commands.md)")
    p = add("run", cmd_run, "run one experiment under load and judge it against the targets (exit 0/1/2)")
    p.add_argument("experiment", help="a catalogue name (see `resilience list`) or an experiment file")
    p.add_argument("--dry-run", action="store_true",
                   help="print every step the run would take on the target (API calls included), taking none; "
                        "exit 2 if the target would refuse a fault")
    _add_run_options(p)
    add("list", cmd_list, "the experiment catalogue, one line each", target=False)
    p = add("faults", cmd_faults, "every fault: its arguments, and which targets support it (and why not)",
            target=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = add("validate", cmd_validate, "check experiment files without running anything", target=False)
    p.add_argument("files", nargs="+", metavar="FILE", help="experiment files or catalogue names")
    p = add("check", cmd_check, "recompute measurements and verdict from a run directory, offline (exit 0 pass, "
                                "1 not a pass, 3 differs from result.json, 2 bad input)", target=False)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = add("report", cmd_report, "render a run's reports", target=False)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", default="all", choices=["all", "html", "pdf", "json", "junit", "md"])
    p = add("verify", cmd_verify, "check a run directory's SHA-256 manifest, signature and ledger record",
            target=False)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--public-key", help="the signer's public key (PEM) to check the signature against "
                                        "(instead of evidence.trusted_public_keys)")
    p.add_argument("--ledger", metavar="FILE", help="the ledger the run was sealed into (default: ledger.jsonl "
                                                    "beside the run directory)")
    p.add_argument("--ledger-head", metavar="SHA256", help="a ledger head recorded earlier (e.g. in CI or the "
                                                           "compliance report): the ledger must still contain it")
    p = add("keygen", cmd_keygen, "make an Ed25519 key pair for signing run manifests", target=False)
    p.add_argument("path", help="where to write the private key (the public key goes to PATH.pub)")
    p = add("rollback", cmd_rollback, "undo the faults a crashed run left pending (reads RUN_DIR/rollback.json)",
            target=False)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--yes", action="store_true", help="a cloud run's rollback: go ahead without asking")
    p = add("gameday", cmd_gameday, "run a suite of experiments and write one compliance report")
    p.add_argument("--suite", default="default", help="suite name from experiments/suites.yaml (default: default)")
    p.add_argument("--dry-run", action="store_true",
                   help="print every experiment's plan (as `run --dry-run`), taking no step; exit 2 if the target "
                        "would refuse one")
    _add_run_options(p)
    from .sweep import add_parser as add_sweep  # issue 21: `resilience sweep delay-database --from 0ms --to 500ms`
    add_sweep(add, _add_run_options)
    p = add("backup", cmd_backup, "backup verify: restore the latest backup into a scratch instance, check it "
                                  "(pgbackrest verify, orders against the live primary), seal the result (exit 0/1/2)",
            target=False)
    p.add_argument("action", choices=["verify"])
    p.add_argument("--repo", type=int, choices=[1, 2], default=1, help="1: in region (default); 2: second region")
    p.add_argument("--reports-dir", help="where the evidence run directory goes (default: evidence.reports_dir)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = add("config", cmd_config, "print the resolved settings (YAML that --config reads back)", target=False)
    p.add_argument("--defaults", action="store_true",
                   help="print a complete settings file with every default, each key explained in a comment")
    return parser


def _note_local_catalogue(command: str) -> None:
    """A ./experiments/ folder replaces the project's catalogue: say so on stderr, so it never happens unnoticed."""
    if command not in ("run", "list", "validate", "gameday"):
        return
    from .experiments import PROJECT_ROOT, experiments_dir
    used, project = experiments_dir(), PROJECT_ROOT / "experiments"
    if used.resolve() != project.resolve():
        print(f"resilience: the experiment catalogue is {used} (an experiments/ folder in the working directory), "
              f"not the project's {project}; run from another directory to use the project's.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        _note_local_catalogue(args.command)
        return int(args.func(args))
    except (UserError, HarnessError) as exc:
        print(f"resilience: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("resilience: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `resilience status | head -1`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
