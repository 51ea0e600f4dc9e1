"""The run in progress: the one piece of module-level state a run has, and the only place it is kept.

Chaos Toolkit calls our activities and controls as plain module-level
functions (`resilience.faults.lose_zone(zone=...)`,
`resilience.control.before_experiment_control(context, ...)`) with nothing but
the experiment's arguments: it has no way to hand them the `Run` they belong
to. So whoever creates the run registers it here — `resilience run`
(launcher.run_experiment) before it starts Chaos Toolkit, or the control itself
under plain `chaos run` — and those functions look it up here. Nothing else
should: code that has a `Run` passes it on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import HarnessError

if TYPE_CHECKING:
    from .run import Run

_active: "Run | None" = None


def activate(run: "Run | None") -> None:
    """Make `run` the run in progress (None: no run is)."""
    global _active
    _active = run


def active() -> "Run | None":
    """The run in progress, or None."""
    return _active


def current() -> "Run":
    """The run in progress; a HarnessError that says how to get one when there is none."""
    if _active is None:
        raise HarnessError("no resilience run is active: the experiment must load the control "
                           "'resilience.control' (see experiments/*.yaml), or be started with `resilience run`.")
    return _active
