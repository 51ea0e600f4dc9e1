"""What a `Run` is given to work with, and `build_run`, which gives it the real ones.

Besides its experiment, settings and `RunOptions`, a run works with three
things it does not make itself: the target (where the platform runs and how
faults reach it), a factory for the load generator, and the evidence store
(the run directory and its seal). `resilience run` and the control under plain
`chaos run` build runs with `build_run`; tests hand a `Run` fakes that satisfy
these protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .config import Settings
from .experiments import ExperimentSpec
from .history import Record
from .load.shape import LoadSettings
from .results import Sealer

if TYPE_CHECKING:
    from .load.clock_sync import ClockSync
    from .load.process import LoadStats
    from .run import Run


@dataclass
class RunOptions:
    """How a run was asked for (`resilience run` options; defaults under plain `chaos run`)."""

    target: str = "local"
    context: str | None = None
    target_overrides: dict[str, Any] = field(default_factory=dict)
    reports_dir: Path | None = None
    keep_up: bool = False  # leave a stack this run started running afterwards
    seed: int | None = None
    progress: bool = True


class LoadHandle(Protocol):
    """What a run needs of its load generator (`resilience.load.process.LoadProcess`)."""

    def start(self) -> None: ...
    def running(self) -> bool: ...
    def stats(self) -> "LoadStats | None": ...
    def stop(self) -> object: ...
    def records(self) -> list[Record]: ...
    def log_tail(self) -> str: ...
    def clock_sync(self) -> "ClockSync": ...


# (target URL, load settings, run directory, history origin on the monotonic clock, run id) -> a load not started
LoadFactory = Callable[[str, LoadSettings, Path, float, str], LoadHandle]


class RunStore(Sealer, Protocol):
    """Where a run's directory is created and sealed (`resilience.evidence.EvidenceStore`)."""

    def open_run(self, experiment: str, started_at: datetime) -> Path: ...


def build_run(spec: ExperimentSpec, settings: Settings, options: RunOptions) -> "Run":
    """A `Run` with the real dependencies: the target `options` names, Locust in processes of its own (here,
    or in the cluster with `kubernetes.load_generator: in-cluster`), and the
    evidence store in `options.reports_dir` (default `evidence.reports_dir`) signing with `evidence.signing_key`."""
    from .evidence import EvidenceStore
    from .load.cluster import load_factory_for
    from .load.process import LoadProcess
    from .run import Run
    from .targets import make_target
    key = settings.evidence.signing_key
    store = EvidenceStore(Path(options.reports_dir or settings.evidence.reports_dir), Path(key) if key else None)
    return Run(spec, settings, options, target=make_target(options.target, settings, context=options.context),
               load_factory=load_factory_for(settings, options.target, options.context, LoadProcess), store=store)
