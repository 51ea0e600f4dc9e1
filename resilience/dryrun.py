"""`--dry-run`: what a run would do, checked as the run checks it, and not one call made.

A dry-run that accepted what the run then refuses would be a false promise, so
it goes through the same checks (the experiment, the load flags, the targets
with --set-target, the allow-lists, each fault on the target) before it prints
the plan: durations, load shape, judged targets, seed, then every step.
"""

from __future__ import annotations

import argparse
from typing import Any

from .config import Settings
from .launcher import load_overrides
from .policy import Policy


def dry_run(args: argparse.Namespace, settings: Settings, name: str | None = None) -> int:
    """Every step the run would take on its target, without one call; anything the run would refuse: exit 2.

    It checks what the run checks before it starts (the experiment, the load flags, the targets with
    --set-target, the faults on this target) and shows what the run would use (load, targets, seed).
    """
    import dataclasses

    from . import experiments
    from .allowlists import check_allowlists
    from .launcher import run_targets
    from .targets import make_target
    spec = experiments.load(name or args.experiment, args.profile, load_overrides=load_overrides(args),
                            policy=Policy.from_settings(settings))
    targets = run_targets(spec, settings, args.set_target)
    check_allowlists(settings, args.target, args.context, spec.fault_names())
    target = make_target(args.target, settings, context=args.context, dry_run=True)
    from .fault_registry import FAULTS
    calls = [dataclasses.replace(c, arguments={**c.arguments, "seed": args.seed})  # as Run.inject passes --seed
             if args.seed is not None and c.get("seed") is None
             and any(a.name == "seed" for a in FAULTS[c.fault].arguments) else c for c in spec.faults]
    for line in plan_summary(spec, targets, args.seed) + list(target.plan(calls)):
        print(line)
    from .effect_watch import too_short
    for line in too_short(spec, targets.rto_hold_s, {c.fault: target.documented(c) for c in calls}):
        print(line)
    return 0


def plan_summary(spec: Any, targets: Any, seed: int | None) -> list[str]:
    """What the run would measure with: durations, the load shape, the judged targets, the seed."""
    import dataclasses
    load, d = spec.load, spec.durations
    if load.stages:
        shape = ", ".join(f"{'forever' if s.duration_s == float('inf') else f'{s.duration_s:g}s'}:{s.users}"
                          for s in load.stages)
        shape = f"stages {shape}"
    else:
        shape = f"{load.users} users (started at {load.spawn_rate:g}/s)"
    think = ("the class's own think time" if load.wait_min_s is None
             else f"think time {load.wait_min_s:g}-{load.wait_max_s:g} s")
    workers = "default" if load.workers is None else str(load.workers)
    judged = ", ".join(f"{k} {v:g}" for k, v in dataclasses.asdict(targets).items())
    return [f"experiment {spec.name} ({spec.path}), profile {spec.profile}: steady {d.steady_s:g} s, "
            f"fault {d.fault_s:g} s, recovery {d.recovery_s:g} s",
            f"load: {shape}; user class {load.user_class}, {think}; Locust worker processes: {workers}",
            f"targets: {judged}",
            f"seed: {'none (random)' if seed is None else seed}"]
