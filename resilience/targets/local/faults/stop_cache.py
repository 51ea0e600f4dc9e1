"""stop_cache on the local stack: SIGKILL the Redis master (Sentinel promotes a replica) or every Redis server;
undone by restarting the stopped servers (as replicas of the master the Sentinels name)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ....errors import HarnessError, UserError
from ....fault_registry import FaultCall
from ...base import RollbackStep
from ...fault_module import Effect, InjectContext
from ..topology import REDIS
from . import EFFECT_DEADLINE_S, FREEZE_DEADLINE_S, FAULTS, LocalFault, Phase, components, stack_status

if TYPE_CHECKING:
    from ..stack_parts import StackParts
    from ..nemesis import LocalNemesis


@FAULTS.register
class StopCache(LocalFault):
    fault = "stop_cache"
    steps = ("restore_cache",)

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        cache = "the Redis master" if call.get("mode") == "failover" else "every Redis server"
        return [f"stop_cache: SIGKILL {cache} (Sentinel promotes a replica when the master dies)",
                "rollback restore_cache: restart the stopped Redis servers; wait until they rejoin"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        result = nemesis.ask(self.fault, "inject", mode=call.get("mode"))
        return RollbackStep("restore_cache", {"members": result["members"]}, "restart the stopped Redis servers")

    def undo(self, nemesis: LocalNemesis, step: RollbackStep) -> None:
        nemesis.ask(self.fault, "undo", timeout=nemesis.platform.heal_wait_s(),
                    members=step.arguments.get("members", []))

    # -- its effect ---------------------------------------------------------------------------------
    def effect(self, nemesis: LocalNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        """failover: the Sentinels name a new master; outage: no Redis server answers."""
        stopped = list(step.arguments.get("members", []))
        if call.get("mode") == "failover":
            old = stopped[0] if stopped else None

            def new_master() -> dict[str, Any] | None:
                master = stack_status(nemesis).get("redis_master")
                return {"master": master, "was": old} if master and master != old else None
            return Effect(f"the Sentinel master changed from {old}", EFFECT_DEADLINE_S, new_master)

        def all_down() -> dict[str, Any] | None:
            redis = components(stack_status(nemesis), REDIS)
            return {"down": [c["name"] for c in redis]} if redis and not any(c["healthy"] for c in redis) else None
        return Effect("every Redis server down", FREEZE_DEADLINE_S, all_down)

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {"inject": self.stop, "undo": self.restore}

    def rejoins(self, phase: str, request: dict[str, Any], result: dict[str, Any]) -> list[str] | None:
        return list(result["members"]) if phase == "undo" else None

    def stop(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        mode = request.get("mode", "failover")
        if mode == "failover":
            master = parts.monitor.refresh().observation.redis_master
            if not master:
                raise HarnessError("no Redis master known to Sentinel")
            targets = [parts.topology.named(master)]
        elif mode == "outage":
            targets = list(parts.topology.members(REDIS))
        else:
            raise UserError(f"unknown cache fault mode {mode!r}: use failover or outage")
        for c in targets:
            parts.processes.kill(c)
        names = [c.name for c in targets]
        parts.event(self.fault, "inject", mode=mode, members=names)
        return {"members": names, "mode": mode}

    def restore(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        members = list(request.get("members", []))
        for name in members:
            c = parts.topology.named(name)
            if c in parts.processes.stopped or not parts.processes.alive(c):
                parts.restart(c)
        parts.event(self.fault, "undo", members=members)
        return {"members": members}
