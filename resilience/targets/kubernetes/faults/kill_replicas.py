"""kill_replicas on Kubernetes: chaosk8s terminates API pods at random; the Deployment controller replaces them."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from ....fault_registry import ROLLBACK_NONE, FaultCall
from ...base import RollbackStep
from ...fault_module import Effect, FaultModule, InjectContext
from .. import plan
from . import FAULTS

if TYPE_CHECKING:
    from ..nemesis import KubernetesNemesis


@FAULTS.register
class KillReplicas(FaultModule["KubernetesNemesis"]):
    fault = "kill_replicas"

    def plan(self, nemesis: KubernetesNemesis, call: FaultCall) -> list[str]:
        chaos = plan.kill_replicas_call(nemesis.namespace, call.get("count"), call.get("percent"))
        seed = call.get("seed")
        lines = [f"kill_replicas: random.seed({seed!r})"] if seed is not None else []
        return lines + [f"kill_replicas: {line}" for line in chaos.plan_lines()] + [
            "rollback none: the Deployment controller replaces terminated pods by itself"]

    def inject(self, nemesis: KubernetesNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        chaos = plan.kill_replicas_call(nemesis.namespace, call.get("count"), call.get("percent"))
        seed = call.get("seed") if call.get("seed") is not None else context.seed
        if seed is not None:
            random.seed(seed)  # chaosk8s picks pods with the module-level random
        killed = chaos.run(nemesis.platform.chaos_secrets())
        return RollbackStep(ROLLBACK_NONE, {"killed": list(killed or [])},
                            "the Deployment controller replaces terminated pods by itself")

    # -- its effect (the run times the fault from it) -----------------------------------------------
    def effect(self, nemesis: KubernetesNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        """The killed pods are gone (terminated, or no longer Ready while they terminate)."""
        killed = sorted(str(k) for k in step.arguments.get("killed", []))

        def look() -> dict[str, Any] | None:
            ready = {c.name for c in nemesis.platform.status().components if c.healthy}
            return None if ready & set(killed) else {"killed": killed}
        return Effect(f"the killed pods ({', '.join(killed) or 'none'}) no longer Ready", 60.0, look)
