"""pause_replicas on the local stack: SIGSTOP every API replica for exactly hold_s, then SIGCONT (an outage of
known length: the run undoes this fault, and only this one, once the hold is over)."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from ....fault_registry import FaultCall
from ...base import FaultSession, RollbackStep
from ...fault_module import InjectContext
from . import FAULTS, LocalFault, Phase

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
