"""Why a run stops early — the stop condition, a Ctrl-C, a harness error — and how Ctrl-Cs are counted.

SIGTERM and SIGHUP (a CronJob deadline, a node drained, a cancelled CI job, a closed terminal) are
a Ctrl-C too (`signals_as_ctrl_c`): rollback, sealed as aborted, exit 1. The abort reason names the
signal.

The first reason wins and is put in the history once, as a `phase`/`abort`
record, so the checkers see the run was cut short. A first Ctrl-C aborts the
run and lets finishing go on (every finishing step is `guard`ed); a second one
means "stop now": KeyboardInterrupt escapes, and history.partial.jsonl still
holds every record for `resilience rollback`.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator

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
        self.signal_name = "Ctrl-C"  # what the last interrupt was: Ctrl-C, SIGTERM or SIGHUP
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
        self.abort(f"interrupted ({self.signal_name}) during {where}")
        self.say(f"interrupted ({self.signal_name}) during {where}: finishing as an aborted run (Ctrl-C again to "
                 f"stop at once)")
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


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def install_signals_as_ctrl_c(abort: Abort) -> None:
    """Under plain `chaos run`: SIGTERM and SIGHUP raise KeyboardInterrupt from now on, replacing chaoslib's
    SIGTERM handler for this run (chaoslib puts its predecessor back when the run ends)."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, _as_ctrl_c(abort))


def _as_ctrl_c(abort: Abort) -> Callable[[int, FrameType | None], None]:
    def as_ctrl_c(signum: int, frame: FrameType | None) -> None:
        abort.signal_name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        raise KeyboardInterrupt(abort.signal_name)
    return as_ctrl_c


@contextmanager
def signals_as_ctrl_c(abort: Abort) -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does, noting which signal it was.

    Outside the main thread (no signal handlers can be set there) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    as_ctrl_c = _as_ctrl_c(abort)
    chosen = [*STOP_SIGNALS, *([signal.SIGINT] if signal.getsignal(signal.SIGINT) is signal.default_int_handler
                                else [])]  # an ignored SIGINT (a background job) stays ignored
    previous = {s: signal.signal(s, as_ctrl_c) for s in chosen}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
