"""pause_replicas on the local stack: SIGSTOP every API replica for exactly hold_s, then SIGCONT (an outage of
known length: the run undoes this fault, and only this one, once the hold is over)."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from ....fault_registry import FaultCall
from ...base import FaultSession, RollbackStep
from ...fault_module import Effect, InjectContext
from ..topology import API
from . import FREEZE_DEADLINE_S, FAULTS, LocalFault, Phase, components, stack_status

if TYPE_CHECKING:
    from ..stack_parts import StackParts
    from ..nemesis import LocalNemesis


@FAULTS.register
class PauseReplicas(LocalFault):
    fault = "pause_replicas"
    steps = ("resume_replicas",)
    heal_order = 20

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        return ["pause_replicas: SIGSTOP every API replica", "rollback resume_replicas: SIGCONT every API replica"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        nemesis.ask(self.fault, "inject")
        return RollbackStep("resume_replicas", {}, "SIGCONT every API replica")

    def then(self, session: FaultSession) -> None:
        session.hold(session.hold_s)
        session.undo(self.fault)

    def undo(self, nemesis: LocalNemesis, step: RollbackStep) -> None:
        nemesis.ask(self.fault, "undo")

    # -- its effect ---------------------------------------------------------------------------------
    def effect(self, nemesis: LocalNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        """Every API replica is stopped (state T in /proc): seen at once, before the hold undoes it."""
        def look() -> dict[str, Any] | None:
            pids = [int(c["pid"]) for c in components(stack_status(nemesis), API) if c.get("pid")]
            return {"stopped": pids} if pids and all(_stopped(pid) for pid in pids) else None
        return Effect("every API replica frozen (SIGSTOP)", FREEZE_DEADLINE_S, look)

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {"inject": self.pause, "undo": self.resume}

    def pause(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        names = parts.replicas.signal_all(signal.SIGSTOP)
        parts.event(self.fault, "inject", replicas=names)
        return {"replicas": names}

    def resume(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        names = parts.replicas.signal_all(signal.SIGCONT)
        parts.event(self.fault, "undo", replicas=names)
        return {"replicas": names}

    def heal_here(self, parts: StackParts) -> None:
        self.resume(parts, {})


def _stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state T in /proc/PID/stat)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] in ("T", "t")
