"""What a `Run` is given to work with (the real ones come from `runbuild.build_run`).

Besides its experiment, settings and `RunOptions`, a run works with things it
does not make itself: the target (where the platform runs and how faults reach
it), the load plan and a factory for the load generator (`load/plan.py`), and
the evidence store (the run directory and its seal). Tests hand a `Run` fakes
that satisfy these protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from .load.plan import LoadFactory, LoadHandle, LoadPlan
from .results import Sealer

__all__ = ["LoadFactory", "LoadHandle", "LoadPlan", "RunOptions", "RunStore"]


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


class RunStore(Sealer, Protocol):
    """Where a run's directory is created and sealed (`resilience.evidence.EvidenceStore`)."""

    def open_run(self, experiment: str, started_at: datetime) -> Path: ...
