"""fail_over_database on the local stack: kill or freeze the PostgreSQL primary (Patroni promotes the
synchronous standby); undone by restarting the old primary so it rejoins as a replica."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ....errors import HarnessError, UserError
from ....fault_registry import FaultCall
from ...base import RollbackStep
from ...fault_module import Effect, InjectContext
from ..topology import POSTGRES, ComponentId
from . import EFFECT_DEADLINE_S, FAULTS, LocalFault, Phase, stack_status

if TYPE_CHECKING:
    from ..stack_parts import StackParts
    from ..nemesis import LocalNemesis


@FAULTS.register
class FailOverDatabase(LocalFault):
    fault = "fail_over_database"
    steps = ("restore_db",)

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        return [f"fail_over_database: {call.get('mode')} the PostgreSQL primary (Patroni promotes the synchronous "
                f"standby)",
                "rollback restore_db: restart the old primary so it rejoins as a replica (rewind or re-clone); wait "
                "until it streams"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        result = nemesis.ask(self.fault, "inject", mode=call.get("mode"))
        return RollbackStep("restore_db", {"member": result["member"]},
                            f"restart {result['member']} so it rejoins as a replica")

    def undo(self, nemesis: LocalNemesis, step: RollbackStep) -> None:
        nemesis.ask(self.fault, "undo", timeout=nemesis.platform.heal_wait_s(), member=step.arguments["member"])

    # -- its effect ---------------------------------------------------------------------------------
    def effect(self, nemesis: LocalNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        """Patroni names a new leader: the old primary, killed or frozen at the call, has lost its lock."""
        old = step.arguments.get("member")

        def look() -> dict[str, Any] | None:
            leader = stack_status(nemesis).get("pg_leader")
            return {"leader": leader, "was": old} if leader and leader != old else None
        return Effect(f"the Patroni leader changed from {old}", EFFECT_DEADLINE_S, look)

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {"inject": self.take_primary, "undo": self.restore}

    def rejoins(self, phase: str, request: dict[str, Any], result: dict[str, Any]) -> list[str] | None:
        return [request["member"]] if phase == "undo" else None

    def take_primary(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        mode = request.get("mode", "kill")
        leader = parts.leader()
        if not leader:
            raise HarnessError("no PostgreSQL primary found (Patroni /cluster shows no running leader)")
        if mode == "kill":
            parts.processes.kill(leader, reap=False)
        elif mode == "freeze":
            parts.processes.freeze(leader)
        else:
            raise UserError(f"unknown database fault mode {mode!r}: use kill or freeze")
        parts.event(self.fault, "inject", member=leader.name, mode=mode)
        return {"member": leader.name, "mode": mode}

    def restore(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        member = request["member"]
        c = parts.topology.named(member)
        if c in parts.processes.paused:
            # a frozen (partitioned) primary: it lost its leader lock; kill it and let it rejoin
            parts.processes.kill_frozen(c)
        parts.processes.reap_killed(c)
        parts.processes.restart(c)
        parts.event(self.fault, "undo", member=member)
        return {"member": member}

    def restores(self, parts: StackParts, c: ComponentId) -> bool:
        if c.kind != POSTGRES:
            return False
        self.restore(parts, {"member": c.name})
        return True
