"""kill_replicas on the local stack: SIGKILL API replicas chosen at random; the replica controller replaces them."""

from __future__ import annotations

import random
import signal
import time
from typing import TYPE_CHECKING, Any, Sequence, TypeVar

from ....errors import HarnessError
from ....fault_registry import FaultCall
from ...base import RollbackStep
from ...fault_module import Effect, InjectContext
from . import FREEZE_DEADLINE_S, FAULTS, LocalFault, Phase, stack_status

if TYPE_CHECKING:
    from ..stack_parts import StackParts
    from ..nemesis import LocalNemesis

T = TypeVar("T")
REPLACE_TIMEOUT_S = 60.0


def choose_victims(live: Sequence[T], count: int | None, percent: float | None, seed: int | None) -> list[T]:
    """Which replicas a kill takes: `count`, else `percent` of the live ones (at least one), at random (`seed`)."""
    n = count if count is not None else max(1, round(len(live) * (percent or 0) / 100.0))
    n = max(0, min(n, len(live)))
    return random.Random(seed).sample(list(live), n)


@FAULTS.register
class KillReplicas(LocalFault):
    fault = "kill_replicas"
    steps = ("wait_replicas",)

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        what = f"{call.get('percent'):g}% of the" if call.get("percent") is not None else str(call.get("count"))
        return [f"kill_replicas: SIGKILL {what} API replicas chosen at random (seed {call.get('seed')})",
                "rollback wait_replicas: wait until the replica controller has replaced them"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        desired = int(nemesis.platform.request("ready_replicas")["desired"])
        result = nemesis.ask(self.fault, "inject", count=call.get("count"), percent=call.get("percent"),
                             seed=call.get("seed") if call.get("seed") is not None else context.seed)
        return RollbackStep("wait_replicas", {"count": desired, "killed_pids": result.get("pids", {})},
                            "wait until the controller has replaced the killed replicas")

    def undo(self, nemesis: LocalNemesis, step: RollbackStep) -> None:
        count = int(step.arguments.get("count", 1))
        deadline = time.monotonic() + REPLACE_TIMEOUT_S
        while time.monotonic() < deadline:
            if nemesis.platform.ready_replicas() >= count:
                return
            time.sleep(0.2)
        raise HarnessError(f"the controller did not restore {count} ready replicas within {REPLACE_TIMEOUT_S:.0f} s")

    # -- its effect ---------------------------------------------------------------------------------
    def effect(self, nemesis: LocalNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        """The killed replicas are gone: none of their processes runs (their slots are empty or replaced)."""
        killed = dict(step.arguments.get("killed_pids") or {})

        def look() -> dict[str, Any] | None:
            running = {c.get("pid") for c in stack_status(nemesis).get("components", [])}
            left = [name for name, pid in killed.items() if pid in running]
            return None if left else {"killed": sorted(killed)}
        return Effect(f"the killed API replicas ({', '.join(sorted(killed)) or 'none'}) gone", FREEZE_DEADLINE_S,
                      look)

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {"inject": self.kill}

    def kill(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        with parts.lock:
            live = [r for r in parts.replicas.replicas.values()
                    if not r.lost and not r.stopping and r.executor.alive()]
            chosen = choose_victims(live, request.get("count"), request.get("percent"), request.get("seed"))
            names = [parts.replicas.name(r) for r in chosen]
            pids = {parts.replicas.name(r): r.executor.pid for r in chosen}
            for r in chosen:
                r.executor.signal(signal.SIGKILL)
            parts.event(self.fault, "inject", replicas=names)
        return {"killed": names, "pids": pids}
