"""The kubernetes target's network fault modules' shared base: a Chaos Mesh NetworkChaos (chaosmesh.py), the path
timed through the API before and during (targets/netpath.py), the NetworkChaos deleted on undo.

The effect is seen when Chaos Mesh reports the fault injected (condition AllInjected) and the path's
measurement shows it; either missing by the deadline leaves the run inconclusive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import UserError
from ...fault_registry import FaultCall
from ..base import RollbackStep
from ..blast_radius import namespace_problem
from ..effect import Effect
from ..fault_module import FaultModule, InjectContext
from ..netpath import path_effect, path_refusal, probe_of, signal
from .chaosmesh import KIND, ChaosMesh, condition

if TYPE_CHECKING:
    from .nemesis import KubernetesNemesis


ZONE_MECHANISM = ("the documented mechanism would be a Chaos Mesh NetworkChaos with direction both, `selector` "
                  "and `target.selector` each choosing pods by their node's zone (nodeSelectors "
                  "topology.kubernetes.io/zone)")


class NetworkChaosFault(FaultModule["KubernetesNemesis"]):
    """One network fault of the registry as one NetworkChaos on the API pods."""

    def chaos(self, nemesis: KubernetesNemesis) -> ChaosMesh:
        return ChaosMesh(nemesis.platform)

    def refusal(self, nemesis: KubernetesNemesis, call: FaultCall) -> str | None:
        return path_refusal(call, ZONE_MECHANISM)

    def plan(self, nemesis: KubernetesNemesis, call: FaultCall) -> list[str]:
        return self.chaos(nemesis).plan(self.fault, dict(call.arguments), self.steps[0])

    def inject(self, nemesis: KubernetesNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        chaos = self.chaos(nemesis)
        problem = chaos.refusal()
        if problem:
            raise UserError(f"{self.fault}: {problem}")
        probe = probe_of(nemesis.platform)
        baseline = probe.measure() if probe is not None else {}
        peer = chaos.peer()
        name = chaos.create(self.fault, dict(call.arguments), peer)
        step = RollbackStep(self.steps[0], {"namespace": chaos.namespace, "name": name, "path": call.get("path"),
                                            "peer": peer, "baseline": baseline, "mechanism": "chaos-mesh"},
                            f"delete {KIND} {chaos.namespace}/{name}")
        context.record(step)
        return step

    def undo(self, nemesis: KubernetesNemesis, step: RollbackStep) -> None:
        self.chaos(nemesis).delete(str(step.arguments["name"]))

    def undo_refusal(self, nemesis: KubernetesNemesis, step: RollbackStep) -> str | None:
        namespace = str(step.arguments.get("namespace"))
        if namespace != nemesis.namespace:
            return f"the {KIND} is in namespace {namespace}, not the app's ({nemesis.namespace})"
        return namespace_problem(nemesis.platform.settings, namespace)

    def heal(self, nemesis: KubernetesNemesis) -> None:
        chaos = self.chaos(nemesis)
        for name in chaos.ours(self.fault):
            chaos.delete(name)

    def effect(self, nemesis: KubernetesNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        chaos, name = self.chaos(nemesis), str(step.arguments["name"])
        measured = path_effect(probe_of(nemesis.platform), call, dict(step.arguments.get("baseline") or {}),
                               {"mechanism": "chaos-mesh", "network_chaos": name})

        def look() -> dict[str, Any] | None:
            found = chaos.read(name)
            if found is None or not condition(found, "AllInjected"):
                return None  # Chaos Mesh has not injected it (yet): nothing to measure
            return measured.look()
        return Effect(f"{KIND} {name} AllInjected and {signal(call)}", measured.deadline_s, look, in_call=False)
