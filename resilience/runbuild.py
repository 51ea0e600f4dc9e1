"""`build_run`: a `Run` with the real dependencies, the one place they are chosen.

`resilience run` (launcher.py) and the control under plain `chaos run` (control.py) build runs here:
the target `options` names, the load plan (decided once, `load/plan.py`) with Locust in processes
of its own here or in the cluster (`kubernetes.load_generator: in-cluster`), and the evidence store.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import Settings
from .evidence import EvidenceStore
from .experiments import ExperimentSpec
from .load.cluster import cluster_load_factory
from .load.plan import LoadFactory, LoadPlan, plan_load
from .load.process import LoadProcess
from .run import Run
from .rundeps import RunOptions
from .targets import Composition, make_target


def build_run(spec: ExperimentSpec, settings: Settings, options: RunOptions) -> Run:
    """A `Run` on the target `options` names, with its load plan and factory and the evidence store in
    `options.reports_dir` (default `evidence.reports_dir`) signing with `evidence.signing_key`."""
    key = settings.evidence.signing_key
    store = EvidenceStore(Path(options.reports_dir or settings.evidence.reports_dir), Path(key) if key else None)
    target = make_target(options.target, settings, context=options.context)
    plan = load_plan_for(spec, settings, options, target.composition)
    return Run(spec, settings, options, target=target, load_plan=plan,
               load_factory=load_factory_for(plan, settings, options.context), store=store)


def load_plan_for(spec: ExperimentSpec, settings: Settings, options: RunOptions,
                  chosen: Composition) -> LoadPlan:
    """The experiment's load on the target `options` names; its composition tells where the platform runs."""
    return plan_load(spec.load, settings, target=options.target, on_kubernetes=chosen.platform == "kubernetes",
                     stack_here=chosen.on_this_machine, context=options.context, cpus=os.cpu_count() or 1)


def load_factory_for(plan: LoadPlan, settings: Settings, context: str | None) -> LoadFactory:
    """What makes the planned load: LoadProcess here, or ClusterLoad on the cluster of `context`."""
    if plan.where != "in-cluster":
        return LoadProcess
    assert context is not None  # plan_load refuses in-cluster load without one
    return cluster_load_factory(settings, context)
