"""What can be broken on a Kubernetes cluster: the fault modules in kubernetes/faults/, through plan.py.

The same `ChaosCall` values (plan.py) make the dry-run lines and the real calls,
so a plan line is exactly what would happen. The nemesis uses the cluster only
through `ClusterAccess`, which `KubernetesPlatform` gives.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ...config import Settings
from ...errors import HarnessError
from ..base import Build, RollbackStep, StackStatus
from ..blast_radius import namespace_problem
from ..fault_module import ModularNemesis
from ...fault_registry import FaultCall
from . import plan
from .faults import FAULTS


@runtime_checkable
class ClusterAccess(Protocol):
    """What the kubernetes nemesis and its fault modules use of the cluster (KubernetesPlatform gives it)."""

    settings: Settings
    namespace: str

    def chaos_secrets(self) -> dict[str, str]: ...
    def core(self) -> Any: ...
    def status(self) -> StackStatus: ...
    def node_zones(self) -> dict[str, str | None]: ...
    def nodes_in_zone(self, zone: str) -> dict[str, bool]: ...
    def pods(self, label_selector: str) -> list[Any]: ...
    def desired_replicas(self) -> int: ...


class KubernetesNemesis(ModularNemesis):
    name = "kubernetes"
    FAULTS = FAULTS

    @classmethod
    def build(cls, parts: Build) -> "KubernetesNemesis":
        if not isinstance(parts.platform, ClusterAccess):
            raise HarnessError(f"the kubernetes nemesis needs a cluster's platform, not {parts.platform!r}")
        return cls(parts.platform)

    def __init__(self, platform: ClusterAccess) -> None:
        self.platform = platform
        self.namespace = platform.namespace

    def common_refusal(self, call: FaultCall) -> str | None:
        return namespace_problem(self.platform.settings, self.namespace)

    def known_steps(self) -> list[str]:
        return [*super().known_steps(), "scale_replicas"]

    # -- scaling: not a fault of the registry, but undone like one ------------------------------------
    def scale_replicas(self, replicas: int) -> RollbackStep:
        """Set the Deployment's replica count (the HPA may move it again); rollback restores the old count."""
        previous = self.platform.desired_replicas()
        plan.scale_call(self.namespace, replicas).run(self.platform.chaos_secrets())
        return RollbackStep("scale_replicas", {"replicas": previous}, f"scale back to {previous} replicas",
                            nemesis=self.name)

    def rollback_refusal(self, step: RollbackStep) -> str | None:
        if step.capability == "scale_replicas":
            return None
        return super().rollback_refusal(step)

    def rollback(self, step: RollbackStep) -> None:
        if step.capability == "scale_replicas":
            plan.scale_call(self.namespace, int(step.arguments["replicas"])).run(self.platform.chaos_secrets())
            return
        super().rollback(step)
