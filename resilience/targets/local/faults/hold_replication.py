"""hold_replication on the local stack: hold the primary's WAL senders (SIGSTOP) for hold_s, then kill the
primary (a fail_over_database of its own), release the held senders, and hold the fault for durations.fault_s.
With asynchronous replication the writes acknowledged meanwhile exist only on the dead primary (RPO > 0).

Stopping the sender, not the replica's receiver: a stopped receiver still gets the WAL into its socket
buffer, and would apply it after resuming.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

from ....errors import HarnessError
from ....fault_registry import FaultCall
from ...base import FaultSession, RollbackStep
from ...fault_module import InjectContext
from ..processes import children, cmdline
from . import FAULTS, LocalFault, Phase

if TYPE_CHECKING:
    from ..stack_parts import StackParts
    from ..nemesis import LocalNemesis


@FAULTS.register
class HoldReplication(LocalFault):
    fault = "hold_replication"
    steps = ("resume_replication",)
    heal_order = 90

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        return ["hold_replication: SIGSTOP the primary's WAL senders, then kill the primary",
                "rollback resume_replication: SIGCONT the held WAL senders"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        nemesis.ask(self.fault, "inject")
        return RollbackStep("resume_replication", {}, "SIGCONT the primary's held WAL senders")

    def then(self, session: FaultSession) -> None:
        session.hold(session.hold_s)
        session.inject("fail_over_database", {"mode": "kill"})
        session.release(self.fault)  # the held senders died with the primary: this only tidies up
        session.hold(session.fault_s)

    def undo(self, nemesis: LocalNemesis, step: RollbackStep) -> None:
        try:
            nemesis.ask(self.fault, "undo")
        except HarnessError:
            pass  # the senders died with the primary

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {"inject": self.hold, "undo": self.release}

    def hold(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        leader = parts.leader()
        postmaster = parts.processes.postmaster_pid(leader) if leader else None
        senders = [c for c in children(postmaster) if "walsender" in cmdline(c)] if postmaster else []
        if not senders:
            raise HarnessError(f"no WAL sender under the primary {leader}'s postmaster: is the replica streaming?")
        with parts.lock:
            for pid in senders:
                os.kill(pid, signal.SIGSTOP)
            parts.state.setdefault(self.fault, []).extend(senders)
        parts.event(self.fault, "inject", member=str(leader), pids=senders)
        return {"member": str(leader), "pids": senders}

    def release(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        with parts.lock:
            released: list[int] = parts.state.pop(self.fault, [])
            for pid in released:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        parts.event(self.fault, "undo", pids=released)
        return {"pids": released}

    def heal_here(self, parts: StackParts) -> None:
        self.release(parts, {})
