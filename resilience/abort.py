"""Why a run stops early — the stop condition, a Ctrl-C, a harness error — and how Ctrl-Cs are counted.

The first reason wins and is put in the history once, as a `phase`/`abort`
record, so the checkers see the run was cut short. A first Ctrl-C aborts the
run and lets finishing go on (every finishing step is `guard`ed); a second one
means "stop now": KeyboardInterrupt escapes, and history.partial.jsonl still
holds every record for `resilience rollback`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .checkers.windows import ABORT_PHASE
from .history import INFO, PHASE, History


class Aborted(Exception):
    """The stop condition fired or the user interrupted the run."""


class Abort:
    """A run's abort: its reason (None while the run goes as planned) and the Ctrl-Cs seen."""

    def __init__(self, history: History, say: Callable[[str], None]) -> None:
        self.history = history
        self.say = say
        self.reason: str | None = None
        self.interrupts = 0  # the first one aborts the run, a second one stops finishing
        self._noted = False  # the phase/abort record is in the history

    def check(self) -> None:
        """Raise `Aborted` once the run is aborted."""
        if self.reason:
            raise Aborted(self.reason)

    def abort(self, reason: str) -> None:
        """Abort the run for `reason`, unless it already is (the first reason stays)."""
        if not self.reason:
            self.reason = reason
        self.note()

    def note(self) -> None:
        """Put the abort in the history, once."""
        if not self._noted and self.reason:
            self._noted = True
            self.history.add(PHASE, ABORT_PHASE, INFO, detail={"reason": self.reason})

    def interrupt(self, where: str, run_dir: Path | None) -> bool:
        """Record a Ctrl-C during `where`. True for the first one (the run is aborted, finishing goes on), False
        for a second one (the caller lets KeyboardInterrupt escape)."""
        self.interrupts += 1
        if self.interrupts > 1:
            self.say(f"interrupted again: stopping now. `resilience rollback {run_dir}` undoes what is left and "
                     f"seals what was recorded.")
            return False
        self.abort(f"interrupted (Ctrl-C) during {where}")
        self.say(f"interrupted during {where}: finishing as an aborted run (Ctrl-C again to stop at once)")
        return True

    def guard(self, what: str, action: Callable[[], Any], run_dir: Path | None) -> bool:
        """Run one step of finishing: True when it completed; after a first Ctrl-C, False (and finishing goes on)."""
        try:
            action()
            return True
        except KeyboardInterrupt:
            if not self.interrupt(what, run_dir):
                raise
            return False
